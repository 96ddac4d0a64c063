"""The run store: a run killed mid-write opens, readers never fail while it writes, and the writer's
refusals and the folder's other files."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from inspector.errors import InspectorError
from inspector.live import RunWriter, read_run
from inspector.live.store import LAYER_SCALARS

ROOT = Path(__file__).resolve().parents[1]

# a training loop with a Monitor that records every step and never ends on its own
_TRAINER = textwrap.dedent(
    """
    import sys, torch
    from torch import nn
    from inspector.live import Monitor
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    X, y = torch.randn(64, 8), torch.randn(64, 1)
    monitor = Monitor(model, sys.argv[1], every=1, snapshot_every=5, optimizer=opt)
    while True:
        loss = nn.functional.mse_loss(model(X), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        monitor.step(loss)
    """
)


def _wait_for_steps(run_dir: Path, count: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (run_dir / "run.sqlite").exists():
            try:
                if len(read_run(run_dir).steps) >= count:
                    return
            except InspectorError:
                pass  # the schema is not committed yet
        time.sleep(0.05)
    raise AssertionError(f"the trainer did not record {count} steps in {timeout} s")


def test_a_run_killed_mid_write_opens_stopped_with_every_committed_record_whole(tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", _TRAINER, str(run_dir)], env=env)
    try:
        _wait_for_steps(run_dir, 12)
        seen: list[int] = []
        for _ in range(20):  # a concurrent reader: never fails, the steps only grow
            steps = read_run(run_dir).steps
            assert np.all(np.diff(steps) == 1)
            seen.append(len(steps))
        assert seen == sorted(seen)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    run = read_run(run_dir)
    assert run.status == "stopped"
    last = int(run.steps[-1])
    assert list(run.steps) == list(range(1, last + 1))
    assert run.layers == ("0", "2", "4")
    for name in LAYER_SCALARS:  # no partial record: every layer's every scalar at every step
        for layer in run.layers:
            assert list(run.scalar(name, layer).steps) == list(run.steps), (name, layer)
    assert list(run.scalar("loss").steps) == list(run.steps)
    assert all(np.isfinite(run.scalar("loss").values))
    expected = list(range(5, last + 1, 5))
    # a snapshot is written after its step's record: a kill in between leaves that one out
    assert [s.step for s in run.snapshots] in (expected, expected[:-1] if last % 5 == 0 else expected)
    from safetensors.torch import load_file

    for snapshot in run.snapshots:
        assert set(load_file(snapshot.path)) == {f"{i}.{p}" for i in (0, 2, 4) for p in ("weight", "bias")}


def test_readers_in_a_loop_never_fail_while_the_writer_records(tmp_path):
    writer = RunWriter(tmp_path / "run")
    writer.set_layers([("fc", 4, 8, "relu")])
    errors: list[BaseException] = []
    counts: list[int] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                run = read_run(tmp_path / "run")
                assert all(len(run.scalar(n, "fc").steps) == len(run.steps) for n in ("dead", "rows"))
                counts.append(len(run.steps))
            except BaseException as exc:  # noqa: BLE001 - the test reports any failure of a reader
                errors.append(exc)
                return

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for step in range(1, 201):
            writer.record(
                step,
                {("dead", "fc"): step % 3, ("rows", "fc"): 10.0, ("loss", ""): 1.0 / step},
                {("fire_rate", "fc"): np.full(8, 0.5, np.float32)},
            )
    finally:
        stop.set()
        reader.join()
        writer.close()
    assert not errors, errors[0]
    assert counts == sorted(counts) and len(counts) > 1


def test_the_writer_refuses_an_existing_run_resumes_and_keeps_steps_increasing(tmp_path):
    with RunWriter(tmp_path / "run", meta={"source": "test"}) as writer:
        writer.set_layers([("fc", 2, 3, "relu")])
        writer.record(1, {("dead", "fc"): 1.0})
        writer.record(2, {("dead", "fc"): 2.0})
        with pytest.raises(InspectorError, match="steps must increase"):
            writer.record(2, {("dead", "fc"): 5.0})
    with pytest.raises(InspectorError, match="already holds a run; choose a new run directory"):
        RunWriter(tmp_path / "run")
    with RunWriter(tmp_path / "run", resume=True) as writer:
        assert writer.last_step == 2
        with pytest.raises(InspectorError, match="steps must increase"):
            writer.record(1, {("dead", "fc"): 0.0})
        writer.record(3, {("dead", "fc"): 3.0, ("saturation", "fc"): math.nan})
    run = read_run(tmp_path / "run")
    assert run.status == "finished" and run.meta["source"] == "test"
    np.testing.assert_array_equal(run.scalar("dead", "fc").values, [1.0, 2.0, 3.0])
    saturation = run.scalar("saturation", "fc")
    assert list(saturation.steps) == [3] and math.isnan(saturation.values[0])  # NaN stored as NaN


def test_a_folder_holding_other_files_is_left_untouched(tmp_path):
    folder = tmp_path / "exp"
    (folder / "notes").mkdir(parents=True)
    files = {folder / "config.yaml": b"lr: 0.1\n", folder / "notes" / "a.txt": b"keep me"}
    for path, content in files.items():
        path.write_bytes(content)
    with RunWriter(folder) as writer:
        writer.set_layers([("fc", 2, 3, "relu")])
        writer.record(1, {("dead", "fc"): 0.0})
        writer.snapshot(1, {})
    for path, content in files.items():
        assert path.read_bytes() == content
    assert sorted(p.name for p in folder.iterdir()) == ["config.yaml", "notes", "run.sqlite", "snapshots"]
    with pytest.raises(InspectorError, match="not a run directory"):
        read_run(folder / "notes")
    with pytest.raises(InspectorError, match="not a folder"):
        RunWriter(folder / "config.yaml")


def test_a_closed_run_is_one_plain_file_readable_from_a_read_only_folder(tmp_path, monkeypatch):
    import sqlite3

    from inspector.live import store

    writer = RunWriter(tmp_path / "run")
    writer.set_layers([("fc1", 4, 8, "relu")])
    writer.record(1, {("dead", "fc1"): 2.0, ("loss", ""): 0.5})
    writer.close()
    # back to a rollback journal: no -wal / -shm beside it, nothing for a reader to create
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["run.sqlite"]
    with sqlite3.connect(tmp_path / "run" / "run.sqlite") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    # a folder this process cannot write (root ignores chmod, so the check itself is stood in for)
    monkeypatch.setattr(store.os, "access", lambda path, mode: False)
    run = read_run(tmp_path / "run")
    assert run.status == "finished" and list(run.scalar("dead", "fc1").values) == [2.0]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["run.sqlite"]  # reading wrote nothing


def test_a_run_has_one_writer_and_snapshots_never_overwrite_a_file(tmp_path):
    writer = RunWriter(tmp_path / "run")
    with pytest.raises(InspectorError, match="being written by a live writer"):
        RunWriter(tmp_path / "run", resume=True)  # its writer (this process) is alive
    mine = tmp_path / "run" / "snapshots" / "step-000000002.safetensors"
    mine.parent.mkdir()
    mine.write_text("mine too")
    assert writer.snapshot(2, {"w": np.ones(3)}) is None  # not a tensor anyway; the name is taken
    import torch

    assert writer.snapshot(2, {"w": torch.ones(3)}) is None
    assert mine.read_text() == "mine too"
    assert "step-000000002.safetensors already exists" in read_run(tmp_path / "run").events[-1].message
    path = writer.snapshot(3, {"w": torch.ones(3)})
    assert path is not None and read_run(tmp_path / "run").snapshots[-1].step == 3
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # an ordinary file's permissions
    assert sorted(p.name for p in mine.parent.iterdir()) == [mine.name, path.name]  # no temporaries left
    writer.close()


def test_a_new_run_file_appears_with_its_tables(tmp_path, monkeypatch):
    """A reader polling a folder (the live dashboard) may open run.sqlite the moment it exists: it must
    already hold every table, or the reader fails with "no such table" (a race seen under load)."""
    import sqlite3

    import inspector.live.store as store

    seen: list[set[str]] = []
    real_connect = store._connect

    def connect(path, *, readonly):
        if path.exists():
            probe = sqlite3.connect(path)
            seen.append({r[0] for r in probe.execute("SELECT name FROM sqlite_master WHERE type = 'table'")})
            probe.close()
        return real_connect(path, readonly=readonly)

    monkeypatch.setattr(store, "_connect", connect)
    writer = store.RunWriter(tmp_path / "run")
    writer.close()
    assert seen and {"meta", "layers", "scalars", "vectors", "snapshots", "events"} <= seen[0]
    assert [p.name for p in (tmp_path / "run").iterdir() if p.name.endswith(".init")] == []


def test_a_run_directory_is_created_with_its_parents_but_never_through_a_file(tmp_path):
    """Monitor(model, "runs/exp1") in an empty folder (the README's own example) works as TensorBoard's
    SummaryWriter does; a path through a regular file is one line naming that file."""
    from inspector.errors import InspectorError
    from inspector.live.store import RunWriter, read_run

    writer = RunWriter(tmp_path / "runs" / "deep" / "exp1")
    writer.close()
    assert read_run(tmp_path / "runs" / "deep" / "exp1").status == "finished"
    (tmp_path / "file.txt").write_text("mine")
    with pytest.raises(InspectorError, match=r"file.txt is not a folder; choose another run directory"):
        RunWriter(tmp_path / "file.txt" / "run")
    assert (tmp_path / "file.txt").read_text() == "mine"
