from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from inspector.analysis.activations import activation_census, activation_sites, death_timeline
from inspector.models import MLPConfig, build_mlp


def _standard_normal(n: int = 3000, d: int = 10, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def _planted(activation: str = "relu") -> nn.Module:
    torch.manual_seed(0)
    model = build_mlp(MLPConfig(10, (16, 12), 3, activation=activation))
    with torch.no_grad():
        model.fc1.bias[[1, 4, 9]] = -10.0  # |w . x| stays far below 10 on standardised inputs
        model.fc2.bias[[0, 11]] = -10.0
    return model


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "gelu"])
def test_planted_dead_neurons_are_exactly_the_dead_ones(activation):
    census = activation_census(_planted(activation), _standard_normal(), batch_size=256)
    assert [c.linear for c in census] == ["fc1", "fc2"]
    assert np.flatnonzero(census[0].dead_mask).tolist() == [1, 4, 9]
    assert np.flatnonzero(census[1].dead_mask).tolist() == [0, 11]
    assert census[0].dead_fraction == pytest.approx(3 / 16)
    assert census[0].n_samples == 3000


def test_fire_rate_is_exact_over_uneven_batches():
    model = build_mlp(MLPConfig(10, (16,), 3))
    X = _standard_normal(1001)
    census = activation_census(model, X, batch_size=128)  # 7 full batches and one of 105
    with torch.no_grad():
        pre = model.fc1(X)
    np.testing.assert_array_equal(census[0].fire_rate, (pre > 0).double().mean(0).numpy())
    np.testing.assert_allclose(census[0].mean_activation, torch.relu(pre).double().mean(0).numpy(), rtol=1e-5)


def test_nearly_dead_neuron_from_a_planted_tail():
    model = build_mlp(MLPConfig(10, (4,), 2))
    X = _standard_normal(20000)
    with torch.no_grad():
        model.fc1.weight.zero_()
        model.fc1.weight[0, 0] = 1.0
        model.fc1.bias[0] = -2.576  # fires only where x0 > 2.576: about 0.5% of a standard normal
        model.fc1.bias[1:] = 1.0  # always fire
    census = activation_census(model, X)[0]
    expected = float((X[:, 0] > 2.576).double().mean())
    assert 0 < expected < 0.01
    assert census.fire_rate[0] == pytest.approx(expected)
    assert census.nearly_dead_mask.tolist() == [True, False, False, False]
    assert census.nearly_dead_count() == 1 and census.nearly_dead_count(threshold=0.001) == 0
    assert census.dead_count == 0


@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
def test_large_weights_saturate_squashing_units(activation):
    model = build_mlp(MLPConfig(10, (32,), 3, activation=activation))
    with torch.no_grad():
        model.fc1.weight.mul_(1000.0)
    X = _standard_normal()
    census = activation_census(model, X)[0]
    assert census.fire_rate is None and census.dead_mask is None
    assert census.saturation_rate.mean() > 0.97
    with torch.no_grad():
        out = model.act1(model.fc1(X))
    flat = out.abs() > 0.99 if activation == "tanh" else (out < 0.01) | (out > 0.99)
    np.testing.assert_allclose(census.saturation_rate, flat.double().mean(0).numpy())


def test_small_weights_do_not_saturate_tanh():
    model = build_mlp(MLPConfig(10, (32,), 3, activation="tanh"))
    with torch.no_grad():
        model.fc1.weight.mul_(0.01)
        model.fc1.bias.zero_()
    assert activation_census(model, _standard_normal())[0].saturation_rate.max() == 0


def test_activation_after_batch_norm_pairs_with_its_linear():
    model = build_mlp(MLPConfig(4, (6, 5), 2, batch_norm=True, dropout=0.2))
    assert [(a, lin, kind) for a, lin, _, kind in activation_sites(model)] == [
        ("act1", "fc1", "relu"), ("act2", "fc2", "relu")]


def test_histograms_and_projection_shapes():
    X = _standard_normal(500)
    y = np.arange(500) % 3
    census = activation_census(build_mlp(MLPConfig(10, (16,), 3)), X, y, keep_samples=200)[0]
    assert census.histogram_counts.shape == (16, 30) and census.histogram_counts.sum(axis=1).tolist() == [200] * 16
    assert census.projection.shape == (200, 2)
    np.testing.assert_array_equal(census.projection_labels, y[:200])
    assert 0 < census.projection_variance.sum() <= 1


def test_projection_recovers_a_planted_direction():
    # activations that vary along one axis only: the first component explains everything
    model = nn.Sequential(nn.Linear(10, 4), nn.ReLU())
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].weight[:, 0] = torch.tensor([1.0, 2.0, 3.0, 4.0])
        model[0].bias.fill_(100.0)  # keep every unit in its linear regime
    census = activation_census(model, _standard_normal(300))[0]
    assert census.projection_variance[0] == pytest.approx(1.0, abs=1e-9)


def test_model_state_restored_and_hooks_removed_even_on_error():
    model = build_mlp(MLPConfig(10, (8,), 3))
    model.train()
    model.fc1.weight.requires_grad_(False)
    with pytest.raises(RuntimeError):
        activation_census(model, torch.randn(5, 7))  # wrong width: the forward pass raises
    assert model.training and all(m.training for m in model.modules())
    assert not model.fc1.weight.requires_grad and model.fc1.bias.requires_grad
    assert all(not m._forward_hooks for m in model.modules())
    census = activation_census(model, _standard_normal(10))
    assert census and model.training and all(not m._forward_hooks for m in model.modules())


def test_death_timeline_dates_each_death():
    torch.manual_seed(0)
    model = build_mlp(MLPConfig(10, (6,), 2))
    base = {k: v.clone() for k, v in model.state_dict().items()}
    snapshots = {}
    for epoch in (2, 4, 6, 8):
        state = {k: v.clone() for k, v in base.items()}
        if epoch >= 4:
            state["fc1.bias"][3] = -10.0  # dies at 4, stays dead
        if epoch in (2, 6, 8):
            state["fc1.bias"][5] = -10.0  # dead at 2, revived at 4, dead again from 6
        if epoch == 6:
            state["fc1.bias"][0] = -10.0  # dead at 6 only: alive at the end
        snapshots[epoch] = state
    timeline = death_timeline(model, snapshots, _standard_normal(500))
    assert timeline.layers == ("fc1",)
    assert timeline.epochs.tolist() == [2, 4, 6, 8]
    assert timeline.dead_counts[0].tolist() == [1, 1, 3, 2]
    assert timeline.death_epoch[0].tolist() == [-1, -1, -1, 4, -1, 6]
    assert torch.equal(model.fc1.bias, base["fc1.bias"])  # the template was not touched


def test_counts_stay_exact_when_partial_sums_are_flushed(monkeypatch):
    from inspector.analysis import activations

    monkeypatch.setattr(activations, "_FLUSH_ROWS", 300)  # fold into float64 every few batches
    model = build_mlp(MLPConfig(10, (16,), 3))
    X = _standard_normal(1001)
    census = activation_census(model, X, batch_size=128)[0]
    with torch.no_grad():
        pre = model.fc1(X)
    np.testing.assert_array_equal(census.fire_rate, (pre > 0).double().mean(0).numpy())
    np.testing.assert_allclose(census.mean_activation, torch.relu(pre).double().mean(0).numpy(), rtol=1e-5)
