from __future__ import annotations

import copy
import math
import re

import numpy as np
import pytest
import torch
from torch import nn

from inspector.analysis import pruning as P
from inspector.analysis.pruning import prune, pruning_sweep
from inspector.models import MLPConfig, build_mlp
from tests.helpers import numpy_prune


def _model():
    torch.manual_seed(0)
    return build_mlp(MLPConfig(10, (20, 12), 3)).eval()


def _weights(model):
    return [model.fc1.weight, model.fc2.weight, model.fc3.weight]


@pytest.mark.parametrize("s", [0.0, 0.1, 0.37, 0.5, 0.95])
def test_global_pruning_zeroes_exactly_floor_s_n_smallest(s):
    model = _model()
    before = torch.cat([w.detach().abs().reshape(-1) for w in _weights(model)])
    pruned = prune(model, s, "global")
    after = torch.cat([w.detach().reshape(-1) for w in _weights(pruned)])
    n = before.numel()
    zeroed = after == 0
    assert int(zeroed.sum()) == math.floor(s * n)
    if zeroed.any():
        assert before[zeroed].max() <= before[~zeroed].min()
    # biases are not weights: untouched
    assert torch.equal(pruned.fc1.bias, model.fc1.bias)


def test_layer_pruning_takes_the_same_fraction_of_each_layer():
    model = _model()
    pruned = prune(model, 0.5, "layer")
    for w_before, w_after in zip(_weights(model), _weights(pruned)):
        zeroed = w_after == 0
        assert int(zeroed.sum()) == math.floor(0.5 * w_before.numel())
        assert w_before.abs()[zeroed].max() <= w_before.abs()[~zeroed].min()


def test_neuron_pruning_removes_the_weakest_rows_and_their_outgoing_columns():
    model = _model()
    with torch.no_grad():
        model.fc1.weight[[3, 7]] *= 1e-3  # the two weakest neurons of fc1
    pruned = prune(model, 0.1, "neuron")  # floor(0.1 * 20) = 2 of fc1, floor(0.1 * 12) = 1 of fc2
    assert torch.all(pruned.fc1.weight[[3, 7]] == 0) and torch.all(pruned.fc1.bias[[3, 7]] == 0)
    assert torch.all(pruned.fc2.weight[:, [3, 7]] == 0)
    assert int((pruned.fc1.weight.abs().sum(1) == 0).sum()) == 2
    weakest_fc2 = int(torch.argmin(model.fc2.weight.norm(dim=1)))
    assert torch.all(pruned.fc2.weight[weakest_fc2] == 0) and torch.all(pruned.fc3.weight[:, weakest_fc2] == 0)
    assert torch.equal(pruned.fc3.bias, model.fc3.bias)


def test_sweep_never_modifies_the_callers_model_and_starts_at_baseline():
    model = _model()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    X, y = torch.randn(300, 10), torch.randint(0, 3, (300,))
    report = pruning_sweep(model, X, y, finetune=(X.numpy(), y.numpy()), finetune_epochs=1)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    for curve in report.curves:
        assert curve.metric[0] == pytest.approx(report.baseline_metric)
        assert curve.parameters_left[0] == report.total_parameters == 20 * 11 + 12 * 21 + 3 * 13
        assert np.all(np.diff(curve.parameters_left) <= 0)
        assert curve.finetuned_metric.shape == curve.metric.shape


def test_sweep_accuracy_matches_pruned_copy():
    model = _model()
    X, y = torch.randn(200, 10), torch.randint(0, 3, (200,))
    report = pruning_sweep(model, X, y, sparsities=(0.0, 0.6), scopes=("global",))
    with torch.no_grad():
        expected = float((prune(model, 0.6).eval()(X).argmax(1) == y).float().mean())
    assert report.curve("global").metric[1] == pytest.approx(expected)
    n_weights = 20 * 10 + 12 * 20 + 3 * 12
    assert report.curve("global").parameters_left[1] == n_weights - math.floor(0.6 * n_weights) + 20 + 12 + 3


def test_thresholds_come_from_one_sort_per_scope(monkeypatch):
    calls = []
    real = torch.argsort

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(P.torch, "argsort", counting)
    model = _model()
    P.global_masks(model, P.DEFAULT_SPARSITIES)
    assert len(calls) == 1
    calls.clear()
    P.layer_masks(model, P.DEFAULT_SPARSITIES)
    assert len(calls) == 3  # one per layer, not one per level


def test_removing_planted_dead_neurons_keeps_accuracy():
    model = _model()
    with torch.no_grad():
        model.fc1.bias[[0, 5]] = -50.0
    X, y = torch.randn(400, 10), torch.randint(0, 3, (400,))
    dead = {"fc1": np.isin(np.arange(20), [0, 5]), "fc2": np.zeros(12, bool)}
    report = pruning_sweep(model, X, y, sparsities=(0.0,), scopes=("global",), dead_masks=dead)
    assert report.dead_removed_count == 2
    assert report.dead_removed_metric == pytest.approx(report.baseline_metric)


def test_bad_sparsity_is_refused():
    with pytest.raises(ValueError, match="sparsit"):
        pruning_sweep(_model(), torch.randn(5, 10), torch.zeros(5, dtype=torch.long), sparsities=(1.0,))


def test_finetuning_keeps_pruned_weights_at_zero():
    model = _model()
    X, y = torch.randn(200, 10), torch.randint(0, 3, (200,))
    for scope in ("global", "neuron"):
        plain = P.prune(model, 0.5, scope)
        tuned = P.prune_and_finetune(model, 0.5, scope, X, y, epochs=2)
        for a, b in zip(_weights(plain), _weights(tuned)):
            assert torch.equal(a == 0, b == 0)
        assert not torch.equal(plain.fc3.weight, tuned.fc3.weight)  # it did train


def test_cli_exports_a_pruned_checkpoint(tmp_path, capsys):
    from inspector.checkpoints import load
    from inspector.cli import main

    ckpt = tmp_path / "s.pt"
    assert main(["train", "--dataset", "synthetic", "--hidden", "16", "--epochs", "3", "--out", str(ckpt), "-q"]) == 0
    out = tmp_path / "pruned.safetensors"
    assert main(["prune", str(ckpt), "--sparsity", "0.75", "--out", str(out)]) == 0
    assert "synthetic test accuracy" in capsys.readouterr().out
    pruned, original = load(out), load(ckpt)
    weights = [original.model.fc1.weight, original.model.fc2.weight]
    n = sum(w.numel() for w in weights)
    zeros = sum(int((w == 0).sum()) for w in (pruned.model.fc1.weight, pruned.model.fc2.weight))
    assert zeros == math.floor(0.75 * n)
    assert pruned.config == original.config and pruned.standardizer is not None
    # an out-of-range sparsity is a usage error, refused while parsing (argparse's exit status 2)
    with pytest.raises(SystemExit) as exit_info:
        main(["prune", str(ckpt), "--sparsity", "1.0", "--out", str(tmp_path / "x.pt")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--sparsity: expected a finite number in [0, 1), got '1.0'" in err and "Traceback" not in err
    assert not (tmp_path / "x.pt").exists()


def test_cli_prune_of_a_regression_checkpoint_reports_r2_under_its_own_name(tmp_path, capsys):
    """Issue 20 defect 9: prune printed a regression's R² as "accuracy" (as a percentage) and stored it
    as test_accuracy. The metric is R², printed and stored (test_r2) as such, and it is the R² of the
    pruned model on the test split, recomputed here from its predictions."""
    from inspector.checkpoints import load
    from inspector.cli import main
    from inspector.evaluation import eval_data_for

    ckpt = tmp_path / "r.safetensors"
    train = ["train", "--dataset", "synthetic-regression", "--hidden", "16", "--epochs", "15", "-q", "--out", str(ckpt)]
    assert main(train) == 0
    capsys.readouterr()
    out = tmp_path / "pruned.safetensors"
    assert main(["prune", str(ckpt), "--sparsity", "0.5", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "synthetic-regression test R² " in printed and "accuracy" not in printed and "%" not in printed.split(";")[1]
    original, pruned = load(ckpt), load(out)
    assert "test_accuracy" not in pruned.metrics
    data = eval_data_for(pruned)
    assert data is not None and data.split == "test"
    with torch.no_grad():
        predictions = pruned.model(torch.from_numpy(data.X)).double().numpy().reshape(len(data.y), -1)
    targets = data.y.astype(np.float64).reshape(len(data.y), -1)
    r2 = 1 - ((predictions - targets) ** 2).sum(0) / ((targets - targets.mean(0)) ** 2).sum(0)
    assert pruned.metrics["test_r2"] == pytest.approx(float(r2.mean()), abs=1e-6)
    before, after = re.search(r"test R² (-?[\d.]+) -> (-?[\d.]+)\n", printed).groups()  # type: ignore[union-attr]
    assert float(before) == pytest.approx(original.metrics["test_r2"], abs=1e-4)
    assert float(after) == pytest.approx(pruned.metrics["test_r2"], abs=1e-4)


# --------------------------------------------------------------------------- independent re-implementation
# numpy, float64, written from the definitions in the module docstring: sort |w|, zero the floor(s * N)
# smallest, run the plain forward pass, count correct argmaxes


def _numpy_layers(model):
    return [
        (layer.weight.detach().double().numpy().copy(), layer.bias.detach().double().numpy().copy())
        for layer in (model.fc1, model.fc2, model.fc3)
    ]


def _numpy_accuracy(layers, X, y):
    h = np.asarray(X, np.float64)
    for k, (w, b) in enumerate(layers):
        h = h @ w.T + b
        if k < len(layers) - 1:
            h = np.maximum(h, 0.0)
    return float(np.mean(h.argmax(1) == np.asarray(y)))


def _assert_matches_numpy(curve, model, X, y):
    layers = _numpy_layers(model)
    expected = [_numpy_accuracy(numpy_prune(layers, s, curve.scope), X, y) for s in curve.sparsity]
    # float32 (torch) against float64 (numpy) logits may swap an argmax that is tied to 1e-6: allow one sample
    np.testing.assert_allclose(curve.metric, expected, rtol=0, atol=1.01 / len(y))


def test_each_scope_gives_the_same_curve_alone_as_with_the_others():
    model = _model()
    X, y = torch.randn(300, 10), torch.randint(0, 3, (300,))
    together = pruning_sweep(model, X, y)
    reversed_order = pruning_sweep(model, X, y, scopes=tuple(reversed(P.SCOPES)))
    for scope in P.SCOPES:
        alone = pruning_sweep(model, X, y, scopes=(scope,)).curve(scope)
        for other in (together.curve(scope), reversed_order.curve(scope)):
            np.testing.assert_array_equal(other.metric, alone.metric)
            np.testing.assert_array_equal(other.loss, alone.loss)
            np.testing.assert_array_equal(other.parameters_left, alone.parameters_left)
        _assert_matches_numpy(alone, model, X.numpy(), y.numpy())


def test_finetuning_one_level_leaks_into_no_other_level_scope_or_dead_neuron_check():
    torch.manual_seed(0)
    model = build_mlp(MLPConfig(10, (20, 12), 3, batch_norm=True)).eval()  # batch norm: buffers that train too
    X, y = torch.randn(200, 10), torch.randint(0, 3, (200,))
    X_train, y_train = torch.randn(256, 10), torch.randint(0, 3, (256,))
    dead = {"fc1": np.isin(np.arange(20), [1, 4]), "fc2": np.zeros(12, bool)}
    sparsities = (0.0, 0.5, 0.8)
    report = pruning_sweep(
        model,
        X,
        y,
        sparsities=sparsities,
        dead_masks=dead,
        finetune=(X_train.numpy(), y_train.numpy()),
        finetune_epochs=2,
    )
    for curve in report.curves:
        for s, tuned in zip(sparsities, curve.finetuned_metric):
            fresh = P.prune_and_finetune(model, s, curve.scope, X_train, y_train, epochs=2)
            with torch.no_grad():
                assert tuned == int((fresh.eval()(X).argmax(1) == y).sum()) / len(y)
    clean = copy.deepcopy(model)
    with torch.no_grad():
        clean.fc1.weight[[1, 4]] = 0
        clean.fc1.bias[[1, 4]] = 0
        clean.fc2.weight[:, [1, 4]] = 0
        assert report.dead_removed_metric == int((clean(X).argmax(1) == y).sum()) / len(y)


def _tied_model():
    torch.manual_seed(1)
    enc, dec = nn.Linear(6, 6), nn.Linear(6, 6)
    dec.weight = enc.weight
    return nn.Sequential(enc, nn.ReLU(), dec, nn.ReLU(), nn.Linear(6, 3)).eval()


def test_tied_weights_are_ranked_and_counted_once():
    model = _tied_model()
    X, y = torch.randn(50, 6), torch.randint(0, 3, (50,))
    report = pruning_sweep(model, X, y, sparsities=(0.0, 0.3, 0.6), scopes=("global", "layer"))
    distinct_weights = 36 + 18  # the shared 6x6 weight once, plus the head
    assert report.total_parameters == 36 + 6 + 6 + 18 + 3 == sum(p.numel() for p in model.parameters())
    curve = report.curve("global")
    for s, left in zip(curve.sparsity, curve.parameters_left):
        assert left == report.total_parameters - math.floor(s * distinct_weights)
    pruned = prune(model, 0.3, "global")
    assert int((pruned[0].weight == 0).sum() + (pruned[4].weight == 0).sum()) == math.floor(0.3 * distinct_weights)
    layer = report.curve("layer")
    assert layer.parameters_left[1] == report.total_parameters - math.floor(0.3 * 36) - math.floor(0.3 * 18)


@pytest.fixture(scope="module")
def digits_model():
    from inspector.data import SplitSpec, load_digits, split_dataset
    from inspector.evaluation import EvalData
    from inspector.training import TrainConfig, train

    dataset = load_digits()
    splits = split_dataset(dataset, SplitSpec(seed=0))
    result = train(
        MLPConfig(64, (32, 16), 10),
        splits,
        TrainConfig(epochs=10, patience=None, lr=1e-2),
        device="cpu",
        progress=False,
    )
    data = EvalData(
        dataset.name,
        "test",
        splits.X_test,
        splits.y_test,
        dataset.feature_names,
        dataset.class_names,
        dataset.image_shape,
    )
    return result.model, data


def test_full_analysis_of_a_digits_model_prunes_every_scope_from_the_original_weights(digits_model):
    from inspector.analysis import AnalysisOptions, analyze

    model, data = digits_model
    analysis = analyze(model, data, options=AnalysisOptions(n_steps=4, max_importance_samples=40, conductance=False))
    assert [c.scope for c in analysis.pruning.curves] == list(P.SCOPES)
    for curve in analysis.pruning.curves:
        _assert_matches_numpy(curve, model, data.X, data.y)


def test_a_schema_1_analysis_reads_its_accuracy_fields_as_the_metric_fields():
    import json
    import os

    from inspector.analysis import Analysis

    folder = os.path.join(os.path.dirname(__file__), "data", "analysis-v1")  # saved by schema-1 dense-inspector
    with open(os.path.join(folder, "analysis.json")) as f:
        stored = json.load(f)["result"]["pruning"]
    report = Analysis.load(folder).pruning
    assert report.baseline_metric == stored["baseline_accuracy"]
    assert report.dead_removed_metric == stored["dead_removed_accuracy"]
    assert (report.metric_name, report.loss_name) == ("accuracy", "cross-entropy")  # what schema 1 always meant
    assert [c.scope for c in report.curves] == [c["scope"] for c in stored["curves"]]
    assert all(c.metric.shape == c.sparsity.shape for c in report.curves)
