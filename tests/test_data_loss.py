"""No user file is ever lost: --force, read-only folders, unreadable inputs, kills mid-write.

Every destructive command runs against a folder that also holds someone else's files (a
checkpoint, notes, a subfolder); afterwards they must all be there, byte for byte.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import inspector.render.export as export
from inspector.analysis import Analysis
from inspector.cli import main
from inspector.fileio import write_text_atomic
from inspector.results import JSON_NAME, load_result, result, results_equal, save_result, to_json_and_arrays

REPO = Path(__file__).resolve().parents[1]


@result
class _Snapshot:
    values: np.ndarray
    label: str


def _snap(k: int) -> _Snapshot:
    return _Snapshot(np.full((50, 40), float(k)), f"result {k}")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    assert main(["train", "--dataset", "synthetic", "--hidden", "8", "--epochs", "2", "--out", str(path), "-q"]) == 0
    return path


def _project(folder: Path, checkpoint: Path) -> Path:
    """A folder of someone else's files: their checkpoint, notes, a hidden file and a subfolder."""
    folder.mkdir(exist_ok=True)
    shutil.copy(checkpoint, folder / "model.pt")
    (folder / "notes.txt").write_text("do not lose me")
    (folder / ".env").write_text("SECRET=1")
    (folder / "cover.png").write_bytes(b"\x89PNG\r\n\x1a\nmy own picture")
    (folder / "01-holiday.png").write_bytes(b"\x89PNG\r\n\x1a\nnamed like a figure, but no report section")
    (folder / "sub").mkdir()
    (folder / "sub" / "data.bin").write_bytes(os.urandom(64))
    return folder


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _assert_kept(before: dict[str, bytes], folder: Path) -> dict[str, bytes]:
    """Every file of ``before`` is still in ``folder`` unchanged; returns the files added."""
    after = _files(folder)
    assert {k: after.get(k) for k in before} == before
    return {k: v for k, v in after.items() if k not in before}


def _ours(added: dict[str, bytes]) -> list[str]:
    """The added names, with the arrays file's token normalised."""
    return sorted("arrays-*.npz" if k.startswith("arrays-") and k.endswith(".npz") else k for k in added)


# --------------------------------------------------------------------------- issue 8, item 9: --force


def test_analyze_into_the_checkpoints_own_folder_adds_two_files_and_force_replaces_only_them(
    checkpoint, tmp_path, capsys
):
    proj = _project(tmp_path / "proj", checkpoint)
    before = _files(proj)
    argv = ["analyze", str(proj / "model.pt"), "--out", str(proj), "--sections", "parameters,weights"]
    assert main(argv) == 0  # an existing folder without an analysis needs no --force
    first = Analysis.load(proj)
    assert main(argv) == 1
    assert f"{proj / JSON_NAME} already exists; pass --force" in capsys.readouterr().err
    assert main([*argv, "--force"]) == 0
    added = _assert_kept(before, proj)
    assert _ours(added) == ["analysis.json", "arrays-*.npz"]  # the replaced arrays file is gone
    assert results_equal(Analysis.load(proj).parameters, first.parameters)
    assert (proj / "sub").is_dir()


@pytest.mark.parametrize("out", [".", "PWD"])
def test_analyze_force_into_the_working_directory(checkpoint, tmp_path, monkeypatch, out):
    proj = _project(tmp_path / "proj", checkpoint)
    monkeypatch.chdir(proj)
    out = str(proj) if out == "PWD" else out
    before = _files(proj)
    argv = ["analyze", "model.pt", "--out", out, "--sections", "parameters", "--force"]
    assert main(argv) == 0 and main(argv) == 0
    assert _ours(_assert_kept(before, proj)) == ["analysis.json", "arrays-*.npz"]
    assert os.listdir(tmp_path) == ["proj"]  # no `..old.*` or other hidden folder beside it


def _fake_kaleido(monkeypatch, calls: list[int]) -> None:
    """Stand-in for kaleido and the browser: a PNG signature plus the figure's number and run."""
    monkeypatch.setattr(export, "find_browser", lambda: "chromium")

    def write_images(figs, paths, format, width, scale):
        calls.append(len(figs))
        for i, path in enumerate(paths):
            Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + f"figure {i} run {len(calls)}".encode())

    monkeypatch.setattr(export.pio, "write_images", write_images)


def test_png_report_force_replaces_only_its_own_figures(checkpoint, tmp_path, monkeypatch, capsys):
    calls: list[int] = []
    _fake_kaleido(monkeypatch, calls)
    analysis_dir = tmp_path / "an"
    assert main(["analyze", str(checkpoint), "--out", str(analysis_dir), "--sections", "parameters,weights"]) == 0
    proj = _project(tmp_path / "proj", checkpoint)
    stale = proj / "99-weights.png"  # a figure of an earlier, longer report
    argv = ["report", str(analysis_dir), "--format", "png", "--out", str(proj)]
    assert main(argv) == 0  # the folder holds no figures yet: no --force needed
    before = _files(proj)
    stale.write_bytes(b"\x89PNG\r\n\x1a\nold figure")
    assert main(argv) == 1
    assert "already holds report figures" in capsys.readouterr().err
    assert main([*argv, "--force"]) == 0
    assert not stale.exists()
    figures = {k for k in before if export._FIGURE_NAME.match(k)}
    assert len(figures) == calls[0] == calls[-1] and "01-holiday.png" not in figures
    added = _assert_kept({k: v for k, v in before.items() if k not in figures}, proj)
    assert sorted(added) == sorted(figures) and all(v.endswith(b"run 2") for v in added.values())


def test_png_report_refuses_a_same_named_file_that_is_not_its_figure(checkpoint, tmp_path, monkeypatch, capsys):
    _fake_kaleido(monkeypatch, [])
    analysis_dir = tmp_path / "an"
    assert main(["analyze", str(checkpoint), "--out", str(analysis_dir), "--sections", "parameters"]) == 0
    (tmp_path / "figs").mkdir()
    (tmp_path / "figs" / "01-summary.png").write_text("my notes, not an image")
    assert main(["report", str(analysis_dir), "--format", "png", "--out", str(tmp_path / "figs"), "--force"]) == 1
    assert "01-summary.png is not a figure dense-inspector wrote" in capsys.readouterr().err
    assert (tmp_path / "figs" / "01-summary.png").read_text() == "my notes, not an image"


@pytest.mark.parametrize("command", ["prune", "report-json", "report-html", "analyze-folder", "report-snapshot"])
def test_force_never_overwrites_the_commands_own_input(checkpoint, tmp_path, capsys, command):
    proj = _project(tmp_path / "proj", checkpoint)
    assert main(["analyze", str(proj / "model.pt"), "--out", str(proj), "--sections", "parameters"]) == 0
    argv = {
        "prune": ["prune", str(proj / "model.pt"), "--sparsity", "0.5", "--out", str(proj / "model.pt")],
        "report-json": ["report", str(proj), "--out", str(proj / JSON_NAME), "--format", "json"],
        "report-html": ["report", str(proj / "model.pt"), "--out", str(proj / "model.pt"), "--format", "html"],
        "analyze-folder": ["analyze", str(proj), "--out", str(proj)],
        "report-snapshot": ["report", f"{proj / 'model.pt'}@2", "--out", str(proj / "model.pt"), "--format", "md"],
    }[command]
    before = _files(proj)
    assert main([*argv, "--force"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is an input of this command; write the output somewhere else" in err
    assert _files(proj) == before


def test_force_does_not_replace_an_analysis_json_it_did_not_write(tmp_path):
    (tmp_path / JSON_NAME).write_text('{"my": "own config"}')
    with pytest.raises(Exception, match="was not written by dense-inspector; move it away"):
        save_result(_snap(1), tmp_path, force=True)
    assert (tmp_path / JSON_NAME).read_text() == '{"my": "own config"}'
    assert os.listdir(tmp_path) == [JSON_NAME]


def test_folder_written_the_old_way_loads_and_is_replaced_without_leftovers(tmp_path):
    doc, arrays = to_json_and_arrays(_snap(1))  # the 0.x layout: a fixed arrays.npz, not named in the json
    (tmp_path / JSON_NAME).write_text(json.dumps(doc))
    np.savez_compressed(tmp_path / "arrays.npz", **arrays)
    (tmp_path / "notes.txt").write_text("mine")
    assert results_equal(load_result(tmp_path), _snap(1))
    save_result(_snap(2), tmp_path, force=True)
    assert results_equal(load_result(tmp_path), _snap(2))
    assert _ours({p: b"" for p in os.listdir(tmp_path)}) == ["analysis.json", "arrays-*.npz", "notes.txt"]


# --------------------------------------------------------------------------- items 9 and 11: kills mid-write


def _kill_at_replace(write: Callable[[], None], number: int, *, after: bool = False) -> None:
    """Run ``write`` in a forked child; SIGKILL it just before (or after) its ``number``-th os.replace."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child is killed
        try:
            os.close(read_end)
            real_replace, calls = os.replace, [0]

            def pausing_replace(src, dst, **kwargs):
                calls[0] += 1
                if calls[0] == number and not after:
                    os.write(write_end, b"p")
                    time.sleep(120)
                real_replace(src, dst, **kwargs)
                if calls[0] == number and after:
                    os.write(write_end, b"p")
                    time.sleep(120)

            os.replace = pausing_replace
            write()
        finally:
            os._exit(0)
    os.close(write_end)
    paused = os.read(read_end, 1)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    os.close(read_end)
    assert paused == b"p", "the write finished or failed before the planned kill"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.parametrize(
    "number,after,survivor",
    [
        (1, False, 1),  # arrays written to a temporary, not yet renamed
        (2, False, 1),  # arrays renamed, analysis.json not yet committed
        (2, True, 2),  # committed; the replaced arrays file not yet deleted
    ],
)
def test_kill_during_an_analysis_replace_leaves_old_or_new_and_the_next_run_cleans_up(
    checkpoint, tmp_path, number, after, survivor
):
    proj = tmp_path / "proj"
    save_result(_snap(1), proj)
    _project(proj, checkpoint)  # then the user keeps their own files beside the analysis
    before = _files(proj)
    _kill_at_replace(lambda: save_result(_snap(2), proj, force=True), number, after=after)
    assert results_equal(load_result(proj), _snap(survivor))
    leftovers = set(_files(proj)) - set(before)
    assert leftovers  # the kill did leave something behind to clean up
    user = {k: v for k, v in before.items() if not k.startswith(("analysis.json", "arrays-"))}
    assert {k: _files(proj)[k] for k in user} == user  # never moved away, not even for a moment
    save_result(_snap(3), proj, force=True)
    assert results_equal(load_result(proj), _snap(3))
    assert _ours(_assert_kept(user, proj)) == ["analysis.json", "arrays-*.npz"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_kill_during_a_report_write_keeps_the_old_report_and_the_next_run_cleans_up(tmp_path):
    target = tmp_path / "r.md"
    write_text_atomic(target, "old report")
    _kill_at_replace(lambda: write_text_atomic(target, "new report", force=True), 1)
    assert target.read_text() == "old report"
    assert len(os.listdir(tmp_path)) == 2  # the report and the killed run's temporary
    write_text_atomic(target, "next report", force=True)
    assert os.listdir(tmp_path) == ["r.md"] and target.read_text() == "next report"


# --------------------------------------------------------------------------- item 10: permissions


def test_output_under_a_file_fails_before_any_work_in_one_line(checkpoint, tmp_path, capsys):
    # ENOTDIR is refused by the kernel even for root, so this runs everywhere.
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for argv in (
        ["train", "--dataset", "synthetic", "--epochs", "1", "--out", str(blocker / "t.pt"), "-q"],
        ["analyze", str(checkpoint), "--out", str(blocker / "an")],
        ["analyze", str(checkpoint), "--out", str(blocker)],
        ["report", str(checkpoint), "--out", str(blocker / "r.html")],
        ["report", str(checkpoint), "--format", "png", "--out", str(blocker / "figs")],
        ["prune", str(checkpoint), "--sparsity", "0.5", "--out", str(blocker / "p.pt")],
    ):
        assert main(argv) == 1, argv
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1 and str(blocker) in err, (argv, err)


_SCRIPT = """
import contextlib, io, json, sys, traceback
from inspector.cli import main
results = {}
for name, argv in json.loads(sys.argv[1]).items():
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(argv)
    except BaseException:
        status = traceback.format_exc()
    results[name] = [status, out.getvalue(), err.getvalue()]
print(json.dumps(results))
"""


def _unprivileged_prefix() -> list[str] | None:
    if os.geteuid() != 0:
        return []  # chmod already binds this user
    setpriv = shutil.which("setpriv")
    try:
        import pwd

        nobody = pwd.getpwnam("nobody")
    except (ImportError, KeyError):
        return None
    if setpriv is None:
        return None
    return [setpriv, f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]


def test_permission_errors_are_one_line_naming_the_path_and_come_before_any_work(checkpoint):
    prefix = _unprivileged_prefix()
    if prefix is None:
        pytest.skip("running as root without setpriv and a `nobody` user: chmod would not bind")
    base = Path(tempfile.mkdtemp(prefix="inspector-perm-"))
    try:
        base.chmod(0o755)
        shutil.copy(checkpoint, base / "model.pt")
        (base / "model.pt").chmod(0o644)
        save_result(_snap(1), base / "ro")
        assert main(["analyze", str(checkpoint), "--out", str(base / "an"), "--sections", "parameters"]) == 0
        shutil.copytree(base / "an", base / "secret-an")
        shutil.copy(checkpoint, base / "secret.pt")
        (base / "secret.csv").write_text("a,label\n1,0\n2,1\n")
        (base / "w").mkdir()
        for path in base.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        (base / "w").chmod(0o777)
        (base / "ro").chmod(0o555)
        for path in (base / "secret.pt", base / "secret.csv", base / "secret-an"):
            path.chmod(0)
        cases = {
            "train": (["train", "--dataset", "synthetic", "--epochs", "1", "--out", "ro/t.pt", "-q"], "ro"),
            "analyze-new": (["analyze", "model.pt", "--out", "ro/new", "--sections", "parameters"], "ro"),
            "analyze-existing": (["analyze", "model.pt", "--out", "ro", "--force", "--sections", "parameters"], "ro"),
            "report-md": (["report", "an", "--out", "ro/r.md"], "ro"),
            "report-png": (["report", "an", "--format", "png", "--out", "ro/figs"], "ro"),
            "prune": (["prune", "model.pt", "--sparsity", "0.5", "--out", "ro/p.pt"], "ro"),
            "info-input": (["info", "secret.pt"], "secret.pt"),
            "analyze-input": (["analyze", "secret.pt", "--out", "w/a1"], "secret.pt"),
            "report-input": (["report", "secret-an", "--out", "w/r.md"], "secret-an"),
            "data-input": (
                ["analyze", "model.pt", "--data", "secret.csv", "--label-column", "label", "--out", "w/a2"],
                "secret.csv",
            ),
            "train-input": (
                ["train", "--dataset", "secret.csv", "--label-column", "label", "--out", "w/t.pt", "-q"],
                "secret.csv",
            ),
        }
        env = {**os.environ, "HOME": str(base / "w"), "PYTHONPATH": str(REPO)}
        proc = subprocess.run(
            [*prefix, sys.executable, "-c", _SCRIPT, json.dumps({k: v[0] for k, v in cases.items()})],
            cwd=base,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        results = json.loads(proc.stdout.strip().splitlines()[-1])
        for name, (_argv, culprit) in cases.items():
            status, out, err = results[name]
            assert status == 1, (name, status, err)
            assert err.startswith("inspector: error: ") and err.count("\n") == 1, (name, err)
            assert culprit in err and "Traceback" not in err, (name, err)
            assert "trained" not in out and "wrote" not in out, (name, out)
        assert results_equal(load_result(base / "ro"), _snap(1))
        assert not any((base / "w" / name).exists() for name in ("a1", "a2", "r.md", "t.pt"))
    finally:
        shutil.rmtree(base, ignore_errors=True)  # as root or as the owner: modes do not stop it


def test_a_users_files_named_like_arrays_files_survive_a_first_save_and_a_force(tmp_path):
    from tests.test_fileio import _dead_pid

    proj = tmp_path / "proj"
    proj.mkdir()
    pid = _dead_pid()
    theirs = {
        f"arrays-{pid}-deadbeef.npz": b"my backup, not an npz",
        f"arrays-{pid}-abc123.npz": _npz_bytes(),  # even a real npz of theirs: not one this tool wrote
    }
    for name, content in theirs.items():
        (proj / name).write_bytes(content)
    save_result(_snap(1), proj)
    save_result(_snap(2), proj, force=True)
    assert {name: (proj / name).read_bytes() for name in theirs} == theirs
    assert results_equal(load_result(proj), _snap(2))


def _npz_bytes() -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, weights=np.arange(3.0))
    return buffer.getvalue()
