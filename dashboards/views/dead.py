"""Dead neurons: dead, nearly dead and alive ReLU-family neurons; a live threshold; deaths over training.

Every measured layer gets a strip: firing rates for ReLU-family and smooth units (GELU, SiLU:
the share of positive outputs; "dead" applies to rectifiers only), saturation for squashers.
"""

from __future__ import annotations

from dash import Dash, Input, Output, dcc, html
from dash.exceptions import PreventUpdate

from dashboards.registry import ViewIds, register_view
from dashboards.security import choice, index
from dashboards.state import DashboardState
from dashboards.views import control, graph, layer_dropdown, note, row
from inspector import figures as F

ID = ViewIds("dead")  # every id below reads "dead-..."
DEAD_THRESHOLD = ID("threshold")
DEAD_COUNT = ID("nearly-count")
DEAD_SUMMARY = ID("summary")
DEAD_LAYER = ID("layer")
DEAD_STRIP = ID("strip")
DEAD_TIMELINE = ID("timeline")

THRESHOLDS = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2]


def count_text(state: DashboardState, threshold: float) -> str:
    layers = [a for a in state.analysis.activations or () if a.dead_mask is not None and a.fire_rate is not None]
    if not layers:
        if not state.analysis.activations:
            return (
                "No ReLU-family layers were measured: this analysis has no activation census (needs evaluation data)."
            )
        return (
            "No ReLU-family layers: only rectifiers can be dead; pick a layer below for its units' firing "
            "(GELU: share of positive outputs) or saturation rates."
        )
    dead = sum(a.dead_count for a in layers)
    nearly = sum(a.nearly_dead_count(threshold) for a in layers)
    total = sum(a.width for a in layers)
    return (
        f"{dead} dead and {nearly} nearly dead (firing on fewer than {100 * threshold:g}% of samples) "
        f"of {total} neurons"
    )


def layout(state: DashboardState) -> html.Div:
    acts = state.analysis.activations or ()
    threshold = acts[0].nearly_dead_threshold if acts else 0.01
    index = min(range(len(THRESHOLDS)), key=lambda i: abs(THRESHOLDS[i] - threshold))
    names = state.census_layers
    strip = F.firing_strip_figure(acts[0], THRESHOLDS[index]) if acts else F.empty_figure("needs evaluation data")
    return html.Div(
        [
            control(
                "Nearly-dead threshold",
                html.Div(
                    dcc.Slider(
                        id=DEAD_THRESHOLD,
                        min=0,
                        max=len(THRESHOLDS) - 1,
                        step=1,
                        value=index,
                        allow_direct_input=False,
                        marks={i: f"{100 * t:g}%" for i, t in enumerate(THRESHOLDS)},
                    ),
                    style={"width": "480px"},
                ),
            ),
            html.H4(count_text(state, THRESHOLDS[index]), id=DEAD_COUNT),
            note(
                "Dead: never fires on the evaluation data, so it passes no signal and gets no gradient. "
                "Remedies: lower the learning rate, LeakyReLU or GELU, He initialisation, batch norm; or prune it."
            ),
            row(
                graph(
                    DEAD_SUMMARY,
                    F.dead_summary_figure(acts, THRESHOLDS[index]) if acts else F.empty_figure("needs evaluation data"),
                ),
                graph(DEAD_TIMELINE, F.deaths_figure(state.analysis.deaths)),
            ),
            control(
                "Layer",
                layer_dropdown(DEAD_LAYER, names),
            ),
            graph(DEAD_STRIP, strip),
        ]
    )


def register(app: Dash, state: DashboardState) -> None:
    @app.callback(
        Output(DEAD_COUNT, "children"),
        Output(DEAD_SUMMARY, "figure"),
        Input(DEAD_THRESHOLD, "value"),
        prevent_initial_call=True,
    )
    def update_threshold(position: object):
        threshold = THRESHOLDS[index(position, len(THRESHOLDS))]
        acts = state.analysis.activations or ()
        return state.memo(
            ("dead", threshold), lambda: (count_text(state, threshold), F.dead_summary_figure(acts, threshold))
        )

    @app.callback(
        Output(DEAD_STRIP, "figure"),
        Input(DEAD_LAYER, "value"),
        Input(DEAD_THRESHOLD, "value"),
        prevent_initial_call=True,
    )
    def update_strip(name: object, position: object):
        name = choice(name, state.census_layers)
        threshold = THRESHOLDS[index(position, len(THRESHOLDS))]
        acts = state.activations(name)
        if acts is None:  # cannot happen: choice() took name from the census layers
            raise PreventUpdate
        return state.memo(("strip", name, threshold), lambda: F.firing_strip_figure(acts, threshold))


register_view("dead", "Dead neurons", order=40, layout=layout, callbacks=register)
