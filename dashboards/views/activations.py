"""Activations: a 2-D projection of a hidden layer's activations, coloured by class."""

from __future__ import annotations

from dash import Dash, Input, Output, dcc, html

from dashboards import ids
from dashboards.security import choice
from dashboards.state import DashboardState
from dashboards.views import control, graph, note
from inspector import figures as F


def figure(state: DashboardState, name: str | None):
    acts = state.activations(name) if name else None
    if acts is None:
        return F.empty_figure("no activations (needs evaluation data)")
    return F.projection_figure(acts, state.analysis.model.class_names)


def layout(state: DashboardState) -> html.Div:
    names = state.census_layers
    first = names[0] if names else None
    return html.Div(
        [
            control(
                "Layer",
                dcc.Dropdown(
                    id=ids.ACT_LAYER,
                    options=names,
                    value=first,
                    clearable=False,
                    style={"width": "220px", "display": "inline-block"},
                ),
            ),
            note(
                "Each point is one evaluation sample, placed by the layer's top two principal components. "
                "Classes that form separate clusters are already told apart by that layer."
            ),
            graph(ids.ACT_PROJ, figure(state, first)),
        ]
    )


def register(app: Dash, state: DashboardState) -> None:
    @app.callback(Output(ids.ACT_PROJ, "figure"), Input(ids.ACT_LAYER, "value"), prevent_initial_call=True)
    def update(name: object):
        name = choice(name, state.census_layers)
        return state.memo(("projection", name), lambda: figure(state, name))
