"""Pruning: the task's metric (accuracy, R², ...) and parameters left against sparsity, with a one-level preview."""

from __future__ import annotations

from dash import Dash, Input, Output, dash_table, dcc, html

from dashboards.registry import ViewIds, register_view
from dashboards.security import index
from dashboards.state import DashboardState
from dashboards.views import control, graph, note
from inspector import figures as F

ID = ViewIds("pruning")  # every id below reads "pruning-..."
PRUNE_FIG = ID("figure")
PRUNE_SLIDER = ID("slider")
PRUNE_PREVIEW = ID("preview")


def layout(state: DashboardState) -> html.Div:
    report = state.analysis.pruning
    if report is None:
        return html.Div(
            [
                graph(PRUNE_FIG, F.pruning_figure(None)),
                dcc.Slider(id=PRUNE_SLIDER, min=0, max=0, step=1, value=0),
                html.Div(id=PRUNE_PREVIEW),
            ]
        )
    levels = report.curves[0].sparsity
    start = int(len(levels) // 2)
    rows = F.pruning_preview_rows(report, float(levels[start]))
    return html.Div(
        [
            graph(PRUNE_FIG, F.pruning_figure(report, float(levels[start]))),
            control(
                "Preview sparsity",
                html.Div(
                    dcc.Slider(
                        id=PRUNE_SLIDER,
                        min=0,
                        max=len(levels) - 1,
                        step=1,
                        value=start,
                        allow_direct_input=False,
                        marks={i: f"{s:.0%}" for i, s in enumerate(levels)},
                    ),
                    style={"width": "560px"},
                ),
            ),
            note(
                "Each level zeroes the smallest weights (or the weakest neurons) of a copy of the model and "
                "re-evaluates it; export one with `inspector prune CHECKPOINT --sparsity S --out FILE`."
            ),
            # dash_table/__init__.py is marked "# type: ignore", so mypy cannot see the (typed) DataTable it exports
            dash_table.DataTable(  # type: ignore[attr-defined]
                id=PRUNE_PREVIEW,
                data=rows,
                columns=[{"name": k, "id": k} for k in rows[0]],
                style_cell={"fontFamily": "monospace", "padding": "4px 8px"},
            ),
        ]
    )


def register(app: Dash, state: DashboardState) -> None:
    report = state.analysis.pruning
    if report is None:
        return
    levels = report.curves[0].sparsity

    @app.callback(
        Output(PRUNE_FIG, "figure"),
        Output(PRUNE_PREVIEW, "data"),
        Input(PRUNE_SLIDER, "value"),
        prevent_initial_call=True,
    )
    def preview(position: object):
        sparsity = float(levels[index(position, len(levels))])
        return state.memo(
            ("pruning", sparsity),
            lambda: (F.pruning_figure(report, sparsity), F.pruning_preview_rows(report, sparsity)),
        )


register_view("pruning", "Pruning", order=80, layout=layout, callbacks=register)
