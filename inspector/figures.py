"""Plotly figure builders: results in, ``go.Figure`` out.

Shared by the dashboard and the reports, so a picture looks the same in both.
Builders never touch torch or recompute an analysis; they only lay out the
numbers the core stored. Arrays go to Plotly as numpy arrays, which Plotly
ships to the browser as typed arrays, not nested JSON lists.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from inspector.analysis import Analysis, ModelInfo
from inspector.analysis.activations import DeathTimeline, LayerActivations
from inspector.analysis.diagnostics import TrainingDiagnostics
from inspector.analysis.importance import ImportanceReport, LayerConductanceResult, MethodImportance
from inspector.analysis.methods import METHOD_LABELS
from inspector.analysis.parameters import ParameterReport, trainable_text
from inspector.analysis.pruning import PruningReport
from inspector.analysis.weights import LayerWeights, PooledMap

TEMPLATE = "plotly_white"
SCOPE_LABELS = {"global": "global magnitude", "layer": "per layer", "neuron": "neurons (structured)"}
SCOPE_COLORS = {"global": "#1f77b4", "layer": "#2ca02c", "neuron": "#ff7f0e"}
COLORS = {"dead": "#d62728", "nearly": "#ff7f0e", "alive": "#2ca02c", "train": "#1f77b4", "val": "#ff7f0e"}


def _base(fig: go.Figure, title: str, height: int = 380) -> go.Figure:
    fig.update_layout(
        template=TEMPLATE,
        title={"text": title, "x": 0.01, "xanchor": "left", "y": 0.98, "yanchor": "top"},
        height=height,
        margin={"l": 60, "r": 20, "t": 64, "b": 50},
    )
    return fig


def empty_figure(message: str, height: int = 300) -> go.Figure:
    """A placeholder that says why there is nothing to draw."""
    fig = go.Figure()
    fig.add_annotation(
        text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper", font={"size": 14, "color": "#666"}
    )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _base(fig, "", height)


# --------------------------------------------------------------------------- overview


def parameter_rows(report: ParameterReport) -> list[dict[str, object]]:
    """Table rows with the m x (n + 1) arithmetic spelled out, embeddings (rows x dim), plus a totals row."""
    rows: list[dict[str, object]] = []
    for layer in report.layers:
        rows.append(
            {
                "layer": layer.layer + (f" (tied to {layer.tied_to})" if layer.tied_to else ""),
                "inputs n": layer.in_features,
                "outputs m": layer.out_features,
                "weights": layer.weights,
                "biases": layer.biases,
                "formula": layer.formula(),
                "parameters": layer.parameters,
                "MACs/sample": layer.macs_per_sample,
                "trainable": trainable_text(layer.trainable),
            }
        )
    for emb in report.embeddings:
        rows.append(
            {
                "layer": f"{emb.layer} (Embedding {emb.num_embeddings:,} × {emb.embedding_dim:,})"
                + (f" (tied to {emb.tied_to})" if emb.tied_to else ""),
                "inputs n": "",
                "outputs m": "",
                "weights": "",
                "biases": "",
                "formula": emb.formula(),
                "parameters": emb.parameters,
                "MACs/sample": "",
                "trainable": trainable_text(emb.trainable),
            }
        )
    for other in report.other:
        rows.append(
            {
                "layer": f"{other.name} ({other.kind})",
                "inputs n": "",
                "outputs m": "",
                "weights": "",
                "biases": "",
                "formula": "",
                "parameters": other.parameters,
                "MACs/sample": "",
                "trainable": trainable_text(other.trainable),
            }
        )
    rows.append(
        {
            "layer": "total",
            "inputs n": "",
            "outputs m": "",
            "weights": sum(layer.weights for layer in report.layers),
            "biases": sum(layer.biases for layer in report.layers),
            "formula": "",
            "parameters": report.total_parameters,
            "MACs/sample": report.macs_per_sample,
            "trainable": "",
        }
    )
    return rows


def architecture_figure(model: ModelInfo) -> go.Figure:
    """Layers as boxes whose height grows with their width (log scale), left to right."""
    sizes = model.layer_sizes
    if not sizes:
        return empty_figure(f"{model.architecture}: the layers do not form one chain, so there is no diagram")
    labels = ["input"] + [name for name, _ in model.blocks]
    acts = [""] + [act if act != "none" else "" for _, act in model.blocks]
    top = np.log2(max(sizes) + 1)
    fig = go.Figure()
    for k, (size, label, act) in enumerate(zip(sizes, labels, acts)):
        h = 0.15 + 0.85 * np.log2(size + 1) / top
        color = "#9ecae1" if k == 0 else ("#fdae6b" if k == len(sizes) - 1 else "#a1d99b")
        fig.add_shape(type="rect", x0=k - 0.3, x1=k + 0.3, y0=-h / 2, y1=h / 2, fillcolor=color, line={"color": "#555"})
        text = f"<b>{label}</b><br>{size:,}" + (f"<br>{act}" if act else "")
        fig.add_annotation(x=k, y=0, text=text, showarrow=False, font={"size": 12})
        if k:
            fig.add_annotation(
                x=k - 0.3,
                y=0,
                ax=k - 0.7,
                ay=0,
                xref="x",
                yref="y",
                axref="x",
                ayref="y",
                showarrow=True,
                arrowhead=2,
                arrowcolor="#777",
                text="",
            )
    extras = [
        x
        for x in (
            model.activation,
            "batch norm" if model.batch_norm else "",
            f"dropout {model.dropout:g}" if model.dropout else "",
        )
        if x
    ]
    fig.update_xaxes(visible=False, range=[-0.6, len(sizes) - 0.4])
    fig.update_yaxes(visible=False, range=[-0.6, 0.6])
    return _base(fig, f"{model.architecture}" + (f" · {', '.join(extras[1:])}" if len(extras) > 1 else ""), 260)


def training_figure(training: TrainingDiagnostics | None) -> go.Figure:
    """Train and validation loss and accuracy per epoch; the restored epoch marked."""
    if training is None:
        return empty_figure("no training history in this checkpoint")
    epochs = np.arange(1, training.epochs_run + 1)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy"))
    for col, (train, val) in enumerate(
        ((training.train_loss, training.val_loss), (training.train_accuracy, training.val_accuracy)), start=1
    ):
        fig.add_trace(
            go.Scatter(
                x=epochs,
                y=train,
                name="train",
                legendgroup="train",
                showlegend=col == 1,
                line={"color": COLORS["train"]},
            ),
            row=1,
            col=col,
        )
        fig.add_trace(
            go.Scatter(
                x=epochs,
                y=val,
                name="validation",
                legendgroup="val",
                showlegend=col == 1,
                line={"color": COLORS["val"]},
            ),
            row=1,
            col=col,
        )
        fig.add_vline(x=training.best_epoch, line_dash="dash", line_color="#444", row=1, col=col)
        if training.overfitting_epoch is not None:
            fig.add_vline(x=training.overfitting_epoch, line_dash="dot", line_color=COLORS["dead"], row=1, col=col)
    note = f"best epoch {training.best_epoch}" + (" (early stop)" if training.stopped_early else "")
    if training.overfitting_epoch is not None:
        note += f", overfitting from epoch {training.overfitting_epoch}"
    fig.update_xaxes(title_text="epoch")
    return _base(fig, f"Training curves · {note}", 360)


# --------------------------------------------------------------------------- weights


def neuron_order(layer: LayerWeights) -> np.ndarray:
    """Neuron numbers ordered by incoming norm ``||W[j, :]||``, strongest first.

    Ties keep neuron order; NaN norms (non-finite weights) go last. The one
    ordering behind every "sort neurons by norm" view.
    """
    return np.argsort(-layer.neuron_norm, kind="stable")


def _rank_ticks(ranks: np.ndarray, neurons: np.ndarray, most: int = 24) -> dict[str, object]:
    """Tick labels for a sorted map: the neuron number at up to ``most`` evenly spaced rows."""
    picks = np.unique(np.linspace(0, len(ranks) - 1, min(len(ranks), most)).round().astype(int))
    return {"tickmode": "array", "tickvals": ranks[picks].tolist(), "ticktext": [str(j) for j in neurons[picks]]}


def weight_heatmap_figure(
    layer: LayerWeights,
    *,
    sort_rows: bool = False,
    magnitude: bool = False,
    region: PooledMap | None = None,
    signed_values: np.ndarray | None = None,
) -> go.Figure:
    """The weights with neuron j on the y axis and input i on the x axis.

    At full resolution the colour is the signed w_ij on a diverging scale
    (intensity is |w|) and hover gives (j, i, w_ij); ``magnitude`` shows |w|
    instead. Layers too large to keep show the block maximum of |w|. ``region``
    replaces the stored map with one the caller pooled from the full weight
    (a zoom, drawn at full resolution when it fits), ``signed_values`` its
    signed weights.

    ``sort_rows`` orders neurons by incoming norm, strongest on top
    (:func:`neuron_order`). The y axis is then the rank, labelled with neuron
    numbers, so a zoom's y range is a range of ranks. A stored full-resolution
    layer is sorted here; a pooled one cannot be, since block maxima of the
    unsorted rows mix strong and weak neurons: pass the ``region`` pooled from
    the row-sorted weight (its ``row_offset`` a rank) instead.
    """
    if sort_rows and region is None and not layer.magnitude.is_full_resolution:
        raise ValueError(
            f"{layer.layer} is stored pooled; sort its full weight's rows, pool them, and pass that map as region"
        )
    pooled = region or layer.magnitude
    full = pooled.is_full_resolution
    values = None
    if full and not magnitude:
        values = signed_values if signed_values is not None else (layer.values if region is None else None)
    z = pooled.values if values is None else values
    rows_shown = z.shape[0]
    ranks = pooled.row_offset + pooled.block_rows * np.arange(rows_shown)
    neurons = None
    if sort_rows:
        order = neuron_order(layer)
        if region is None:
            z = z[order]
        neurons = order[ranks]  # for a pooled map, the strongest neuron of each block
    kwargs: dict[str, object] = {}
    if values is not None:
        limit = float(np.abs(values).max()) or 1.0
        kwargs.update(zmin=-limit, zmax=limit, colorscale="RdBu_r", colorbar={"title": "w"})
        shown = "w = %{z:.4g}"
    else:
        kwargs.update(colorscale="Viridis", colorbar={"title": "|w|" if full else "max |w|"})
        shown = "|w| = %{z:.4g}" if full else "max |w| = %{z:.4g}"
    if neurons is None:
        where = "neuron %{y}<br>input %{x}" if full else "neurons from %{y}<br>inputs from %{x}"
    else:
        # hover names the neuron of each row; a small unsigned grid ships as a typed array, not JSON numbers
        dtype = np.uint16 if layer.out_features <= np.iinfo(np.uint16).max else np.uint32
        kwargs["customdata"] = np.repeat(neurons.astype(dtype)[:, None], z.shape[1], axis=1)
        where = (
            "neuron %{customdata} (rank %{y} by norm)<br>input %{x}"
            if full
            else "neurons ranked %{y}+ by norm, strongest %{customdata}<br>inputs from %{x}"
        )
    trace = go.Heatmap(
        z=z,
        x0=pooled.col_offset,
        dx=pooled.block_cols,
        y0=pooled.row_offset,
        dy=pooled.block_rows,
        hovertemplate=f"{where}<br>{shown}<extra></extra>",
        **kwargs,
    )
    fig = go.Figure(trace)
    if neurons is None:
        fig.update_yaxes(title_text="neuron j", autorange="reversed")
    else:
        fig.update_yaxes(
            title_text="neuron j, by incoming norm (strongest first)",
            autorange="reversed",
            **_rank_ticks(ranks, neurons),
        )
    fig.update_xaxes(title_text="input i")
    m, n = pooled.full_shape
    what = "full resolution" if full else f"max |w| over {pooled.block_rows}×{pooled.block_cols} blocks"
    if sort_rows:
        what += ", rows sorted by norm"
    if region is not None and (
        region.row_offset
        or region.col_offset
        or rows_shown * region.block_rows < m
        or z.shape[1] * region.block_cols < n
    ):
        what += f", {'ranks' if sort_rows else 'rows'} {region.row_offset}+, columns {region.col_offset}+"
    return _base(fig, f"{layer.layer}: {m:,} × {n:,} weights ({what})", 520)


def magnitude_map_figure(pooled: PooledMap, title: str, colorbar: str = "max |w|") -> go.Figure:
    """Any non-negative map over a weight's (neuron, input) grid, e.g. a weight change |W_b - W_a|."""
    full = pooled.is_full_resolution
    fig = go.Figure(
        go.Heatmap(
            z=pooled.values,
            x0=pooled.col_offset,
            dx=pooled.block_cols,
            y0=pooled.row_offset,
            dy=pooled.block_rows,
            colorscale="Viridis",
            colorbar={"title": colorbar},
            hovertemplate=(
                "neuron %{y}<br>input %{x}<br>%{z:.4g}<extra></extra>"
                if full
                else "neurons from %{y}<br>inputs from %{x}<br>max %{z:.4g}<extra></extra>"
            ),
        )
    )
    fig.update_yaxes(title_text="neuron j", autorange="reversed")
    fig.update_xaxes(title_text="input i")
    return _base(fig, title, 480)


def weight_histogram_figure(layer: LayerWeights) -> go.Figure:
    edges = layer.histogram_edges
    centres = (edges[:-1] + edges[1:]) / 2
    fig = go.Figure(
        go.Bar(
            x=centres,
            y=layer.histogram_counts,
            width=np.diff(edges),
            marker_color="#6baed6",
            hovertemplate="w ≈ %{x:.3g}<br>%{y} weights<extra></extra>",
        )
    )
    fig.update_xaxes(title_text="weight")
    fig.update_yaxes(title_text="count")
    return _base(
        fig,
        f"{layer.layer}: weight histogram · {100 * layer.near_zero_fraction:.1f}% near zero · "
        f"stable rank {layer.stable_rank:.1f}",
        300,
    )


def neuron_images_figure(layer: LayerWeights, max_neurons: int = 64, columns: int = 8) -> go.Figure:
    """Each first-layer neuron's incoming weights as an image, tiled into one heatmap."""
    if layer.neuron_images is None:
        return empty_figure("inputs are not images")
    images = layer.neuron_images[:max_neurons]
    k, h, w = images.shape
    rows = int(np.ceil(k / columns))
    canvas = np.full((rows * (h + 1), columns * (w + 1)), np.nan, dtype=np.float32)
    for idx in range(k):
        r, c = divmod(idx, columns)
        canvas[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = images[idx]
    limit = float(np.nanmax(np.abs(canvas))) or 1.0
    fig = go.Figure(
        go.Heatmap(z=canvas, colorscale="RdBu_r", zmin=-limit, zmax=limit, hoverinfo="skip", colorbar={"title": "w"})
    )
    fig.update_yaxes(autorange="reversed", visible=False, scaleanchor="x")
    fig.update_xaxes(visible=False)
    return _base(fig, f"{layer.layer}: incoming weights of the first {k} neurons as {h}×{w} images", 460)


# --------------------------------------------------------------------------- neurons


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
    if layer.neuron_images is not None and image_shape is not None:
        limit = float(np.abs(row).max()) or 1.0
        fig = go.Figure(go.Heatmap(z=row.reshape(image_shape), colorscale="RdBu_r", zmin=-limit, zmax=limit))
        fig.update_yaxes(autorange="reversed", scaleanchor="x")
        return _base(fig, f"neuron {j} of {layer.layer}: incoming weights", 320)
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


def neuron_classes_figure(cond: LayerConductanceResult | None, j: int, class_names: tuple[str, ...]) -> go.Figure:
    if cond is None or cond.by_class is None or j >= cond.by_class.shape[1]:
        return empty_figure("no layer conductance per class (needs data and a classification; hidden layers only)")
    values = np.nan_to_num(cond.by_class[:, j])
    fig = go.Figure(
        go.Bar(x=list(class_names[: len(values)]), y=values, marker_color=np.where(values >= 0, "#31a354", "#de2d26"))
    )
    fig.update_xaxes(type="category", title_text="class")
    fig.update_yaxes(title_text="mean conductance")
    return _base(fig, f"neuron {j}'s contribution to each class's logit (LayerConductance)", 300)


# --------------------------------------------------------------------------- dead ReLUs


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
            hovertemplate="neuron %{x}<br>fires on %{y:.1%} of samples<extra></extra>",
        )
    )
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
            hovertemplate="unit %{x}<br>saturated on %{y:.1%} of samples<extra></extra>",
        )
    )
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


def importance_bar_figure(
    method: MethodImportance,
    feature_names: tuple[str, ...],
    class_index: int | None = None,
    class_names: tuple[str, ...] = (),
    k: int = 15,
) -> go.Figure:
    if method.error is not None:
        return empty_figure(f"{METHOD_LABELS[method.method]} could not run: {method.error}")
    if method.per_class is None:  # not a classification: one importance over all samples
        class_index = None
    values = (
        method.global_importance
        if class_index is None or method.per_class is None
        else np.nan_to_num(method.per_class[class_index])
    )
    which = (
        "all classes" if class_index is None else f"class {class_names[class_index] if class_names else class_index}"
    )
    return _feature_bar(
        values,
        feature_names,
        k,
        f"{METHOD_LABELS[method.method]}: top {k} inputs ({which}, mean |attribution|)",
        "#3182bd",
    )


def importance_map_figure(
    values: np.ndarray, image_shape: tuple[int, int] | None, title: str, signed: bool = False
) -> go.Figure:
    if image_shape is None or values.size != image_shape[0] * image_shape[1]:
        return empty_figure("inputs are not images")
    z = values.reshape(image_shape)
    kwargs: dict[str, object] = {"colorscale": "Viridis"}
    if signed:
        limit = float(np.abs(z).max()) or 1.0
        kwargs = {"colorscale": "RdBu_r", "zmin": -limit, "zmax": limit}
    fig = go.Figure(go.Heatmap(z=z, hovertemplate="row %{y}, col %{x}: %{z:.3g}<extra></extra>", **kwargs))
    fig.update_yaxes(autorange="reversed", scaleanchor="x")
    return _base(fig, title, 340)


def sanity_figure(report: ImportanceReport, fail_above: float = 0.5) -> go.Figure:
    methods = [m for m in report.methods if m.sanity_correlation is not None]
    if not methods:
        return empty_figure("no sanity-check scores")
    values = np.array([m.sanity_correlation for m in methods])
    fig = go.Figure(
        go.Bar(
            x=[METHOD_LABELS[m.method] for m in methods],
            y=values,
            marker_color=np.where(values > fail_above, COLORS["dead"], COLORS["alive"]),
            hovertemplate="%{x}: rank correlation %{y:.2f}<extra></extra>",
        )
    )
    fig.add_hline(y=fail_above, line_dash="dot", line_color="#444")
    fig.update_yaxes(title_text="rank correlation with randomised model", range=[-0.2, 1.05])
    return _base(fig, "Sanity check (Adebayo et al. 2018): lower means the method looks at the weights", 320)


def sample_figure(
    x: np.ndarray,
    attribution: np.ndarray,
    probabilities: np.ndarray,
    *,
    label: int,
    image_shape: tuple[int, int] | None,
    feature_names: tuple[str, ...],
    class_names: tuple[str, ...],
    method: str,
) -> go.Figure:
    """One sample: its input, the attribution overlay and the predicted class probabilities."""
    predicted = int(np.argmax(probabilities))
    titles = ("input", f"{METHOD_LABELS.get(method, method)} attribution", "prediction")
    fig = make_subplots(rows=1, cols=3, subplot_titles=titles, column_widths=[0.3, 0.3, 0.4])
    limit = float(np.abs(attribution).max()) or 1.0
    if image_shape is not None and x.size == image_shape[0] * image_shape[1]:
        fig.add_trace(go.Heatmap(z=x.reshape(image_shape), colorscale="Greys", showscale=False), row=1, col=1)
        fig.add_trace(
            go.Heatmap(z=x.reshape(image_shape), colorscale="Greys", showscale=False, opacity=0.35), row=1, col=2
        )
        fig.add_trace(
            go.Heatmap(
                z=attribution.reshape(image_shape),
                colorscale="RdBu_r",
                zmin=-limit,
                zmax=limit,
                opacity=0.75,
                colorbar={"x": 0.58, "len": 0.8},
            ),
            row=1,
            col=2,
        )
        for col in (1, 2):
            fig.update_yaxes(autorange="reversed", row=1, col=col)
    else:
        idx = np.argsort(-np.abs(attribution))[:12][::-1]
        names = [feature_names[i] for i in idx]
        fig.add_trace(go.Bar(x=x[idx], y=names, orientation="h", marker_color="#bdbdbd"), row=1, col=1)
        fig.add_trace(
            go.Bar(
                x=attribution[idx],
                y=names,
                orientation="h",
                marker_color=np.where(attribution[idx] >= 0, "#31a354", "#de2d26"),
            ),
            row=1,
            col=2,
        )
    colors = [
        "#3182bd" if c != predicted else ("#31a354" if c == label else "#de2d26") for c in range(len(probabilities))
    ]
    fig.add_trace(go.Bar(x=list(class_names[: len(probabilities)]), y=probabilities, marker_color=colors), row=1, col=3)
    fig.update_xaxes(type="category", row=1, col=3)
    fig.update_layout(showlegend=False)
    verdict = "correct" if predicted == label else "wrong"
    return _base(
        fig,
        f"label {class_names[label]}, predicted {class_names[predicted]} "
        f"({100 * probabilities[predicted]:.1f}%, {verdict})",
        360,
    )


# --------------------------------------------------------------------------- pruning and activations


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


def projection_figure(acts: LayerActivations, class_names: tuple[str, ...]) -> go.Figure:
    if acts.projection.shape[0] == 0:
        return empty_figure("no activations kept for a projection")
    fig = go.Figure()
    labels = acts.projection_labels
    if labels is None:
        fig.add_trace(go.Scattergl(x=acts.projection[:, 0], y=acts.projection[:, 1], mode="markers"))
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
    return _base(fig, f"{acts.layer} activations ({acts.activation}), first two principal components", 480)


def findings_lines(analysis: Analysis) -> list[tuple[str, str]]:
    """``(severity, text)`` pairs, warnings first."""
    ordered = sorted(analysis.findings, key=lambda f: f.severity != "warning")
    return [(f.severity, f.text) for f in ordered]
