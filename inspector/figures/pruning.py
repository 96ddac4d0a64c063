"""Pruning figures: curves per scope, in the task's metric, and the preview table."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from inspector.analysis.pruning import PruningReport
from inspector.figures.common import SCOPE_COLORS, SCOPE_LABELS, _base, empty_figure


def format_metric(name: str, value: float) -> str:
    """A pruning metric as text: accuracy as a percentage, anything else (R², a user metric) as a number."""
    if not np.isfinite(value):
        return "n/a"
    return f"{value:.1%}" if name == "accuracy" else f"{value:.4g}"


def _metric_change(name: str, change: float) -> str:
    if not np.isfinite(change):
        return "n/a"
    return f"{100 * change:+.1f} points" if name == "accuracy" else f"{change:+.4g}"


def pruning_figure(report: PruningReport | None, preview: float | None = None) -> go.Figure:
    if report is None:
        return empty_figure("no pruning sweep (needs data)")
    name = report.metric_name
    fig = make_subplots(rows=1, cols=2, subplot_titles=(name, "parameters left"))
    for curve in report.curves:
        label = SCOPE_LABELS.get(curve.scope, curve.scope)
        line = {"color": SCOPE_COLORS.get(curve.scope)}
        fig.add_trace(
            go.Scatter(
                x=curve.sparsity, y=curve.metric, mode="lines+markers", name=label, legendgroup=curve.scope, line=line
            ),
            row=1,
            col=1,
        )
        if curve.finetuned_metric is not None:
            fig.add_trace(
                go.Scatter(
                    x=curve.sparsity,
                    y=curve.finetuned_metric,
                    mode="lines+markers",
                    line={**line, "dash": "dot"},
                    name=f"{label}, fine-tuned",
                    legendgroup=curve.scope,
                ),
                row=1,
                col=1,
            )
        fig.add_trace(
            go.Scatter(
                x=curve.sparsity,
                y=curve.parameters_left,
                mode="lines+markers",
                name=label,
                legendgroup=curve.scope,
                showlegend=False,
                line=line,
            ),
            row=1,
            col=2,
        )
    if np.isfinite(report.baseline_metric):
        fig.add_hline(y=report.baseline_metric, line_dash="dot", line_color="#444", row=1, col=1)
    if preview is not None:
        fig.add_vline(x=preview, line_color="#e6550d", row=1, col=1)
        fig.add_vline(x=preview, line_color="#e6550d", row=1, col=2)
    fig.update_xaxes(title_text="sparsity", tickformat=".0%")
    if name == "accuracy":
        fig.update_yaxes(tickformat=".0%", row=1, col=1)
    return _base(
        fig,
        f"Magnitude pruning on {report.n_samples} samples (unpruned {name} "
        f"{format_metric(name, report.baseline_metric)})",
        380,
    )


def pruning_preview_rows(report: PruningReport, sparsity: float) -> list[dict[str, object]]:
    """The stored level nearest ``sparsity`` for each scope."""
    rows: list[dict[str, object]] = []
    name = report.metric_name
    for curve in report.curves:
        i = int(np.argmin(np.abs(curve.sparsity - sparsity)))
        rows.append(
            {
                "scope": SCOPE_LABELS.get(curve.scope, curve.scope),
                "sparsity": f"{curve.sparsity[i]:.0%}",
                name: format_metric(name, float(curve.metric[i])),
                "change": _metric_change(name, float(curve.metric[i] - report.baseline_metric)),
                "parameters left": f"{int(curve.parameters_left[i]):,} of {report.total_parameters:,}",
            }
        )
    return rows
