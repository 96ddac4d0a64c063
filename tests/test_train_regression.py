"""`inspector train` on regression data: one linear output per target, MSE loss, R² reported,
the task recorded in the checkpoint and analysed as regression.

Every R² here is recomputed with numpy from the saved checkpoint's own predictions.
"""

from __future__ import annotations

import contextlib
import io
import re

import numpy as np
import pytest
import torch

from inspector.analysis import Analysis
from inspector.checkpoints import load, save_checkpoint
from inspector.cli import main
from inspector.data import load_dataset, make_synthetic_regression, split_dataset
from inspector.errors import InspectorError
from inspector.training import fold_target_scale, regression_scores

TRAIN = ["--hidden", "16", "--epochs", "40", "--lr", "0.01", "--patience", "10", "--batch-size", "32", "-q"]
RESULT_LINE = re.compile(r"test R² (-?[\d.]+)(?: \(mean of (\d+) targets\))?, MSE ([\d.e+-]+) \((\d+) samples\)")


def _linear_data(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Four features; the target 10 (3 a1 - 2 a2) + 50 is far from standardised, so training must
    standardise it and fold the scale back for the model to predict in these units."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 4))
    y = 10 * (3 * X[:, 1] - 2 * X[:, 2]) + 50
    return X, y


def _write_csv(path, X: np.ndarray, y: np.ndarray) -> None:
    rows = ["a0,a1,a2,a3,target"] + [",".join(f"{v:.6f}" for v in (*x, t)) for x, t in zip(X, y)]
    path.write_text("\n".join(rows) + "\n")


def _test_split_predictions(ckpt_path, data_path, label_column=None):
    """The saved checkpoint's predictions and the targets on its test split, recreated from what it stores."""
    ckpt = load(ckpt_path)
    dataset = load_dataset(str(data_path), label_column=label_column, task="regression")
    splits = split_dataset(dataset, ckpt.dataset.split)
    X = ckpt.standardizer.transform(dataset.X[splits.test_index])
    with torch.no_grad():
        predictions = ckpt.model(torch.from_numpy(X)).numpy()
    return ckpt, predictions, dataset.y[splits.test_index]


def _numpy_r2(predictions: np.ndarray, targets: np.ndarray) -> float:
    """1 - SSE/SST per target column, averaged (scikit-learn's r2_score, uniform average), in float64."""
    p = predictions.astype(np.float64).reshape(len(predictions), -1)
    t = targets.astype(np.float64).reshape(len(targets), -1)
    return float(np.mean(1 - ((p - t) ** 2).sum(0) / ((t - t.mean(0)) ** 2).sum(0)))


def _train(args, capsys):
    code = main(["train", *args, *TRAIN])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def csv_run(tmp_path_factory):
    """One regression run on a .csv, inferred from its non-integer labels (shared: training costs ~1 s)."""
    folder = tmp_path_factory.mktemp("csv-run")
    X, y = _linear_data()
    _write_csv(folder / "lin.csv", X, y)
    out, err = io.StringIO(), io.StringIO()  # capsys is per test; this run is shared by several
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(
            ["train", "--dataset", str(folder / "lin.csv"), "--label-column", "target", "--out", str(folder / "m.pt")]
            + TRAIN
        )
    return folder, code, out.getvalue(), err.getvalue()


def test_float_labels_train_regression_with_one_note_and_a_numpy_checked_r2(csv_run):
    folder, code, out, err = csv_run
    assert code == 0, err
    note = err.strip().splitlines()
    assert len(note) == 1 and note[0].startswith("inspector: note:") and "regression" in note[0]
    assert "MLP 4-16-1 (relu)" in out and "regression of 1 target" in out
    r2_text, _, mse_text, n_text = RESULT_LINE.search(out).groups()
    ckpt, predictions, targets = _test_split_predictions(folder / "m.pt", folder / "lin.csv", "target")
    r2 = _numpy_r2(predictions, targets)
    mse = float(np.mean((predictions[:, 0].astype(np.float64) - targets) ** 2))
    assert r2 > 0.95
    assert abs(ckpt.metrics["test_r2"] - r2) < 1e-6 and abs(ckpt.metrics["test_mse"] - mse) < 1e-6 * max(1, mse)
    assert abs(float(r2_text) - r2) <= 5e-5 and abs(float(mse_text) - mse) <= 5e-4 * mse
    assert int(n_text) == len(targets) == 60  # 20% of 300
    # in the data's units: the target's mean is about 50, which only a folded-back scale predicts
    assert abs(predictions.mean() - targets.mean()) < 0.1 * targets.std()
    assert ckpt.task == "regression" and ckpt.config.output_size == 1
    assert ckpt.dataset.target_names == ("target",) and ckpt.dataset.class_names == ()
    assert ckpt.history.metric_name == "R²" and ckpt.history.val_accuracy.max() <= 1.0


def test_checkpoint_round_trips_through_pt_and_safetensors_as_regression(csv_run, tmp_path):
    folder = csv_run[0]
    ckpt = load(folder / "m.pt")
    X = torch.randn(7, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = ckpt.model(X)
    for name in ("again.pt", "again.safetensors"):
        save_checkpoint(ckpt, tmp_path / name)
        back = load(tmp_path / name)
        assert back.task == "regression" and back.dataset.target_names == ("target",)
        assert back.metrics == ckpt.metrics and back.history.metric_name == "R²"
        with torch.no_grad():
            assert torch.equal(back.model(X), expected)


def test_format_version_is_2_for_regression_and_stays_1_for_classification(csv_run, tmp_path):
    raw = torch.load(csv_run[0] / "m.pt", weights_only=True)
    assert raw["format_version"] == 2 and raw["task"] == "regression"
    assert (
        main(["train", "--dataset", "synthetic", "--hidden", "4", "--epochs", "1", "--out", str(tmp_path / "c.pt")])
        == 0
    )
    raw = torch.load(tmp_path / "c.pt", weights_only=True)
    assert raw["format_version"] == 1 and raw["task"] == "classification"
    assert "metric_name" not in raw["history"] and "target_names" not in raw["dataset"]


def test_a_checkpoint_without_a_task_is_a_classifier_and_a_bad_task_is_one_line(tmp_path):
    assert (
        main(["train", "--dataset", "synthetic", "--hidden", "4", "--epochs", "1", "--out", str(tmp_path / "c.pt")])
        == 0
    )
    raw = torch.load(tmp_path / "c.pt", weights_only=True)
    del raw["task"]  # as written before regression existed
    torch.save(raw, tmp_path / "old.pt")
    assert load(tmp_path / "old.pt").task == "classification"
    raw["task"] = "banana"
    torch.save(raw, tmp_path / "bad.pt")
    with pytest.raises(InspectorError, match=r"bad\.pt: task must be one of classification, regression"):
        load(tmp_path / "bad.pt")


def test_analyze_on_a_regression_checkpoint_reports_r2_equal_to_numpy(csv_run, tmp_path, capsys):
    folder = csv_run[0]
    args = ["analyze", str(folder / "m.pt"), "--data", str(folder / "lin.csv"), "--label-column", "target"]
    assert main([*args, "--sections", "pruning", "--out", str(tmp_path / "a")]) == 0
    analysis = Analysis.load(tmp_path / "a")
    assert analysis.model.task == "regression"
    assert analysis.data.metric_name == "R²" and analysis.data.loss_name == "MSE"
    assert analysis.pruning.metric_name == "R²"
    # a data file is analysed whole: every row, standardised as in training
    ckpt = load(folder / "m.pt")
    dataset = load_dataset(str(folder / "lin.csv"), label_column="target", task="regression")
    with torch.no_grad():
        predictions = ckpt.model(torch.from_numpy(ckpt.standardizer.transform(dataset.X))).numpy()
    assert analysis.data.n_samples == 300
    assert abs(analysis.data.metric - _numpy_r2(predictions, dataset.y)) < 1e-6
    assert "R²" in capsys.readouterr().out


def test_synthetic_regression_is_analysed_on_its_test_split_without_data(tmp_path, capsys):
    out = tmp_path / "s.safetensors"
    assert (
        main(
            ["train", "--dataset", "synthetic-regression", "--hidden", "16", "--epochs", "15", "-q", "--out", str(out)]
        )
        == 0
    )
    assert "note" not in capsys.readouterr().err  # a built-in dataset's task is no inference
    ckpt = load(out)
    assert ckpt.task == "regression" and ckpt.metrics["test_r2"] > 0.95
    assert main(["analyze", str(out), "--sections", "parameters", "--out", str(tmp_path / "a")]) == 0
    analysis = Analysis.load(tmp_path / "a")
    assert analysis.data.split == "test" and analysis.data.n_samples == 400
    assert abs(analysis.data.metric - ckpt.metrics["test_r2"]) < 1e-6


def test_npz_with_several_targets_trains_one_output_per_target(tmp_path, capsys):
    X, _ = _linear_data(400)
    y = np.stack([3 * X[:, 1] - 2 * X[:, 2], 100 * X[:, 0] - 7], axis=1)  # two targets, very different scales
    np.savez(tmp_path / "multi.npz", X=X, y=y)
    code, out, err = _train(["--dataset", str(tmp_path / "multi.npz"), "--out", str(tmp_path / "m.pt")], capsys)
    assert code == 0, err
    r2_text, n_targets, _, _ = RESULT_LINE.search(out).groups()
    assert n_targets == "2" and "MLP 4-16-2" in out
    ckpt, predictions, targets = _test_split_predictions(tmp_path / "m.pt", tmp_path / "multi.npz")
    assert predictions.shape == targets.shape == (80, 2)
    assert ckpt.dataset.target_names == ("y0", "y1")
    r2 = _numpy_r2(predictions, targets)
    assert r2 > 0.95 and abs(ckpt.metrics["test_r2"] - r2) < 1e-6 and abs(float(r2_text) - r2) <= 5e-5
    for k in range(2):  # each target on its own scale
        assert _numpy_r2(predictions[:, k], targets[:, k]) > 0.9
    assert main(["info", str(tmp_path / "m.pt")]) == 0
    assert f"test R² {ckpt.metrics['test_r2']:.4f}, MSE" in capsys.readouterr().out
    # the analysis explains the mean of the two outputs and scores both targets
    analysis_args = ["--data", str(tmp_path / "multi.npz"), "--sections", "parameters", "--out", str(tmp_path / "a")]
    assert main(["analyze", str(tmp_path / "m.pt"), *analysis_args]) == 0
    saved = Analysis.load(tmp_path / "a")
    assert saved.model.target == "the mean of the model's 2 outputs"
    assert saved.data.metric_name == "R²" and saved.data.metric > 0.9


def test_npz_single_target_needs_task_regression_when_its_floats_are_whole(tmp_path, capsys):
    X, y = _linear_data(300)
    np.savez(tmp_path / "whole.npz", X=X, y=np.round(10 * y))  # whole-number floats: classes unless told
    code, _, err = _train(["--dataset", str(tmp_path / "whole.npz"), "--out", str(tmp_path / "c.pt")], capsys)
    assert code == 1 and "pass --task regression" in err and err.count("\n") == 1
    code, out, err = _train(
        ["--dataset", str(tmp_path / "whole.npz"), "--task", "regression", "--out", str(tmp_path / "r.pt")], capsys
    )
    assert code == 0 and err == ""  # asked for: no note
    ckpt, predictions, targets = _test_split_predictions(tmp_path / "r.pt", tmp_path / "whole.npz")
    assert ckpt.dataset.target_names == ("y",)
    assert abs(ckpt.metrics["test_r2"] - _numpy_r2(predictions, targets)) < 1e-6


def test_whole_number_float_labels_stay_classes(tmp_path, capsys):
    X, y = _linear_data(200)
    np.savez(tmp_path / "c.npz", X=X, y=(y > 50).astype(np.float64))  # 0.0 / 1.0
    args = ["train", "--dataset", str(tmp_path / "c.npz"), "--hidden", "4", "--epochs", "2", "-q"]
    assert main([*args, "--out", str(tmp_path / "c.pt")]) == 0
    out, err = capsys.readouterr()
    assert err == "" and "test accuracy" in out
    ckpt = load(tmp_path / "c.pt")
    assert ckpt.task == "classification" and ckpt.dataset.class_names == ("0", "1")


@pytest.mark.parametrize(
    "rows,args,message",
    [
        (None, ["--task", "classification"], r"labels are continuous \(e\.g\. .* at line 2\).*--task regression"),
        ("nan", [], r"the target at line 5 is nan; regression targets must be finite"),
        ("", [], r"the target at line 5 is blank"),
        ("cat", ["--task", "regression"], r"the target at line 5 is 'cat', not a number"),
        ("1e39", [], r"the target at line 5 is 1e\+39; regression targets must be finite"),
    ],
)
def test_bad_targets_are_one_line_and_write_nothing(tmp_path, capsys, rows, args, message):
    X, y = _linear_data(50)
    _write_csv(tmp_path / "d.csv", X, y)
    if rows is not None:  # replace the target on line 5 (the 4th data row)
        lines = (tmp_path / "d.csv").read_text().splitlines()
        lines[4] = lines[4].rpartition(",")[0] + "," + rows
        (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    code, out, err = _train(
        ["--dataset", str(tmp_path / "d.csv"), "--label-column", "target", *args, "--out", str(tmp_path / "m.pt")],
        capsys,
    )
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("inspector: error: ") and "Traceback" not in err
    assert re.search(message, err), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.csv"]


def test_nan_in_an_npz_target_is_one_line(tmp_path):
    X, y = _linear_data(20)
    y[3] = np.nan
    np.savez(tmp_path / "d.npz", X=X, y=y)
    with pytest.raises(InspectorError, match=r"the target at y\[3\] is nan; regression targets must be finite"):
        load_dataset(str(tmp_path / "d.npz"), task="auto")
    y2 = np.stack([y, y], axis=1)
    y2[3] = 1.0
    y2[5, 1] = np.inf
    np.savez(tmp_path / "d2.npz", X=X, y=y2)
    with pytest.raises(InspectorError, match=r"the target at y\[5\] \(target 1\) is inf"):
        load_dataset(str(tmp_path / "d2.npz"), task="regression")


def test_a_built_in_dataset_refuses_the_other_task(tmp_path, capsys):
    code, _, err = _train(
        ["--dataset", "synthetic-regression", "--task", "classification", "--out", str(tmp_path / "m.pt")], capsys
    )
    assert code == 1 and "'synthetic-regression' is a regression dataset" in err and err.count("\n") == 1
    code, _, err = _train(["--dataset", "digits", "--task", "regression", "--out", str(tmp_path / "m.pt")], capsys)
    assert code == 1 and "'digits' is a classification dataset" in err
    assert not (tmp_path / "m.pt").exists()


def test_synthetic_regression_is_3_x2_minus_2_x5_plus_small_noise():
    ds = make_synthetic_regression()
    residual = ds.y.astype(np.float64) - (3 * ds.X[:, 2].astype(np.float64) - 2 * ds.X[:, 5])
    assert ds.X.shape == (2000, 8) and ds.task == "regression" and ds.target_names == ("y",)
    assert abs(residual.std() - 0.1) < 0.01 and abs(residual.mean()) < 0.01
    assert ds.planted.informative_features == (2, 5)


def test_fold_target_scale_makes_the_layer_predict_scale_times_output_plus_mean():
    layer = torch.nn.Linear(3, 2)
    mean, scale = np.array([50.0, -7.0], np.float32), np.array([10.0, 0.5], np.float32)
    folded = fold_target_scale({"fc.weight": layer.weight.data, "fc.bias": layer.bias.data}, "fc", mean, scale)
    h = torch.randn(5, 3)
    with torch.no_grad():
        expected = layer(h) * torch.from_numpy(scale) + torch.from_numpy(mean)
    assert torch.allclose(h @ folded["fc.weight"].T + folded["fc.bias"], expected, atol=1e-5)


def test_regression_scores_match_the_closed_form():
    targets = np.array([1.0, 2.0, 3.0, 4.0])  # mean 2.5, SST 5
    predictions = np.array([1.0, 2.0, 3.0, 5.0])  # SSE 1
    mse, r2 = regression_scores(predictions, targets)
    assert mse == pytest.approx(0.25) and r2 == pytest.approx(1 - 1 / 5)
    assert np.isnan(regression_scores(predictions, np.ones(4))[1])  # constant target: R² undefined


def test_snapshots_are_in_the_targets_units(tmp_path, capsys):
    X, y = _linear_data(200)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    out = tmp_path / "m.pt"
    args = ["train", "--dataset", str(tmp_path / "d.npz"), "--hidden", "8", "--epochs", "6", "--patience", "0"]
    assert main([*args, "--snapshot-every", "3", "-q", "--out", str(out)]) == 0
    ckpt = load(out)
    final = ckpt.snapshot_model(6)  # no early stopping: the last snapshot is the saved model
    for name, tensor in ckpt.model.state_dict().items():
        assert torch.equal(final.state_dict()[name], tensor), name
