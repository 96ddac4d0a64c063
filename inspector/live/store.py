"""A training run on disk: one SQLite database in WAL mode, plus weight snapshots.

A run directory holds ``run.sqlite`` (and SQLite's own ``-wal``/``-shm`` files while it is
open) and ``snapshots/step-<step>.safetensors``. SQLite in write-ahead-log mode gives one
writer and any number of concurrent readers (the dashboard polls while training writes), and
every record is one transaction: a training process killed at any moment leaves a run that
opens, holding every record committed before the kill. A snapshot file is written whole
(temporary + rename) before the row that names it is committed, so a row never names a
missing or partial file. Nothing else in the directory is read, written or deleted.

Tables (format :data:`FORMAT`):

``meta(key, value)``
    JSON values: ``format``, ``created`` (Unix time), ``status`` (``running`` | ``finished``),
    ``pid``, ``host``, ``source`` (what wrote it: ``Monitor``, a trainer callback,
    ``inspector train``), ``every``, ``snapshot_every``, ``model`` (its class), and whatever
    else the writer passes.
``layers(position, layer, in_features, out_features, activation)``
    the monitored dense sites, in model order.
``scalars(name, layer, step, value)``
    one number per (statistic, layer, step); ``layer`` is ``""`` for the model's own
    (``loss``, ``lr``). The names are :data:`LAYER_SCALARS` and :data:`RUN_SCALARS`.
``vectors(name, layer, step, value)``
    one float32 array per (statistic, layer, step) as raw little-endian bytes, e.g. the
    per-neuron firing rate ``fire_rate``.
``snapshots(step, file)``
    a weight snapshot's file, relative to the run directory.
``events(id, step, severity, layer, message, time)``
    warnings as they happen ("fc2: 30% of neurons died between steps 400 and 600; ...").
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import field
from pathlib import Path
from typing import Any

import numpy as np

from inspector.errors import InspectorError
from inspector.fileio import describe_os_error, first_non_folder, process_alive, write_atomic
from inspector.results import result

RUN_FILE = "run.sqlite"
SNAPSHOT_FOLDER = "snapshots"
FORMAT = 1

# Per layer, per record (see inspector.live.monitor for how each is measured).
LAYER_SCALARS = {
    "dead": "neurons that never fired on the batches since the last record",
    "nearly_dead": "neurons that fired on fewer than the threshold's share of rows",
    "dead_fraction": "dead / neurons",
    "saturation": "share of (row, neuron) values in a flat tail (sigmoid, tanh)",
    "zero_rate": "share of (row, neuron) values near zero (smooth units)",
    "weight_norm": "Frobenius norm of the weight after the step",
    "grad_norm": "Frobenius norm of the weight's gradient at the step",
    "update_ratio": "||w after - w before|| / ||w before|| over the step",
    "rows": "rows (samples, or token positions) counted since the last record",
}
RUN_SCALARS = {"loss": "the training loss at the step", "lr": "the learning rate at the step"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS layers (
    position INTEGER PRIMARY KEY, layer TEXT UNIQUE NOT NULL,
    in_features INTEGER NOT NULL, out_features INTEGER NOT NULL, activation TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS scalars (
    name TEXT NOT NULL, layer TEXT NOT NULL, step INTEGER NOT NULL, value REAL,
    PRIMARY KEY (name, layer, step)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS vectors (
    name TEXT NOT NULL, layer TEXT NOT NULL, step INTEGER NOT NULL, value BLOB NOT NULL,
    PRIMARY KEY (name, layer, step)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS snapshots (step INTEGER PRIMARY KEY, file TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, step INTEGER NOT NULL, severity TEXT NOT NULL, layer TEXT NOT NULL,
    message TEXT NOT NULL, time REAL NOT NULL);
"""

_BUSY_MS = 5000  # how long a reader or the writer waits for the other's lock before giving up


@result
class Series:
    """One statistic of one layer (``layer == ""``: the model's) over the recorded steps."""

    name: str
    layer: str
    steps: np.ndarray  # (k,) int64, increasing
    values: np.ndarray  # (k,) float64; NaN where not measurable at that step


@result
class RunEvent:
    """A warning raised at ``step`` (``layer`` ``""`` when it concerns the whole model)."""

    step: int
    severity: str
    layer: str
    message: str
    time: float


@result
class Snapshot:
    """The weights at ``step``, in ``path`` (a safetensors file of the model's ``state_dict``)."""

    step: int
    path: str


@result
class RunHistory:
    """Everything a run directory holds, as read at one moment.

    ``name``: the directory's name. ``status``: ``running`` (its writer is alive), ``finished``
    (closed), or ``stopped`` (the writer died before closing: the records up to its last commit).
    ``layers``/``activations``/``widths``: the monitored sites in model order. ``steps`` ``(k,)``:
    every recorded step. ``series``: every scalar (:meth:`scalar`); ``vectors`` the per-neuron
    arrays (:meth:`vector`). ``meta``: the run's metadata (JSON values).
    """

    name: str
    path: str
    status: str
    meta: dict[str, Any]
    layers: tuple[str, ...]
    activations: tuple[str, ...]
    widths: tuple[int, ...]
    in_features: tuple[int, ...]
    steps: np.ndarray
    series: tuple[Series, ...]
    events: tuple[RunEvent, ...]
    snapshots: tuple[Snapshot, ...]
    vectors: dict[str, np.ndarray] = field(default_factory=dict)  # "name/layer" -> (k, m) float32
    vector_steps: dict[str, np.ndarray] = field(default_factory=dict)  # "name/layer" -> (k,) int64

    @property
    def last_step(self) -> int | None:
        return int(self.steps[-1]) if len(self.steps) else None

    @property
    def running(self) -> bool:
        return self.status == "running"

    def scalar(self, name: str, layer: str = "") -> Series:
        """The series ``name`` of ``layer`` (an empty series when never recorded)."""
        for s in self.series:
            if s.name == name and s.layer == layer:
                return s
        return Series(name, layer, np.zeros(0, np.int64), np.zeros(0))

    def vector(self, name: str, layer: str) -> tuple[np.ndarray, np.ndarray]:
        """``(steps (k,), values (k, m))`` of the per-neuron statistic ``name`` of ``layer``."""
        key = f"{name}/{layer}"
        if key not in self.vectors:
            return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
        return self.vector_steps[key], self.vectors[key]

    @property
    def latest_snapshot(self) -> Snapshot | None:
        return self.snapshots[-1] if self.snapshots else None


def _connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    if readonly:
        # mode=ro: never creates or changes the database; WAL readers still share its -shm index
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=_BUSY_MS / 1000)
    else:
        conn = sqlite3.connect(path, timeout=_BUSY_MS / 1000, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {_BUSY_MS}")
    return conn


def _create_schema(db: Path) -> None:
    """Create the run's database with every table before its name appears: a reader that sees
    ``run.sqlite`` (:func:`is_run`) never meets a file without its tables. Built under a private
    name, then linked into place (a writer that lost a race to create it just opens the winner's)."""
    init = db.with_name(f".{db.name}.{os.getpid()}.init")
    init.unlink(missing_ok=True)
    conn = sqlite3.connect(init, isolation_level=None)
    try:
        conn.executescript(_SCHEMA)
    finally:
        conn.close()
    try:
        os.link(init, db)
    except FileExistsError:
        pass
    finally:
        init.unlink(missing_ok=True)


def is_run(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a run directory (it holds ``run.sqlite``)."""
    return (Path(path) / RUN_FILE).is_file()


def find_runs(path: str | os.PathLike[str]) -> list[Path]:
    """``path`` itself if it is a run, else the runs among its sub-folders (two levels deep, like
    ``runs/exp1`` and ``runs/sweep/lr-0.1``), sorted by name. Empty when there are none."""
    root = Path(path)
    if is_run(root):
        return [root]
    if not root.is_dir():
        return []
    found = [p.parent for p in root.glob(f"*/{RUN_FILE}")] + [p.parent for p in root.glob(f"*/*/{RUN_FILE}")]
    return sorted(set(found), key=lambda p: str(p.relative_to(root)))


class RunWriter:
    """The one writer of a run directory: :meth:`record` per recording step, :meth:`close` at the end.

    ``run_dir`` is created if missing, with its parents (as TensorBoard's ``SummaryWriter`` does). A directory that already holds a run
    is refused unless ``resume=True`` (then records continue it; steps must come after its last).
    ``meta``: extra metadata (JSON-serialisable). Every method commits before it returns.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        *,
        meta: Mapping[str, Any] | None = None,
        resume: bool = False,
    ) -> None:
        self.dir = Path(run_dir)
        blocked = first_non_folder(self.dir)  # created with its parents, never through a file
        if blocked is not None:
            raise InspectorError(f"{blocked} is not a folder; choose another run directory")
        existing = is_run(self.dir)
        if existing and not resume:
            raise InspectorError(
                f"{self.dir} already holds a run; choose a new run directory (or pass resume=True to continue it)"
            )
        current = read_run(self.dir, vectors=False) if existing else None
        if current is not None and current.status == "running":
            pid = current.meta.get("pid")
            raise InspectorError(
                f"{self.dir} is being written by a live writer (process {pid}); a run has one writer at a time: "
                "close it first"
            )
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            if not existing:
                _create_schema(self.dir / RUN_FILE)
            self._conn = _connect(self.dir / RUN_FILE, readonly=False)
            self._conn.execute("PRAGMA journal_mode = WAL")
            # NORMAL in WAL mode: a crash of the process never loses a committed record (a power cut may
            # lose the last few); FULL would fsync on every record
            self._conn.execute("PRAGMA synchronous = NORMAL")
            if existing:
                self._check_format()
        except sqlite3.Error as exc:
            raise InspectorError(f"cannot write the run in {self.dir}: {exc}") from None
        except OSError as exc:
            raise InspectorError(f"cannot create run directory {self.dir}: {describe_os_error(exc)}") from None
        self.last_step = self._last_step()
        base = {
            "format": FORMAT,
            "created": time.time(),
            "host": socket.gethostname(),
        }
        values = {**({} if existing else base), **dict(meta or {}), "status": "running", "pid": os.getpid()}
        self.set_meta(values)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _check_format(self) -> None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
        version = json.loads(row[0]) if row else None
        if version != FORMAT:
            raise InspectorError(f"{self.dir} holds a run of format {version}; this version writes {FORMAT}")

    def _last_step(self) -> int | None:
        row = self._conn.execute("SELECT MAX(step) FROM scalars").fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def set_meta(self, values: Mapping[str, Any]) -> None:
        """Add or replace metadata entries."""
        rows = [(str(k), json.dumps(v)) for k, v in values.items()]
        with self._transaction() as conn:
            conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", rows)

    def set_layers(self, layers: Sequence[tuple[str, int, int, str]]) -> None:
        """The monitored sites, in model order: ``(layer, in_features, out_features, activation)``."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM layers")
            conn.executemany(
                "INSERT INTO layers (position, layer, in_features, out_features, activation) VALUES (?, ?, ?, ?, ?)",
                [(i, name, int(n), int(m), act) for i, (name, n, m, act) in enumerate(layers)],
            )

    def record(
        self,
        step: int,
        scalars: Mapping[tuple[str, str], float],
        vectors: Mapping[tuple[str, str], np.ndarray] | None = None,
        events: Iterable[tuple[str, str, str]] = (),
    ) -> None:
        """One recording step, in one transaction. ``scalars``: ``{(name, layer): value}`` (``layer``
        ``""`` for the model's); ``vectors``: ``{(name, layer): (m,) array}``; ``events``:
        ``(severity, layer, message)``. ``step`` must be larger than every step recorded before."""
        step = int(step)
        if self.last_step is not None and step <= self.last_step:
            raise InspectorError(f"step {step} comes after step {self.last_step} was recorded; steps must increase")
        now = time.time()
        with self._transaction() as conn:
            conn.executemany(
                "INSERT INTO scalars (name, layer, step, value) VALUES (?, ?, ?, ?)",
                [(name, layer, step, _real(v)) for (name, layer), v in scalars.items()],
            )
            conn.executemany(
                "INSERT INTO vectors (name, layer, step, value) VALUES (?, ?, ?, ?)",
                [
                    (name, layer, step, np.ascontiguousarray(v, dtype="<f4").tobytes())
                    for (name, layer), v in (vectors or {}).items()
                ],
            )
            rows = [(step, sev, layer, msg, now) for sev, layer, msg in events]
            if rows:  # most records raise nothing: no statement to prepare
                conn.executemany(
                    "INSERT INTO events (step, severity, layer, message, time) VALUES (?, ?, ?, ?, ?)", rows
                )
        self.last_step = step

    def event(self, step: int, severity: str, layer: str, message: str) -> None:
        """A warning outside a record (the step may be one already recorded)."""
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO events (step, severity, layer, message, time) VALUES (?, ?, ?, ?, ?)",
                (int(step), severity, layer, message, time.time()),
            )

    def snapshot(self, step: int, tensors: Mapping[str, Any]) -> Path | None:
        """Write ``tensors`` (a ``state_dict``: name -> tensor) as ``snapshots/step-<step>.safetensors``
        (whole or absent), then commit its row. Returns the file, or ``None`` when a file of that name
        is already there (never overwritten: it is said in the run's events instead)."""
        import torch
        from safetensors.torch import save

        folder = self.dir / SNAPSHOT_FOLDER
        relative = _snapshot_name(step)
        if (self.dir / relative).exists():
            self.event(step, "warning", "", f"{relative} already exists: the snapshot of step {step} was not written")
            return None
        try:
            folder.mkdir(exist_ok=True)
        except OSError as exc:
            raise InspectorError(f"cannot create {folder}: {describe_os_error(exc)}") from None
        # contiguous CPU copies that share no storage: safetensors refuses tied tensors
        plain = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items() if torch.is_tensor(v)}
        data = save(plain, metadata={"step": str(int(step))})
        del plain
        # written through this tool's own temporary (an ordinary file's permissions; a killed write's
        # leftover is cleaned by the next write), never over an existing file
        path = write_atomic(self.dir / relative, lambda tmp: tmp.write_bytes(data))
        with self._transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO snapshots (step, file) VALUES (?, ?)", (int(step), relative))
        return path

    def has_snapshot(self, step: int) -> bool:
        """Whether the run holds a snapshot of ``step`` (its row, and the file it names)."""
        row = self._conn.execute("SELECT file FROM snapshots WHERE step = ?", (int(step),)).fetchone()
        return row is not None and (self.dir / row[0]).is_file()

    def close(self, status: str = "finished") -> None:
        """Mark the run ``status`` and close the database (its -wal is folded back in)."""
        if self._conn is None:
            return
        with contextlib.suppress(sqlite3.Error):
            self.set_meta({"status": status, "closed": time.time()})
        with contextlib.suppress(sqlite3.Error):
            # a finished run becomes one plain database file (no -wal / -shm): readable from a read-only
            # folder or medium, and reading it writes nothing; skipped while a reader holds it open
            self._conn.execute("PRAGMA journal_mode = DELETE")
        self._conn.close()
        self._conn = None  # type: ignore[assignment]

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close("finished" if exc[0] is None else "failed")


def _snapshot_name(step: int) -> str:
    """The snapshot file of ``step``, relative to the run directory."""
    return f"{SNAPSHOT_FOLDER}/step-{int(step):09d}.safetensors"


def _real(value: Any) -> float | None:
    v = float(value)
    return None if math.isnan(v) else v  # SQLite keeps inf but turns NaN into NULL: say so explicitly


def read_run(run_dir: str | os.PathLike[str], *, vectors: bool = True) -> RunHistory:
    """Everything ``run_dir`` holds now; safe while its writer is still recording (a consistent
    moment: one read transaction). ``vectors=False`` leaves the per-neuron arrays out (most of a
    large model's run: a reader of the scalars, such as the Live view, polls much faster)."""
    root = Path(run_dir)
    db = root / RUN_FILE
    if not db.is_file():
        raise InspectorError(f"{root} is not a run directory (no {RUN_FILE}); give the folder a Monitor wrote")
    try:
        if not os.access(root, os.W_OK) and not Path(f"{db}-wal").exists():
            # a folder this process cannot write, and every record in the database file itself (a closed
            # run, or one whose log was folded in): read it as the immutable file it is here. SQLite
            # would otherwise want to create a -shm index beside a database still in WAL mode.
            conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
        else:
            conn = _connect(db, readonly=True)
    except sqlite3.Error as exc:
        raise InspectorError(f"cannot open the run in {root}: {exc}") from None
    return _read(conn, root, vectors)


def _read(conn: sqlite3.Connection, root: Path, vectors: bool) -> RunHistory:
    try:
        conn.execute("BEGIN")  # one snapshot of the database for every query below
        meta = {k: json.loads(v) for k, v in conn.execute("SELECT key, value FROM meta")}
        layer_rows = conn.execute(
            "SELECT layer, activation, out_features, in_features FROM layers ORDER BY position"
        ).fetchall()
        series = _read_series(conn)
        steps = np.array(
            [r[0] for r in conn.execute("SELECT DISTINCT step FROM scalars ORDER BY step")], dtype=np.int64
        )
        vector_values, vector_steps = _read_vectors(conn) if vectors else ({}, {})
        events = tuple(
            RunEvent(int(s), sev, layer, msg, float(t))
            for s, sev, layer, msg, t in conn.execute(
                "SELECT step, severity, layer, message, time FROM events ORDER BY step, id"
            )
        )
        snapshots = tuple(
            Snapshot(int(s), str(root / f))
            for s, f in conn.execute("SELECT step, file FROM snapshots ORDER BY step")
            if (root / f).is_file()
        )
        conn.execute("COMMIT")
    except sqlite3.DatabaseError as exc:
        hint = (
            "copy it to a folder you can write (SQLite needs its -shm index beside a run still being written)"
            if not os.access(root, os.W_OK)
            else "is it a run directory this tool wrote?"
        )
        raise InspectorError(f"cannot read the run in {root}: {exc}; {hint}") from None
    finally:
        conn.close()
    if meta.get("format") not in (None, FORMAT):
        raise InspectorError(f"{root} holds a run of format {meta.get('format')}; this version reads {FORMAT}")
    return RunHistory(
        name=root.resolve().name,
        path=str(root),
        status=_status(meta),
        meta=meta,
        layers=tuple(r[0] for r in layer_rows),
        activations=tuple(r[1] for r in layer_rows),
        widths=tuple(int(r[2]) for r in layer_rows),
        in_features=tuple(int(r[3]) for r in layer_rows),
        steps=steps,
        series=series,
        events=events,
        snapshots=snapshots,
        vectors=vector_values,
        vector_steps=vector_steps,
    )


def _status(meta: Mapping[str, Any]) -> str:
    status = str(meta.get("status", "stopped"))
    if status != "running":
        return status
    pid, host = meta.get("pid"), meta.get("host")
    if isinstance(pid, int) and host == socket.gethostname() and not process_alive(pid):
        return "stopped"  # killed before close(): every committed record is there
    return "running"  # another machine's writer: assumed alive until it closes the run


def _read_series(conn: sqlite3.Connection) -> tuple[Series, ...]:
    rows = conn.execute("SELECT name, layer, step, value FROM scalars ORDER BY name, layer, step").fetchall()
    out: list[Series] = []
    start = 0
    for i in range(1, len(rows) + 1):
        if i == len(rows) or rows[i][:2] != rows[start][:2]:
            chunk = rows[start:i]
            steps = np.array([r[2] for r in chunk], dtype=np.int64)
            values = np.array([math.nan if r[3] is None else r[3] for r in chunk], dtype=np.float64)
            out.append(Series(chunk[0][0], chunk[0][1], steps, values))
            start = i
    return tuple(out)


def _read_vectors(conn: sqlite3.Connection) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    grouped: dict[str, list[tuple[int, bytes]]] = {}
    for name, layer, step, blob in conn.execute(
        "SELECT name, layer, step, value FROM vectors ORDER BY name, layer, step"
    ):
        grouped.setdefault(f"{name}/{layer}", []).append((int(step), blob))
    values: dict[str, np.ndarray] = {}
    steps: dict[str, np.ndarray] = {}
    for key, rows in grouped.items():
        arrays = [np.frombuffer(b, dtype="<f4") for _, b in rows]
        width = max(len(a) for a in arrays)
        table = np.full((len(arrays), width), np.nan, np.float32)
        for i, a in enumerate(arrays):
            table[i, : len(a)] = a
        values[key] = table
        steps[key] = np.array([s for s, _ in rows], dtype=np.int64)
    return values, steps
