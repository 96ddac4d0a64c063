from __future__ import annotations

import numpy as np
import pytest
import torch

from inspector.analysis import Analysis, AnalysisOptions, analyze
from inspector.analysis.methods import METHODS
from inspector.checkpoints import checkpoint_from_training, load, save_checkpoint
from inspector.cli import main
from inspector.data import SplitSpec, load_digits, split_dataset
from inspector.evaluation import EvalData, eval_data_for
from inspector.models import MLPConfig, build_mlp
from inspector.results import results_equal
from inspector.training import TrainConfig, train

FAST = AnalysisOptions(n_steps=16, max_importance_samples=120, sparsities=(0.0, 0.5, 0.9))


@pytest.fixture(scope="module")
def digits_checkpoint(tmp_path_factory):
    dataset = load_digits()
    spec = SplitSpec(seed=0)
    splits = split_dataset(dataset, spec)
    result = train(
        MLPConfig(64, (32, 16), 10),
        splits,
        TrainConfig(epochs=12, snapshot_every=4, patience=None),
        device="cpu",
        progress=False,
    )
    path = tmp_path_factory.mktemp("ckpt") / "digits.pt"
    save_checkpoint(checkpoint_from_training(result, dataset, splits.standardizer, spec), path)
    return path


def test_analysis_of_the_digits_model_round_trips(digits_checkpoint, tmp_path):
    ckpt = load(digits_checkpoint)
    data = eval_data_for(ckpt)
    assert data.split == "test" and len(data.y) == 359 and data.image_shape == (8, 8)
    analysis = analyze(ckpt, data, options=FAST)
    assert analysis.data.accuracy == pytest.approx(ckpt.metrics["test_accuracy"])
    assert [w.layer for w in analysis.weights] == ["fc1", "fc2", "fc3"]
    assert analysis.weights[0].neuron_images.shape == (32, 8, 8)
    assert analysis.deaths is not None and analysis.deaths.epochs.tolist() == [4, 8, 12]
    assert analysis.training.epochs_run == 12
    assert {m.method for m in analysis.importance.methods} == set(METHODS)  # a tabular model: every method by default
    analysis.save(tmp_path / "a")
    assert results_equal(analysis, Analysis.load(tmp_path / "a"))


def test_weight_only_analysis_without_data():
    model = build_mlp(MLPConfig(5, (4,), 2))
    analysis = analyze(model)
    assert analysis.data is None and analysis.activations is None and analysis.importance is None
    assert analysis.parameters.total_parameters == 4 * 6 + 2 * 5
    assert analysis.weights is not None


def test_planted_dead_neurons_reach_the_findings():
    torch.manual_seed(0)
    model = build_mlp(MLPConfig(10, (16,), 3))
    with torch.no_grad():
        model.fc1.bias[[2, 3, 11]] = -10.0
    X = np.random.default_rng(0).standard_normal((360, 10)).astype(np.float32)
    y = np.arange(360) % 3
    data = EvalData.from_arrays(X, y, name="planted")
    analysis = analyze(
        model, data, options=AnalysisOptions(sections=("parameters", "activations", "pruning"), sparsities=(0.0,))
    )
    assert np.flatnonzero(analysis.activations[0].dead_mask).tolist() == [2, 3, 11]
    texts = [f.text for f in analysis.findings]
    assert "layer fc1: 3 of 16 neurons never fire on the 360 samples" in texts
    assert analysis.pruning.dead_removed_count == 3
    assert any("removing the 3 dead neurons changes accuracy by +0.0 points" in t for t in texts)


def test_analyze_never_changes_the_model(digits_checkpoint):
    ckpt = load(digits_checkpoint)
    model = ckpt.model
    model.train()
    model.fc2.bias.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    analyze(ckpt, eval_data_for(ckpt), options=FAST)
    assert model.training and all(m.training for m in model.modules())
    assert not model.fc2.bias.requires_grad and model.fc1.weight.requires_grad
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks for m in model.modules())


def test_cli_analyze_writes_result_and_summary(digits_checkpoint, tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(
            [
                "analyze",
                str(digits_checkpoint),
                "--out",
                str(out),
                "--steps",
                "8",
                "--methods",
                "saliency,integrated_gradients",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "32*(64+1) = 2,080" in printed and "findings:" in printed
    analysis = Analysis.load(out)
    assert [m.method for m in analysis.importance.methods] == ["saliency", "integrated_gradients"]
    assert main(["analyze", str(digits_checkpoint), "--out", str(out)]) == 1
    assert "already exists; pass --force" in capsys.readouterr().err


def test_cli_analyze_weight_only_for_a_foreign_state_dict(tmp_path, capsys):
    torch.save(
        torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)).state_dict(),
        tmp_path / "sd.pt",
    )
    assert main(["analyze", str(tmp_path / "sd.pt"), "--out", str(tmp_path / "a")]) == 0
    captured = capsys.readouterr()
    assert "assuming relu" in captured.err and "no evaluation data" in captured.out
    assert Analysis.load(tmp_path / "a").activations is None


def test_cli_analyze_wrong_data_width_is_one_line(digits_checkpoint, tmp_path, capsys):
    assert main(["analyze", str(digits_checkpoint), "--data", "synthetic", "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "has 10 features but" in err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "gelu", "sigmoid", "tanh"])
def test_every_activation_and_batch_norm_analyses_end_to_end(activation, tmp_path):
    torch.manual_seed(0)
    model = build_mlp(MLPConfig(6, (12, 8), 3, activation=activation, batch_norm=True, dropout=0.1)).eval()
    rng = np.random.default_rng(0)
    data = EvalData.from_arrays(rng.standard_normal((90, 6)).astype(np.float32), np.arange(90) % 3)
    analysis = analyze(model, data, options=AnalysisOptions(n_steps=8, sparsities=(0.0, 0.5)))
    assert [a.activation for a in analysis.activations] == [activation, activation]
    squashing = activation in ("sigmoid", "tanh")
    assert all((a.saturation_rate is not None) == squashing for a in analysis.activations)
    assert all(m.error is None for m in analysis.importance.methods), [m.error for m in analysis.importance.methods]
    analysis.save(tmp_path / "a")
    assert results_equal(Analysis.load(tmp_path / "a"), analysis)


def test_nan_weights_of_a_foreign_model_are_flagged_under_the_files_names(tmp_path):
    from torch import nn

    from inspector.checkpoints import load

    model = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3))
    with torch.no_grad():
        model[2].weight[1, 1] = float("nan")
    torch.save(model.state_dict(), tmp_path / "nan.pt")
    ckpt = load(tmp_path / "nan.pt")
    assert ckpt.nonfinite == ("2.weight",)  # the file's own name
    analysis = analyze(ckpt, options=AnalysisOptions(sections=("parameters", "weights")))
    assert analysis.model.nonfinite == ("2.weight",)  # the rebuilt module keeps the file's names
    assert any(f.severity == "warning" and f.text.startswith("2.weight holds NaN or Inf") for f in analysis.findings)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_steps": 0},
        {"finetune_epochs": -1},
        {"batch_size": 0},
        {"max_importance_samples": 0},
        {"n_steps": 2.5},
        {"nearly_dead_threshold": float("nan")},
    ],
)
def test_analysis_options_refuse_out_of_range_counts(kwargs):
    from inspector.errors import InspectorError

    with pytest.raises(InspectorError):
        AnalysisOptions(**kwargs)


def test_data_is_evaluated_even_when_only_weight_sections_are_asked_for():
    torch.manual_seed(0)
    model = build_mlp(MLPConfig(4, (3,), 2))
    with torch.no_grad():  # logits (0.5, relu(x0)): class 1 exactly when x0 > 0.5
        for layer in (model.fc1, model.fc2):
            layer.weight.zero_()
            layer.bias.zero_()
        model.fc1.weight[0, 0] = 1.0
        model.fc2.weight[1, 0] = 1.0
        model.fc2.bias[0] = 0.5
    X = np.array([[1, 0, 0, 0], [2, 1, 1, 1], [-1, 0, 0, 0], [-3, 2, 2, 2]], np.float32)
    data = EvalData.from_arrays(X, np.array([1, 1, 0, 0]))
    analysis = analyze(model, data, options=AnalysisOptions(sections=("parameters", "weights")))
    assert analysis.data is not None and analysis.data.accuracy == 1.0 and analysis.data.n_samples == 4
    assert analysis.activations is None and analysis.importance is None and analysis.pruning is None
