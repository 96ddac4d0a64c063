"""Every example runs, at a small size, and says what it should."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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
