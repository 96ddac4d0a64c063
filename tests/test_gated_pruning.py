"""Neuron pruning of gated units (SwiGLU, GeGLU): Llama's ``down_proj(silu(gate_proj(x)) * up_proj(x))``.

Neuron j of such a unit is row j of the gate, row j of its partner (``up_proj``) and column j of the
consumer (``down_proj``): pruning it zeroes all three, the ranking reads both rows, and shrinking
removes all three, so the smaller model is the one built here by hand from the kept indices.
"""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import inspector
from inspector.analysis.inputs import as_source
from inspector.analysis.pruning import apply_masks, neuron_keep, neuron_masks, neuron_plan, prune
from inspector.analysis.shrink import shrink_model
from inspector.cli import main
from inspector.errors import InspectorError

os.environ.setdefault("HF_HUB_OFFLINE", "1")


class SwiGLU(nn.Module):
    """A residual SwiGLU block between an input and an output layer; ``functional``: ``F.silu`` (found in the
    ``torch.fx`` graph) instead of an ``nn.SiLU`` module (seen in the forward pass); ``leak``: the partner's
    output is also added to the residual stream (then it is no partner: its rows serve another reader)."""

    def __init__(self, functional: bool = False, leak: bool = False, width: int = 8, hidden: int = 12) -> None:
        super().__init__()
        self.functional, self.leak = functional, leak
        self.inp = nn.Linear(5, width)
        self.gate = nn.Linear(width, hidden)
        self.act = nn.SiLU()
        self.up = nn.Linear(width, hidden)
        self.down = nn.Linear(hidden, width)
        self.side = nn.Linear(hidden, width)
        self.head = nn.Linear(width, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        up = self.up(h)
        gated = (F.silu(self.gate(h)) if self.functional else self.act(self.gate(h))) * up
        h = h + self.down(gated)
        if self.leak:
            h = h + self.side(up)
        return self.head(h)


X = torch.randn(40, 5, generator=torch.Generator().manual_seed(1))


def _model(**kwargs: Any) -> SwiGLU:
    torch.manual_seed(0)
    return SwiGLU(**kwargs).eval()


def _by_hand(model: SwiGLU, kept: torch.Tensor) -> SwiGLU:
    """``model`` with only the ``kept`` gated neurons: rows of gate and up, columns of down, cut here."""
    small = copy.deepcopy(model)
    for name in ("gate", "up"):
        layer = getattr(small, name)
        cut = nn.Linear(layer.in_features, len(kept))
        cut.weight.data, cut.bias.data = layer.weight.data[kept].clone(), layer.bias.data[kept].clone()
        setattr(small, name, cut)
    down = nn.Linear(len(kept), small.down.out_features)
    down.weight.data, down.bias.data = small.down.weight.data[:, kept].clone(), small.down.bias.data.clone()
    small.down = down
    return small


@pytest.mark.parametrize("functional", [False, True], ids=["module", "functional"])
def test_the_plan_knows_a_gated_units_partner_and_consumer(functional: bool) -> None:
    model = _model(functional=functional)
    plan = neuron_plan(model, as_source(X).first())
    assert plan.hidden == ("gate",)
    assert dict(plan.consumers) == {"gate": ("down",)}
    assert dict(plan.partners) == {"gate": ("up",)}


@pytest.mark.parametrize("functional", [False, True], ids=["module", "functional"])
def test_a_pruned_gated_neuron_leaves_both_halves_and_the_consumer(functional: bool) -> None:
    model = _model(functional=functional)
    with torch.no_grad():
        # neuron 0: a weak gate row but a strong up row (kept: its incoming rows are both halves);
        # neuron 1: both weak (the first to go)
        model.gate.weight[0] *= 1e-3
        model.up.weight[0] *= 100.0
        model.gate.weight[1] *= 1e-3
        model.up.weight[1] *= 1e-3
    norms = torch.cat([model.gate.weight, model.up.weight], dim=1).norm(dim=1)
    pruned_ids = torch.argsort(norms, stable=True)[: math.floor(0.5 * 12)]
    assert 1 in pruned_ids and 0 not in pruned_ids
    kept = torch.tensor(sorted(set(range(12)) - set(pruned_ids.tolist())))

    pruned = prune(model, 0.5, "neuron", data=X)
    zero_rows = {name: (getattr(pruned, name).weight == 0).all(dim=1) for name in ("gate", "up")}
    assert torch.equal(torch.nonzero(zero_rows["gate"]).flatten(), torch.sort(pruned_ids).values)
    assert torch.equal(zero_rows["gate"], zero_rows["up"])
    assert torch.equal((pruned.down.weight == 0).all(dim=0), zero_rows["gate"])
    assert bool((pruned.gate.bias[pruned_ids] == 0).all() and (pruned.up.bias[pruned_ids] == 0).all())
    # what is left is the model made of the kept neurons alone, and shrink builds that model
    small = _by_hand(model, kept)
    with torch.no_grad():
        torch.testing.assert_close(pruned(X), small(X), rtol=1e-5, atol=1e-6)
        shrunk = inspector.shrink(pruned, data=X)
        assert (shrunk.gate.out_features, shrunk.up.out_features, shrunk.down.in_features) == (6, 6, 6)
        torch.testing.assert_close(shrunk(X), small(X), rtol=1e-5, atol=1e-6)


def test_a_partner_whose_output_is_read_elsewhere_keeps_its_rows() -> None:
    model = _model(leak=True)
    plan = neuron_plan(model, as_source(X).first())
    assert dict(plan.partners) == {}  # up's output also goes to side: removing its rows would change that
    assert dict(plan.consumers) == {"gate": ("down",)}  # the product still carries neuron j in feature j
    keep = neuron_keep(model, plan, (0.5,))[0]
    masked = copy.deepcopy(model)
    apply_masks(masked, *neuron_masks(model, keep, plan))
    assert torch.equal(masked.up.weight, model.up.weight)
    assert int((masked.down.weight == 0).all(dim=0).sum()) == 6
    shrunk = shrink_model(model, keep, X)
    assert shrunk.widths == {} and "gate" in shrunk.kept_masked
    with torch.no_grad():
        torch.testing.assert_close(shrunk.model(X), masked(X))


class SwiGLUElsewhere(SwiGLU):
    """A SwiGLU block whose ``up`` also serves another reader: called a second time, on the block's result,
    into the head (``tied=False``), or its weight tied to ``twin``'s, a linear layer of its shape read there
    (``tied=True``). Either way zeroing up's rows would change that reader, so up is no partner."""

    def __init__(self, functional: bool, tied: bool) -> None:
        super().__init__(functional=functional, width=8, hidden=8)
        self.tied = tied
        self.twin = nn.Linear(8, 8)
        if tied:
            self.twin.weight = self.up.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        gated = (F.silu(self.gate(h)) if self.functional else self.act(self.gate(h))) * self.up(h)
        h = h + self.down(gated)
        return self.head(h + (self.twin(h) if self.tied else self.up(h)))


@pytest.mark.parametrize("functional", [False, True], ids=["module", "functional"])
@pytest.mark.parametrize("tied", [False, True], ids=["called-twice", "tied"])
def test_a_partner_that_serves_another_reader_keeps_its_rows(functional: bool, tied: bool) -> None:
    # once up was taken as gate's partner (its product output read once): its rows were zeroed, and the
    # second call (or the tied twin) fed the head something else, so the pruned model was not the one below
    torch.manual_seed(0)
    model = SwiGLUElsewhere(functional, tied).eval()
    plan = neuron_plan(model, as_source(X).first())
    assert dict(plan.partners) == {}
    assert dict(plan.consumers) == {"gate": ("down",)}
    pruned = prune(model, 0.5, "neuron", data=X)
    assert isinstance(pruned, SwiGLUElsewhere)
    assert torch.equal(pruned.up.weight, model.up.weight) and torch.equal(pruned.up.bias, model.up.bias)
    removed = torch.argsort(model.gate.weight.norm(dim=1), stable=True)[:4]  # ranked on gate's own rows
    by_hand = copy.deepcopy(model)
    with torch.no_grad():
        by_hand.gate.weight[removed] = 0
        by_hand.gate.bias[removed] = 0
        by_hand.down.weight[:, removed] = 0
        torch.testing.assert_close(pruned(X), by_hand(X), rtol=0, atol=0)
        torch.testing.assert_close(inspector.shrink(pruned, data=X)(X), by_hand(X), rtol=1e-5, atol=1e-6)


class SwiGLUInPlace(SwiGLU):
    """The product written in place: into the partner's output (``up.mul_(act)``, ``into="up"``) or into the
    activation's (``act *= up``, ``into="act"``)."""

    def __init__(self, into: str) -> None:
        super().__init__()
        self.into = into

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        up, act = self.up(h), self.act(self.gate(h))
        if self.into == "up":
            gated = up.mul_(act)
        else:
            act *= up
            gated = act
        return self.head(h + self.down(gated))


@pytest.mark.parametrize("into", ["up", "act"])
def test_an_in_place_product_is_a_gated_unit_too(into: str) -> None:
    # once up.mul_(act) left up with two readers (the product and down, which reads the same tensor): no
    # partner, so gate's neurons went alone and shrink kept them masked ("its output feeds mul")
    torch.manual_seed(0)
    model = SwiGLUInPlace(into).eval()
    plan = neuron_plan(model, as_source(X).first())
    assert dict(plan.partners) == {"gate": ("up",)}
    assert dict(plan.consumers) == {"gate": ("down",)}
    norms = torch.cat([model.gate.weight, model.up.weight], dim=1).norm(dim=1)
    kept = torch.sort(torch.argsort(norms, stable=True)[6:]).values
    small = _by_hand(model, kept)
    pruned = prune(model, 0.5, "neuron", data=X)
    shrunk = shrink_model(pruned, data=X)
    assert shrunk.kept_masked == {} and shrunk.widths == {"gate": (12, 6)}
    with torch.no_grad():
        torch.testing.assert_close(pruned(X), small(X), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(shrunk.model(X), small(X), rtol=1e-5, atol=1e-6)


def test_a_bf16_model_drops_its_truly_weakest_gated_neuron() -> None:
    # neuron 0's rows have norm sqrt(1 + 1/256) ~ 1.002, neuron 1's exactly 1: both round to 1.0 in bf16, so a
    # norm taken in bf16 once tied them and the stable sort dropped neuron 0, the stronger of the two
    torch.manual_seed(0)
    model = _model().to(torch.bfloat16)
    with torch.no_grad():
        for layer in (model.gate, model.up):
            layer.weight.mul_(4.0)  # every other neuron's norm well above 2
            layer.weight[:2] = 0
        model.gate.weight[0, 0] = model.gate.weight[1, 0] = 1.0
        model.up.weight[0, 0] = 1 / 16
    plan = neuron_plan(model, as_source(X.to(torch.bfloat16)).first())
    assert dict(plan.partners) == {"gate": ("up",)}
    (keep,) = neuron_keep(model, plan, (0.1,))  # floor(0.1 * 12) = 1 neuron goes
    assert torch.nonzero(~keep["gate"]).flatten().tolist() == [1]


class SwiGLUCastToConsumer(SwiGLU):
    """T5's gated unit loaded in float16: its consumer ``wo`` is kept in float32 (``_keep_in_fp32_modules``) and
    the product is cast to the consumer's dtype first. Here: float32 layers, a float64 ``down``."""

    def __init__(self) -> None:
        super().__init__()
        self.down.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        gated = self.act(self.gate(h)) * self.up(h)
        return self.head(h + self.down(gated.to(self.down.weight.dtype)).float())


def test_a_product_cast_to_its_consumers_dtype_still_reaches_the_consumer() -> None:
    # once the observed pass lost the product at .to(float64): no consumer known, down's columns stayed and
    # shrink removed nothing (and said nothing)
    torch.manual_seed(0)
    model = SwiGLUCastToConsumer().eval()
    plan = neuron_plan(model, as_source(X).first())
    assert dict(plan.partners) == {"gate": ("up",)} and dict(plan.consumers) == {"gate": ("down",)}
    norms = torch.cat([model.gate.weight, model.up.weight], dim=1).double().norm(dim=1)
    kept = torch.sort(torch.argsort(norms, stable=True)[6:]).values
    small = _by_hand(model, kept)
    small.down.double()
    pruned = prune(model, 0.5, "neuron", data=X)
    shrunk = shrink_model(pruned, data=X)
    assert shrunk.widths == {"gate": (12, 6)} and shrunk.kept_masked == {}
    with torch.no_grad():
        torch.testing.assert_close(pruned(X), small(X), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(shrunk.model(X), small(X), rtol=1e-5, atol=1e-6)


def _tiny(kind: str) -> tuple[nn.Module, dict[str, torch.Tensor], list[tuple[str, str, str]]]:
    """A Llama or gated-GELU T5 built from a config, a batch, and its (gate, partner, consumer) triples."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    ids = torch.randint(0, 100, (3, 10), generator=torch.Generator().manual_seed(2))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if kind == "llama":
        config = transformers.LlamaConfig(
            vocab_size=100, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=64,
        )  # fmt: skip
        names = [f"model.layers.{i}.mlp" for i in range(2)]
        return (
            transformers.LlamaForCausalLM(config).eval(),
            batch,
            [(f"{n}.gate_proj", f"{n}.up_proj", f"{n}.down_proj") for n in names],
        )
    config = transformers.T5Config(
        vocab_size=100, d_model=32, d_ff=48, num_layers=1, num_decoder_layers=1, num_heads=4, d_kv=8,
        feed_forward_proj="gated-gelu",
    )  # fmt: skip
    batch["decoder_input_ids"] = ids[:, :5]
    names = ["encoder.block.0.layer.1.DenseReluDense", "decoder.block.0.layer.2.DenseReluDense"]
    return (
        transformers.T5ForConditionalGeneration(config).eval(),
        batch,
        [(f"{n}.wi_0", f"{n}.wi_1", f"{n}.wo") for n in names],
    )


@pytest.mark.parametrize("kind", ["llama", "t5"])
def test_transformer_gated_mlps_shrink_to_the_model_built_by_hand(kind: str) -> None:
    model, batch, triples = _tiny(kind)
    plan = neuron_plan(model, as_source([batch]).first())
    assert dict(plan.partners) == {gate: (up,) for gate, up, _ in triples}
    assert dict(plan.consumers) == {gate: (down,) for gate, _, down in triples}
    keep = neuron_keep(model, plan, (0.5,))[0]
    masked = copy.deepcopy(model)
    apply_masks(masked, *neuron_masks(model, keep, plan))
    shrunk = shrink_model(model, keep, [batch])
    assert shrunk.kept_masked == {}
    by_hand = copy.deepcopy(model)
    for gate, up, down in triples:
        kept = torch.nonzero(keep[gate]).flatten()
        assert len(kept) == 24
        for name, rows in ((gate, True), (up, True), (down, False)):
            layer = by_hand.get_submodule(name)
            layer.weight = nn.Parameter(layer.weight.data[kept] if rows else layer.weight.data[:, kept])
            small = shrunk.model.get_submodule(name)
            assert tuple(small.weight.shape) == ((24, 32) if rows else (32, 24)), name
    with torch.no_grad():
        want = by_hand(**batch).logits
        torch.testing.assert_close(masked(**batch).logits, want, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(shrunk.model(**batch).logits, want, rtol=1e-5, atol=1e-5)


FAMILIES = {  # (config class, model class, extra config): SwiGLU, SwiGLU with biases, GeGLU (tanh GELU)
    "mistral": ("MistralConfig", "MistralForCausalLM", {"head_dim": 8}),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {}),
    "llama-mlp-bias": ("LlamaConfig", "LlamaForCausalLM", {"mlp_bias": True}),
    "gemma": ("GemmaConfig", "GemmaForCausalLM", {"head_dim": 8, "hidden_activation": "gelu_pytorch_tanh"}),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", {}),  # gate_up_proj: one layer whose output is chunked in two
}


def _saved(kind: str, tmp_path: Path, intermediate: int = 40) -> tuple[nn.Module, Any]:
    transformers = pytest.importorskip("transformers")
    config_class, model_class, extra = FAMILIES[kind]
    config = getattr(transformers, config_class)(
        vocab_size=50, hidden_size=16, intermediate_size=intermediate, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=32, pad_token_id=0, **extra,
    )  # fmt: skip
    cls = getattr(transformers, model_class)
    torch.manual_seed(0)
    model = cls(config)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):  # initialised to zero: give the pruned ones something to remove
                parameter.normal_()
    model.save_pretrained(tmp_path / kind)
    return cls.from_pretrained(tmp_path / kind).eval(), config


@pytest.mark.parametrize("kind", ["mistral", "qwen2", "llama-mlp-bias", "gemma"])
def test_saved_gated_transformers_prune_to_a_smaller_model_of_their_family(kind: str, tmp_path: Path) -> None:
    model, config = _saved(kind, tmp_path)
    ids = torch.randint(0, 50, (3, 9), generator=torch.Generator().manual_seed(2))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    pruned = prune(model, 0.5, "neuron", data=[batch])
    # by hand: per MLP the 20 neurons with the largest norm of their gate and up rows together (float64)
    # stay; the same family built with intermediate_size 20 holds them
    config.intermediate_size = 20
    small = type(model)(config).eval()
    state = model.state_dict()
    for i in range(2):
        mlp = f"model.layers.{i}.mlp"
        rows = torch.cat([state[f"{mlp}.gate_proj.weight"], state[f"{mlp}.up_proj.weight"]], dim=1).double()
        kept = torch.sort(torch.argsort(rows.norm(dim=1), stable=True)[20:]).values
        for name in ("gate_proj", "up_proj"):
            for tensor in ("weight", "bias"):
                if f"{mlp}.{name}.{tensor}" in state:
                    state[f"{mlp}.{name}.{tensor}"] = state[f"{mlp}.{name}.{tensor}"][kept]
        state[f"{mlp}.down_proj.weight"] = state[f"{mlp}.down_proj.weight"][:, kept]
    biases = "model.layers.0.mlp.up_proj.bias" in state
    removed_per_neuron = 16 + 16 + 16 + (2 if biases else 0)  # gate row, up row, down column (+ their biases)
    small.load_state_dict(state)
    with torch.no_grad():
        want = small(**batch).logits
        torch.testing.assert_close(pruned(**batch).logits, want, rtol=1e-5, atol=1e-5)
        shrunk = inspector.shrink(pruned, data=[batch])
        torch.testing.assert_close(shrunk(**batch).logits, want, rtol=1e-5, atol=1e-5)
    assert sum(p.numel() for p in shrunk.parameters()) == sum(p.numel() for p in small.parameters())
    nonzero = {name: int((p != 0).sum()) for name, p in model.named_parameters()}
    left = sum(int((p != 0).sum()) for p in pruned.parameters())
    assert left == sum(nonzero.values()) - 2 * 20 * removed_per_neuron


def test_a_fused_gate_up_projection_is_no_partner_and_stays_whole(tmp_path: Path) -> None:
    # Phi-3: gate_up_proj's output is chunked into gate and up, so no layer's output meets an activation
    # alone: nothing in the MLP is a hidden layer; the neuron scope says it has nothing to prune (it once
    # printed "pruned 50% (neuron)" over an unchanged model)
    model, _ = _saved("phi3", tmp_path)
    ids = torch.randint(0, 50, (3, 9), generator=torch.Generator().manual_seed(2))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    plan = neuron_plan(model, as_source([batch]).first())
    assert dict(plan.partners) == {} and plan.hidden == ()
    with pytest.raises(InspectorError, match="the neuron scope found no hidden layer to prune .* use the global"):
        prune(model, 0.5, "neuron", data=[batch])
    unchanged = prune(model, 0.0, "neuron", data=[batch])
    for name, tensor in model.state_dict().items():
        assert torch.equal(unchanged.state_dict()[name], tensor), name


def test_prune_cli_on_a_llama_folder_removes_whole_gated_neurons(tmp_path: Path, capsys) -> None:
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    sentences = ["the rain is cold today", "the sun was warm", "storm tomorrow", "a good day is a warm day"]
    word_level = tokenizers.Tokenizer(tokenizers.models.WordLevel(unk_token="<unk>"))
    word_level.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    word_level.train_from_iterator(sentences, tokenizers.trainers.WordLevelTrainer(special_tokens=["<unk>", "<eos>"]))
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=word_level, unk_token="<unk>", eos_token="<eos>")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=40, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=32, bos_token_id=1, eos_token_id=1,
    )  # fmt: skip
    folder = tmp_path / "llama"
    model = transformers.LlamaForCausalLM(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    text = tmp_path / "texts.txt"
    text.write_text("\n".join(sentences) + "\n")
    out_file = tmp_path / "pruned.safetensors"
    status = main(
        ["prune", str(folder), "--text", str(text), "--sparsity", "0.5", "--scope", "neuron", "--out", str(out_file)]
    )
    out = capsys.readouterr().out
    assert status == 0
    from safetensors.torch import load_file

    state = load_file(out_file)
    for i in range(2):
        mlp = f"model.layers.{i}.mlp"
        gate = (state[f"{mlp}.gate_proj.weight"] == 0).all(dim=1)
        assert int(gate.sum()) == 20
        assert torch.equal((state[f"{mlp}.up_proj.weight"] == 0).all(dim=1), gate)
        assert torch.equal((state[f"{mlp}.down_proj.weight"] == 0).all(dim=0), gate)
    total = sum(p.numel() for p in model.parameters())
    left = total - 2 * 20 * (16 + 16 + 16)  # per layer 20 neurons, each a gate row, an up row, a down column
    numbers = [int(n.replace(",", "")) for n in out.split("parameters are nonzero")[0].split()[-3::2]]
    assert numbers == [left, total], out
    reloaded = transformers.LlamaForCausalLM.from_pretrained(folder).eval()
    reloaded.load_state_dict(state)
    ids = torch.tensor([tokenizer("the rain is cold today")["input_ids"]])
    shrunk = inspector.shrink(reloaded, data=[{"input_ids": ids}])
    assert shrunk.get_submodule("model.layers.0.mlp.up_proj").out_features == 20
    with torch.no_grad():
        torch.testing.assert_close(shrunk(input_ids=ids).logits, reloaded(input_ids=ids).logits, rtol=1e-5, atol=1e-5)
    assert json.loads((folder / "config.json").read_text())["intermediate_size"] == 40  # the folder is untouched
