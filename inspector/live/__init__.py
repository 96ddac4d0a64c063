"""Live statistics of the dense layers while a model trains.

:class:`~inspector.live.monitor.Monitor` hooks a model's dense sites and records, every
``every`` optimizer steps, what the census would say about the batches seen since the last
record, plus weight and gradient norms, update ratios, the loss and the learning rate, into a
run directory (:mod:`~inspector.live.store`: one SQLite database in WAL mode, and weight
snapshots as safetensors files). :func:`read_run` reads a run, finished or still being written.
"""

from __future__ import annotations

from inspector.live.monitor import Monitor
from inspector.live.store import (
    RUN_FILE,
    RunEvent,
    RunHistory,
    RunWriter,
    Series,
    Snapshot,
    find_runs,
    is_run,
    read_run,
)

__all__ = [
    "Monitor",
    "RUN_FILE",
    "RunEvent",
    "RunHistory",
    "RunWriter",
    "Series",
    "Snapshot",
    "find_runs",
    "is_run",
    "read_run",
]
