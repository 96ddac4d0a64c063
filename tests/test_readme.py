"""The README's transformer quickstart, run as written in an empty folder: its script makes a model
folder and a text file, the CLI analyses them, and the top-examples snippet prints what it shows."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")


def _block(starts_with: str) -> str:
    """The README's python block whose first line starts with ``starts_with``."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    found = [b for b in blocks if b.startswith(starts_with)]
    assert len(found) == 1, f"the README has {len(found)} python blocks starting {starts_with!r}"
    return found[0]


def _run(argv: list[str], cwd: Path) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_readme_model_folder_quickstart_runs_in_an_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "make_gpt2.py").write_text(_block("# make_gpt2.py"), encoding="utf-8")
    out = _run([sys.executable, "make_gpt2.py"], tmp_path)
    assert re.fullmatch(r"tiny-gpt2/ and \d+ texts in texts\.txt", out.strip().splitlines()[-1])
    assert (tmp_path / "tiny-gpt2" / "config.json").is_file() and (tmp_path / "tiny-gpt2" / "tokenizer.json").is_file()
    # the README's command; --max-samples keeps the test short (the README's output is of all 434 texts)
    out = _run(
        [sys.executable, "-m", "inspector", "analyze", "tiny-gpt2", "--text", "texts.txt", "--out", "analysis",
         "--max-samples", "48"],
        tmp_path,
    )  # fmt: skip
    # the rows the README shows: Conv1D layers read as (out, in) with m x (n + 1) parameters
    readme = README.read_text(encoding="utf-8")
    for row in ("transformer.h.0.mlp.c_fc", "transformer.h.0.mlp.c_proj", "transformer.h.0.attn.c_attn"):
        shown = next(line for line in readme.splitlines() if line.startswith(row + " "))
        printed = next(line for line in out.splitlines() if line.startswith(row + " "))
        assert printed.split() == shown.split(), (shown, printed)
    assert "perplexity" in out and "(16 steps)" in out
    (tmp_path / "top.py").write_text(_block("import inspector\n\nanalysis = inspector.Analysis.load"), encoding="utf-8")
    lines = _run([sys.executable, "top.py"], tmp_path).splitlines()
    assert re.fullmatch(r"fires on: .+ \(selectivity \d\.\d\d\)", lines[0])
    assert len(lines) == 4 and all(re.match(r"\d\.\d{3}  text \d+, token \d+:  .*\[.+\]", line) for line in lines[1:])
