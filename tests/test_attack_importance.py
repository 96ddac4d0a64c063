"""Regressions from an outside tester: which embedding the ids go through, one id per sample,
ids the model reshapes, conductance failures, NeuronConductance on wide layers, float64 models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from inspector.analysis.importance import (
    MAX_NEURONS,
    _neuron_skip,
    attribute,
    conductance,
    importance_report,
)
from inspector.analysis.inputs import as_source, floating_dtype, make_adapter, to_batch
from inspector.analysis.task import evaluate_task, make_task
from inspector.errors import InspectorError


class TwoIds(nn.Module):
    """Two id inputs; the first registered embedding (item) is not the one the first key (user) uses."""

    def __init__(self, flatten_ids: bool = False, one_d: bool = False) -> None:
        super().__init__()
        self.item_emb = nn.Embedding(30, 4)
        self.user_emb = nn.Embedding(20, 4)
        self.fc1 = nn.Linear(8, 6)
        self.fc2 = nn.Linear(6, 1)
        self.flatten_ids = flatten_ids

    def forward(self, user_id: torch.Tensor, item_id: torch.Tensor) -> torch.Tensor:
        if self.flatten_ids:
            user_id, item_id = user_id.reshape(-1), item_id.reshape(-1)
        u, i = self.user_emb(user_id), self.item_emb(item_id)
        h = torch.cat([u.reshape(len(u), -1), i.reshape(len(i), -1)], -1)
        return self.fc2(torch.tanh(self.fc1(h))).squeeze(-1)


def _rec_batch(shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "user_id": torch.randint(1, 20, shape, generator=g),
        "item_id": torch.randint(0, 30, shape, generator=g),
        "labels": torch.rand(shape[0], generator=g),
    }


def _completeness(model: TwoIds, raw: dict[str, torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
    """IG's per-sample sums and f(x) - f(x with user_id = pad)."""
    batch = to_batch(raw)
    model.eval()
    adapter = make_adapter(model, batch)
    a, _ = attribute(model, "integrated_gradients", batch, make_task("regression", batch), adapter, n_steps=64)
    with torch.no_grad():
        change = model(raw["user_id"], raw["item_id"]) - model(torch.zeros_like(raw["user_id"]), raw["item_id"])
    return a.sum(dim=1).detach().numpy(), change.numpy()


def test_ids_are_attributed_through_the_embedding_they_go_through() -> None:
    torch.manual_seed(0)
    model, raw = TwoIds(), _rec_batch((12, 1))
    assert make_adapter(model, to_batch(raw)).embedding == "user_emb"
    sums, change = _completeness(model, raw)
    assert np.abs(sums).max() > 1e-4
    np.testing.assert_allclose(sums, change, atol=2e-3)


def test_ids_no_embedding_receives_are_refused_in_one_line() -> None:
    class Shifted(TwoIds):
        def forward(self, user_id: torch.Tensor, item_id: torch.Tensor) -> torch.Tensor:
            return super().forward(user_id + 1, item_id + 1)

    with pytest.raises(InspectorError) as info:
        make_adapter(Shifted(), to_batch(_rec_batch((8, 1))))
    assert "\n" not in str(info.value) and "no nn.Embedding" in str(info.value)


@pytest.mark.parametrize(("shape", "flatten"), [((12,), False), ((12, 1), True)], ids=["ids (n,)", "reshaped ids"])
def test_one_id_per_sample_and_reshaped_ids_work(shape: tuple[int, ...], flatten: bool) -> None:
    torch.manual_seed(0)
    model, raw = TwoIds(flatten_ids=flatten), _rec_batch(shape)
    sums, change = _completeness(model, raw)
    np.testing.assert_allclose(sums, change, atol=2e-3)
    report = importance_report(model, [raw], "regression", n_steps=4, max_samples=12)
    assert [m.error for m in report.methods] == [None] * len(report.methods)
    assert all(m.examples.shape == (12, 1) for m in report.methods)
    assert [c.error for c in report.conductance if c.layer == "fc1"] == [None]


def test_conductance_failures_are_the_layers_error() -> None:
    class NoZeros(nn.Module):  # fails on the all-zero baseline, the one input conductance needs
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(3, 4), nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if bool((x == 0).all()):
                raise ValueError("an all-zero row")
            return self.fc2(torch.relu(self.fc1(x)))

    model = NoZeros().eval()
    batch = to_batch((torch.randn(6, 3), torch.randint(0, 2, (6,))))
    task = make_task("classification", batch)
    found = conductance(model, [batch], task, make_adapter(model, batch), n_steps=4, layers=[("fc1", model.fc1)])
    assert len(found) == 1 and found[0].error is not None and "an all-zero row" in found[0].error
    assert "\n" not in found[0].error


def test_neuron_conductance_skips_wide_layers_keeps_small_ones() -> None:
    wide = nn.Sequential(nn.Linear(5, MAX_NEURONS + 1), nn.ReLU(), nn.Linear(MAX_NEURONS + 1, 3))
    adapter = make_adapter(wide, to_batch(torch.randn(2, 5)))
    reason = _neuron_skip(wide, adapter, wide[0], 2, 32, 4, 0.0)
    assert reason is not None and "neurons" in reason
    # the digits MLP (64 -> 128 -> 64 -> 10) at the default 50 steps keeps both layers
    digits = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))
    adapter = make_adapter(digits, to_batch(torch.randn(2, 64)))
    assert _neuron_skip(digits, adapter, digits[0], 2, 32, 50, 0.0) is None
    spent = 128 * 32 * 50 * sum(p.numel() for p in digits.parameters())
    assert _neuron_skip(digits, adapter, digits[2], 2, 32, 50, float(spent)) is None


def test_float64_model_on_float64_arrays_and_a_float32_loader() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3)).double().eval()
    X = torch.randn(40, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (40,))
    with torch.no_grad():
        expected = float((model(X).argmax(1) == y).double().mean())
    assert floating_dtype(model) == torch.float64
    loader = DataLoader(TensorDataset(X.float(), y), batch_size=16)
    for data in ((X, y), (X.numpy(), y.numpy()), loader):
        source = as_source(data, dtype=floating_dtype(model))
        first = source.first()
        assert first.inputs.dtype == torch.float64 and first.labels is not None
        assert first.labels.dtype == torch.int64
        _, accuracy, n = evaluate_task(model, source, make_task("classification", first))
        assert n == 40 and accuracy == pytest.approx(expected)
    # the earlier behaviour stands without dtype: float64 arrays become float32
    assert as_source((X, y)).first().inputs.dtype == torch.float32
    report = importance_report(model, (X, y), "classification", methods=("integrated_gradients",), n_steps=8)
    assert report.methods[0].error is None


def test_ids_are_not_cast_to_the_model_dtype() -> None:
    source = as_source({"input_ids": torch.tensor([[1, 2]]), "x": torch.ones(1, 2)}, dtype=torch.float64)
    batch = source.first()
    assert batch.inputs.dtype == torch.int64 and batch.extra["x"].dtype == torch.float64
