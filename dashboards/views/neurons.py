"""Neurons: one neuron's firing, incoming weights, driving inputs and class contributions."""

from __future__ import annotations

from typing import Any

from dash import Dash, Input, Output, dash_table, dcc, html
from dash.exceptions import PreventUpdate

from dashboards import ids
from dashboards.registry import ViewIds, register_view
from dashboards.security import choice, finite_number, index_or_none
from dashboards.state import DashboardState
from dashboards.views import control, graph, layer_dropdown, row
from inspector import figures as F
from inspector.figures.top_examples import FIRING, example_heading, example_lines

ID = ViewIds("neurons")  # every id below reads "neurons-..."
NEURON_WIDTH = ID("width")
NEURON_TABLE = ID("table")
NEURON_TITLE = ID("title")
NEURON_ACT = ID("activation")
NEURON_IN = ID("incoming")
NEURON_DRIVERS = ID("drivers")
NEURON_CLASSES = ID("classes")
NEURON_TOP = ID("top-examples")


def top_examples(state: DashboardState, name: str, j: int) -> list[Any]:
    """Neuron ``j``'s top examples as Dash components (Dash escapes the text), the firing token highlighted;
    only this neuron's examples are built and sent."""
    acts = state.activations(name)
    top = acts.top_examples if acts is not None else None
    if top is None:
        return [html.P(_no_top_examples(state, name, counted=acts is not None))]
    if not 0 <= j < top.width:
        return [html.P("pick a neuron")]
    children: list[Any] = [
        html.P(f"{top.summary[j]} (selectivity {float(top.selectivity[j]):.2f})", className="top-summary")
    ]
    for line in example_lines(top, j):
        tokens: list[Any] = []
        for i, text in enumerate(line.tokens):
            style = {"padding": "1px 3px", "margin": "1px"}
            if i == line.firing:
                tokens.append(html.Span(text, className="firing-token", style={**style, "background": FIRING}))
            else:
                tokens.append(html.Span(text, style=style))
        children.append(html.Div([html.B(example_heading(line) + " "), *tokens], className="top-example"))
    return children


def _no_top_examples(state: DashboardState, name: str, counted: bool) -> str:
    """Why layer ``name`` has no top examples, and where to find some."""
    kept = [a.layer for a in state.analysis.activations or () if a.top_examples is not None]
    if counted or not kept:
        return "no top examples for this layer (needs data and top_k > 0)"
    shown = ", ".join(kept[:3]) + (f" and {len(kept) - 3} more" if len(kept) > 3 else "")
    return (
        f"no top examples for {name}: the activation census does not count it (its output goes on with no "
        f"activation of its own, as attention projections do); layers with top examples: {shown}"
    )


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
    return (
        title,
        F.neuron_activation_figure(state.activations(name), j),
        F.neuron_incoming_figure(layer, j, a.model.feature_names, a.model.image_shape),
        F.neuron_inputs_figure(cond, j, a.model.feature_names),
        F.neuron_classes_figure(cond, j, a.model.class_names, a.model.task),
    )


def width(state: DashboardState, name: str) -> int:
    """How many neurons (output features) layer ``name`` has; 0 for an unknown name."""
    for layer in state.analysis.parameters.layers:
        if layer.layer == name:
            return layer.out_features
    return 0


def width_text(state: DashboardState, name: str) -> str:
    n = width(state, name)
    return f"0-{n - 1} ({n:,} neurons)" if n else "no neurons"


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
            if acts.zero_rate is not None:
                entry["near-zero rate"] = round(float(acts.zero_rate[j]), 4)
            verdict = F.neuron_state(acts, j)
            if verdict is not None:
                entry["state"] = verdict
        elif acts is not None and acts.saturation_rate is not None:
            entry["saturation"] = round(float(acts.saturation_rate[j]), 4)
        rows.append(entry)
    return rows


def layout(state: DashboardState) -> html.Div:
    names = state.layer_names
    first = names[0]
    title, *figures = panels(state, first, 0)
    rows = table_rows(state, first)
    return html.Div(
        [
            html.Div(
                [
                    control(
                        "Layer",
                        layer_dropdown(ids.NEURON_LAYER, names, first),
                    ),
                    control(
                        "Neuron",
                        html.Span(
                            [
                                dcc.Input(
                                    id=ids.NEURON_INDEX,
                                    type="number",
                                    min=0,
                                    max=max(0, width(state, first) - 1),
                                    step=1,
                                    value=0,
                                    debounce=True,
                                    style={"width": "90px"},
                                ),
                                html.Span(width_text(state, first), id=NEURON_WIDTH, style={"marginLeft": "6px"}),
                            ]
                        ),
                    ),
                ]
            ),
            html.H4(title, id=NEURON_TITLE),
            row(graph(NEURON_ACT, figures[0]), graph(NEURON_IN, figures[1])),
            html.H4("What it fires on: its top examples"),
            html.Div(top_examples(state, first, 0), id=NEURON_TOP, style={"fontFamily": "monospace"}),
            row(graph(NEURON_DRIVERS, figures[2]), graph(NEURON_CLASSES, figures[3])),
            html.H4("All neurons of the layer (click a row)"),
            # dash_table/__init__.py is marked "# type: ignore", so mypy cannot see the (typed) DataTable it exports
            dash_table.DataTable(  # type: ignore[attr-defined]
                id=NEURON_TABLE,
                data=rows,
                columns=[{"name": k, "id": k} for k in (rows[0] if rows else {})],
                sort_action="native",
                page_size=12,
                style_cell={"fontFamily": "monospace"},
            ),
        ]
    )


def _picked(j: object, width: int) -> int:
    """The neuron index box's value as a neuron of ``width``; -1 (the panels say "pick a neuron") for an
    empty box or a number out of range. A value that is not a number at all changes nothing."""
    neuron = index_or_none(j, width)
    if neuron is None and j is not None and finite_number(j) is None:
        raise PreventUpdate
    return -1 if neuron is None else neuron


def register(app: Dash, state: DashboardState) -> None:
    @app.callback(
        Output(NEURON_TITLE, "children"),
        Output(NEURON_ACT, "figure"),
        Output(NEURON_IN, "figure"),
        Output(NEURON_DRIVERS, "figure"),
        Output(NEURON_CLASSES, "figure"),
        Input(ids.NEURON_LAYER, "value"),
        Input(ids.NEURON_INDEX, "value"),
        prevent_initial_call=True,
    )
    def update_neuron(name: object, j: object):
        name = choice(name, state.layer_names)
        layer = state.weights(name)
        key = _picked(j, layer.out_features if layer is not None else 0)
        return state.memo(("neuron", name, key), lambda: panels(state, name, key))

    @app.callback(
        Output(NEURON_TOP, "children"),
        Input(ids.NEURON_LAYER, "value"),
        Input(ids.NEURON_INDEX, "value"),
        prevent_initial_call=True,
    )
    def update_top_examples(name: object, j: object):
        name = choice(name, state.layer_names)
        acts = state.activations(name)
        width = acts.top_examples.width if acts is not None and acts.top_examples is not None else 0
        return top_examples(state, name, _picked(j, width))

    @app.callback(
        Output(ids.NEURON_INDEX, "max"),
        Output(NEURON_WIDTH, "children"),
        Input(ids.NEURON_LAYER, "value"),
        prevent_initial_call=True,
    )
    def update_bounds(name: object):
        name = choice(name, state.layer_names)
        return max(0, width(state, name) - 1), width_text(state, name)

    @app.callback(
        Output(NEURON_TABLE, "data"),
        Output(NEURON_TABLE, "columns"),
        Input(ids.NEURON_LAYER, "value"),
        prevent_initial_call=True,
    )
    def update_table(name: object):
        rows = table_rows(state, choice(name, state.layer_names))
        return rows, [{"name": k, "id": k} for k in (rows[0] if rows else {})]

    @app.callback(
        Output(ids.NEURON_INDEX, "value", allow_duplicate=True),
        Input(NEURON_TABLE, "active_cell"),
        Input(NEURON_TABLE, "derived_viewport_data"),
        prevent_initial_call=True,
    )
    def pick_from_table(cell: object, viewport: object):
        if not isinstance(cell, dict) or not isinstance(viewport, list):
            raise PreventUpdate
        row = index_or_none(cell.get("row"), len(viewport))
        entry = viewport[row] if row is not None else None
        widest = max((layer.out_features for layer in state.analysis.parameters.layers), default=0)
        neuron = index_or_none(entry.get("neuron"), widest) if isinstance(entry, dict) else None
        if neuron is None:
            raise PreventUpdate
        return neuron


register_view("neurons", "Neurons", order=30, layout=layout, callbacks=register)
