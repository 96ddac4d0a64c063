"""Turn what the user named (nothing, a checkpoint, an analysis folder) into an app."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dash import Dash

from dashboards.app import create_app
from dashboards.demo import load_demo
from inspector.analysis import Analysis, analyze
from inspector.checkpoints import load
from inspector.evaluation import eval_data_for
from inspector.results import JSON_NAME


def app_for_path(path: str | Path | None, *, data: str | None = None, label_column: str | None = None,
                 activation: str | None = None, trust_pickle: bool = False,
                 log: Callable[[str], None] = print) -> Dash:
    if path is None:
        analysis, ckpt, eval_data = load_demo(log=log)
        return create_app(analysis, model=ckpt.model, data=eval_data)
    path = Path(path)
    if path.is_dir() and (path / JSON_NAME).exists():
        return create_app(Analysis.load(path))
    ckpt = load(path, activation=activation, trust_pickle=trust_pickle)
    for notice in ckpt.notices:
        log(f"note: {notice}")
    eval_data = eval_data_for(ckpt, data, label_column=label_column)
    log(f"analysing {path} ...")
    return create_app(analyze(ckpt, eval_data), model=ckpt.model, data=eval_data)
