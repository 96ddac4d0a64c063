"""Activation figures: dead and firing neurons, saturation, deaths over training, projections."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from inspector.analysis.activations import DeathTimeline, LayerActivations
from inspector.figures.common import COLORS, _base, empty_figure

WIDE = 200  # neurons beyond which a per-neuron bar chart drops its gaps


def dead_summary_figure(activations: tuple[LayerActivations, ...], threshold: float) -> go.Figure:
    layers = [a for a in activations if a.dead_mask is not None and a.fire_rate is not None]
    if not layers:
        return empty_figure("no ReLU-family layers to count")
    names = [a.layer for a in layers]
    dead = np.array([a.dead_count for a in layers])
    nearly = np.array([a.nearly_dead_count(threshold) for a in layers])
    alive = np.array([a.width for a in layers]) - dead - nearly
    fig = go.Figure()
    for label, values, color in (
        ("dead", dead, COLORS["dead"]),
        ("nearly dead", nearly, COLORS["nearly"]),
        ("alive", alive, COLORS["alive"]),
    ):
        fig.add_trace(
            go.Bar(
                x=names,
                y=values,
                name=label,
                marker_color=color,
                hovertemplate="%{x}: %{y} " + label + "<extra></extra>",
            )
        )
    fig.update_layout(barmode="stack")
    fig.update_xaxes(type="category", title_text="layer")
    fig.update_yaxes(title_text="neurons")
    return _base(fig, f"Dead, nearly dead (< {100 * threshold:.1f}% of samples) and alive neurons", 340)


def firing_strip_figure(acts: LayerActivations, threshold: float) -> go.Figure:
    """Each neuron's firing rate, one bar per neuron, coloured by its state.

    Units without a dead mask (smooth units such as GELU, an unknown activation)
    are drawn in one colour: their firing rate is shown, but "dead" does not apply.
    """
    if acts.fire_rate is None:
        return saturation_figure(acts)
    rate = acts.fire_rate
    if acts.dead_mask is None:
        colors = np.full(len(rate), COLORS["alive"], dtype=object)
    else:
        colors = np.where(acts.dead_mask, COLORS["dead"], np.where(rate < threshold, COLORS["nearly"], COLORS["alive"]))
    fig = go.Figure(
        go.Bar(
            x=np.arange(len(rate)),
            y=rate,
            marker_color=colors,
            marker_line_width=0,
            hovertemplate="neuron %{x}<br>fires on %{y:.1%} of samples<extra></extra>",
        )
    )
    # a wide layer (a transformer's 1,536-unit MLP) draws one bar per pixel or less: gaps would hide the bars
    fig.update_layout(bargap=0 if len(rate) > WIDE else 0.2)
    fig.update_xaxes(range=[-0.5, len(rate) - 0.5])
    fig.add_hline(y=threshold, line_dash="dot", line_color="#444")
    fig.update_xaxes(title_text="neuron")
    fig.update_yaxes(title_text="firing rate", range=[0, 1])
    return _base(fig, f"{acts.layer}: firing rate per neuron on {acts.n_samples} samples", 300)


def saturation_figure(acts: LayerActivations) -> go.Figure:
    rate = acts.saturation_rate
    if rate is None:
        return empty_figure(f"{acts.layer} ({acts.activation}): no firing or saturation rate measured")
    fig = go.Figure(
        go.Bar(
            x=np.arange(len(rate)),
            y=rate,
            marker_color="#9e9ac8",
            marker_line_width=0,
            hovertemplate="unit %{x}<br>saturated on %{y:.1%} of samples<extra></extra>",
        )
    )
    fig.update_layout(bargap=0 if len(rate) > WIDE else 0.2)
    fig.update_yaxes(title_text="saturation rate", range=[0, 1])
    fig.update_xaxes(title_text="unit")
    return _base(fig, f"{acts.layer} ({acts.activation}): saturation per unit", 300)


def deaths_figure(timeline: DeathTimeline | None) -> go.Figure:
    if timeline is None:
        return empty_figure("no weight snapshots: train with --snapshot-every K to see deaths over time")
    fig = go.Figure()
    for k, name in enumerate(timeline.layers):
        fig.add_trace(go.Scatter(x=timeline.epochs, y=timeline.dead_counts[k], mode="lines+markers", name=name))
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(title_text="dead neurons", rangemode="tozero")
    return _base(fig, "Dead neurons over training (from weight snapshots)", 300)


# --------------------------------------------------------------------------- importance


def projection_figure(
    acts: LayerActivations,
    class_names: tuple[str, ...],
    values: np.ndarray | None = None,
    value_name: str = "target",
    uncoloured: str = "",
) -> go.Figure:
    """The layer's kept rows on their top two principal components ``projection`` ``(k, 2)``.

    Coloured by class (``projection_labels``); or, for a task without classes, by ``values``
    ``(k',)``: a continuous value (the regression target) of the first ``k' <= k`` rows, the
    rest grey. ``uncoloured``: a short reason shown in the title when neither is at hand.
    """
    if acts.projection.shape[0] == 0:
        return empty_figure("no activations kept for a projection")
    fig = go.Figure()
    labels = acts.projection_labels
    title = f"{acts.layer} activations ({acts.activation}), first two principal components"
    if labels is None and values is not None and len(values):
        k = min(len(values), acts.projection.shape[0])
        if k < acts.projection.shape[0]:
            fig.add_trace(
                go.Scattergl(
                    x=acts.projection[k:, 0],
                    y=acts.projection[k:, 1],
                    mode="markers",
                    name=f"no {value_name} at hand",
                    marker={"size": 5, "color": "#bbb"},
                )
            )
        fig.add_trace(
            go.Scattergl(
                x=acts.projection[:k, 0],
                y=acts.projection[:k, 1],
                mode="markers",
                name=value_name,
                marker={
                    "size": 6,
                    "opacity": 0.85,
                    "color": np.asarray(values[:k], dtype=np.float64),
                    "colorscale": "Viridis",
                    "colorbar": {"title": {"text": value_name}},
                },
                hovertemplate=value_name + " %{marker.color:.4g}<extra></extra>",
            )
        )
        title += f", coloured by {value_name}"
    elif labels is None:
        fig.add_trace(go.Scattergl(x=acts.projection[:, 0], y=acts.projection[:, 1], mode="markers"))
        if uncoloured:
            title += f" ({uncoloured})"
    else:
        for c in np.unique(labels):
            rows = labels == c
            name = class_names[c] if c < len(class_names) else str(c)
            fig.add_trace(
                go.Scattergl(
                    x=acts.projection[rows, 0],
                    y=acts.projection[rows, 1],
                    mode="markers",
                    name=name,
                    marker={"size": 6, "opacity": 0.8},
                )
            )
    v = acts.projection_variance
    fig.update_xaxes(title_text=f"PC1 ({100 * v[0]:.1f}% of variance)")
    fig.update_yaxes(title_text=f"PC2 ({100 * v[1]:.1f}% of variance)")
    return _base(fig, title, 480)
