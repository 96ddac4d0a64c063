"""Overview: architecture and module tree, parameter table, training curves, findings."""

from __future__ import annotations

from dash import Dash, Input, Output, dash_table, dcc, html

from dashboards.registry import ViewIds, register_view
from dashboards.security import clicks
from dashboards.state import DashboardState
from dashboards.views import graph, row
from inspector import figures as F
from inspector.analysis.findings import describe_samples, score_texts
from inspector.report import to_html

ID = ViewIds("overview")  # every id below reads "overview-..."
ARCH_FIG = ID("architecture")
MODULE_TREE = ID("module-tree")
PARAM_TABLE = ID("parameters")
TRAIN_FIG = ID("training")
FINDINGS = ID("findings")
REPORT_BUTTON = ID("report-button")
REPORT_DOWNLOAD = ID("report-download")


def layout(state: DashboardState) -> html.Div:
    a = state.analysis
    rows = [{k: f"{v:,}" if isinstance(v, int) else v for k, v in r.items()} for r in F.parameter_rows(a.parameters)]
    columns = [{"name": k, "id": k} for k in rows[0]] if rows else []
    findings = [
        html.Li(text, style={"color": "#b30000" if sev == "warning" else "inherit"})
        for sev, text in F.findings_lines(a)
    ]
    data_line = (
        f"Evaluated on {describe_samples(a.data.n_samples, a.data.split, a.data.name)}: "
        + "{} {}{}.".format(*score_texts(a.data))
        if a.data
        else "No evaluation data: the data views are empty. Start the dashboard on a checkpoint with --data."
    )
    return html.Div(
        [
            html.Div(
                [
                    html.Button(
                        "Download report",
                        id=REPORT_BUTTON,
                        n_clicks=0,
                        title="the same self-contained HTML file as `inspector report`",
                    ),
                    dcc.Download(id=REPORT_DOWNLOAD),
                ],
                style={"float": "right"},
            ),
            *architecture(state),
            html.P(data_line),
            html.H4(
                "Parameters: a layer with n inputs and m neurons has m × (n + 1), or m × n without a bias; "
                "a shared (tied) weight is counted once"
            ),
            # dash_table/__init__.py is marked "# type: ignore", so mypy cannot see the (typed) DataTable it exports
            dash_table.DataTable(  # type: ignore[attr-defined]
                id=PARAM_TABLE,
                data=rows,
                columns=columns,
                style_table={"overflowX": "auto"},
                style_cell={"fontFamily": "monospace", "padding": "4px 8px", "textAlign": "right"},
                style_cell_conditional=[{"if": {"column_id": "layer"}, "textAlign": "left"}],
                style_data_conditional=[{"if": {"filter_query": '{layer} = "total"'}, "fontWeight": "bold"}],
            ),
            row(
                graph(TRAIN_FIG, F.training_figure(a.training)),
                html.Div([html.H4("Findings"), html.Ul(findings, id=FINDINGS)]),
            ),
        ]
    )


def architecture(state: DashboardState) -> list[html.Div | dcc.Graph]:
    """The chain diagram for a model whose layers form one chain (an MLP reads best that way), and the
    module tree with each module's share of the parameters for every model."""
    a = state.analysis
    parts: list[html.Div | dcc.Graph] = []
    if F.reads_as_chain(a.model, a.parameters):
        parts.append(graph(ARCH_FIG, F.architecture_figure(a.model)))
    parts.append(graph(MODULE_TREE, F.module_tree_figure(a.model, a.parameters)))
    return parts


def register(app: Dash, state: DashboardState) -> None:
    @app.callback(Output(REPORT_DOWNLOAD, "data"), Input(REPORT_BUTTON, "n_clicks"), prevent_initial_call=True)
    def download(n_clicks: object):
        clicks(n_clicks)  # a browser can send any JSON: a string or a dict is no click
        return state.memo(("report",), lambda: report_download(state))


def report_download(state: DashboardState) -> dict[str, str]:
    return {"content": to_html(state.analysis), "filename": "dense-inspector-report.html", "type": "text/html"}


register_view("overview", "Overview", order=10, layout=layout, callbacks=register)
