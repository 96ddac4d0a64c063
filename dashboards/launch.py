"""Turn what the user named (nothing, a checkpoint, an analysis folder) into an app."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from dash import Dash

from dashboards.app import create_app, create_live_app
from dashboards.demo import load_demo
from dashboards.views.live import LiveRuns
from inspector.analysis import AnalysisOptions, analyze_path
from inspector.analysis.weights_file import analyze_weights_file
from inspector.errors import InspectorError
from inspector.factories import FactoryRun, analyze_factory
from inspector.live.store import find_runs, is_run


def app_for_path(
    path: str | Path | None,
    *,
    data: str | None = None,
    label_column: str | None = None,
    activation: str | None = None,
    trust_pickle: bool = False,
    options: AnalysisOptions | None = None,
    device: torch.device | None = None,
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
        options=options,
        device=device,
        notify=lambda m: log(f"note: {m}"),
    )
    return create_app(analysis, model=ckpt.model if ckpt is not None else None, data=eval_data)


def app_for_factories(model: str | None, data: str | None = None, **kwargs: Any) -> Dash:
    """An app for the user's own model and data, named as factories (``pkg.module:name``, ``file.py:name``).

    ``kwargs``: those of :func:`inspector.factories.analyze_factory` (``checkpoint=`` instead of a
    model factory, ``weights``, ``task``, ``tokenizer``, ``activations``, ``options``, ``device``...).
    The model and data stay with the app, so that its on-demand views can question them.
    """
    return app_for_run(analyze_factory(model, data, **kwargs))


def app_for_run(run: FactoryRun) -> Dash:
    """The app for a finished factory run: its analysis, with its model and data for the on-demand views."""
    return create_app(
        run.analysis, model=run.model, data=run.data, task=run.task, target=run.target, tokenizer=run.tokenizer
    )


def app_for_runs(path: str | Path, *, refresh: float = 2.0, log: Callable[[str], None] = print) -> Dash:
    """The app for a run directory, or a folder of runs (:func:`inspector.live.find_runs`), side by side.

    A folder of runs is searched again on each refresh (runs started later join the view); a run that
    cannot be read is left out with a note (an error only when none can be read). The other views
    show a weight-only analysis of the first readable run's newest snapshot (as it is at launch).
    """
    root = Path(path)
    paths = find_runs(root)
    if not paths:
        raise InspectorError(f"{root} holds no training run (no run.sqlite in it or its sub-folders)")
    live = LiveRuns(paths, root, refresh=refresh, watch=not is_run(root))
    runs = live.read_many(live.labels)
    if not runs:  # one line: the run's own error, or that none of the folder's can be read
        errors = list(live.unreadable().values())
        if len(errors) == 1:
            raise InspectorError(errors[0])
        raise InspectorError(f"none of the {len(errors)} runs in {root} can be read (not run databases)")
    for label, why in live.unreadable().items():
        log(f"note: skipped {label}: {why}")
    log(f"{len(runs)} run{'s' if len(runs) != 1 else ''} in {root}: {', '.join(r.name for r in runs)}")
    first = live.read(runs[0].name)
    snapshot = first.latest_snapshot
    analysis = None
    if snapshot is not None:
        log(f"analysing the weights of {first.name} at step {snapshot.step} ...")
        analysis = analyze_weights_file(snapshot.path)
    else:
        log(f"{first.name} has no weight snapshot yet: only the Live view opens")
    return create_live_app(live, analysis)
