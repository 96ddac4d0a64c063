"""Defect 17: an arrays file stays while any JSON in the analysis folder names it (a copy of analysis.json the
user kept still opens after ``analyze --force``); one that nothing names any more still goes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from inspector.results import ARRAYS_NAME, MARKER, load_result, result, results_equal, save_result


@result
class _Small:
    values: np.ndarray
    score: float


def _copy_opens(folder: Path, copy: str, where: Path, want: _Small) -> None:
    """The copy ``folder/copy`` with the arrays file it names, put in a folder of its own, loads as ``want``."""
    where.mkdir()
    name = json.loads((folder / copy).read_text())["arrays"]
    shutil.copy(folder / copy, where / "analysis.json")
    shutil.copy(folder / name, where / name)
    assert results_equal(load_result(where), want)


def test_force_keeps_the_arrays_a_copy_of_analysis_json_names(tmp_path: Path) -> None:
    out = tmp_path / "D"
    first, second, third = _Small(np.arange(3.0), 1.0), _Small(np.arange(4.0), 2.0), _Small(np.arange(5.0), 3.0)
    save_result(first, out)
    shutil.copy(out / "analysis.json", out / "analysis-v1.json")  # cp D/analysis.json D/analysis-v1.json
    v1_arrays = json.loads((out / "analysis-v1.json").read_text())["arrays"]
    save_result(second, out, force=True)
    assert (out / v1_arrays).is_file()  # before the fix: deleted, and the copy no longer opened
    _copy_opens(out, "analysis-v1.json", tmp_path / "v1", first)
    assert results_equal(load_result(out), second)
    # once no JSON names them, the replaced arrays go (the folder does not grow with every --force)
    second_arrays = json.loads((out / "analysis.json").read_text())["arrays"]
    save_result(third, out, force=True)
    assert not (out / second_arrays).exists() and (out / v1_arrays).is_file()
    (out / "analysis-v1.json").unlink()
    save_result(first, out, force=True)
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".npz") == [
        json.loads((out / "analysis.json").read_text())["arrays"]
    ]


def test_a_copy_of_an_older_analysis_keeps_arrays_npz(tmp_path: Path) -> None:
    # folders of versions before analysis.json named its arrays hold arrays.npz, named by leaving the key out
    out = tmp_path / "D"
    save_result(_Small(np.arange(3.0), 1.0), out)
    doc = json.loads((out / "analysis.json").read_text())
    (out / doc.pop("arrays")).rename(out / ARRAYS_NAME)
    (out / "analysis.json").write_text(json.dumps(doc))
    want = load_result(out)
    shutil.copy(out / "analysis.json", out / "analysis-old.json")
    save_result(_Small(np.arange(4.0), 2.0), out, force=True)
    assert (out / ARRAYS_NAME).is_file()
    with np.load(out / ARRAYS_NAME) as npz:
        assert MARKER in npz.files
    (tmp_path / "old").mkdir()
    shutil.copy(out / "analysis-old.json", tmp_path / "old" / "analysis.json")
    shutil.copy(out / ARRAYS_NAME, tmp_path / "old" / ARRAYS_NAME)
    assert results_equal(load_result(tmp_path / "old"), want)


def test_the_cli_repro_of_defect_17(tmp_path: Path) -> None:
    # inspector analyze m.pt --out D; cp D/analysis.json D/analysis-v1.json; inspector analyze m.pt --out D --force
    import torch

    from inspector.analysis.result import Analysis
    from inspector.cli import main
    from inspector.models import MLPConfig, build_mlp

    ckpt = tmp_path / "m.pt"
    torch.save(build_mlp(MLPConfig(input_size=3, hidden_sizes=(2,), output_size=2)).state_dict(), ckpt)
    out = tmp_path / "D"
    args = ["analyze", str(ckpt), "--out", str(out), "--sections", "parameters"]
    assert main(args) == 0
    shutil.copy(out / "analysis.json", out / "analysis-v1.json")
    assert main([*args, "--force"]) == 0
    (tmp_path / "v1").mkdir()
    name = json.loads((out / "analysis-v1.json").read_text())["arrays"]
    shutil.copy(out / "analysis-v1.json", tmp_path / "v1" / "analysis.json")
    shutil.copy(out / name, tmp_path / "v1" / name)
    assert Analysis.load(tmp_path / "v1").parameters is not None
