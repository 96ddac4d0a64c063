"""Defect 12: control characters in names read from files (npz and CSV feature names, class labels, layer
names of checkpoints) never reach the terminal raw: every command's output and every text format shows
them escaped (``\\x1b``), line breaks of the output itself kept."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from inspector.checks import printable_lines
from inspector.cli import main

CLEAR = "\x1b[2J"  # clears the screen
BELL = "\x07"
RED = "\x1b[31m"
RAW = ("\x1b", BELL, "\r")
ESCAPED = ("\\x1b[2Jwipe", "bell\\x07", "\\x1b[31mred")  # the npz's names as they must be shown


def _names_shown(text: str) -> bool:
    return any(name in text for name in ESCAPED)


def _clean(text: str) -> None:
    for c in RAW:
        assert c not in text, repr(text[max(0, text.find(c) - 40) : text.find(c) + 40])


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 0
    out, err = capsys.readouterr()
    _clean(out)
    _clean(err)
    return out + err


def test_printable_lines_escapes_all_but_the_line_breaks() -> None:
    assert printable_lines(f"a{CLEAR}b\nc{BELL}\r") == "a\\x1b[2Jb\nc\\x07\\r"
    assert printable_lines(printable_lines(f"{CLEAR}\n")) == "\\x1b[2J\n"  # idempotent


@pytest.fixture(scope="module")
def npz_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An .npz whose feature names hold escapes (feature 0 decides the class), and a model trained on it."""
    folder = tmp_path_factory.mktemp("npz")
    g = np.random.default_rng(0)
    X = g.normal(size=(120, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    names = np.array([f"{CLEAR}wipe", f"bell{BELL}", f"{RED}red", "plain"])
    np.savez(folder / "d.npz", X=X, y=y, feature_names=names)
    assert main(["train", "--data", str(folder / "d.npz"), "--epochs", "3", "--hidden", "8", "-q",
                 "--out", str(folder / "m.pt")]) == 0  # fmt: skip
    return folder


def test_npz_feature_names_are_escaped_by_every_command(npz_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    ckpt, data = str(npz_run / "m.pt"), str(npz_run / "d.npz")
    _run(capsys, "info", ckpt)
    _run(capsys, "info", ckpt, "--json")
    out = npz_run / "a"
    shown = _run(capsys, "analyze", ckpt, "--data", data, "--out", str(out),
                 "--sections", "parameters,activations,importance", "--methods", "saliency")  # fmt: skip
    assert _names_shown(shown)  # the findings name the most important features, escaped
    md = _run(capsys, "report", str(out), "--format", "md", "--out", "-")
    assert "31mred" in md  # Markdown drops the control characters (its own escaping), the rest stays
    _run(capsys, "report", str(out), "--out", str(npz_run / "r.md"))
    _clean((npz_run / "r.md").read_text())
    _run(capsys, "report", str(out), "--out", str(npz_run / "r.json"))
    _clean((npz_run / "r.json").read_text())  # JSON escapes control characters by its own rules (\u001b)


def test_csv_header_and_class_labels_are_escaped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    g = np.random.default_rng(1)
    rows = [f"{CLEAR}a,b{BELL},label"]
    for _ in range(60):
        a, b = g.normal(size=2)
        rows.append(f"{a:.4f},{b:.4f},{RED + 'hot' if a > 0 else 'cold'}")
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    ckpt = str(tmp_path / "m.pt")
    _run(capsys, "train", "--data", str(tmp_path / "d.csv"), "--label-column", "label", "--epochs", "2",
         "--hidden", "4", "-q", "--out", ckpt)  # fmt: skip
    shown = _run(capsys, "info", ckpt)
    _run(capsys, "analyze", ckpt, "--data", str(tmp_path / "d.csv"), "--label-column", "label",
         "--out", str(tmp_path / "a"), "--sections", "parameters,activations,importance", "--methods", "saliency")  # fmt: skip
    _run(capsys, "report", str(tmp_path / "a"), "--format", "md", "--out", "-")
    assert shown


def test_checkpoint_layer_names_are_escaped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    tensors = {
        f"{CLEAR}fc1.weight": torch.randn(6, 4, generator=g),
        f"{CLEAR}fc1.bias": torch.randn(6, generator=g),
        f"out{BELL}.weight": torch.randn(3, 6, generator=g),
    }
    for suffix in ("safetensors", "pt"):
        path = tmp_path / f"m.{suffix}"
        if suffix == "pt":
            torch.save(tensors, path)
        else:
            save_file(tensors, str(path))
        shown = _run(capsys, "info", str(path))
        assert "\\x1b[2Jfc1" in shown
        _run(capsys, "info", str(path), "--json")
        out = tmp_path / f"a-{suffix}"
        _run(capsys, "analyze", str(path), "--out", str(out))
        _run(capsys, "report", str(out), "--format", "md", "--out", "-")


def test_the_cli_stream_escapes_every_way_of_writing(capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    from inspector.cli import escaped_stdout, unescaped_stdout

    with escaped_stdout():
        print(f"a{CLEAR}")
        sys.stdout.write(f"b{BELL}\n")
        sys.stdout.writelines([f"c{RED}\n", "d\n"])
        unescaped_stdout().write("<html>\n")
    assert capsys.readouterr().out == "a\\x1b[2J\nb\\x07\nc\\x1b[31m\nd\n<html>\n"


def test_the_cli_stream_is_a_text_stream_to_click(capsys: pytest.CaptureFixture[str]) -> None:
    """Flask's start-up lines go through click.echo, which probes ``write(b"")`` to find a binary stream:
    the escaped stream must refuse bytes as a text stream does, or click writes their repr."""
    import click

    from inspector.cli import escaped_stdout

    with escaped_stdout():
        click.echo(" * Serving Flask app 'dashboards.app'")
        with pytest.raises(TypeError):
            sys.stdout.write(b"")  # type: ignore[arg-type]
    assert capsys.readouterr().out == " * Serving Flask app 'dashboards.app'\n"
