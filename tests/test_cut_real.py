"""The census's cut (:mod:`inspector.analysis.cut`) checked from the outside, on tiny transformers saved
with ``save_pretrained`` and loaded back: padded batches of different lengths give the same census, field
by field and bit for bit, with the cut as with whole forwards (``candidates`` patched to ``{}``); the module
it cuts at is the one after the last site (never before an encoder-decoder's decoder); no hook is left."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from inspector.analysis.activations import activation_census
from inspector.cli import main
from inspector.factories import save_state_dict
from tests.test_cut import _census_both_ways as both_ways
from tests.test_cut import _same

transformers = pytest.importorskip("transformers")

VOCAB = 60


def _batches(lengths: tuple[int, ...] = (9, 5, 12), rows: int = 6, decoder: bool = False) -> list[dict]:
    """Right-padded batches of different lengths: each batch's rows end at different real lengths."""
    g = torch.Generator().manual_seed(1)
    out = []
    for length in lengths:
        ids = torch.randint(3, VOCAB, (rows, length), generator=g)
        mask = torch.ones(rows, length, dtype=torch.long)
        for r in range(rows):
            real = max(2, length - (r * 2) % length)
            mask[r, real:] = 0
            ids[r, real:] = 0
        batch = {"input_ids": ids, "attention_mask": mask}
        if decoder:
            batch["decoder_input_ids"] = torch.randint(3, VOCAB, (rows, length - 1), generator=g)
        out.append(batch)
    return out


def _loaded(tmp_path, cls, config) -> nn.Module:
    torch.manual_seed(0)
    cls(config).save_pretrained(tmp_path / "model")
    return cls.from_pretrained(tmp_path / "model").eval()


def _census_both_ways(model: nn.Module, data, monkeypatch):
    """:func:`tests.test_cut._census_both_ways` with the top 5 examples; no hook is left on the model."""
    out = both_ways(model, data, monkeypatch, top_k=5)
    assert all(not m._forward_pre_hooks and not m._forward_hooks for m in model.modules())
    return out


def _bert(**kw):
    return transformers.BertConfig(
        vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24,
        max_position_embeddings=64, **kw,
    )  # fmt: skip


def _gpt2(**kw):
    return transformers.GPT2Config(
        vocab_size=VOCAB, n_embd=16, n_layer=2, n_head=2, n_positions=64, bos_token_id=1, eos_token_id=1, **kw
    )


CASES = {
    "bert-classifier": (lambda: transformers.BertForSequenceClassification, lambda: _bert(num_labels=3)),
    "bert-mlm": (lambda: transformers.BertForMaskedLM, _bert),
    "gpt2-lm": (lambda: transformers.GPT2LMHeadModel, _gpt2),
    "gpt2-classifier": (lambda: transformers.GPT2ForSequenceClassification, lambda: _gpt2(pad_token_id=0)),
    "llama": (
        lambda: transformers.LlamaForCausalLM,
        lambda: transformers.LlamaConfig(
            vocab_size=VOCAB,
            hidden_size=16,
            intermediate_size=24,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            max_position_embeddings=64,
            pad_token_id=0,
        ),  # fmt: skip
    ),
    "distilbert": (
        lambda: transformers.DistilBertForSequenceClassification,
        lambda: transformers.DistilBertConfig(
            vocab_size=VOCAB, dim=16, n_layers=2, n_heads=2, hidden_dim=24, max_position_embeddings=64
        ),
    ),
    "roberta-mlm": (
        lambda: transformers.RobertaForMaskedLM,
        lambda: transformers.RobertaConfig(
            vocab_size=VOCAB,
            hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=24,
            max_position_embeddings=70,
            pad_token_id=1,
        ),  # fmt: skip
    ),
}


# where each forward ends: after the last block, a classifier's pooler or a masked LM's head transform (its
# decoder to the vocabulary shares a module with the transform, so the cut is one level deeper)
CUT_AT = {
    "bert-classifier": "dropout",
    "bert-mlm": "cls.predictions.transform.LayerNorm",
    "gpt2-lm": "transformer.ln_f",
    "gpt2-classifier": "transformer.ln_f",
    "llama": "model.norm",
    "distilbert": "dropout",
    "roberta-mlm": "lm_head.layer_norm",
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_saved_transformer_counts_the_same_with_the_cut(name, tmp_path, monkeypatch):
    cls, config = CASES[name]
    model = _loaded(tmp_path, cls(), config())
    data = _batches()
    calls: list[int] = []
    if name.endswith("-mlm"):  # counted by a wrapped forward (no hook: none may be left on the model)
        decoder = model.get_output_embeddings()
        forward = decoder.forward
        monkeypatch.setattr(decoder, "forward", lambda x: (calls.append(int(x.shape[0])), forward(x))[1])
    with_cut, at, whole = _census_both_ways(model, data, monkeypatch)
    assert at == CUT_AT[name]
    _same(with_cut, whole, name)
    if name.endswith("-mlm"):  # the vocabulary projection: site discovery's and the first batch's (run whole
        # to learn the cut: the tiny decoder is too small a share for a two-row probe), none of the other two
        # batches'; then discovery's and the three batches' uncut
        assert calls == [6, 6] + [6, 6, 6, 6]
    assert len(with_cut) >= 2 and all(a.top_examples is not None for a in with_cut)
    # no counted site lies inside the module the forward was cut at
    assert not any(a.layer == at or a.layer.startswith(f"{at}.") for a in with_cut)


@pytest.mark.parametrize("cls_name", ["T5ForConditionalGeneration", "BartForConditionalGeneration"])
def test_an_encoder_decoder_is_cut_after_its_decoder(cls_name, tmp_path, monkeypatch):
    cls = getattr(transformers, cls_name)
    if cls_name.startswith("T5"):
        config = transformers.T5Config(
            vocab_size=VOCAB, d_model=16, d_kv=8, d_ff=24, num_layers=2, num_heads=2, decoder_start_token_id=0
        )
    else:
        config = transformers.BartConfig(
            vocab_size=VOCAB, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
            decoder_attention_heads=2, encoder_ffn_dim=24, decoder_ffn_dim=24, max_position_embeddings=64,
        )  # fmt: skip
    model = _loaded(tmp_path, cls, config)
    data = _batches(decoder=True)
    with_cut, at, whole = _census_both_ways(model, data, monkeypatch)
    _same(with_cut, whole, cls_name)
    layers = [a.layer for a in with_cut]
    assert any(".decoder." in f".{layer}" for layer in layers), layers
    print("CUT", cls_name, at, layers)
    assert at == "lm_head"


def test_a_census_under_the_models_own_hooks_counts_the_same_and_leaves_them(tmp_path, monkeypatch):
    model = _loaded(tmp_path, transformers.GPT2LMHeadModel, _gpt2())
    seen: list[int] = []
    steer = model.transformer.h[0].mlp.register_forward_hook(lambda m, a, out: out + 0.5)
    head = model.lm_head.register_forward_hook(lambda m, a, out: seen.append(out.shape[0]))
    pre = model.transformer.h[1].register_forward_pre_hook(lambda m, args: None)
    data = _batches()
    with_cut, at, whole = both_ways(model, data, monkeypatch, top_k=5)
    assert at == "transformer.ln_f"
    _same(with_cut, whole)
    # the steering hook acted: the census differs from the model without it
    steer.remove()
    plain = activation_census(model, data, top_k=5)
    assert not (plain[1].mean_activation == with_cut[1].mean_activation).all()
    # the user's hooks stayed where they were, the census's are gone
    assert list(model.lm_head._forward_hooks) == [head.id]
    assert list(model.transformer.h[1]._forward_pre_hooks) == [pre.id]
    assert seen  # the head's hook ran on the forwards that reached it


class _NoTwoRows(nn.Module):
    """A saved GPT-2 that refuses batches of fewer than 4 rows (the cut's two-row probe among them)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[0] < 4:
            raise RuntimeError("this model takes at least 4 rows")
        return self.inner(input_ids=input_ids, attention_mask=attention_mask).logits


def test_a_saved_model_refusing_two_rows_is_cut_from_its_first_batch_whole(tmp_path, monkeypatch):
    model = _NoTwoRows(_loaded(tmp_path, transformers.GPT2LMHeadModel, _gpt2()))
    with_cut, at, whole = _census_both_ways(model, _batches(), monkeypatch)
    assert at == "inner.transformer.ln_f"
    _same(with_cut, whole)


TIED = {
    "gpt2": (lambda: transformers.GPT2LMHeadModel, _gpt2, True),
    "bert-mlm": (lambda: transformers.BertForMaskedLM, _bert, True),
    "llama-tied": (lambda: transformers.LlamaForCausalLM, lambda: CASES["llama"][1]().__class__(
        **{**CASES["llama"][1]().to_dict(), "tie_word_embeddings": True}), True),
    "llama-untied": (lambda: transformers.LlamaForCausalLM, lambda: CASES["llama"][1]().__class__(
        **{**CASES["llama"][1]().to_dict(), "tie_word_embeddings": False}), False),
    "t5": (lambda: transformers.T5ForConditionalGeneration, lambda: transformers.T5Config(
        vocab_size=VOCAB, d_model=16, d_kv=8, d_ff=24, num_layers=1, num_heads=2, decoder_start_token_id=0), True),
}  # fmt: skip


@pytest.mark.parametrize("fmt", ["safetensors", "pt"])
@pytest.mark.parametrize("name", list(TIED))
def test_a_saved_state_dict_counts_tied_weights_once_and_loads_strictly_tied(name, fmt, tmp_path, capsys):
    cls, config, tied = TIED[name]
    model = _loaded(tmp_path, cls(), config())
    with torch.no_grad():  # a pruned embedding: the copies must carry the same zeros
        model.get_input_embeddings().weight[:, ::2] = 0
    path = save_state_dict(model, tmp_path / f"pruned.{fmt}")
    assert main(["info", "--json", str(path)]) == 0
    totals = json.loads(capsys.readouterr().out)["totals"]
    assert totals["total_parameters"] == sum(p.numel() for p in model.parameters())
    if fmt == "safetensors":
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        state = torch.load(path, weights_only=True)["state_dict"]
    fresh = cls().from_pretrained(tmp_path / "model")
    fresh.load_state_dict(state, strict=True)
    embedding, output = fresh.get_input_embeddings().weight, fresh.get_output_embeddings().weight
    assert (embedding.data_ptr() == output.data_ptr()) is tied
    assert torch.equal(embedding, model.get_input_embeddings().weight)
    assert torch.equal(output, model.get_output_embeddings().weight)
