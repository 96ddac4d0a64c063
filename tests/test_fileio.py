from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest

from inspector import fileio
from inspector.errors import InspectorError
from inspector.fileio import (
    atomic_path,
    check_writable,
    process_alive,
    remove_stale_temporaries,
    temporary_name,
    write_text_atomic,
)


def _dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_process_alive_tells_a_running_process_from_an_exited_one():
    assert process_alive(os.getpid())
    assert not process_alive(_dead_pid())


def test_killed_runs_temporaries_are_removed_and_a_running_ones_and_user_files_kept(tmp_path):
    dead = tmp_path / f".inspector-{_dead_pid()}-0a1b2c.tmp"
    running = tmp_path / temporary_name()  # this process's: a write in progress
    # a name that only *starts* like ours (a trailing newline fools a `$`-anchored pattern) is the user's
    users = [
        tmp_path / n for n in (".notes.tmp", "x.tmp", ".inspector-notes.tmp", ".inspector-12-xyz.tmp", f"{dead.name}\n")
    ]
    for path in [dead, running, *users]:
        path.write_text("data")
    assert remove_stale_temporaries(tmp_path) == [dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in [running, *users])


def test_older_versions_temporaries_are_removed_only_for_the_same_target(tmp_path):
    mine, other = tmp_path / ".r.html.ab_cd123.tmp", tmp_path / ".other.html.ab_cd123.tmp"
    for path in (mine, other):
        path.write_text("partial")
    write_text_atomic(tmp_path / "r.html", "<p>new</p>")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.html.ab_cd123.tmp", "r.html"]


def test_atomic_write_leaves_only_the_target(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    write_text_atomic(tmp_path / "r.md", "one")
    write_text_atomic(tmp_path / "r.md", "two", force=True)
    assert (tmp_path / "r.md").read_text() == "two"
    assert sorted(os.listdir(tmp_path)) == ["keep.txt", "r.md"]


def test_output_under_a_file_is_one_line_naming_the_file(tmp_path):
    # A real kernel error (ENOTDIR) that root cannot bypass, unlike chmod.
    (tmp_path / "file").write_text("x")
    with pytest.raises(InspectorError, match=f"^{tmp_path / 'file'} is not a folder; choose another output path$"):
        check_writable(tmp_path / "file" / "out.pt")
    with pytest.raises(InspectorError, match="does not exist; create it first"):
        check_writable(tmp_path / "missing" / "out.pt")


def test_failed_rename_becomes_one_line_naming_the_target_and_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "r.md"
    target.write_text("old")

    def refuse(src, dst):
        raise PermissionError(errno.EACCES, "Permission denied", str(src))

    monkeypatch.setattr(fileio.os, "replace", refuse)
    with pytest.raises(InspectorError, match=f"^could not write {target}: Permission denied$"):
        write_text_atomic(target, "new", force=True)
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["r.md"]


def test_full_disk_while_writing_is_one_line(tmp_path):
    def fill(tmp):
        with open("/dev/full", "w") as full:  # a real ENOSPC from the kernel
            full.write("x")
            full.flush()

    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    with pytest.raises(InspectorError, match="no space left on the device"):
        with atomic_path(tmp_path / "r.md") as tmp:
            fill(tmp)
    assert os.listdir(tmp_path) == []


def test_an_input_is_never_an_output(tmp_path):
    model = tmp_path / "model.pt"
    model.write_bytes(b"weights")
    with pytest.raises(InspectorError, match="is an input of this command"):
        check_writable(tmp_path / "." / "model.pt", force=True, inputs=[model])
    os.link(model, tmp_path / "hard.pt")  # another name for the same file is the same file
    with pytest.raises(InspectorError, match="is an input of this command"):
        check_writable(tmp_path / "hard.pt", force=True, inputs=[model])
    assert model.read_bytes() == b"weights"


def test_a_target_that_is_not_a_regular_file_is_refused_even_with_force(tmp_path):
    import stat

    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    targets = [tmp_path / "fifo", tmp_path / "dir"]
    try:
        os.mknod(tmp_path / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        targets.append(tmp_path / "null")
    except OSError:  # mknod needs root
        pass
    for target in targets:
        for force in (False, True):
            with pytest.raises(InspectorError) as info:
                fileio.write_text_atomic(target, "x", force=force)
            assert str(target) in str(info.value) and "\n" not in str(info.value)
        assert not stat.S_ISREG(os.stat(target).st_mode)
    link = tmp_path / "link"
    (tmp_path / "real").write_text("old")
    link.symlink_to(tmp_path / "real")
    fileio.write_text_atomic(link, "new", force=True)  # a symlink to a regular file is still replaceable
    assert link.read_text() == "new"


def test_force_replaces_only_what_ours_recognises(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    with pytest.raises(InspectorError, match="not written by dense-inspector"):
        fileio.write_text_atomic(target, "x", force=True, ours=lambda p: False)
    assert target.read_text() == "mine"
    fileio.write_text_atomic(target, "x", force=True, ours=lambda p: True)
    assert target.read_text() == "x"
