"""Live figures: a training run's statistics over steps (:class:`~inspector.live.store.RunHistory` in,
``go.Figure`` out), shared by the dashboard's Live view and the run's report.

Several runs draw side by side: one trace per (run, layer), named ``run · layer`` when more than one
run is shown. Every figure with nothing to draw says why.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from inspector.analysis.weights import LayerWeights
from inspector.core.counting import activation_group
from inspector.figures.common import _base, empty_figure
from inspector.figures.weights import weight_heatmap_figure
from inspector.live.store import RunHistory

# The statistics the Live view offers: scalar name -> (label, log y axis). Norms and update
# ratios span orders of magnitude (vanishing and exploding gradients), hence a log axis.
LIVE_STATISTICS: dict[str, tuple[str, bool]] = {
    "dead_fraction": ("dead fraction", False),
    "nearly_dead": ("nearly dead neurons", False),
    "saturation": ("saturation", False),
    "zero_rate": ("zero rate", False),
    "grad_norm": ("gradient norm", True),
    "weight_norm": ("weight norm", False),
    "update_ratio": ("update ratio", True),
}
# The statistic each rule of counting units records (inspector.core.counting.activation_group): a
# ReLU's dead fraction, a smooth unit's (GELU, SiLU) zero rate, a squasher's (sigmoid, tanh) saturation.
UNIT_STATISTICS: dict[str, str] = {
    "rectifier": "dead_fraction",
    "leaky": "dead_fraction",
    "smooth": "zero_rate",
    "squasher": "saturation",
}
_DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")


def _trace_name(run: RunHistory, layer: str, several: bool) -> str:
    return f"{run.name} · {layer}" if several else layer


def default_statistic(runs: Sequence[RunHistory]) -> str:
    """The statistic to open the Live view on: the one the runs' units record.

    Each monitored layer's unit (``RunHistory.activations``) names its statistic (:data:`UNIT_STATISTICS`);
    the one most layers of all ``runs`` have wins, ties in the order dead fraction, zero rate, saturation.
    Units whose rule is unknown record none of them: the weight norm then (the gradient norm is drawn
    beside the picked statistic anyway).
    """
    votes = {name: 0 for name in dict.fromkeys(UNIT_STATISTICS.values())}
    for run in runs:
        for unit in run.activations:
            statistic = UNIT_STATISTICS.get(activation_group(unit))
            if statistic is not None:
                votes[statistic] += 1
    best = max(votes, key=lambda name: votes[name])  # max keeps the first of equal counts
    return best if votes[best] else "weight_norm"


def live_curves_figure(
    runs: Sequence[RunHistory], statistic: str, layers: Sequence[str] | None = None, *, height: int = 420
) -> go.Figure:
    """``statistic`` (a name in :data:`LIVE_STATISTICS`) over steps: one line per (run, layer).

    ``layers``: the layers to draw (``None``: every layer of every run), in the runs' model order.
    A layer whose values are all NaN (the statistic does not apply to its unit, e.g. saturation of
    a ReLU) gets no line. ``uirevision`` keeps the reader's zoom while new steps arrive.
    """
    label, log_y = LIVE_STATISTICS.get(statistic, (statistic.replace("_", " "), False))
    if not runs:
        return empty_figure("no run selected: pick one or more runs")
    if layers is not None and not layers:
        return empty_figure("no layer selected: pick one or more layers")
    if not any(len(r.steps) for r in runs):
        return empty_figure(
            f"no records yet: {', '.join(r.name for r in runs)} ha{'s' if len(runs) == 1 else 've'} not recorded a step"
        )
    several = len(runs) > 1
    traces = []
    for k, run in enumerate(runs):
        for layer in run.layers:
            if layers is not None and layer not in layers:
                continue
            series = run.scalar(statistic, layer)
            if not len(series.steps) or np.isnan(series.values).all():
                continue
            traces.append(
                go.Scatter(
                    x=series.steps,
                    y=series.values,
                    mode="lines+markers" if len(series.steps) < 40 else "lines",
                    name=_trace_name(run, layer, several),
                    line={"dash": _DASHES[k % len(_DASHES)]},
                    hovertemplate=f"{_trace_name(run, layer, True)}<br>step %{{x}}<br>{label} %{{y:.4g}}<extra></extra>",
                )
            )
    if not traces:
        return empty_figure(
            f"no {label} recorded for these layers (saturation is measured for sigmoid/tanh, zero rate for "
            "smooth units, gradients once a backward pass ran)"
        )
    fig = go.Figure(traces)  # one Figure of all traces: add_trace one at a time re-validates the figure each time
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text=label, type="log" if log_y else "linear")
    fig.update_layout(uirevision=statistic, legend={"title": {"text": "run · layer" if several else "layer"}})
    return _base(fig, f"{label} per layer over training steps", height)


def loss_lr_figure(runs: Sequence[RunHistory], *, height: int = 360) -> go.Figure:
    """The training loss (left axis) and learning rate (right axis, dotted) of each run over steps."""
    if not runs:
        return empty_figure("no run selected: pick one or more runs")
    several = len(runs) > 1
    fig = go.Figure()
    for run in runs:
        for name, axis, dash in (("loss", "y", "solid"), ("lr", "y2", "dot")):
            series = run.scalar(name)
            if not len(series.steps) or np.isnan(series.values).all():
                continue
            label = "learning rate" if name == "lr" else "loss"
            fig.add_trace(
                go.Scatter(
                    x=series.steps,
                    y=series.values,
                    mode="lines",
                    yaxis=axis,
                    line={"dash": dash},
                    name=f"{run.name} · {label}" if several else label,
                    hovertemplate=f"{run.name}<br>step %{{x}}<br>{label} %{{y:.4g}}<extra></extra>",
                )
            )
    if not fig.data:
        return empty_figure("no loss or learning rate recorded yet (pass loss= to Monitor.step)")
    fig.update_layout(
        xaxis={"title": {"text": "step"}},
        yaxis={"title": {"text": "loss"}},
        yaxis2={"title": {"text": "learning rate"}, "overlaying": "y", "side": "right", "showgrid": False},
        uirevision="loss",
        legend={"x": 1.08},
    )
    return _base(fig, "loss and learning rate over training steps", height)


def status_text(run: RunHistory) -> str:
    """One line: ``exp1: step 600, running`` (or ``no records yet``)."""
    where = f"step {run.last_step}" if run.last_step is not None else "no records yet"
    return f"{run.name}: {where}, {run.status}"


def warning_rows(runs: Sequence[RunHistory], limit: int | None = None) -> list[dict[str, object]]:
    """The runs' events, newest first (by step, then time): run, step, severity, layer, message."""
    # read order (step, then the order written) breaks ties: a later event of the same record comes first
    events = [(e.step, e.time, k, run.name, e) for run in runs for k, e in enumerate(run.events)]
    events.sort(key=lambda t: (t[0], t[1], t[2]), reverse=True)
    rows: list[dict[str, object]] = [
        {"run": name, "step": e.step, "severity": e.severity, "layer": e.layer or "(model)", "message": e.message}
        for _, _, _, name, e in events
    ]
    return rows if limit is None else rows[:limit]


def snapshot_weights_figure(run: RunHistory, layer: LayerWeights | None, layer_name: str = "") -> go.Figure:
    """The weights of ``layer`` in ``run``'s newest snapshot (the weight heatmap), titled with its step.

    ``layer`` is ``None`` when the snapshot does not hold ``layer_name``'s weight (or there is none).
    """
    snapshot = run.latest_snapshot
    if snapshot is None:
        return empty_figure(f"{run.name} has no weight snapshot yet (Monitor(snapshot_every=...) writes them)")
    if layer is None:
        return empty_figure(
            f"the snapshot at step {snapshot.step} holds no 2-D weight for {layer_name or 'this layer'}"
        )
    fig = weight_heatmap_figure(layer)
    title = fig.layout.title.text
    fig.update_layout(title={"text": f"{run.name}, weights at step {snapshot.step}: {title}"}, uirevision=layer.layer)
    return fig
