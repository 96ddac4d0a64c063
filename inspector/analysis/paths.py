"""From a path a user named to an analysis: a saved analysis, a checkpoint (``RUN.pt@EPOCH``), or a weights file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from inspector.analysis.options import AnalysisOptions
from inspector.analysis.result import Analysis
from inspector.analysis.run import analyze
from inspector.analysis.weights_file import analyze_weights_file
from inspector.checkpoints import Checkpoint, load
from inspector.errors import InspectorError, NotAnMLPError
from inspector.evaluation import EvalData, eval_data_for
from inspector.formats import sharded_index_path
from inspector.results import JSON_NAME


def _looks_like_report(path: Path) -> bool:
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(doc, dict) and "schema_version" in doc and "result" in doc


def analyze_path(
    path: str | os.PathLike[str],
    *,
    data: str | None = None,
    label_column: str | None = None,
    activation: str | None = None,
    trust_pickle: bool = False,
    options: AnalysisOptions | None = None,
    notify: Any = None,
    device: torch.device | None = None,
) -> tuple[Analysis, Checkpoint | None, EvalData | None]:
    """What a user named, as an analysis: a saved analysis (folder or JSON report) is read back;
    a checkpoint (``RUN.pt@EPOCH`` for a weight snapshot) is loaded and analysed on its data;
    a file whose weights do not rebuild as an MLP gets a weight-only analysis.

    Returns the analysis and, for a checkpoint, the checkpoint and evaluation data (which
    on-demand views need). ``notify(message)`` receives the loader's notices.
    """
    path = Path(path)
    if path.is_dir() and (path / JSON_NAME).exists():
        return Analysis.load(path), None, None
    if path.is_file() and path.suffix.lower() == ".json" and sharded_index_path(path) is None:
        try:
            return Analysis.load(path), None, None
        except InspectorError:
            if _looks_like_report(path):
                raise  # a report, but a damaged or newer one: its own message says which
            raise InspectorError(
                f"{path}: not a dense-inspector JSON report (expected the file `inspector report --format json` "
                "writes, or a sharded-checkpoint index); pass a checkpoint (.pt, .safetensors), an analysis "
                "folder or such a report"
            ) from None
    epoch = None
    if not path.exists() and "@" in path.name:  # run.pt@5: the run's weights at the end of epoch 5
        stem, _, suffix = str(path).rpartition("@")
        if not suffix.isdigit():
            raise InspectorError(f"{path}: after '@' give an epoch number, e.g. run.pt@5")
        path, epoch = Path(stem), int(suffix)
    try:
        ckpt = load(path, activation=activation, trust_pickle=trust_pickle)
    except NotAnMLPError as exc:
        if epoch is not None or data is not None:
            raise
        if notify is not None:
            notify(f"{exc}; analysing its weights only")
        return analyze_weights_file(path, trust_pickle=trust_pickle), None, None
    if epoch is not None:
        ckpt = ckpt.at_epoch(epoch)
    for notice in ckpt.notices:
        if notify is not None:
            notify(notice)
    if device is not None:
        ckpt.model.to(device)
    eval_data = eval_data_for(ckpt, data, label_column=label_column)
    return analyze(ckpt, eval_data, options=options), ckpt, eval_data
