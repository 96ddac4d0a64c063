"""Feature importance: method and class pickers, top inputs, image map, sanity check, sample explorer."""

from __future__ import annotations

from dash import Dash, Input, Output, dcc, html
from dash.exceptions import PreventUpdate

from dashboards import ids
from dashboards.registry import ViewIds, register_view
from dashboards.security import choice, finite_number, index_or_none
from dashboards.state import DashboardState
from dashboards.views import control, graph, note, row
from inspector import figures as F
from inspector.analysis.findings import SANITY_FAIL
from inspector.analysis.methods import METHOD_LABELS, lead_method
from inspector.core.adapters import adapter_for

ID = ViewIds("importance")  # every id below reads "importance-..."
IMP_METHOD = ID("method")
IMP_CLASS = ID("class")
IMP_BAR = ID("bar")
IMP_MAP = ID("map")
IMP_SANITY = ID("sanity")
IMP_SANITY_TEXT = ID("sanity-text")
SAMPLE_ID = ViewIds("sample")  # the per-sample panel: its ids kept the name they had before views owned theirs
SAMPLE_FIG = SAMPLE_ID("figure")
SAMPLE_NOTE = SAMPLE_ID("note")

ALL = "all"


def charts(state: DashboardState, method: str, klass: str) -> tuple[object, object, str]:
    a = state.analysis
    report = a.importance
    if report is None:
        empty = F.empty_figure("no feature importance (needs evaluation data)")
        return empty, empty, ""
    m = report.method(method)
    per_class = m.per_class
    index = None if klass == ALL or per_class is None else int(klass)
    bar = F.importance_bar_figure(m, a.model.feature_names, index, a.model.class_names, report=report)
    if m.error is not None:
        return bar, F.empty_figure(m.error), f"{METHOD_LABELS[method]} could not run."
    values = m.global_importance if index is None or per_class is None else per_class[index]
    which = (
        "all samples"
        if per_class is None
        else "all classes"
        if index is None
        else f"class {a.model.class_names[index]}"
    )
    if adapter_for(report.input_kind).display == "tokens":
        image = F.empty_figure("token inputs: see the Text view for tokens highlighted by attribution")
    else:
        image = F.importance_map_figure(
            values, F.map_shape(report, a.model.image_shape), f"{METHOD_LABELS[method]} on the input grid ({which})"
        )
    score = m.sanity_correlation
    if score is None:  # set whenever the method ran; it did (no error)
        return bar, image, ""
    verdict = (
        "passes: its attributions change when the weights are randomised"
        if score <= SANITY_FAIL
        else "fails: its attributions barely change when the weights are randomised"
    )
    text = f"Sanity check, {METHOD_LABELS[method]}: rank correlation {score:.2f} with a randomised model; {verdict}."
    return bar, image, text


def sample_view(state: DashboardState, method: str, index: object) -> tuple[object, str]:
    """Sample ``index``'s attribution by ``method`` and a line with its predicted and true label
    (or value); anything but a sample number asks for one. Token inputs point to the Text view."""
    probe = state.probe
    if probe is None:
        return (
            F.empty_figure("start the dashboard on a checkpoint (not a saved analysis) to explain single samples"),
            "",
        )
    if probe.adapter.display == "tokens":
        return F.empty_figure("token inputs: the Text view shows each sample's tokens highlighted by attribution"), (
            "Token inputs: open the Text view to explore single samples."
        )
    n = probe.n_samples
    i = index_or_none(index, n)
    if i is None:
        return F.empty_figure(f"pick a sample between 0 and {n - 1}"), ""
    a = state.analysis
    task = probe.task.kind if probe.task is not None else a.model.task
    attribution = probe.explain(method, i)
    prediction = probe.predict(i)
    label = probe.label(i)
    fig = F.sample_figure(
        probe.inputs(i),
        attribution,
        prediction,
        label=label,
        image_shape=F.map_shape(a.importance, a.model.image_shape),
        feature_names=a.model.feature_names,
        class_names=a.model.class_names,
        method=method,
        task=task,
    )
    what = "its label" if task == "classification" else "the model's output" if task == "regression" else a.model.target
    edit = " Edit its features with the What-if tab's sliders (the same sample)." if a.whatif is not None else ""
    return fig, (
        f"Sample {i} of {n} ({probe.name} {probe.split} split): "
        f"{F.prediction_text(prediction, label, task, a.model.class_names)}; attribution for {what}.{edit}"
    )


def methods(state: DashboardState) -> list[str]:
    """The attribution methods the analysis holds."""
    report = state.analysis.importance
    return [m.method for m in report.methods] if report else []


def class_values(state: DashboardState) -> list[str]:
    """The class picker's values: ``all`` and each class number as a string."""
    return [ALL] + [str(i) for i in range(len(state.analysis.model.class_names))]


def layout(state: DashboardState) -> html.Div:
    a = state.analysis
    available = methods(state)
    method = lead_method(available)
    by_class = a.model.task == "classification" and bool(a.model.class_names)
    classes = [{"label": "all classes" if by_class else "all samples", "value": ALL}] + [
        {"label": f"class {name}", "value": str(i)} for i, name in enumerate(a.model.class_names) if by_class
    ]
    bar, image, text = charts(state, method, ALL) if method else (F.empty_figure("needs data"),) * 2 + ("",)
    sample_fig, sample_note = sample_view(state, method, 0) if method else (F.empty_figure("needs data"), "")
    n = state.probe.n_samples if state.probe is not None else 1
    return html.Div(
        [
            html.Div(
                [
                    control(
                        "Method",
                        dcc.Dropdown(
                            id=IMP_METHOD,
                            value=method,
                            clearable=False,
                            options=[{"label": METHOD_LABELS[m], "value": m} for m in available],
                            style={"width": "240px", "display": "inline-block"},
                        ),
                    ),
                    control(
                        "Class",
                        dcc.Dropdown(
                            id=IMP_CLASS,
                            options=classes,
                            value=ALL,
                            clearable=False,
                            disabled=not by_class,  # a regression or custom target has no classes
                            style={"width": "180px", "display": "inline-block"},
                        ),
                    ),
                ]
            ),
            html.P(text, id=IMP_SANITY_TEXT, style={"fontWeight": 600}),
            row(graph(IMP_BAR, bar), graph(IMP_MAP, image)),
            graph(IMP_SANITY, F.sanity_figure(a.importance) if a.importance else F.empty_figure("needs data")),
            html.H4("Sample explorer"),
            control(
                "Sample",
                dcc.Input(
                    id=ids.SAMPLE_INDEX,
                    type="number",
                    min=0,
                    max=max(n - 1, 0),
                    step=1,
                    value=0,
                    debounce=True,
                    style={"width": "90px"},
                ),
            ),
            note(sample_note, SAMPLE_NOTE),
            dcc.Loading(graph(SAMPLE_FIG, sample_fig)),
        ]
    )


def register(app: Dash, state: DashboardState) -> None:
    @app.callback(
        Output(IMP_BAR, "figure"),
        Output(IMP_MAP, "figure"),
        Output(IMP_SANITY_TEXT, "children"),
        Input(IMP_METHOD, "value"),
        Input(IMP_CLASS, "value"),
        prevent_initial_call=True,
    )
    def update_charts(method: object, klass: object):
        method = choice(method, methods(state))
        klass = choice(klass, class_values(state))
        return state.memo(("importance", method, klass), lambda: charts(state, method, klass))

    @app.callback(
        Output(SAMPLE_FIG, "figure"),
        Output(SAMPLE_NOTE, "children"),
        Input(IMP_METHOD, "value"),
        Input(ids.SAMPLE_INDEX, "value"),
        prevent_initial_call=True,
    )
    def update_sample(method: object, index: object):
        method = choice(method, methods(state))
        if index is not None and finite_number(index) is None:
            raise PreventUpdate  # not a number at all; an empty box or a number out of range asks for a sample
        n = state.probe.n_samples if state.probe is not None else 0
        key = index_or_none(index, n)
        return state.memo(("sample", method, key), lambda: sample_view(state, method, key))


register_view("importance", "Feature importance", order=50, layout=layout, callbacks=register)
