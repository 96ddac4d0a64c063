"""Turn what the user named (nothing, a checkpoint, an analysis folder) into an app."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dash import Dash

from dashboards.app import create_app
from dashboards.demo import load_demo
from inspector.analysis import analyze_path


def app_for_path(
    path: str | Path | None,
    *,
    data: str | None = None,
    label_column: str | None = None,
    activation: str | None = None,
    trust_pickle: bool = False,
    log: Callable[[str], None] = print,
) -> Dash:
    if path is None:
        demo_analysis, demo_ckpt, demo_data = load_demo(log=log)
        return create_app(demo_analysis, model=demo_ckpt.model, data=demo_data)
    log(f"loading {path} ...")
    analysis, ckpt, eval_data = analyze_path(
        path,
        data=data,
        label_column=label_column,
        activation=activation,
        trust_pickle=trust_pickle,
        notify=lambda m: log(f"note: {m}"),
    )
    return create_app(analysis, model=ckpt.model if ckpt is not None else None, data=eval_data)
