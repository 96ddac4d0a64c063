"""One neuron: its activations, incoming weights, strongest inputs and classes."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from inspector.analysis.activations import LayerActivations
from inspector.analysis.importance import LayerConductanceResult
from inspector.analysis.weights import LayerWeights
from inspector.figures.common import _base, empty_figure


def neuron_activation_figure(acts: LayerActivations | None, j: int) -> go.Figure:
    if acts is None or j >= acts.width:
        return empty_figure("no activation statistics for this neuron (needs data; output layers have none)")
    edges = acts.histogram_edges
    fig = go.Figure(
        go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=acts.histogram_counts[j], width=np.diff(edges), marker_color="#74c476")
    )
    if acts.fire_rate is not None:
        title = f"neuron {j} of {acts.layer}: fires on {100 * acts.fire_rate[j]:.1f}% of samples"
        state = neuron_state(acts, j)
        if state is not None:
            title += f" ({state})"
        if acts.zero_rate is not None:
            title += f", near zero on {100 * acts.zero_rate[j]:.1f}%"
    elif acts.saturation_rate is not None:
        title = f"neuron {j} of {acts.layer}: saturated on {100 * acts.saturation_rate[j]:.1f}% of samples"
    else:
        title = f"neuron {j} of {acts.layer}: activation {acts.activation}"
    fig.update_xaxes(title_text=f"{acts.activation} output")
    fig.update_yaxes(title_text="samples")
    return _base(fig, title, 300)


def neuron_state(acts: LayerActivations, j: int, threshold: float | None = None) -> str | None:
    """ "dead", "nearly dead" or "alive" for a unit with a dead mask; ``None`` for any other unit."""
    if acts.dead_mask is None or acts.fire_rate is None:
        return None
    if acts.dead_mask[j]:
        return "dead"
    t = acts.nearly_dead_threshold if threshold is None else threshold
    return "nearly dead" if acts.fire_rate[j] < t else "alive"


def _feature_bar(
    values: np.ndarray, names: tuple[str, ...], k: int, title: str, color: str, signed: bool = False
) -> go.Figure:
    order = np.argsort(-(np.abs(values) if signed else values), kind="stable")[:k]
    labels = [names[i] if i < len(names) else f"x{i}" for i in order]
    fig = go.Figure(go.Bar(x=values[order][::-1], y=labels[::-1], orientation="h", marker_color=color))
    fig.update_yaxes(type="category")
    return _base(fig, title, max(260, 22 * len(order) + 90))


def neuron_incoming_figure(
    layer: LayerWeights, j: int, feature_names: tuple[str, ...], image_shape: tuple[int, int] | None
) -> go.Figure:
    if layer.values is None:
        return empty_figure("layer too large to keep every weight; zoom in the heatmap instead")
    row = layer.values[j]
    shape = layer.image_shape or image_shape  # (H, W), or (C, H, W) after a CNN's flatten
    if layer.neuron_images is not None and shape is not None and int(np.prod(shape)) == row.size:
        limit = float(np.abs(row).max()) or 1.0
        maps = row.reshape((1, *shape) if len(shape) == 2 else shape)
        c, h, w = maps.shape
        gap = np.full((h, 1), np.nan)  # the channels side by side, one blank column between
        z = np.concatenate([part for k in range(c) for part in ((maps[k], gap) if k < c - 1 else (maps[k],))], 1)
        fig = go.Figure(go.Heatmap(z=z, colorscale="RdBu_r", zmin=-limit, zmax=limit, hoverongaps=False))
        fig.update_yaxes(autorange="reversed", scaleanchor="x")
        channels = f", {c} channels side by side" if c > 1 else ""
        return _base(fig, f"neuron {j} of {layer.layer}: incoming weights{channels}", 320)
    return _feature_bar(
        row, feature_names, 15, f"neuron {j} of {layer.layer}: largest incoming weights", "#6baed6", signed=True
    )


def neuron_inputs_figure(
    cond: LayerConductanceResult | None, j: int, feature_names: tuple[str, ...], k: int = 12
) -> go.Figure:
    if cond is None or j >= cond.neuron_inputs.shape[0]:
        why = getattr(cond, "neuron_inputs_skipped", None)
        return empty_figure(
            f"no neuron conductance: {why}" if why else "no neuron conductance (needs data; hidden layers only)"
        )
    return _feature_bar(
        cond.neuron_inputs[j],
        feature_names,
        k,
        f"inputs that drive neuron {j} (NeuronConductance, mean |attribution|)",
        "#9e9ac8",
    )


def neuron_classes_figure(
    cond: LayerConductanceResult | None, j: int, class_names: tuple[str, ...], task: str = "classification"
) -> go.Figure:
    """Neuron ``j``'s mean conductance to each class's logit; for a task without classes (regression,
    custom) its mean conductance to the explained output, next to every other neuron's."""
    if task != "classification":
        return neuron_output_figure(cond, j)
    if cond is None or cond.by_class is None or j >= cond.by_class.shape[1]:
        return empty_figure("no layer conductance per class (needs data and a classification; hidden layers only)")
    values = np.nan_to_num(cond.by_class[:, j])
    fig = go.Figure(
        go.Bar(x=list(class_names[: len(values)]), y=values, marker_color=np.where(values >= 0, "#31a354", "#de2d26"))
    )
    fig.update_xaxes(type="category", title_text="class")
    fig.update_yaxes(title_text="mean conductance")
    return _base(fig, f"neuron {j}'s contribution to each class's logit (LayerConductance)", 300)


def neuron_output_figure(cond: LayerConductanceResult | None, j: int) -> go.Figure:
    """Mean conductance (LayerConductance, Dhamdhere et al. 2018) of every neuron of the layer to the
    explained output ``mean_conductance`` ``(m,)``, neuron ``j`` highlighted: a task without classes."""
    if cond is None or j >= cond.mean_conductance.shape[0]:
        return empty_figure(
            "no classes in this task, and no conductance to the output (needs data; hidden layers only)"
        )
    values = np.nan_to_num(cond.mean_conductance)
    colors = np.where(values >= 0, "#a1d99b", "#fcae91").astype(object)
    colors[j] = "#31a354" if values[j] >= 0 else "#de2d26"
    fig = go.Figure(
        go.Bar(
            x=np.arange(len(values)),
            y=values,
            marker_color=colors,
            marker_line_width=0,
            hovertemplate="neuron %{x}: %{y:.4g}<extra></extra>",
        )
    )
    fig.update_layout(bargap=0 if len(values) > 200 else 0.2)
    fig.update_xaxes(title_text="neuron")
    fig.update_yaxes(title_text="mean conductance")
    return _base(fig, f"neuron {j}'s conductance to the output: {values[j]:+.4g} (no classes; LayerConductance)", 300)


# --------------------------------------------------------------------------- dead ReLUs
