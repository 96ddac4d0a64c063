"""Input adapters (inspector/core/adapters): each kind's names, baselines and attribution route, checked
against what hand-set models make true on paper, and the registry figures and views use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import torch
from torch import nn

from inspector import figures as F
from inspector.analysis.attribution import attribute
from inspector.analysis.importance import ImportanceReport
from inspector.analysis.inputs import Batch, make_adapter
from inspector.analysis.inputs import InputAdapter as ReExported
from inspector.analysis.task import forward_args, make_task
from inspector.core.adapters import (
    ADAPTERS,
    KINDS,
    ArrayAdapter,
    FeaturesAdapter,
    InputAdapter,
    TokensAdapter,
    adapter_for,
)
from inspector.errors import InspectorError


def _linear(weight: list[float], bias: float) -> nn.Linear:
    layer = nn.Linear(len(weight), 1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([weight]))
        layer.bias.fill_(bias)
    return layer.eval()


class Bag(nn.Module):
    """``f(ids) = sum_t e(id_t) . w + b``: linear in the embeddings, so a token's Integrated Gradients
    score from the pad reference is ``(e(id) - e(pad)) . w`` exactly."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(5, 2)
        with torch.no_grad():
            self.emb.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 2.0], [3.0, -1.0], [0.5, 0.5], [2.0, 2.0]]))
        self.head = _linear([1.0, 1.0], 0.25)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.emb(ids).sum(dim=1))


# --- the registry --------------------------------------------------------------------------------------


def test_the_saved_kind_names_map_to_one_class_each():
    assert KINDS == ("features", "array", "tokens")  # the strings saved analyses hold: they must not change
    assert adapter_for("features") is FeaturesAdapter
    assert adapter_for("array") is ArrayAdapter
    assert adapter_for("tokens") is TokensAdapter
    assert all(cls.kind == kind for kind, cls in ADAPTERS.items())
    assert ReExported is InputAdapter  # inspector.analysis.inputs keeps the old import path


def test_an_unknown_kind_is_a_one_line_error():
    with pytest.raises(InspectorError, match="unknown input kind 'audio'"):
        adapter_for("audio")


def test_make_adapter_picks_the_class_from_the_inputs():
    x = torch.randn(4, 3)
    assert type(make_adapter(_linear([1, 1, 1], 0), Batch(x))) is FeaturesAdapter
    images = nn.Sequential(nn.Flatten(), nn.Linear(16, 1))
    assert type(make_adapter(images, Batch(torch.randn(4, 1, 4, 4)))) is ArrayAdapter
    assert type(make_adapter(Bag(), Batch(torch.tensor([[1, 2], [3, 0]])))) is TokensAdapter


def test_each_class_accepts_its_own_inputs_only():
    floats, images, ids = torch.randn(2, 3), torch.randn(2, 1, 4, 4), torch.tensor([[1, 2]])
    assert [cls.accepts(floats) for cls in (FeaturesAdapter, ArrayAdapter, TokensAdapter)] == [True, False, False]
    assert [cls.accepts(images) for cls in (FeaturesAdapter, ArrayAdapter, TokensAdapter)] == [False, True, False]
    assert [cls.accepts(ids) for cls in (FeaturesAdapter, ArrayAdapter, TokensAdapter)] == [False, False, True]
    with pytest.raises(InspectorError, match="complex64 inputs are not supported"):
        make_adapter(nn.Linear(2, 1), Batch(torch.zeros(2, 2, dtype=torch.complex64)))


def test_token_ids_without_an_embedding_are_refused():
    with pytest.raises(InspectorError, match="no nn.Embedding"):
        make_adapter(nn.Linear(2, 1), Batch(torch.tensor([[1, 2]])))


@dataclass(frozen=True)
class WaveformAdapter(InputAdapter):
    kind: ClassVar[str] = "waveform"
    description: ClassVar[str] = "audio waveforms"
    display: ClassVar[str] = "image"

    @classmethod
    def accepts(cls, inputs: torch.Tensor) -> bool:
        return inputs.dtype == torch.float16 and inputs.dim() == 2  # a stand-in rule for "this is audio"

    @classmethod
    def map_shape(cls, input_shape: tuple[int, ...], image_shape: tuple[int, ...] | None) -> tuple[int, ...] | None:
        return (1, int(np.prod(input_shape)))  # one strip along time


def test_a_new_kind_is_one_class_and_one_registry_line(monkeypatch):
    registry = {WaveformAdapter.kind: WaveformAdapter, **ADAPTERS}  # first: it claims its inputs before features
    monkeypatch.setattr("inspector.core.adapters.ADAPTERS", registry)
    adapter = make_adapter(nn.Linear(16, 1).half(), Batch(torch.zeros(2, 16, dtype=torch.float16)))
    assert type(adapter) is WaveformAdapter and adapter.sample_shape == (16,) and adapter.n_features == 16
    report = ImportanceReport((), (), 0, 0, "", input_kind="waveform", input_shape=(16,))
    # the figures read the saved kind through the registry: no branch to add anywhere
    assert F.map_shape(report, None) == (1, 16)
    assert report.feature_label(3) == "x3"
    assert adapter_for("waveform").whatif is False and adapter_for("waveform").editable is True


# --- features ------------------------------------------------------------------------------------------


def test_features_names_default_to_column_numbers_or_the_data_names():
    model = _linear([1.0, 1.0, 1.0], 0.0)
    x = torch.randn(5, 3)
    assert make_adapter(model, Batch(x)).feature_names == ("x0", "x1", "x2")
    named = make_adapter(model, Batch(x), feature_names=["age", "bmi", "bp"])
    assert named.feature_names == ("age", "bmi", "bp") and named.n_features == 3
    assert named.importance_names(np.zeros(0, np.int64)) == ("age", "bmi", "bp")
    with pytest.raises(InspectorError, match="2 feature names for inputs with 3 features"):
        make_adapter(model, Batch(x), feature_names=["a", "b"])


def test_features_integrated_gradients_start_from_zeros_and_are_complete():
    w = [2.0, -1.0, 0.5]
    model = _linear(w, 1.0)
    x = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 4.0]])
    batch = Batch(x, torch.zeros(2))
    adapter = make_adapter(model, batch)
    assert torch.equal(adapter.baseline(x), torch.zeros(1, 3))
    assert not adapter.through_embedding and adapter.display == "bars" and adapter.whatif
    assert adapter.per_sample_elements(model) == 3
    out, delta = attribute(model, "integrated_gradients", batch, make_task(None, batch), adapter)
    # a linear model: IG from zero is w_i x_i, and it sums to f(x) - f(0) (completeness)
    assert torch.allclose(out, x * torch.tensor(w), atol=1e-5)
    with torch.no_grad():
        moved = (model(x) - model(torch.zeros(1, 3)))[:, 0]
    assert torch.allclose(out.sum(dim=1), moved, atol=1e-5)
    assert delta is not None and float(delta.abs().max()) < 1e-5


def test_features_conductance_path_is_the_input_itself():
    model = _linear([1.0, 2.0], 0.0)
    x = torch.randn(3, 2)
    batch = Batch(x)
    adapter = make_adapter(model, batch)
    forward, inputs, baselines, args = adapter.path(model, x, None, model, ())
    assert forward is model and inputs is x and torch.equal(baselines, torch.zeros(1, 2)) and args == ()
    assert "training mean" in adapter.baseline_text


# --- arrays (images) -----------------------------------------------------------------------------------


def test_array_attributions_keep_the_input_shape_from_a_zero_image():
    w = torch.arange(16, dtype=torch.float32) / 8 - 1
    model = nn.Sequential(nn.Flatten(), _linear(w.tolist(), 0.5)).eval()
    x = torch.randn(3, 1, 4, 4)
    batch = Batch(x, torch.zeros(3))
    adapter = make_adapter(model, batch)
    assert adapter.sample_shape == (1, 4, 4) and adapter.n_features == 16 and adapter.feature_names == ()
    assert torch.equal(adapter.baseline(x), torch.zeros(1, 1, 4, 4))
    out, _ = attribute(model, "integrated_gradients", batch, make_task(None, batch), adapter)
    assert out.shape == x.shape
    assert torch.allclose(out, x * w.reshape(1, 1, 4, 4), atol=1e-5)


def test_array_elements_are_named_by_position_and_drawn_on_their_grid():
    # element 6 of (1, 4, 4) is channel 0, row 1, column 2
    assert ArrayAdapter.element_label(6, (1, 4, 4)) == "(0, 1, 2)"
    assert ArrayAdapter.element_label(16, (1, 4, 4)) is None
    assert ArrayAdapter.map_shape((3, 8, 8), None) == (3, 8, 8)
    assert ArrayAdapter.map_shape((2, 3, 4, 5), (8, 8)) == (8, 8)  # not an image: the dataset's grid
    assert FeaturesAdapter.map_shape((64,), (8, 8)) == (8, 8)  # tabular digits drawn as 8x8
    assert FeaturesAdapter.map_shape((64,), None) is None
    assert TokensAdapter.map_shape((12,), (8, 8)) is None
    report = ImportanceReport((), (), 0, 0, "", input_kind="array", input_shape=(1, 4, 4))
    assert report.feature_label(6) == "(0, 1, 2)"


# --- tokens --------------------------------------------------------------------------------------------


def test_tokens_are_attributed_through_the_embedding_from_the_pad_token():
    model = Bag().eval()
    ids = torch.tensor([[1, 2, 3, 0], [4, 4, 1, 2]])
    mask = torch.tensor([[True, True, True, False], [True, True, True, True]])
    batch = Batch(ids, torch.zeros(2), mask=mask)
    adapter = make_adapter(model, batch, vocabulary=["[PAD]", "a", "b", "c", "d"])
    assert adapter.embedding == "emb" and adapter.pad_id == 0 and adapter.through_embedding
    assert adapter.n_features is None and adapter.features_are_ids and not adapter.editable
    assert adapter.per_sample_elements(model) == 4 * 2  # T positions x E embedding dimensions
    # the pad token at real positions, the input itself at padding
    assert torch.equal(adapter.baseline(ids, mask), torch.tensor([[0, 0, 0, 0], [0, 0, 0, 0]]))
    assert torch.equal(adapter.baseline(torch.tensor([[3, 5]]), torch.tensor([[True, False]])), torch.tensor([[0, 5]]))
    out, _ = attribute(model, "integrated_gradients", batch, make_task(None, batch), adapter)
    # e(id) . (1, 1) - e(pad) . (1, 1): a=3, b=2, c=1, d=4; exactly zero at padding
    assert torch.allclose(out, torch.tensor([[3.0, 2.0, 1.0, 0.0], [4.0, 4.0, 3.0, 2.0]]), atol=1e-5)


def test_token_text_comes_from_the_vocabulary():
    model = Bag()
    batch = Batch(torch.tensor([[1, 2]]))
    adapter = make_adapter(model, batch, vocabulary=["[PAD]", "a", "b", "c", "d"])
    assert adapter.token_text([4, 1, 9]) == ("d", "a", "#9")
    assert adapter.importance_names(np.array([2, 3])) == ("b", "c")
    assert make_adapter(model, batch).token_text([4]) == ("#4",)
    assert adapter.baseline_text == "the pad token (id 0) at every real position"


def test_tokens_conductance_path_runs_on_the_embedding_output():
    model = Bag().eval()
    ids = torch.tensor([[1, 2, 3], [4, 0, 2]])
    batch = Batch(ids, torch.zeros(2))
    adapter = make_adapter(model, batch)
    task = make_task(None, batch)
    forward, x, x0, args = adapter.path(model, ids, None, task.explained(model, batch), forward_args(batch))
    with torch.no_grad():
        assert torch.equal(x, model.emb(ids)) and torch.equal(x0, model.emb(torch.zeros_like(ids)))
        # the function of the path point, at its two ends, is the model on the ids and on the reference
        assert torch.allclose(forward(x, *args)[:, 0], model(ids)[:, 0])
        assert torch.allclose(forward(x0, *args)[:, 0], model(torch.zeros_like(ids))[:, 0])
    assert adapter.neuron_conductance_skip is not None and "token ids" in adapter.neuron_conductance_skip


def test_display_hints_and_descriptions():
    assert [adapter_for(k).display for k in KINDS] == ["bars", "image", "tokens"]
    assert [adapter_for(k).description for k in KINDS] == ["feature columns", "arrays (images)", "token ids"]
    assert [adapter_for(k).whatif for k in KINDS] == [True, False, False]
    assert [adapter_for(k).ragged for k in KINDS] == [False, False, True]
