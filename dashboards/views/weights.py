"""Weights: pick a layer, see its weight map, histogram and (for image inputs) neuron images."""

from __future__ import annotations

from typing import Any

from dash import Dash, Input, Output, State, callback_context, dcc, html
from plotly.graph_objects import Figure

from dashboards import ids
from dashboards.state import DashboardState
from dashboards.views import control, graph, note, row
from inspector import figures as F


def heatmap(state: DashboardState, name: str, sort_rows: bool, magnitude: bool,
            relayout: dict[str, Any] | None = None) -> tuple[Figure, str]:
    """The heatmap for ``name``; for a pooled layer zoomed in, the region at full resolution."""
    layer = state.weights(name)
    if layer is None:
        return F.empty_figure(f"no weight statistics for {name}"), ""
    if layer.magnitude.is_full_resolution:
        return F.weight_heatmap_figure(layer, sort_rows=sort_rows, magnitude=magnitude), \
            "Click a cell to open that neuron."
    region = _region(relayout, layer.out_features, layer.in_features)
    if region is None or not state.can_zoom:
        hint = ("Zoom in (drag a box) to see that region at full resolution." if state.can_zoom else
                "Large layer shown as block maxima; start the dashboard on a checkpoint to zoom to full resolution.")
        return F.weight_heatmap_figure(layer), hint
    zoomed = state.zoom(name, *region)
    signed = None if magnitude else state.region_values(name, zoomed)
    return (F.weight_heatmap_figure(layer, region=zoomed, signed_values=signed, magnitude=magnitude),
            f"Rows {region[0][0]}-{region[0][1]}, columns {region[1][0]}-{region[1][1]}; double-click to zoom out.")


def _region(relayout: dict[str, Any] | None, m: int, n: int) -> tuple[tuple[int, int], tuple[int, int]] | None:
    if not relayout or "xaxis.range[0]" not in relayout or "yaxis.range[0]" not in relayout:
        return None
    x0, x1 = sorted((relayout["xaxis.range[0]"], relayout["xaxis.range[1]"]))
    y0, y1 = sorted((relayout["yaxis.range[0]"], relayout["yaxis.range[1]"]))
    rows = (max(0, int(y0)), min(m, int(y1) + 1))
    cols = (max(0, int(x0)), min(n, int(x1) + 1))
    if rows[0] >= rows[1] or cols[0] >= cols[1]:
        return None
    return rows, cols


def layout(state: DashboardState) -> html.Div:
    names = state.layer_names
    first = names[0]
    fig, hint = heatmap(state, first, False, False)
    layer = state.weights(first)
    return html.Div([
        html.Div([
            control("Layer", dcc.Dropdown(id=ids.WEIGHT_LAYER, options=names, value=first, clearable=False,
                                          style={"width": "220px", "display": "inline-block"})),
            control("", dcc.Checklist(id=ids.WEIGHT_SORT, options=[{"label": " sort neurons by norm",
                                                                    "value": "sort"}], value=[],
                                      inline=True)),
            control("Colour", dcc.RadioItems(id=ids.WEIGHT_MODE, options=[{"label": " signed w ", "value": "signed"},
                                                                          {"label": " |w|", "value": "abs"}],
                                             value="signed", inline=True)),
        ]),
        note(hint, ids.WEIGHT_NOTE),
        dcc.Loading(graph(ids.WEIGHT_HEATMAP, fig)),
        row(graph(ids.WEIGHT_HIST, F.weight_histogram_figure(layer)),
            graph(ids.WEIGHT_IMAGES, F.neuron_images_figure(layer))),
    ])


def register(app: Dash, state: DashboardState) -> None:
    @app.callback(
        Output(ids.WEIGHT_HEATMAP, "figure"), Output(ids.WEIGHT_NOTE, "children"),
        Input(ids.WEIGHT_LAYER, "value"), Input(ids.WEIGHT_SORT, "value"), Input(ids.WEIGHT_MODE, "value"),
        Input(ids.WEIGHT_HEATMAP, "relayoutData"),
        prevent_initial_call=True,
    )
    def update_heatmap(name: str, sort: list[str], mode: str, relayout: dict[str, Any] | None):
        zooming = callback_context.triggered_id == ids.WEIGHT_HEATMAP and relayout
        sort_rows, magnitude = "sort" in (sort or []), mode == "abs"
        if zooming:
            return heatmap(state, name, sort_rows, magnitude, relayout)
        return state.memo(("heatmap", name, sort_rows, magnitude), lambda: heatmap(state, name, sort_rows, magnitude))

    @app.callback(
        Output(ids.WEIGHT_HIST, "figure"), Output(ids.WEIGHT_IMAGES, "figure"),
        Input(ids.WEIGHT_LAYER, "value"), prevent_initial_call=True,
    )
    def update_layer_panels(name: str):
        layer = state.weights(name)
        if layer is None:
            empty = F.empty_figure(f"no weight statistics for {name}")
            return empty, empty
        return state.memo(("weight-panels", name),
                          lambda: (F.weight_histogram_figure(layer), F.neuron_images_figure(layer)))

    @app.callback(
        Output(ids.NEURON_LAYER, "value"), Output(ids.NEURON_INDEX, "value"), Output(ids.TABS, "value"),
        Input(ids.WEIGHT_HEATMAP, "clickData"), State(ids.WEIGHT_LAYER, "value"),
        prevent_initial_call=True,
    )
    def open_neuron(click: dict[str, Any] | None, name: str):
        neuron = neuron_from_click(click, state.weights(name))
        if neuron is None:
            from dash import no_update

            return no_update, no_update, no_update
        return name, neuron, "neurons"


def neuron_from_click(click: dict[str, Any] | None, layer: Any) -> int | None:
    """The neuron (row) under a heatmap click; rows are neuron numbers or their labels when sorted."""
    if not click or not click.get("points") or layer is None:
        return None
    y = click["points"][0].get("y")
    try:
        j = int(float(y))
    except (TypeError, ValueError):
        return None
    return j if 0 <= j < layer.out_features else None
