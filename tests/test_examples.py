"""Every example runs, at a small size, and says what it should."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from inspector.analysis import Analysis

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(name: str, *args: str, cwd: Path) -> str:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), "--small", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_quickstart(tmp_path):
    out = _run("quickstart.py", "--out", str(tmp_path / "q"), cwd=tmp_path)
    assert "test accuracy" in out and "findings:" in out
    for name in ("digits-mlp.pt", "analysis/analysis.json", "report.html", "report.md"):
        assert (tmp_path / "q" / name).exists(), name


def test_own_model_finds_the_planted_features(tmp_path):
    out = _run("own_model.py", cwd=tmp_path)
    lines = [line for line in out.splitlines() if "top two:" in line]
    assert len(lines) == 7 and all(line.endswith("x2, x5") or line.endswith("x5, x2") for line in lines)
    assert "head         2 x (16 + 1) = 34 parameters" in out


def test_foreign_state_dict(tmp_path):
    out = _run("foreign_state_dict.py", "--out", str(tmp_path / "f"), cwd=tmp_path)
    assert "rebuilt: (64, 48, 10), activation tanh" in out
    assert (tmp_path / "f" / "their_model.html").exists()


def test_overfitting_study(tmp_path):
    out = _run("overfitting_study.py", "--out", str(tmp_path / "o"), cwd=tmp_path)
    for setting in ("no regularisation", "L2 weight decay", "dropout 0.3", "early stopping"):
        assert setting in out
    assert "Validation loss" in (tmp_path / "o" / "overfitting.html").read_text()


@pytest.mark.slow
def test_pruning_study(tmp_path):
    out = _run("pruning_study.py", "--out", str(tmp_path / "p"), cwd=tmp_path)
    assert "sparsest global level within one point" in out
    assert (tmp_path / "p" / "pruned.pt").exists() and (tmp_path / "p" / "before-after.md").exists()


def _example_module(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` to reuse its data generator (not its training: that runs in the subprocess)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cnn_head_counts_parameters_and_gives_blank_pixels_zero(tmp_path):
    out = _run("cnn_head.py", "--out", str(tmp_path / "c"), cwd=tmp_path)
    dense = {
        m[1]: tuple(map(int, m.groups()[1:])) for m in re.finditer(r"dense (\S+) +(\d+) x \((\d+) \+ 1\) = (\d+)", out)
    }
    conv = {
        m[1]: tuple(map(int, m.groups()[1:]))
        for m in re.finditer(r"conv  (\S+) +(\d+) x \((\d+) x (\d+) \+ 1\) = (\d+)", out)
    }
    # conv1 1->8 and conv2 8->16, 3x3 kernels: out x (in x 9 + 1); then 2x2 pooling leaves 16 x 4 x 4 = 256 inputs
    assert conv == {"features.conv1": (8, 1, 9, 80), "features.conv2": (16, 8, 9, 1168)}
    assert dense == {"head.fc1": (32, 256, 32 * 257), "head.out": (10, 32, 10 * 33)}
    assert "conv layers 1248 (13%), dense layers 8554 (87%)" in out
    analysis = Analysis.load(tmp_path / "c" / "analysis")
    [census] = [c for c in analysis.activations if c.layer == "head.fc1"]
    dead = int(re.search(r"head\.fc1 \(relu\): (\d+) of 32 never fire", out)[1])
    assert census.dead_mask is not None and census.fire_rate is not None
    assert census.n_samples == 1797 - 1400 and "on 397 images" in out  # every held-out digit, none of the training
    assert dead == int(census.dead_mask.sum()) == int((census.fire_rate == 0).sum())
    # Integrated gradients from a black image multiplies by (pixel - 0): a pixel blank in every image gets 0.
    from sklearn.datasets import load_digits

    blank = (load_digits().images[1400:].reshape(-1, 64) == 0).all(axis=0)
    assert f"blank pixels (zero in every held-out image): {int(blank.sum())}, their importance: 0.0000" in out
    importance = analysis.importance.method("integrated_gradients").global_importance
    assert blank.sum() > 0 and np.all(importance[blank] == 0) and importance.max() > 0
    top = [8 * int(r) + int(c) for r, c in re.findall(r"row (\d), column (\d):", out)]
    assert len(top) == 5 and top == np.argsort(-importance, kind="stable")[:5].tolist()
    assert (tmp_path / "c" / "cnn-head.html").exists()


def test_transformer_mlp_counts_real_tokens_and_scores_padding_zero(tmp_path):
    pytest.importorskip("transformers")
    out = _run("transformer_mlp.py", "--out", str(tmp_path / "t"), cwd=tmp_path)
    example = _example_module("transformer_mlp")
    data = example.make_batches(64, seed=1)
    real_tokens = int(sum(int(b["attention_mask"].sum()) for b in data))
    assert f"on 64 sentences, {real_tokens} real tokens" in out
    blocks = re.findall(r"(bert\.encoder\.layer\.\d\.intermediate\.dense): (\d+) neurons over (\d+) tokens", out)
    # intermediate_size 64 per block; the census counts real tokens, never padding
    assert blocks == [(f"bert.encoder.layer.{i}.intermediate.dense", "64", str(real_tokens)) for i in (0, 1)]
    rates = re.findall(r"fire rate ([\d.]+), zero rate ([\d.]+)", out)
    assert len(rates) == 2 and all(0 < float(f) < 1 and 0 <= float(z) < 1 for f, z in rates)
    # sample 0: [CLS] and 8 words, then 3 padding positions, exactly as generated
    lines = out.split("per-token attribution (integrated gradients):\n")[1].splitlines()[: example.WIDTH]
    ids = data[0]["input_ids"][0].tolist()
    assert [line.split()[0] for line in lines] == [example.VOCABULARY[i] for i in ids]
    padding = [line for line in lines if line.endswith("(padding)")]
    assert len(padding) == 3 and all(line.split()[1] == "+0.0000" for line in padding)
    analysis = Analysis.load(tmp_path / "t" / "analysis")
    report = analysis.importance
    scores = report.method("integrated_gradients").examples[0]
    assert report.example_mask is not None and report.example_mask[0].tolist() == [i != 0 for i in ids]
    assert np.all(scores[~report.example_mask[0]] == 0)
    # the label is "contains red": in a sentence that does, the trained model's decision rests on "red"
    assert ids[int(np.argmax(np.abs(scores)))] == example.NEEDLE
    assert (tmp_path / "t" / "transformer-mlp.html").exists()


def test_transformer_mlp_without_transformers_says_so(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "transformers.py").write_text("raise ImportError('no transformers here')\n")
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "transformer_mlp.py"), "--small", "--out", str(tmp_path / "t")],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), os.environ.get("PYTHONPATH", "")])},
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.strip() == "this example needs the transformers package: pip install transformers"
    assert not (tmp_path / "t").exists()


def test_regression_partial_dependence_slopes_are_the_coefficients(tmp_path):
    out = _run("regression.py", "--out", str(tmp_path / "r"), cwd=tmp_path)
    r2 = float(re.search(r"R² ([\d.]+)", out)[1])
    assert r2 > 0.95  # the best possible is 13 / (13 + 0.1²) = 0.9992
    tops = re.findall(r"^  (\w+) +(x\d), (x\d)$", out, flags=re.M)
    assert tops and all({a, b} == {"x2", "x5"} for _, a, b in tops)
    slopes = {name: float(value) for name, value in re.findall(r"^  (x\d): slope ([-+][\d.]+)", out, flags=re.M)}
    assert sorted(slopes) == [f"x{j}" for j in range(8)]
    # y = 3 x2 - 2 x5 + noise: partial dependence on x2 is 3 x2 + const, on x5 -2 x5 + const, flat elsewhere
    assert slopes.pop("x2") == pytest.approx(3.0, abs=0.3)
    assert slopes.pop("x5") == pytest.approx(-2.0, abs=0.3)
    assert all(abs(s) < 0.15 for s in slopes.values()), slopes
    whatif = Analysis.load(tmp_path / "r" / "analysis").whatif  # analyze's own curves, on its samples
    assert whatif is not None
    assert whatif.slope("x2") == pytest.approx(3.0, abs=0.3) and whatif.slope("x5") == pytest.approx(-2.0, abs=0.3)
    assert (tmp_path / "r" / "regression.html").exists()


def test_live_training_records_the_deaths_a_learning_rate_spike_causes(tmp_path):
    out = _run("live_training.py", cwd=tmp_path)
    assert "run: runs/live_training-1 (finished, 10 records" in out
    assert re.search(r"warning at step 30: 0: \d+% of neurons died between steps 25 and 30", out)
    recorded, recounted = map(
        int, re.search(r"last record: (\d+); recount from the final weights: (\d+)", out).groups()
    )
    assert recorded == recounted >= 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]
