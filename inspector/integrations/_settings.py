"""What every trainer callback takes and keeps: the run directory asked for and the Monitor's settings."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from inspector.errors import InspectorError
from inspector.live.monitor import Monitor


class MonitorSettings:
    """The constructor both ``InspectorCallback`` classes share (each also derives from its trainer's
    callback class). ``run_dir=None``: the trainer's own folder decides (see each callback)."""

    def __init__(
        self,
        run_dir: str | os.PathLike[str] | None = None,
        *,
        every: int = 50,
        snapshot_every: int | None = None,
        **monitor_kwargs: Any,
    ) -> None:
        super().__init__()
        if "optimizer" in monitor_kwargs:
            raise InspectorError("InspectorCallback reads the optimizer from the Trainer; do not pass optimizer=")
        self.requested_dir = None if run_dir is None else Path(run_dir)
        self.every = every
        self.snapshot_every = snapshot_every
        self.monitor_kwargs = monitor_kwargs
        self.monitor: Monitor | None = None
        self.run_dir: Path | None = None
        self._lr: float | None = None
