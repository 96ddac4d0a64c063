from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from inspector.analysis.activations import activation_census, death_timeline
from inspector.analysis.sites import discover_sites
from inspector.models import MLPConfig, build_mlp
from tests.models import (
    HEAD_LAYERS,
    digits_images,
    digits_loader,
    functional_activations,
    lenet_digits,
    padded_batch,
    plant_dead,
    shared_relu,
    tiny_bert,
    untraceable,
)


def _standard_normal(n: int = 3000, d: int = 10, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def _planted(activation: str = "relu") -> nn.Module:
    torch.manual_seed(0)
    model = build_mlp(MLPConfig(10, (16, 12), 3, activation=activation))
    with torch.no_grad():
        model.fc1.bias[[1, 4, 9]] = -10.0  # |w . x| stays far below 10 on standardised inputs
        model.fc2.bias[[0, 11]] = -10.0
    return model


@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_planted_dead_neurons_are_exactly_the_dead_ones(activation):
    census = activation_census(_planted(activation), _standard_normal(), batch_size=256)
    assert [c.layer for c in census] == ["fc1", "fc2"]
    assert np.flatnonzero(census[0].dead_mask).tolist() == [1, 4, 9]
    assert np.flatnonzero(census[1].dead_mask).tolist() == [0, 11]
    assert census[0].dead_fraction == pytest.approx(3 / 16)
    assert census[0].n_samples == 3000 and census[0].n_positions == 3000


def test_planted_never_positive_gelu_neurons_are_not_called_dead():
    # a GELU with input -10 outputs about -8e-23: never positive, but it is not a dead ReLU
    census = activation_census(_planted("gelu"), _standard_normal(), batch_size=256)
    assert [(c.layer, c.activation, c.dead_mask, c.nearly_dead_mask) for c in census] == [
        ("fc1", "gelu", None, None),
        ("fc2", "gelu", None, None),
    ]
    assert np.flatnonzero(census[0].fire_rate == 0).tolist() == [1, 4, 9]
    assert np.flatnonzero(census[1].fire_rate == 0).tolist() == [0, 11]
    assert census[0].never_positive_count == 3 and census[0].dead_count == 0
    assert census[0].zero_rate[[1, 4, 9]].tolist() == [1.0, 1.0, 1.0]  # |gelu(-10)| < 0.01 on every sample


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
    X = _standard_normal(50, 4)
    census = activation_census(model, X)
    assert [(c.module, c.layer, c.activation, c.found_by) for c in census] == [
        ("act1", "fc1", "relu", "module"),
        ("act2", "fc2", "relu", "module"),
    ]
    sites = discover_sites(model)  # no batch: the torch.fx graph alone pairs them
    assert [(s.layer, s.module, s.activation) for s in sites if s.counted] == [
        ("fc1", "act1", "relu"),
        ("fc2", "act2", "relu"),
    ]


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
    from inspector.core import counting

    monkeypatch.setattr(counting, "FLUSH_ROWS", 300)  # fold into float64 every few batches
    model = build_mlp(MLPConfig(10, (16,), 3))
    X = _standard_normal(1001)
    census = activation_census(model, X, batch_size=128)[0]
    with torch.no_grad():
        pre = model.fc1(X)
    np.testing.assert_array_equal(census.fire_rate, (pre > 0).double().mean(0).numpy())
    np.testing.assert_allclose(census.mean_activation, torch.relu(pre).double().mean(0).numpy(), rtol=1e-5)


# --------------------------------------------------------------------------- any model, any data


def _rates(z: np.ndarray) -> np.ndarray:
    """Fraction of rows ``(N, m)`` that are > 0, per column."""
    return (z > 0).mean(axis=0)


def _numpy_linear(x: np.ndarray, layer: nn.Linear) -> np.ndarray:
    return x @ layer.weight.detach().numpy().T + layer.bias.detach().numpy()


def _newly_dead(before, after) -> list[int]:
    """Neurons dead in ``after`` and not in ``before`` (a small random net has some dead ones of its own);
    also checks planting killed without reviving."""
    assert not (before.dead_mask & ~after.dead_mask).any()
    return np.flatnonzero(after.dead_mask & ~before.dead_mask).tolist()


def test_a_relu_module_shared_by_two_layers_is_counted_per_layer():
    model = shared_relu()
    X = _standard_normal(600, 6).numpy()
    before = activation_census(model, X, batch_size=128)
    plant_dead(model.fc1, 2)
    plant_dead(model.fc2, 4)
    census = activation_census(model, X, batch_size=128)
    assert [(c.layer, c.module, c.activation, c.found_by) for c in census] == [
        ("fc1", "act", "relu", "module"),
        ("fc2", "act", "relu", "module"),
    ]
    assert [(c.n_samples, c.n_positions) for c in census] == [(600, 600), (600, 600)]  # not 1,200 on one site
    assert _newly_dead(before[0], census[0]) == [2]
    assert _newly_dead(before[1], census[1]) == [4]
    z1 = _numpy_linear(X, model.fc1)
    z2 = _numpy_linear(np.maximum(z1, 0), model.fc2)
    # float32 numpy and torch may round a pre-activation within 1e-7 of 0 differently: one row at most
    np.testing.assert_allclose(census[0].fire_rate, _rates(z1), rtol=0, atol=1 / 600)
    np.testing.assert_allclose(census[1].fire_rate, _rates(z2), rtol=0, atol=1 / 600)


def test_functional_relu_gelu_and_batch_norm_relu_are_counted_from_the_traced_graph():
    from scipy.special import erf

    model = functional_activations()
    X = _standard_normal(500, 6).numpy()
    before = activation_census(model, X, batch_size=200)
    plant_dead(model.fc1, 1)
    plant_dead(model.fc2, 3)
    plant_dead(model.fc3, 5)  # through the batch norm: (-10 - mean) / std * gamma + beta < 0 for every row
    census = activation_census(model, X, batch_size=200)
    assert [(c.layer, c.module, c.activation, c.found_by) for c in census] == [
        ("fc1", "relu", "relu", "traced"),
        ("fc2", "gelu", "gelu", "traced"),
        ("fc3", "relu", "relu", "traced"),
    ]
    assert all(c.n_samples == 500 for c in census)
    assert _newly_dead(before[0], census[0]) == [1]
    assert _newly_dead(before[2], census[2]) == [5]
    assert census[1].dead_mask is None and census[1].fire_rate[3] == 0 and before[1].fire_rate[3] > 0
    bn = model.bn
    z1 = _numpy_linear(X, model.fc1)
    z2 = _numpy_linear(np.maximum(z1, 0), model.fc2)
    h2 = 0.5 * z2 * (1 + erf(z2 / np.sqrt(2)))
    z3 = (_numpy_linear(h2, model.fc3) - bn.running_mean.numpy()) / np.sqrt(
        bn.running_var.numpy() + bn.eps
    ) * bn.weight.detach().numpy() + bn.bias.detach().numpy()
    for c, z in zip(census, (z1, z2, z3)):
        np.testing.assert_allclose(c.fire_rate, _rates(z), rtol=0, atol=1 / 500)
    np.testing.assert_allclose(census[1].zero_rate, (np.abs(h2) < 0.01).mean(axis=0), rtol=0, atol=1 / 500)
    np.testing.assert_allclose(census[1].mean_activation, h2.mean(axis=0), rtol=1e-4, atol=1e-6)


def test_an_unknown_activation_is_counted_on_its_pre_activation_and_says_so():
    from inspector.analysis.sections.activations import activation_findings

    model = untraceable()
    X = _standard_normal(400, 6)
    census = activation_census(model, X)
    # the output layer is seen to be the model's output, so only fc1 is censused
    assert [(c.layer, c.activation, c.found_by, c.module) for c in census] == [("fc1", "unknown", "unknown", None)]
    with torch.no_grad():
        z1 = model.fc1(X)
    assert census[0].dead_mask is None and census[0].zero_rate is None and census[0].saturation_rate is None
    np.testing.assert_array_equal(census[0].fire_rate, (z1 > 0).double().mean(0).numpy())
    np.testing.assert_allclose(census[0].mean_activation, z1.double().mean(0).numpy(), rtol=1e-5, atol=1e-7)
    (finding,) = activation_findings(census, "test")
    assert "fc1: activation unknown, counted on its pre-activation" in finding.text
    # how to declare it, in Python and on the command line (whose flag the finding names as the parser does)
    assert "activations= in Python, --activations LAYER=ACT on the command line" in finding.text


@pytest.mark.parametrize("kind", ["relu", "silu", "tanh"])
def test_declared_activations_are_applied_to_the_layer_output(kind):
    model = untraceable()
    plant_dead(model.fc1, 0)
    X = _standard_normal(400, 6)
    sites = discover_sites(model, None, {"fc1": kind, "out": "none"})
    (census,) = activation_census(model, X, sites)
    assert (census.layer, census.activation, census.found_by) == ("fc1", kind, "declared")
    with torch.no_grad():
        z1 = model.fc1(X)
    out = {"relu": torch.relu, "silu": torch.nn.functional.silu, "tanh": torch.tanh}[kind](z1)
    np.testing.assert_allclose(census.mean_activation, out.double().mean(0).numpy(), rtol=1e-5, atol=1e-7)
    if kind == "relu":
        assert np.flatnonzero(census.dead_mask).tolist() == [0]
        np.testing.assert_array_equal(census.fire_rate, (z1 > 0).double().mean(0).numpy())
    elif kind == "silu":
        assert census.dead_mask is None and census.fire_rate[0] == 0
        np.testing.assert_array_equal(census.zero_rate, (out.abs() < 0.01).double().mean(0).numpy())
    else:
        np.testing.assert_array_equal(census.saturation_rate, (out.abs() > 0.99).double().mean(0).numpy())


def test_a_layer_called_twice_per_forward_counts_both_calls():
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(5, 5)
            self.act = nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.act(self.fc(self.act(self.fc(x))))

    torch.manual_seed(0)
    model = Twice()
    X = _standard_normal(300, 5)
    (census,) = activation_census(model, X, batch_size=64)
    with torch.no_grad():
        first = model.fc(X)
        both = torch.cat([first, model.fc(torch.relu(first))])
    assert (census.n_samples, census.n_positions) == (300, 600)
    np.testing.assert_array_equal(census.fire_rate, (both > 0).double().mean(0).numpy())


def test_cnn_census_covers_the_dense_head_and_finds_a_planted_dead_neuron():
    model = lenet_digits(seed=0)
    before = activation_census(model, digits_loader(batch_size=500), keep_samples=300)
    plant_dead(model.head.fc1, 7)
    census = activation_census(model, digits_loader(batch_size=500), keep_samples=300)
    assert tuple(c.layer for c in census) == HEAD_LAYERS
    images, labels = digits_images()
    assert [(c.n_samples, c.n_positions, c.width) for c in census] == [(1797, 1797, 32), (1797, 1797, 16)]
    assert _newly_dead(before[0], census[0]) == [7]
    with torch.no_grad():
        z1 = model.head.fc1(torch.flatten(model.features(images), 1))
        z2 = model.head.fc2(torch.relu(z1))
    np.testing.assert_array_equal(census[0].fire_rate, (z1 > 0).double().mean(0).numpy())
    np.testing.assert_array_equal(census[1].fire_rate, (z2 > 0).double().mean(0).numpy())
    np.testing.assert_array_equal(census[0].projection_labels, labels[:300].numpy())  # rows are samples


def _planted_bert(start: int, neuron: int):
    """A tiny BERT whose layer-0 intermediate neuron ``neuron`` is positive exactly at positions >= ``start``.

    Hidden dimension 0 of the embeddings is +10 from position ``start`` on and -10 before (word and
    type embeddings are 0 there), so after the embedding LayerNorm its sign is the position's side of
    ``start``; layer 0's attention output projection is zeroed, so the residual carries it through the
    attention LayerNorm unchanged in sign; the neuron's row reads dimension 0 alone, with no bias.
    """
    model = tiny_bert(hidden_size=16, intermediate_size=24, num_hidden_layers=2)
    with torch.no_grad():
        emb = model.embeddings
        emb.word_embeddings.weight[:, 0] = 0.0
        emb.token_type_embeddings.weight[:, 0] = 0.0
        positions = torch.arange(emb.position_embeddings.num_embeddings)
        emb.position_embeddings.weight[:, 0] = torch.where(positions >= start, 10.0, -10.0)
        attention = model.encoder.layer[0].attention.output.dense
        attention.weight.zero_()
        attention.bias.zero_()
        row = model.encoder.layer[0].intermediate.dense
        row.weight[neuron].zero_()
        row.weight[neuron, 0] = 1.0
        row.bias[neuron] = 0.0
    return model


@pytest.mark.slow  # importing transformers takes most of it
def test_bert_census_counts_real_tokens_only():
    pytest.importorskip("transformers")

    start, width, neuron = 6, 10, 5
    model = _planted_bert(start, neuron)
    # every sequence is padded from position `start` on (some earlier): the neuron is positive on padding only
    batches = [padded_batch([6, 3, 5, 6, 2], width, seed=s, num_labels=2) for s in range(3)]
    real_tokens = int(sum(b["attention_mask"].sum() for b in batches))
    census = {c.layer: c for c in activation_census(model, batches)}
    for k in range(2):
        site = census[f"encoder.layer.{k}.intermediate.dense"]
        assert (site.activation, site.found_by, site.width) == ("gelu", "convention", 24)
        assert (site.n_samples, site.n_positions) == (15, real_tokens)
        assert site.dead_mask is None and site.projection_labels is None  # rows are tokens, not samples
    assert all(c.n_positions == real_tokens for c in census.values())
    planted = census["encoder.layer.0.intermediate.dense"]
    assert planted.fire_rate[neuron] == 0

    # the recomputation: hook the layer, keep the real rows
    pre = []
    layer = model.encoder.layer[0].intermediate.dense
    handle = layer.register_forward_hook(lambda m, i, o: pre.append(o.detach()))
    with torch.no_grad():
        for b in batches:
            model(**{k: v for k, v in b.items() if k != "labels"})
    handle.remove()
    rows = torch.cat([z[b["attention_mask"].bool()] for z, b in zip(pre, batches)])
    all_rows = torch.cat(pre)  # (15, width, 24): padded positions included
    assert bool((all_rows[:, start:, neuron] > 0).all()) and bool((all_rows[:, :start, neuron] < 0).all())
    np.testing.assert_array_equal(planted.fire_rate, (rows > 0).double().mean(0).numpy())
    gelu = torch.nn.functional.gelu(rows)
    np.testing.assert_array_equal(planted.zero_rate, (gelu.abs() < 0.01).double().mean(0).numpy())
    np.testing.assert_allclose(planted.mean_activation, gelu.double().mean(0).numpy(), rtol=1e-5, atol=1e-6)

    # without the mask, every position counts and the neuron fires on the padded ones
    unmasked = [{**b, "attention_mask": torch.ones_like(b["attention_mask"])} for b in batches]
    (site,) = [c for c in activation_census(model, unmasked) if c.layer == "encoder.layer.0.intermediate.dense"]
    assert site.n_positions == 15 * width
    assert site.fire_rate[neuron] == pytest.approx((width - start) / width, abs=1e-12)


def test_death_timeline_follows_each_layer_of_a_shared_activation():
    model = shared_relu()
    with torch.no_grad():  # a bias of 2 keeps every unplanted neuron alive on a standard normal sample
        model.fc1.bias.fill_(2.0)
        model.fc2.bias.fill_(2.0)
    base = {k: v.clone() for k, v in model.state_dict().items()}
    snapshots = {}
    for epoch in (1, 2, 3):
        state = {k: v.clone() for k, v in base.items()}
        if epoch >= 2:
            state["fc1.weight"][3] = 0.0
            state["fc1.bias"][3] = -10.0
        state["fc2.weight"][1] = 0.0
        state["fc2.bias"][1] = -10.0 if epoch != 2 else 10.0  # dead at 1, revived at 2, dead again at 3
        snapshots[epoch] = state
    timeline = death_timeline(model, snapshots, _standard_normal(400, 6))
    assert timeline.layers == ("fc1", "fc2")
    assert timeline.dead_counts.tolist() == [[0, 1, 1], [1, 0, 1]]
    assert timeline.death_epoch[0].tolist() == [-1, -1, -1, 2, -1, -1, -1, -1]
    assert timeline.death_epoch[1].tolist() == [-1, 3, -1, -1, -1]


class _PadNaN(nn.Module):
    """Token ids -> embedding -> Linear -> GELU, whose padding id 0 embeds to NaN and id 1 to infinity:
    what a model may compute at padded positions."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(20, 6)
        with torch.no_grad():
            self.embed.weight[0] = float("nan")
            self.embed.weight[1] = float("inf")
        self.fc = nn.Linear(6, 8)
        self.act = nn.GELU()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.act(self.fc(self.embed(input_ids)))


def test_non_finite_values_at_padded_positions_do_not_reach_the_census():
    model = _PadNaN().eval()
    gen = torch.Generator().manual_seed(1)
    batches = []
    for lengths in ([5, 3, 2], [5, 5, 5], [4, 1, 5]):
        mask = (torch.arange(5)[None, :] < torch.tensor(lengths)[:, None]).long()
        ids = torch.randint(2, 20, (3, 5), generator=gen)
        ids = torch.where(mask.bool(), ids, torch.where(torch.arange(5)[None, :] % 2 == 0, 0, 1))
        batches.append({"input_ids": ids, "attention_mask": mask})
    (site,) = activation_census(model, batches, top_k=3)
    with torch.no_grad():
        rows = torch.cat([model.fc(model.embed(b["input_ids"]))[b["attention_mask"].bool()] for b in batches])
    assert site.n_positions == rows.shape[0] == 35 and bool(torch.isfinite(rows).all())
    out = torch.nn.functional.gelu(rows).double()
    np.testing.assert_allclose(site.mean_activation, out.mean(0).numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(site.fire_rate, (rows > 0).double().mean(0).numpy())
    np.testing.assert_array_equal(site.zero_rate, (out.abs() < 0.01).double().mean(0).numpy())
    assert np.isfinite(site.top_examples.values).all()
