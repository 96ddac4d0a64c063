"""Weights: pick a layer, see its weight map, histogram and (for image inputs) neuron images."""

from __future__ import annotations

from typing import Any

import numpy as np
from dash import Dash, Input, Output, State, callback_context, dcc, html
from dash.exceptions import PreventUpdate
from plotly.graph_objects import Figure

from dashboards import ids
from dashboards.registry import ViewIds, register_view
from dashboards.security import choice, finite_number, flags
from dashboards.state import DashboardState
from dashboards.views import control, graph, layer_dropdown, note, row
from inspector import figures as F
from inspector.analysis.weights import LayerWeights

ID = ViewIds("weights")  # every id below reads "weights-..."
WEIGHT_LAYER = ID("layer")
WEIGHT_SORT = ID("sort")
WEIGHT_MODE = ID("mode")
WEIGHT_HEATMAP = ID("heatmap")
WEIGHT_HIST = ID("histogram")
WEIGHT_IMAGES = ID("images")
WEIGHT_NOTE = ID("note")
WEIGHT_ZOOM = ID("zoom")

SORT = "sort"
MODES = ("signed", "abs")
SORT_LABEL = " sort neurons by norm"

Region = tuple[tuple[int, int], tuple[int, int]]


def sort_unavailable(state: DashboardState, name: str) -> str | None:
    """Why the rows of ``name`` cannot be sorted by norm, or None when they can."""
    if state.can_sort(name):
        return None
    return (
        "Sorting by norm is off for this layer: it is stored as block maxima, and sorting needs its full "
        "weight. Start the dashboard on the checkpoint to sort it."
    )


def sort_options(state: DashboardState, name: str) -> list[dict[str, Any]]:
    """The sort checkbox for layer ``name``: disabled, with the reason in its label, where sorting is impossible."""
    off = sort_unavailable(state, name) is not None
    return [
        {
            "label": SORT_LABEL + (" (needs the checkpoint for this layer)" if off else ""),
            "value": SORT,
            "disabled": off,
        }
    ]


def heatmap(
    state: DashboardState, name: str, sort_rows: bool, magnitude: bool, region: Region | None = None
) -> tuple[Figure, str]:
    """The heatmap for ``name`` and a line under it saying what it shows.

    ``region`` ((row0, row1), (col0, col1)) zooms a pooled layer to full
    resolution; in a sorted view its rows are ranks by norm (the sorted map's
    own y coordinates). A pooled layer is sorted by ordering the full weight's
    rows before pooling, which needs the model; without it a requested sort is
    not drawn and the line says why.
    """
    layer = state.weights(name)
    if layer is None:
        return F.empty_figure(f"no weight statistics for {name}"), ""
    unavailable = sort_unavailable(state, name) if sort_rows else None
    sort_rows = sort_rows and unavailable is None
    sorted_note = " Rows are sorted by incoming norm, strongest on top." if sort_rows else ""
    if layer.magnitude.is_full_resolution:
        return (
            F.weight_heatmap_figure(layer, sort_rows=sort_rows, magnitude=magnitude),
            "Click a cell to open that neuron." + sorted_note,
        )
    if not state.has_weight(name):
        return F.weight_heatmap_figure(layer), unavailable or (
            "Large layer shown as block maxima; start the dashboard on a checkpoint to zoom to full "
            "resolution or sort its neurons by norm."
        )
    if region is None and not sort_rows:
        return (
            F.weight_heatmap_figure(layer),
            "Zoom in (drag a box) to see that region at full resolution; click a block to open its first neuron.",
        )
    rows, cols = region or ((0, layer.out_features), (0, layer.in_features))
    pooled = state.region(name, rows, cols, sort_rows)
    if pooled is None:
        return F.weight_heatmap_figure(layer), "That region is empty; double-click to zoom out."
    signed = None if magnitude else state.region_values(name, pooled, sort_rows)
    fig = F.weight_heatmap_figure(layer, sort_rows=sort_rows, region=pooled, signed_values=signed, magnitude=magnitude)
    if region is None:
        return fig, (
            "Zoom in (drag a box) to see those neurons at full resolution; click a block to open its "
            "strongest neuron." + sorted_note
        )
    (r0, r1), (c0, c1) = rows, cols
    what = f"Neurons ranked {r0}-{r1 - 1} by norm" if sort_rows else f"Rows {r0}-{r1 - 1}"
    return fig, f"{what}, columns {c0}-{c1 - 1}; double-click to zoom out."


def _axis_range(relayout: dict[str, Any], axis: str) -> tuple[float, float] | None:
    """The ``axis`` range a zoom set, None when it set none; ``PreventUpdate`` when malformed."""
    pair = relayout.get(f"{axis}.range")
    if pair is None and f"{axis}.range[0]" not in relayout and f"{axis}.range[1]" not in relayout:
        return None
    if pair is None:
        pair = [relayout.get(f"{axis}.range[0]"), relayout.get(f"{axis}.range[1]")]
    if not isinstance(pair, list) or len(pair) != 2:
        raise PreventUpdate
    lo, hi = finite_number(pair[0]), finite_number(pair[1])
    if lo is None or hi is None:
        raise PreventUpdate
    return (lo, hi) if lo <= hi else (hi, lo)


def zoom_region(relayout: object, m: int, n: int) -> Region | None:
    """The rows and columns a relayout event zoomed to, clipped to an ``(m, n)`` map; None to zoom out.

    Anything that is neither a zoom nor a zoom-out (a pan-mode switch, an autosize)
    or is malformed answers ``PreventUpdate``: the figure on screen stays.
    """
    if not isinstance(relayout, dict):
        raise PreventUpdate
    x, y = _axis_range(relayout, "xaxis"), _axis_range(relayout, "yaxis")
    if x is None and y is None:
        if relayout.get("xaxis.autorange") is True or relayout.get("yaxis.autorange") is True:
            return None
        raise PreventUpdate

    def span(bounds: tuple[float, float] | None, size: int) -> tuple[int, int]:
        if bounds is None:
            return 0, size
        lo, hi = (min(max(b, 0.0), float(size)) for b in bounds)  # clip before int(): no huge ints
        return int(lo), min(size, int(hi) + 1)

    rows, cols = span(y, m), span(x, n)
    if rows[0] >= rows[1] or cols[0] >= cols[1]:
        raise PreventUpdate
    return rows, cols


def layout(state: DashboardState) -> html.Div:
    names = state.layer_names
    first = names[0]
    fig, hint = heatmap(state, first, False, False)
    layer = state.weights(first)
    return html.Div(
        [
            html.Div(
                [
                    control(
                        "Layer",
                        layer_dropdown(WEIGHT_LAYER, names, first),
                    ),
                    control(
                        "", dcc.Checklist(id=WEIGHT_SORT, options=sort_options(state, first), value=[], inline=True)
                    ),
                    control(
                        "Colour",
                        dcc.RadioItems(
                            id=WEIGHT_MODE,
                            options=[{"label": " signed w ", "value": "signed"}, {"label": " |w|", "value": "abs"}],
                            value="signed",
                            inline=True,
                        ),
                    ),
                ]
            ),
            note(hint, WEIGHT_NOTE),
            dcc.Loading(graph(WEIGHT_HEATMAP, fig)),
            dcc.Store(id=WEIGHT_ZOOM),  # a pooled map's zoom, passed on to the redraw
            row(
                graph(WEIGHT_HIST, F.weight_histogram_figure(layer) if layer else F.empty_figure("no weights")),
                graph(WEIGHT_IMAGES, F.neuron_images_figure(layer) if layer else F.empty_figure("no weights")),
            ),
        ]
    )


def register(app: Dash, state: DashboardState) -> None:
    # A zoom reaches the redraw through a store, and only when the map is pooled (a full-resolution map
    # zooms in the browser by itself). Were relayoutData an input of the redraw, every zoom or autosize
    # event would re-issue the redraw and supersede one still in flight: a click on "sort" landing while
    # such an event fired was lost.
    @app.callback(
        Output(WEIGHT_ZOOM, "data"),
        Input(WEIGHT_HEATMAP, "relayoutData"),
        State(WEIGHT_LAYER, "value"),
        prevent_initial_call=True,
    )
    def pass_zoom(relayout: object, name: object):
        layer = state.weights(choice(name, state.layer_names))
        if layer is None or layer.magnitude.is_full_resolution or not state.has_weight(layer.layer):
            raise PreventUpdate
        return relayout

    @app.callback(
        Output(WEIGHT_HEATMAP, "figure"),
        Output(WEIGHT_NOTE, "children"),
        Input(WEIGHT_LAYER, "value"),
        Input(WEIGHT_SORT, "value"),
        Input(WEIGHT_MODE, "value"),
        Input(WEIGHT_ZOOM, "data"),
        prevent_initial_call=True,
    )
    def update_heatmap(name: object, sort: object, mode: object, relayout: object):
        name = choice(name, state.layer_names)
        sort_rows = SORT in flags(sort, {SORT})
        magnitude = choice(mode, MODES) == "abs"
        region = None
        if callback_context.triggered_id == WEIGHT_ZOOM:
            layer = state.weights(name)
            if layer is None or layer.magnitude.is_full_resolution or not state.has_weight(name):
                raise PreventUpdate  # the browser zooms a full-resolution map by itself
            region = zoom_region(relayout, layer.out_features, layer.in_features)
        return state.memo(
            ("heatmap", name, sort_rows, magnitude, region), lambda: heatmap(state, name, sort_rows, magnitude, region)
        )

    @app.callback(Output(WEIGHT_SORT, "options"), Input(WEIGHT_LAYER, "value"), prevent_initial_call=True)
    def update_sort_control(name: object):
        return sort_options(state, choice(name, state.layer_names))

    @app.callback(
        Output(WEIGHT_HIST, "figure"),
        Output(WEIGHT_IMAGES, "figure"),
        Input(WEIGHT_LAYER, "value"),
        prevent_initial_call=True,
    )
    def update_layer_panels(name: object):
        name = choice(name, state.layer_names)
        layer = state.weights(name)
        if layer is None:
            empty = F.empty_figure(f"no weight statistics for {name}")
            return empty, empty
        return state.memo(
            ("weight-panels", name), lambda: (F.weight_histogram_figure(layer), F.neuron_images_figure(layer))
        )

    @app.callback(
        Output(ids.NEURON_LAYER, "value"),
        Output(ids.NEURON_INDEX, "value"),
        Output(ids.TABS, "value"),
        Input(WEIGHT_HEATMAP, "clickData"),
        State(WEIGHT_LAYER, "value"),
        State(WEIGHT_SORT, "value"),
        prevent_initial_call=True,
    )
    def open_neuron(click: object, name: object, sort: object):
        name = choice(name, state.layer_names)
        layer = state.weights(name)
        sorted_view = SORT in flags(sort, {SORT}) and state.can_sort(name)
        neuron = neuron_from_click(click, layer, F.neuron_order(layer) if sorted_view and layer else None)
        if neuron is None:
            raise PreventUpdate
        return name, neuron, "neurons"


def neuron_from_click(click: object, layer: LayerWeights | None, order: np.ndarray | None = None) -> int | None:
    """The neuron under a heatmap click, or None for a click on nothing or a malformed one.

    The click's y is a row coordinate: the neuron number itself, or in a sorted
    view (``order`` from :func:`inspector.figures.neuron_order`) its rank. On a
    pooled map it is the block's first row, so the block's first (or strongest) neuron.
    """
    if layer is None or not isinstance(click, dict):
        return None
    points = click.get("points")
    if not isinstance(points, list) or not points or not isinstance(points[0], dict):
        return None
    y = points[0].get("y")
    if isinstance(y, str):
        try:
            y = float(y)
        except ValueError:
            return None
    row = finite_number(y)
    if row is None or not 0 <= row < layer.out_features:
        return None
    return int(order[int(row)]) if order is not None else int(row)


register_view("weights", "Weights", order=20, layout=layout, callbacks=register)
