"""Conductance of models that return several tensors, with ``target=`` saying which scalar to explain
(issue 19, part 5): a Hugging Face ``BertModel`` (a ``ModelOutput`` with ``last_hidden_state`` and
``pooler_output``, no ``logits``), and small MLPs returning a tuple and a dict.

The right answers come from first principles: for a layer every path from the input to the target
crosses, the neurons' conductances add up to ``f(x) - f(baseline)`` (Dhamdhere et al. 2018), off by
the path sum's error, which shrinks like ``1 / n_steps``; ``f`` is recomputed here by calling the model
directly. The targets read only ``out`` (never the batch).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from inspector import AnalysisOptions, analyze
from inspector.analysis.conductance import conductance, hidden_layers, output_layer, output_layers
from inspector.analysis.inputs import as_source, make_adapter
from inspector.analysis.task import make_task
from inspector.core.evaluator import nested_tensors
from tests.models import padded_batch

# --------------------------------------------------------------------------- a BertModel


def _bert_with_pooler() -> nn.Module:
    """``BertModel`` from ``BertConfig`` (hidden 32, 2 layers, 2 heads, intermediate 64, vocab 100),
    random weights, its pooler kept (``pooler_output = tanh(pooler.dense(h[:, 0]))``), dropout off."""
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    return transformers.BertModel(config).eval()


def _token_batches() -> list[dict[str, torch.Tensor]]:
    """Two padded batches (8 samples) with attention masks, of different widths."""
    return [
        padded_batch([9, 4, 6, 2], vocab_size=100, seed=0),
        padded_batch([5, 3, 7, 5], vocab_size=100, seed=1),
    ]


def pooled_norm(out, batch):
    return out.pooler_output.norm(dim=-1)


def first_token(out, batch):
    return out[0][:, 0, :3].sum(-1)


def _token_change(model: nn.Module, raw: list[dict[str, torch.Tensor]], target) -> np.ndarray:
    """``f(x) - f(baseline)`` per sample, the baseline being the pad token (0) at every real position."""
    changes = []
    with torch.no_grad():
        for batch in raw:
            reference = dict(batch, input_ids=torch.zeros_like(batch["input_ids"]))
            changes.append((target(model(**batch), None) - target(model(**reference), None)).double().numpy())
    return np.concatenate(changes)


def test_nested_tensors_walks_tuples_dicts_and_model_outputs():
    a, b, c = torch.zeros(1), torch.ones(1), torch.full((1,), 2.0)
    found = list(nested_tensors({"x": a, "rest": (b, [c]), "none": None}))
    assert len(found) == 3 and found[0] is a and found[1] is b and found[2] is c
    assert list(nested_tensors("text")) == []


def test_the_default_analysis_with_target_explains_the_bert_pooler_output():
    model = _bert_with_pooler()
    raw = _token_batches()
    # the whole default analysis: before the fix its conductance raised "pass target=" (several tensors)
    analysis = analyze(model, raw, target=pooled_norm)
    report = analysis.importance
    assert report.task == "custom" and report.input_kind == "tokens" and report.n_samples == 8
    names = [c.layer for c in report.conductance]
    # the neurons are the layers with an activation: the two GELU intermediates and the tanh pooler (the
    # attention projections and block outputs go on with no activation of their own)
    assert names == ["encoder.layer.0.intermediate.dense", "encoder.layer.1.intermediate.dense", "pooler.dense"]
    assert all(c.error is None and c.by_class is None for c in report.conductance)
    assert not [
        f for f in analysis.findings if f.severity == "warning" and ("could not" in f.text or "onductance" in f.text)
    ]


def test_bert_pooler_conductance_adds_up_to_the_change_of_the_target():
    model = _bert_with_pooler()
    raw = _token_batches()
    batches = list(as_source(raw))
    task = make_task(None, batches[0], target=pooled_norm)
    adapter = make_adapter(model, batches[0])
    layers = [(name, layer) for name, layer in hidden_layers(model, batches[0]) if name == "pooler.dense"]
    change = _token_change(model, raw, pooled_norm)
    assert np.abs(change).mean() > 0.01  # the target moves: the check below is not 0 == 0
    (coarse,) = conductance(model, batches, task, adapter, n_steps=16, layers=layers)
    (fine,) = conductance(model, batches, task, adapter, n_steps=256, layers=layers)
    assert fine.n_samples == 8 and fine.mean_conductance.shape == (32,)
    # every path to pooler_output crosses pooler.dense: the sums are f(x) - f(baseline), off by the path
    # sum's first-order error, which shrinks like 1 / n_steps (the documented completeness gap; the norm
    # of a tanh makes this target curved, so the error is still ~2% of the change at 256 steps)
    assert fine.completeness_gap < coarse.completeness_gap / 10
    assert fine.completeness_gap < 0.02 * np.abs(change).mean()
    assert fine.mean_conductance.sum() == pytest.approx(change.mean(), abs=0.02 * np.abs(change).mean())


def test_bert_first_token_target_gets_conductance_in_every_layer():
    model = _bert_with_pooler()
    raw = _token_batches()
    batches = list(as_source(raw))
    task = make_task(None, batches[0], target=first_token)
    adapter = make_adapter(model, batches[0])
    found = conductance(model, batches, task, adapter, n_steps=8)
    assert len(found) == 3 and all(c.error is None for c in found)
    by_name = {c.layer: c for c in found}
    # the pooler is not on any path to last_hidden_state: it conducts nothing
    assert np.all(by_name["pooler.dense"].mean_conductance == 0)
    assert np.abs(by_name["encoder.layer.1.intermediate.dense"].mean_conductance).sum() > 0


# --------------------------------------------------------------------------- a tuple and a dict


class TwoHeads(nn.Module):
    """x (6) -> fc1 (8) -> tanh -> fc2 (5) -> tanh -> head_a (3) and head_b (2), returned as a tuple
    ``(a, b)`` or a dict ``{"a": a, "b": b}``. Feature 3 is planted dead (fc1's column 3 is zero) and
    fc1's neuron 2 feeds nothing (fc2's column 2 is zero)."""

    def __init__(self, as_dict: bool) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.as_dict = as_dict
        self.fc1, self.act1 = nn.Linear(6, 8), nn.Tanh()
        self.fc2, self.act2 = nn.Linear(8, 5), nn.Tanh()
        self.head_a, self.head_b = nn.Linear(5, 3), nn.Linear(5, 2)
        with torch.no_grad():
            self.fc1.weight[:, 3] = 0
            self.fc2.weight[:, 2] = 0

    def forward(self, x: torch.Tensor):
        h = self.act2(self.fc2(self.act1(self.fc1(x))))
        a, b = self.head_a(h), self.head_b(h)
        return {"a": a, "b": b} if self.as_dict else (a, b)


def tuple_target(out, batch):
    return out[1][:, 1]


def dict_target(out, batch):
    return out["b"][:, 1]


@pytest.mark.parametrize(("as_dict", "target"), [(False, tuple_target), (True, dict_target)])
def test_conductance_of_a_model_returning_several_tensors_explains_the_target(as_dict, target):
    model = TwoHeads(as_dict).eval()
    X = torch.randn(40, 6, generator=torch.Generator().manual_seed(1))
    batch = as_source(X).first()
    # both heads' outputs are returned as they are: output layers, not hidden ones
    assert output_layers(model, batch) == ["head_a", "head_b"]
    assert output_layer(model, batch) == "head_a"
    assert [name for name, _ in hidden_layers(model, batch)] == ["fc1", "fc2"]
    with torch.no_grad():
        change = (target(model(X), None) - target(model(torch.zeros(1, 6)), None)).double().numpy()
    coarse = analyze(
        model,
        X,
        target=target,
        options=AnalysisOptions(sections=("importance",), methods=("integrated_gradients",), n_steps=4),
    ).importance.conductance
    report = analyze(
        model,
        X,
        target=target,
        options=AnalysisOptions(sections=("importance",), methods=("integrated_gradients",), n_steps=64),
    ).importance
    assert report.task == "custom"
    assert [c.layer for c in report.conductance] == ["fc1", "fc2"]
    for rough, layer in zip(coarse, report.conductance):  # every path to b crosses fc1 and fc2
        assert layer.error is None and layer.by_class is None and layer.n_samples == 40
        assert layer.completeness_gap < rough.completeness_gap / 4  # shrinks like 1 / n_steps
        assert layer.completeness_gap < 0.01 * np.abs(change).mean()
        assert layer.mean_conductance.sum() == pytest.approx(change.mean(), abs=0.01 * np.abs(change).mean())
    fc1, fc2 = report.conductance
    # NeuronConductance ran: which inputs drive each neuron towards the target
    assert fc1.neuron_inputs_skipped is None and fc1.neuron_inputs.shape == (8, 6)
    assert fc2.neuron_inputs_skipped is None and fc2.neuron_inputs.shape == (5, 6)
    assert np.all(fc1.neuron_inputs[:, 3] == 0) and np.all(fc2.neuron_inputs[:, 3] == 0)  # feature 3 is dead
    assert np.all(fc1.neuron_inputs[2] == 0) and fc1.mean_conductance[2] == 0  # neuron 2 feeds nothing
    live = np.delete(np.delete(fc1.neuron_inputs, 2, axis=0), 3, axis=1)
    assert np.all(live > 0)
