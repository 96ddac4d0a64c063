from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from inspector.analysis import pruning as P
from inspector.analysis.pruning import prune, pruning_sweep
from inspector.models import MLPConfig, build_mlp


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
        assert curve.accuracy[0] == pytest.approx(report.baseline_accuracy)
        assert curve.parameters_left[0] == report.total_parameters == 20 * 11 + 12 * 21 + 3 * 13
        assert np.all(np.diff(curve.parameters_left) <= 0)
        assert curve.finetuned_accuracy.shape == curve.accuracy.shape


def test_sweep_accuracy_matches_pruned_copy():
    model = _model()
    X, y = torch.randn(200, 10), torch.randint(0, 3, (200,))
    report = pruning_sweep(model, X, y, sparsities=(0.0, 0.6), scopes=("global",))
    with torch.no_grad():
        expected = float((prune(model, 0.6).eval()(X).argmax(1) == y).float().mean())
    assert report.curve("global").accuracy[1] == pytest.approx(expected)
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
    assert report.dead_removed_accuracy == pytest.approx(report.baseline_accuracy)


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
    assert main(["prune", str(ckpt), "--sparsity", "1.0", "--out", str(tmp_path / "x.pt")]) == 1
    assert "--sparsity must be in [0, 1)" in capsys.readouterr().err
