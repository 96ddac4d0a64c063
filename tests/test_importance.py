from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from inspector.analysis.importance import (
    METHODS,
    attribute,
    conductance,
    importance_report,
    method_importance,
    randomization_correlation,
    randomized_copy,
    spearman_rows,
)
from inspector.analysis.inputs import Batch, make_adapter
from inspector.analysis.task import make_task
from inspector.data import SplitSpec, make_synthetic, split_dataset
from inspector.models import MLPConfig, build_mlp
from inspector.training import TrainConfig, train


def _only_features_2_and_5(activation: str = "relu") -> nn.Module:
    """An MLP whose first layer reads nothing but inputs 2 and 5."""
    torch.manual_seed(0)
    model = build_mlp(MLPConfig(8, (16,), 3, activation=activation))
    with torch.no_grad():
        keep = torch.zeros(8)
        keep[[2, 5]] = 1.0
        model.fc1.weight.mul_(keep)
        model.fc1.weight[:, [2, 5]] = torch.randn(16, 2).abs() + 0.5  # strong, so they clearly matter
        model.fc1.bias.fill_(0.1)
    return model.eval()


def _classification(model, X, y):
    """``([batch], task, adapter)`` for a tabular classification of ``X`` with labels ``y``."""
    batch = Batch(X, y)
    return [batch], make_task("classification", batch), make_adapter(model, batch)


@pytest.fixture(scope="module")
def data():
    X = torch.randn(200, 8, generator=torch.Generator().manual_seed(1))
    return X


@pytest.mark.parametrize("method", METHODS)
def test_every_method_ranks_features_2_and_5_on_top(method, data):
    model = _only_features_2_and_5()
    target = model(data).argmax(dim=1)
    result = method_importance(model, method, *_classification(model, data, target), n_classes=3, n_steps=32)
    assert result.error is None
    assert set(result.ranking[:2].tolist()) == {2, 5}
    others = np.delete(result.global_importance, [2, 5])
    assert np.all(others <= 1e-6 * result.global_importance[[2, 5]].min() + 1e-9)


# A smooth activation: Gauss-Legendre quadrature then converges quickly, so the
# completeness identities hold to tight tolerances (ReLU kinks slow it down).
def test_integrated_gradients_completeness(data):
    model = _only_features_2_and_5("gelu")
    target = model(data).argmax(dim=1)
    attributions, delta = attribute(model, "integrated_gradients", Batch(data[:50], target[:50]), n_steps=50)
    with torch.no_grad():
        f_x = model(data[:50]).gather(1, target[:50, None]).squeeze(1)
        f_0 = model(torch.zeros(1, 8)).expand(50, -1).gather(1, target[:50, None]).squeeze(1)
    total = attributions.sum(dim=1).detach()
    np.testing.assert_allclose(total.numpy(), (f_x - f_0).numpy(), atol=1e-4)
    np.testing.assert_allclose(delta.numpy(), (total - (f_x - f_0)).numpy(), atol=1e-5)


def test_integrated_gradients_of_a_linear_model_is_w_times_x():
    w = torch.tensor([0.5, -2.0, 3.0, 0.0])
    model = nn.Sequential(nn.Linear(4, 1))
    with torch.no_grad():
        model[0].weight.copy_(w[None])
        model[0].bias.fill_(0.7)
    X = torch.randn(20, 4)
    attributions, _ = attribute(model, "integrated_gradients", Batch(X, torch.zeros(20)))
    np.testing.assert_allclose(attributions.detach().numpy(), (w * X).numpy(), rtol=1e-5, atol=1e-6)


def test_per_class_importance_averages_each_classes_samples(data):
    model = _only_features_2_and_5()
    y = model(data).argmax(dim=1)
    result = method_importance(model, "saliency", *_classification(model, data, y), n_classes=3)
    a, _ = attribute(model, "saliency", Batch(data, y))
    a = a.abs().detach().numpy()
    for c in range(3):
        if (y == c).any():
            np.testing.assert_allclose(result.per_class[c], a[(y == c).numpy()].mean(axis=0), rtol=1e-5)
        else:
            assert np.isnan(result.per_class[c]).all()
    np.testing.assert_allclose(result.global_importance, a.mean(axis=0), rtol=1e-5)


def test_layer_conductance_sums_to_the_logit_change(data):
    model = _only_features_2_and_5("gelu")
    y = model(data[:40]).argmax(dim=1)
    with torch.no_grad():
        change = (model(data[:40]) - model(torch.zeros(1, 8))).gather(1, y[:, None]).squeeze(1).numpy()
    # conductance is a first-order path sum: its completeness gap shrinks like 1 / n_steps
    setup = _classification(model, data[:40], y)
    (coarse,) = conductance(model, *setup, n_classes=3, n_steps=20, max_samples=40, neuron_samples=2)
    (layer,) = conductance(model, *setup, n_classes=3, n_steps=2000, max_samples=40, neuron_samples=2)
    assert layer.completeness_gap < coarse.completeness_gap / 50
    assert layer.completeness_gap < 5e-4  # float32 path sums floor it near here
    for c in range(3):
        rows = (y == c).numpy()
        if rows.any():
            assert layer.by_class[c].sum() == pytest.approx(change[rows].mean(), abs=5e-4)


def test_neuron_conductance_sees_only_the_inputs_a_neuron_reads(data):
    model = _only_features_2_and_5()
    with torch.no_grad():
        model.fc1.weight[3] = 0.0
        model.fc1.weight[3, 5] = 1.0  # neuron 3 reads input 5 only
    (layer,) = conductance(model, *_classification(model, data, model(data).argmax(1)), n_classes=3, neuron_samples=16)
    assert layer.neuron_inputs.shape == (16, 8)
    assert np.flatnonzero(layer.neuron_inputs[3] > 0).tolist() == [5]


def test_sanity_check_separates_trained_from_random_and_flags_a_blind_method():
    ds = make_synthetic(n_samples=600, n_features=10, informative=(2, 5))
    splits = split_dataset(ds, SplitSpec(seed=0))
    model = train(MLPConfig(10, (32,), 2), splits, TrainConfig(epochs=30), device="cpu", progress=False).model
    X = torch.from_numpy(splits.X_test[:64])
    y = torch.from_numpy(splits.y_test[:64])

    def saliency(m):
        return attribute(m, "saliency", Batch(X, y))[0].detach().numpy()

    def blind(m):  # an "explanation" that never looks at the model
        return X.abs().numpy()

    assert randomization_correlation(saliency, model) < 0.5
    assert randomization_correlation(blind, model) == pytest.approx(1.0)


def test_randomized_copy_changes_every_linear_layer_but_not_the_original():
    model = build_mlp(MLPConfig(4, (5,), 2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    clone = randomized_copy(model)
    assert not torch.equal(clone.fc1.weight, model.fc1.weight)
    assert not torch.equal(clone.fc2.weight, model.fc2.weight)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_spearman_rows_ignores_shared_zeros():
    a = np.array([[1.0, 2.0, 3.0, 0.0, 0.0]])
    b = np.array([[10.0, 20.0, 30.0, 0.0, 0.0]])
    assert spearman_rows(a, b)[0] == pytest.approx(1.0)
    assert spearman_rows(a, -b[:, ::-1] + 0)[0] < 1.0


def test_report_leaves_model_untouched_and_records_deltas(data):
    model = _only_features_2_and_5()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = importance_report(model, data[:64], model.eval()(data[:64]).argmax(1), 3, n_steps=16)
    model.train()
    report = importance_report(model, data[:64], torch.zeros(64, dtype=torch.long), 3, n_steps=16)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())
    ig = report.method("integrated_gradients")
    assert ig.convergence_delta is not None and report.method("saliency").convergence_delta is None
    assert [c.layer for c in report.conductance] == ["fc1"]


@pytest.mark.parametrize("activation", ["relu", "gelu", "tanh"])
@pytest.mark.parametrize("method", ["integrated_gradients", "saliency", "input_x_gradient"])
def test_summed_gradients_match_captums_default_exactly(activation, method):
    from captum import attr

    torch.manual_seed(0)
    model = build_mlp(MLPConfig(8, (16, 12), 3, activation=activation, batch_norm=True)).eval()
    X, t = torch.randn(40, 8), torch.randint(0, 3, (40,))
    reference = {
        "integrated_gradients": lambda: attr.IntegratedGradients(model).attribute(
            X, baselines=torch.zeros(1, 8), target=t, n_steps=50
        ),
        "saliency": lambda: attr.Saliency(model).attribute(X, target=t, abs=True),
        "input_x_gradient": lambda: attr.InputXGradient(model).attribute(X, target=t),
    }[method]()
    ours, _ = attribute(model, method, Batch(X, t), n_steps=50)
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-6)


def test_probe_answers_one_sample_and_caches(data):
    from inspector.analysis.probe import Probe

    model = _only_features_2_and_5()
    y = model(data).argmax(1).numpy()
    explainer = Probe(model, (data.numpy(), y), n_steps=32)
    first = explainer.explain("integrated_gradients", 7)
    direct, _ = attribute(model, "integrated_gradients", Batch(data[7:8], torch.tensor([y[7]])), n_steps=32)
    np.testing.assert_allclose(first, direct.detach().numpy()[0], rtol=1e-6)
    assert explainer.explain("integrated_gradients", 7) is first  # cached
    assert np.flatnonzero(first).tolist() == [2, 5]  # the model reads nothing else
    probabilities = explainer.predict(7)
    assert probabilities.shape == (3,) and probabilities.sum() == pytest.approx(1.0)
    assert int(probabilities.argmax()) == y[7]


def test_cpu_passes_hold_as_many_steps_as_fit_the_cache_and_never_fewer_rows_than_the_batch():
    from inspector.analysis.attribution import CPU_PASS_ELEMENTS, captum_batch_size

    assert CPU_PASS_ELEMENTS == 1 << 19
    assert captum_batch_size(256, 50, 256) == 256 * 50  # no cache bound: all steps in one pass
    assert captum_batch_size(256, 50, 256, cpu_width=256) == 256 * 8  # 2**19 // (256 * 256) = 8 steps
    assert captum_batch_size(256, 50, 64, cpu_width=1024) == 256 * 2  # the widest activation counts
    assert captum_batch_size(256, 50, 256, cpu_width=1 << 20) == 256  # one step per pass at least


def test_integrated_gradients_in_several_passes_equal_one_pass(data):
    model = build_mlp(MLPConfig(8, (16, 12), 3)).eval()
    X = data[:40]
    y = model(X).argmax(1)
    one, delta_one = attribute(model, "integrated_gradients", Batch(X, y), n_steps=20, internal_batch_size=40 * 20)
    several, delta_several = attribute(
        model, "integrated_gradients", Batch(X, y), n_steps=20, internal_batch_size=40 * 3
    )
    default, _ = attribute(model, "integrated_gradients", Batch(X, y), n_steps=20)
    torch.testing.assert_close(several, one, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(default, one, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(delta_several, delta_one, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("elements_per_pass", [None, 8 * 30 * 2])  # every path point in one pass; two at a time
def test_layer_conductances_of_every_layer_at_once_match_captums_one_layer_at_a_time(
    data, elements_per_pass, monkeypatch
):
    from captum.attr import LayerConductance

    from inspector.analysis import attribution

    if elements_per_pass is not None:
        monkeypatch.setattr(attribution, "ELEMENTS_PER_PASS", elements_per_pass)
    torch.manual_seed(0)
    model = build_mlp(MLPConfig(8, (16, 12), 3, activation="gelu")).eval()
    X = data[:30]
    y = model(X).argmax(1)
    layers = conductance(model, *_classification(model, X, y), n_steps=20, n_classes=3, neuron_samples=0)
    assert [c.layer for c in layers] == ["fc1", "fc2"]
    for result in layers:
        reference = (
            LayerConductance(model, model.get_submodule(result.layer))
            .attribute(X, baselines=torch.zeros(1, 8), target=y, n_steps=20)
            .detach()
            .double()
            .numpy()
        )
        np.testing.assert_allclose(result.mean_conductance, reference.mean(axis=0), rtol=1e-5, atol=1e-8)
        for c in range(3):
            rows = (y == c).numpy()
            if rows.any():
                np.testing.assert_allclose(result.by_class[c], reference[rows].mean(axis=0), rtol=1e-5, atol=1e-8)


def test_a_layer_applied_twice_has_no_conductance_and_says_why(data):
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = nn.Linear(8, 8)
            self.hidden = nn.Linear(8, 4)
            self.out = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(torch.relu(self.hidden(torch.tanh(self.inner(torch.tanh(self.inner(x)))))))

    torch.manual_seed(0)
    model = Twice().eval()
    y = model(data[:20]).argmax(1)
    results = {
        c.layer: c
        for c in conductance(model, *_classification(model, data[:20], y), n_steps=8, n_classes=3, neuron_samples=0)
    }
    assert results["inner"].error == ("applied 2 times in one forward pass; conductance needs a layer applied once")
    assert results["inner"].by_class is None and results["inner"].mean_conductance.size == 0
    assert results["hidden"].error is None and results["hidden"].mean_conductance.shape == (4,)
    assert "out" not in results


def test_neuron_conductance_over_the_budget_is_skipped_and_says_why(data, monkeypatch):
    from inspector.analysis import conductance as conductance_module

    model = _only_features_2_and_5()
    y = model(data[:20]).argmax(1)
    params = sum(p.numel() for p in model.parameters())
    monkeypatch.setattr(conductance_module, "NEURON_CONDUCTANCE_BUDGET", 16 * 4 * 8 * params - 1)  # one short
    (layer,) = conductance(model, *_classification(model, data[:20], y), n_steps=8, n_classes=3, neuron_samples=4)
    assert layer.neuron_inputs.shape == (0, 0)
    assert layer.neuron_inputs_skipped == (
        f"16 neurons x 4 samples x 8 steps on a model of {params:,} parameters "
        f"is over the budget ({16 * 4 * 8 * params - 1:.0e} passes x parameters)"
    )
    monkeypatch.setattr(conductance_module, "NEURON_CONDUCTANCE_BUDGET", 16 * 4 * 8 * params)  # just enough
    (layer,) = conductance(model, *_classification(model, data[:20], y), n_steps=8, n_classes=3, neuron_samples=4)
    assert layer.neuron_inputs.shape == (16, 8) and layer.neuron_inputs_skipped is None


def test_gradient_shap_is_reproducible_and_leaves_the_global_rngs_alone(data):
    model = _only_features_2_and_5()
    y = model(data[:40]).argmax(1)
    setup = _classification(model, data[:40], y)
    np.random.seed(123)
    numpy_state, torch_state = np.random.get_state()[1].copy(), torch.random.get_rng_state()
    first = method_importance(model, "gradient_shap", *setup, n_classes=3, background=data[:8])
    np.random.seed(7)  # another global state: Captum's draws are seeded inside, so nothing changes
    second = method_importance(model, "gradient_shap", *setup, n_classes=3, background=data[:8])
    np.testing.assert_array_equal(first.global_importance, second.global_importance)
    assert first.sanity_correlation == second.sanity_correlation
    np.random.seed(123)
    method_importance(model, "gradient_shap", *setup, n_classes=3, background=data[:8])
    np.testing.assert_array_equal(np.random.get_state()[1], numpy_state)
    assert torch.equal(torch.random.get_rng_state(), torch_state)


def test_every_method_names_captum_classes_that_exist():
    from captum import attr

    from inspector.analysis.methods import REGISTRY

    for spec in REGISTRY:
        assert callable(getattr(attr, spec.captum_class))
        if spec.tokens == "layer":
            assert spec.layer_class is not None and spec.layer_class.startswith("Layer")
            assert callable(getattr(attr, spec.layer_class))


def test_conductance_follows_the_sites_it_is_given(data):
    from inspector.analysis.sites import discover_sites

    model = _only_features_2_and_5()
    y = model(data[:16]).argmax(1)
    report = importance_report(model, (data[:16], y), methods=("saliency",), n_steps=4)
    assert [c.layer for c in report.conductance] == ["fc1"]
    declared = discover_sites(model, Batch(data[:16], y), {"fc1": "none"})  # declared: no activation, not counted
    report = importance_report(model, (data[:16], y), methods=("saliency",), n_steps=4, sites=declared)
    assert report.conductance == ()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("method", ["gausslegendre", "riemann_trapezoid"])
def test_step_summed_integrated_gradients_equal_captums_in_several_passes(dtype, method):
    from captum import attr

    from inspector.analysis.attribution import _explainer_class, summed_gradients

    torch.manual_seed(1)
    model = build_mlp(MLPConfig(6, (10, 7), 3, activation="gelu")).to(dtype).eval()
    X, baseline, t = torch.randn(9, 6, dtype=dtype), torch.randn(1, 6, dtype=dtype), torch.randint(0, 3, (9,))
    ours = _explainer_class("IntegratedGradients")(model)
    ours.gradient_func = summed_gradients
    assert isinstance(ours, attr.IntegratedGradients)
    kwargs = {"baselines": baseline, "target": t, "n_steps": 20, "method": method, "internal_batch_size": 9 * 3}
    got, delta = ours.attribute(X, return_convergence_delta=True, **kwargs)  # 7 passes of <= 3 steps
    want, want_delta = attr.IntegratedGradients(model).attribute(X, return_convergence_delta=True, **kwargs)
    tolerance = 1e-6 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(got, want, rtol=0, atol=tolerance)
    torch.testing.assert_close(delta, want_delta, rtol=0, atol=tolerance)


def test_parameters_are_frozen_during_attribution_and_restored_after_even_on_error():
    from inspector.analysis.attribution import frozen_parameters

    model = build_mlp(MLPConfig(4, (5,), 2)).eval()
    model.fc1.bias.requires_grad_(False)  # a frozen one stays frozen
    with pytest.raises(RuntimeError), frozen_parameters(model):
        assert not any(p.requires_grad for p in model.parameters())
        raise RuntimeError("boom")
    assert [name for name, p in model.named_parameters() if not p.requires_grad] == ["fc1.bias"]
    seen = []
    model.fc1.register_forward_hook(lambda m, i, o: seen.append(m.weight.requires_grad))
    attribute(model, "integrated_gradients", Batch(torch.randn(3, 4), torch.tensor([0, 1, 0])), n_steps=4)
    assert seen and not any(seen) and model.fc1.weight.requires_grad
