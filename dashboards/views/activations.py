"""Activations: a 2-D projection of a hidden layer's activations, coloured by class (or by target value)."""

from __future__ import annotations

import numpy as np
from dash import Dash, Input, Output, html

from dashboards.registry import ViewIds, register_view
from dashboards.security import choice
from dashboards.state import DashboardState
from dashboards.views import control, graph, layer_dropdown, note
from inspector import figures as F
from inspector.core.adapters import adapter_for

ID = ViewIds("activations")  # every id below reads "activations-..."
ACT_LAYER = ID("layer")
ACT_PROJ = ID("projection")


def figure(state: DashboardState, name: str | None):
    acts = state.activations(name) if name else None
    if acts is None:
        return F.empty_figure("no activations (needs evaluation data)")
    model = state.analysis.model
    if acts.projection_labels is not None:
        return F.projection_figure(acts, model.class_names)
    what = "class" if model.task == "classification" else "target"
    if adapter_for(model.input_kind).features_are_ids:  # a projection row per token position
        return F.projection_figure(acts, model.class_names, uncoloured=f"one point per token: not coloured by {what}")
    if model.task == "classification":
        return F.projection_figure(acts, model.class_names, uncoloured="no labels kept: not coloured by class")
    values = target_values(state, acts.projection.shape[0])
    if values is not None:
        return F.projection_figure(acts, model.class_names, values, "target")
    why = "no classes; start the dashboard with the model and data to colour by target value"
    return F.projection_figure(acts, model.class_names, uncoloured=why)


def target_values(state: DashboardState, rows: int) -> np.ndarray | None:
    """The scalar targets of the first ``rows`` evaluation samples the probe holds (a projection's rows
    are the first samples, in order, when one row is one sample), or None without a probe or scalar
    labels (token positions, several outputs)."""
    probe = state.probe
    if probe is None or probe.adapter.features_are_ids:
        return None
    values = []
    for i in range(min(rows, probe.n_samples)):
        label = probe.label(i)
        if label is None or np.size(label) != 1:
            return None
        values.append(float(np.asarray(label).reshape(())))
    return np.asarray(values) if values else None


def layout(state: DashboardState) -> html.Div:
    names = state.census_layers
    first = names[0] if names else None
    return html.Div(
        [
            control(
                "Layer",
                layer_dropdown(ACT_LAYER, names, first),
            ),
            note(
                "Each point is one evaluation sample, placed by the layer's top two principal components. "
                "Classes that form separate clusters are already told apart by that layer; for a regression "
                "the points are coloured by their target value."
            ),
            graph(ACT_PROJ, figure(state, first)),
        ]
    )


def register(app: Dash, state: DashboardState) -> None:
    @app.callback(Output(ACT_PROJ, "figure"), Input(ACT_LAYER, "value"), prevent_initial_call=True)
    def update(name: object):
        name = choice(name, state.census_layers)
        return state.memo(("projection", name), lambda: figure(state, name))


register_view("activations", "Activations", order=90, layout=layout, callbacks=register)
