"""Neurons: one neuron's firing, incoming weights, driving inputs and class contributions."""

from __future__ import annotations

from typing import Any

import numpy as np
from dash import Dash, Input, Output, dash_table, dcc, html, no_update

from dashboards import ids
from dashboards.state import DashboardState
from dashboards.views import control, graph, row
from inspector import figures as F


def panels(state: DashboardState, name: str, j: int) -> tuple[Any, ...]:
    """Title and the four figures for neuron ``j`` of layer ``name``."""
    a = state.analysis
    layer = state.weights(name)
    if layer is None or not 0 <= j < layer.out_features:
        empty = F.empty_figure("pick a neuron")
        return "no neuron selected", empty, empty, empty, empty
    title = f"Neuron {j} of {name} (incoming norm {layer.neuron_norm[j]:.3f}"
    if layer.bias is not None:
        title += f", bias {layer.bias[j]:+.3f}"
    title += ")"
    cond = state.conductance(name)
    return (title,
            F.neuron_activation_figure(state.activations(name), j),
            F.neuron_incoming_figure(layer, j, a.model.feature_names, a.model.image_shape),
            F.neuron_inputs_figure(cond, j, a.model.feature_names),
            F.neuron_classes_figure(cond, j, a.model.class_names))


def table_rows(state: DashboardState, name: str) -> list[dict[str, Any]]:
    layer = state.weights(name)
    if layer is None:
        return []
    acts = state.activations(name)
    rows = []
    for j in range(layer.out_features):
        entry: dict[str, Any] = {"neuron": j, "incoming norm": round(float(layer.neuron_norm[j]), 4)}
        if acts is not None and acts.fire_rate is not None:
            entry["firing rate"] = round(float(acts.fire_rate[j]), 4)
            entry["state"] = "dead" if acts.dead_mask[j] else ("nearly dead" if acts.nearly_dead_mask[j] else "alive")
        elif acts is not None:
            entry["saturation"] = round(float(acts.saturation_rate[j]), 4)
        rows.append(entry)
    return rows


def layout(state: DashboardState) -> html.Div:
    names = state.layer_names
    first = names[0]
    title, *figures = panels(state, first, 0)
    rows = table_rows(state, first)
    return html.Div([
        html.Div([
            control("Layer", dcc.Dropdown(id=ids.NEURON_LAYER, options=names, value=first, clearable=False,
                                          style={"width": "220px", "display": "inline-block"})),
            control("Neuron", dcc.Input(id=ids.NEURON_INDEX, type="number", min=0, step=1, value=0,
                                        debounce=True, style={"width": "90px"})),
        ]),
        html.H4(title, id=ids.NEURON_TITLE),
        row(graph(ids.NEURON_ACT, figures[0]), graph(ids.NEURON_IN, figures[1])),
        row(graph(ids.NEURON_DRIVERS, figures[2]), graph(ids.NEURON_CLASSES, figures[3])),
        html.H4("All neurons of the layer (click a row)"),
        dash_table.DataTable(id=ids.NEURON_TABLE, data=rows,
                             columns=[{"name": k, "id": k} for k in (rows[0] if rows else {})],
                             sort_action="native", page_size=12, style_cell={"fontFamily": "monospace"}),
    ])


def register(app: Dash, state: DashboardState) -> None:
    @app.callback(
        Output(ids.NEURON_TITLE, "children"), Output(ids.NEURON_ACT, "figure"), Output(ids.NEURON_IN, "figure"),
        Output(ids.NEURON_DRIVERS, "figure"), Output(ids.NEURON_CLASSES, "figure"),
        Input(ids.NEURON_LAYER, "value"), Input(ids.NEURON_INDEX, "value"), prevent_initial_call=True,
    )
    def update_neuron(name: str, j: int | None):
        j = int(j) if j is not None else -1
        return state.memo(("neuron", name, j), lambda: panels(state, name, j))

    @app.callback(Output(ids.NEURON_TABLE, "data"), Output(ids.NEURON_TABLE, "columns"),
                  Input(ids.NEURON_LAYER, "value"), prevent_initial_call=True)
    def update_table(name: str):
        rows = table_rows(state, name)
        return rows, [{"name": k, "id": k} for k in (rows[0] if rows else {})]

    @app.callback(Output(ids.NEURON_INDEX, "value", allow_duplicate=True),
                  Input(ids.NEURON_TABLE, "active_cell"), Input(ids.NEURON_TABLE, "derived_viewport_data"),
                  prevent_initial_call=True)
    def pick_from_table(cell: dict[str, Any] | None, viewport: list[dict[str, Any]] | None):
        if not cell or not viewport or cell.get("row") is None or cell["row"] >= len(viewport):
            return no_update
        return int(np.int64(viewport[cell["row"]]["neuron"]))
