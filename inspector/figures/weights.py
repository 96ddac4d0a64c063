"""Weight figures: magnitude heatmaps and maps, histograms, per-neuron weight images."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from inspector.analysis.weights import LayerWeights, PooledMap
from inspector.figures.common import _base, empty_figure


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
        f"stable rank {layer.stable_rank:.1f}" + (f" · alpha {layer.alpha:.2f}" if layer.alpha_tail_size else ""),
        300,
    )


def spectrum_rows(weights: tuple[LayerWeights, ...]) -> list[dict[str, object]]:
    """One table row per layer: spectral norm, stable rank and the power-law fit of its eigenvalues ``s^2``."""
    rows: list[dict[str, object]] = []
    for layer in weights:
        fitted = layer.alpha_tail_size > 0
        rows.append(
            {
                "layer": layer.layer,
                "shape m × n": f"{layer.out_features:,} × {layer.in_features:,}",
                "spectral norm": f"{layer.spectral_norm:.4g}",
                "stable rank": f"{layer.stable_rank:.1f}",
                "alpha": f"{layer.alpha:.2f} ± {(layer.alpha - 1) / np.sqrt(layer.alpha_tail_size):.2f}"
                if fitted
                else "too few values",
                # a tail under SHORT_TAIL eigenvalues: WeightWatcher's fit, kept, but its alpha says little
                "tail eigenvalues": (
                    f"{layer.alpha_tail_size} (too few to trust)" if layer.alpha_short_tail else layer.alpha_tail_size
                )
                if fitted
                else "",
                "xmin (s²)": f"{layer.alpha_xmin:.4g}" if fitted else "",
                "KS distance": f"{layer.alpha_ks_distance:.3f}" if fitted else "",
            }
        )
    return rows


def _tile(images: np.ndarray, columns: int) -> np.ndarray:
    """``images`` ``(k, h, w)`` tiled row-major, ``columns`` to a row, one NaN gap between tiles."""
    k, h, w = images.shape
    rows = int(np.ceil(k / columns))
    canvas = np.full((rows * (h + 1) - 1, columns * (w + 1) - 1), np.nan, dtype=np.float32)
    for idx in range(k):
        r, c = divmod(idx, columns)
        canvas[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = images[idx]
    return canvas


def neuron_images_figure(
    layer: LayerWeights, max_neurons: int = 64, columns: int = 8, max_channels: int = 16
) -> go.Figure:
    """Each neuron's incoming weights as an image, tiled into one heatmap.

    ``neuron_images`` ``(k, H, W)`` (or ``(k, 1, H, W)``): neuron j is tile j, ``columns`` to a row.
    ``(k, C, H, W)`` with C > 1 (a dense layer reading a flattened CNN feature map): one row per
    neuron (the first ``max_neurons // 4``), one column per channel (the first ``max_channels``),
    each tile ``W[j].reshape(C, H, W)[c]``; hover gives (neuron, channel, h, w, weight).
    """
    if layer.neuron_images is None:
        return empty_figure("inputs are not images, and this layer does not read a flattened feature map")
    images = layer.neuron_images
    if images.ndim == 4 and images.shape[1] == 1:
        images = images[:, 0]
    if images.ndim == 3:
        images = images[:max_neurons]
        k, h, w = images.shape
        canvas = _tile(images, columns)
        hover = "skip"
        customdata = None
        title = f"{layer.layer}: incoming weights of the first {k} neurons as {h}×{w} images"
    else:
        n_all, c_all, h, w = images.shape
        images = images[: max(1, max_neurons // 4), :max_channels]
        k, c = images.shape[:2]
        canvas = np.full((k * (h + 1) - 1, c * (w + 1) - 1), np.nan, dtype=np.float32)
        # hover: which neuron, channel and position each cell is (NaN gaps have none)
        where = np.full(canvas.shape + (4,), -1, dtype=np.int32)
        hh, ww = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        for j in range(k):
            for ch in range(c):
                r0, c0 = j * (h + 1), ch * (w + 1)
                canvas[r0 : r0 + h, c0 : c0 + w] = images[j, ch]
                where[r0 : r0 + h, c0 : c0 + w] = np.stack([np.full_like(hh, j), np.full_like(hh, ch), hh, ww], -1)
        hover = None
        customdata = where
        more = f" (first {c} of {c_all} channels)" if c < c_all else ""
        title = (
            f"{layer.layer}: incoming weights of neurons 0-{k - 1} (rows) on its {c_all}×{h}×{w} "
            f"input map, one column per channel{more}"
        )
    limit = float(np.nanmax(np.abs(canvas))) if np.isfinite(canvas).any() else 1.0
    kwargs: dict[str, object] = (
        {"hoverinfo": "skip"}
        if hover == "skip"
        else {
            "customdata": customdata,
            "hovertemplate": "neuron %{customdata[0]}, channel %{customdata[1]}<br>"
            "(h, w) = (%{customdata[2]}, %{customdata[3]})<br>w = %{z:.4g}<extra></extra>",
        }
    )
    fig = go.Figure(
        go.Heatmap(
            z=canvas, colorscale="RdBu_r", zmin=-(limit or 1.0), zmax=limit or 1.0, colorbar={"title": "w"}, **kwargs
        )
    )
    fig.update_yaxes(autorange="reversed", visible=False, scaleanchor="x")
    fig.update_xaxes(visible=False)
    return _base(fig, title, 460)


# --------------------------------------------------------------------------- neurons
