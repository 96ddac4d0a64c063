"""What-if: partial dependence and ICE curves of a chosen feature, and a live panel that edits one
sample's features with sliders and re-evaluates the model (tabular inputs only).

The curves are the stored analysis's (:class:`~inspector.analysis.whatif.PartialDependence`); the
live panel needs the model (``state.probe``). Sliders are fixed slots, one per feature in
importance order (at most :data:`WHATIF_MAX_SLIDERS`), each spanning the feature's
observed range on the held samples; the search box and the "show all" toggle only hide slots.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from dash import Dash, Input, Output, dcc, html
from dash.development.base_component import Component
from dash.exceptions import PreventUpdate

from dashboards import ids
from dashboards.registry import ViewIds, register_view
from dashboards.security import finite_number, flags, index, index_or_none
from dashboards.state import DashboardState
from dashboards.views import control, graph, note, row
from inspector import figures as F
from inspector.analysis.whatif import PartialDependence, importance_ranking, ranked_rows
from inspector.core.adapters import InputAdapter, adapter_for

ID = ViewIds("whatif")  # every id below reads "whatif-..."
WHATIF_NOTE = ID("note")
WHATIF_FEATURE = ID("feature")
WHATIF_PD_FIG = ID("pd")
WHATIF_CLASS_FIG = ID("classes")
WHATIF_LIVE_NOTE = ID("live-note")
WHATIF_SAMPLE = ID("sample")
WHATIF_RESET = ID("reset")
WHATIF_SEARCH = ID("search")
WHATIF_SHOW_ALL = ID("show-all")
WHATIF_RESULT = ID("result")
WHATIF_CHANGED = ID("changed")
WHATIF_PRED_FIG = ID("prediction")
WHATIF_MAX_SLIDERS = 64  # one slider per feature, the most important first
WHATIF_SLIDERS = tuple(ID(f"slider-{k}") for k in range(WHATIF_MAX_SLIDERS))
WHATIF_SLOTS = tuple(ID(f"slot-{k}") for k in range(WHATIF_MAX_SLIDERS))  # a slider with its label

SHOWN = 12  # sliders shown before "show all"
SHOW_ALL = "all"
MAX_SEARCH = 100
SLIDER_STEPS = 200
HIDDEN = {"display": "none"}
VISIBLE = {"display": "block", "margin": "4px 0 10px 0", "padding": "0 12px"}  # room for the end marks


def _adapter(state: DashboardState) -> type[InputAdapter]:
    probe = state.probe
    return type(probe.adapter) if probe is not None else adapter_for(state.analysis.model.input_kind)


def unavailable(state: DashboardState) -> str | None:
    """Why this analysis has no what-if view at all, or ``None`` when it has one."""
    adapter = _adapter(state)
    if not adapter.whatif:
        return (
            "What-if curves and sliders apply to tabular inputs (one row of features per sample); "
            f"this model's inputs are {adapter.description}."
        )
    if state.analysis.whatif is None and state.probe is None:
        return (
            "This analysis has no what-if curves (run the whatif section with evaluation data), and the "
            "dashboard was started without the model and data, so samples cannot be edited live."
        )
    return None


def _feature_names(state: DashboardState) -> tuple[str, ...]:
    probe = state.probe
    if probe is not None and probe.adapter.feature_names:
        return probe.adapter.feature_names
    return state.analysis.model.feature_names


def importance_order(state: DashboardState, d: int) -> list[int]:
    """Feature columns ``0..d-1``, most important first by the analysis's Integrated Gradients (else
    its first method that ran); column order when the analysis has no importance for these inputs."""
    ranking = importance_ranking(state.analysis.importance)
    if ranking is not None and ranking.size == d:
        return [int(i) for i in ranking]
    return list(range(d))


def pd_rows(state: DashboardState) -> list[int]:
    """The stored curves' rows, most important feature first (by PD effect without importance)."""
    pd = state.analysis.whatif
    if pd is None:
        return []
    return ranked_rows(pd, importance_ranking(state.analysis.importance))


@dataclass(frozen=True)
class Sliders:
    """The live panel's slots: ``columns[k]`` is the feature slot ``k`` edits, within ``low[k]..high[k]``
    (its observed range on the probe's held samples)."""

    columns: tuple[int, ...]
    names: tuple[str, ...]
    low: np.ndarray
    high: np.ndarray


def sliders(state: DashboardState) -> Sliders | None:
    """The slots for the probe's samples; ``None`` without a probe on tabular inputs."""
    probe = state.probe
    if probe is None or not probe.adapter.whatif:
        return None

    def compute() -> Sliders:
        assert probe is not None
        values = np.stack([probe.inputs(i) for i in range(probe.n_samples)]).astype(np.float64)
        names = _feature_names(state)
        columns = tuple(importance_order(state, values.shape[1])[:WHATIF_MAX_SLIDERS])
        return Sliders(
            columns,
            tuple(names[c] if c < len(names) else f"x{c}" for c in columns),
            values[:, columns].min(axis=0),
            values[:, columns].max(axis=0),
        )

    return state.memo(("whatif-sliders",), compute)  # type: ignore[no-any-return]


def curves(state: DashboardState, r: int) -> tuple[object, object]:
    """Row ``r`` of the stored curves: the PD/ICE figure and (classifiers) the class probabilities."""
    pd = state.analysis.whatif
    if pd is None:
        empty = F.empty_figure("no what-if curves in this analysis (run the whatif section with evaluation data)")
        return empty, empty
    feature = int(pd.features[r])
    pd_fig = F.partial_dependence_figure(pd, feature)
    if pd.class_average is None:
        return pd_fig, F.empty_figure("class probabilities apply to classifiers; this model's task is " + pd.task)
    return pd_fig, F.class_probability_figure(pd, feature, state.analysis.model.class_names)


def _format(value: float) -> str:
    return f"{value:.6g}"


def evaluation(state: DashboardState, i: int, values: list[float]) -> tuple[str, str, object]:
    """Sample ``i`` with the slots' features set to ``values``: the target line, the changed features,
    and the prediction figure (edited next to original)."""
    probe = state.probe
    slots = sliders(state)
    assert probe is not None and slots is not None
    original = probe.inputs(i)
    edited = original.copy()
    changed = []
    for column, name, value in zip(slots.columns, slots.names, values):
        if not np.isclose(value, float(original[column]), rtol=0.0, atol=1e-9 * max(1.0, abs(value))):
            edited[column] = value
            changed.append(f"{name} = {_format(value)} (was {_format(float(original[column]))})")
    before, predicted_before = probe.evaluate(i, original)
    after, predicted_after = probe.evaluate(i, edited)
    target = state.analysis.whatif.target if state.analysis.whatif is not None else state.analysis.model.target
    line = f"{target[:1].upper()}{target[1:]}: original {_format(before)}, edited {_format(after)} (change {_format(after - before)})"
    task = probe.task.kind if probe.task is not None else state.analysis.model.task
    figure = F.whatif_prediction_figure(
        predicted_before, predicted_after, task=task, class_names=state.analysis.model.class_names
    )
    edits = "Edited: " + "; ".join(changed) if changed else "No feature edited: the sample as it is."
    return line, edits, figure


def _slot_styles(slots: Sliders, show_all: bool, search: str) -> list[dict[str, str]]:
    query = search.strip().lower()
    styles = []
    for k, name in enumerate(slots.names):
        shown = query in name.lower() if query else (show_all or k < SHOWN)
        styles.append(VISIBLE if shown else HIDDEN)
    return styles


def _slider(slots: Sliders, k: int, value: float) -> html.Div:
    low, high = float(slots.low[k]), float(slots.high[k])
    constant = high <= low
    step = (high - low) / SLIDER_STEPS if not constant else 1.0
    return html.Div(
        [
            html.Label(slots.names[k], style={"fontWeight": 600}),
            dcc.Slider(
                id=WHATIF_SLIDERS[k],
                min=low,
                max=high if not constant else low + 1.0,
                step=step,
                value=value,
                disabled=constant,
                marks={low: f"{low:.3g}", **({} if constant else {high: f"{high:.3g}"})},
                tooltip={"placement": "bottom", "always_visible": False},
                updatemode="mouseup",
            ),
        ],
        id=WHATIF_SLOTS[k],
        style=VISIBLE if k < SHOWN else HIDDEN,
    )


def _curves_part(state: DashboardState) -> list[Component]:
    pd: PartialDependence | None = state.analysis.whatif
    if pd is None:
        return [note("This analysis has no what-if curves (run the whatif section with evaluation data).")]
    rows = pd_rows(state)
    pd_fig, class_fig = curves(state, rows[0])
    chosen = {"importance": "the most important", "first": "the first", "all": "all", "given": "the chosen"}
    parts: list[Component] = [
        note(
            f"Partial dependence: {pd.target} averaged over {pd.n_samples} samples while one feature sweeps "
            f"its observed range ({pd.grid_kind} grid), with the individual curves (ICE) of the first "
            f"{len(pd.ice_samples)} samples. Curves for {chosen.get(pd.selection, pd.selection)} "
            f"{len(pd.features)} features.",
            WHATIF_NOTE,
        ),
        control(
            "Feature",
            dcc.Dropdown(
                id=WHATIF_FEATURE,
                options=[{"label": pd.feature_names[r], "value": str(r)} for r in rows],
                value=str(rows[0]),
                clearable=False,
                searchable=True,
                style={"width": "280px", "display": "inline-block"},
            ),
        ),
    ]
    if pd.class_average is None:
        parts.append(graph(WHATIF_PD_FIG, pd_fig))
        parts.append(html.Div(graph(WHATIF_CLASS_FIG, class_fig), style=HIDDEN))
    else:
        parts.append(row(graph(WHATIF_PD_FIG, pd_fig), graph(WHATIF_CLASS_FIG, class_fig), widths=(3, 2)))
    return parts


def _live_part(state: DashboardState) -> list[Component]:
    slots = sliders(state)
    probe = state.probe
    if slots is None or probe is None:
        return [note("Start the dashboard with the model and its data to edit a sample's features live.")]
    original = probe.inputs(0)
    line, edits, figure = evaluation(state, 0, [float(original[c]) for c in slots.columns])
    d = probe.adapter.n_features or 0
    more = (
        f" Sliders for the {len(slots.columns)} most important of {d} features; the others keep the sample's values."
        if d > len(slots.columns)
        else ""
    )
    return [
        note(
            f"Pick one of the {probe.n_samples} held samples, move a slider (each spans the feature's observed "
            f"range), and the model is re-evaluated.{more}",
            WHATIF_LIVE_NOTE,
        ),
        control(
            "Sample",
            dcc.Input(
                id=WHATIF_SAMPLE,
                type="number",
                min=0,
                max=probe.n_samples - 1,
                step=1,
                value=0,
                debounce=True,
                style={"width": "90px"},
            ),
        ),
        html.Button("Reset to the sample", id=WHATIF_RESET, n_clicks=0, style={"marginRight": "24px"}),
        control(
            "Find a feature",
            dcc.Input(id=WHATIF_SEARCH, type="text", value="", debounce=True, maxLength=MAX_SEARCH),
        ),
        dcc.Checklist(
            id=WHATIF_SHOW_ALL,
            options=[{"label": f" show all {len(slots.columns)} sliders", "value": SHOW_ALL}],
            value=[],
            style={"display": "inline-block"},
        ),
        html.P(line, id=WHATIF_RESULT, style={"fontWeight": 600, "margin": "8px 0"}),
        note(edits, WHATIF_CHANGED),
        row(
            html.Div(
                [_slider(slots, k, float(original[c])) for k, c in enumerate(slots.columns)],
                style={"maxHeight": "640px", "overflowY": "auto", "paddingRight": "12px"},
            ),
            dcc.Loading(graph(WHATIF_PRED_FIG, figure)),
        ),
    ]


def layout(state: DashboardState) -> html.Div:
    why = unavailable(state)
    if why is not None:
        return html.Div(note(why, WHATIF_NOTE))
    return html.Div(
        [
            html.H4("Partial dependence and ICE"),
            *_curves_part(state),
            html.H4("Edit a sample"),
            *_live_part(state),
        ]
    )


def _slider_values(slots: Sliders, raw: tuple[object, ...]) -> list[float]:
    """The sliders' values, each a finite number within its feature's range; else ``PreventUpdate``."""
    values = []
    for k, value in enumerate(raw[: len(slots.columns)]):
        number = finite_number(value)
        low, high = float(slots.low[k]), float(slots.high[k])
        slack = 1e-9 * max(1.0, abs(low), abs(high))
        if number is None or not low - slack <= number <= high + slack:
            raise PreventUpdate
        values.append(number)
    return values


def register(app: Dash, state: DashboardState) -> None:
    if unavailable(state) is not None:
        return
    pd = state.analysis.whatif
    if pd is not None:
        rows = [str(r) for r in range(len(pd.features))]

        @app.callback(
            Output(WHATIF_PD_FIG, "figure"),
            Output(WHATIF_CLASS_FIG, "figure"),
            Input(WHATIF_FEATURE, "value"),
            prevent_initial_call=True,
        )
        def update_curves(value: object):
            if not isinstance(value, str) or value not in rows:
                raise PreventUpdate
            r = int(value)
            return state.memo(("whatif-curves", r), lambda: curves(state, r))

    slots = sliders(state)
    probe = state.probe
    if slots is None or probe is None:
        return
    n = len(slots.columns)
    slider_ids = WHATIF_SLIDERS[:n]
    held = probe.n_samples

    @app.callback(Output(WHATIF_SAMPLE, "value"), Input(ids.SAMPLE_INDEX, "value"), prevent_initial_call=True)
    def follow_the_sample_explorer(value: object):
        """The sample explorer (Feature importance) and the sliders show the same sample."""
        i = index_or_none(value, held)
        if i is None:
            raise PreventUpdate
        return i

    @app.callback(
        *[Output(WHATIF_SLOTS[k], "style") for k in range(n)],
        Input(WHATIF_SHOW_ALL, "value"),
        Input(WHATIF_SEARCH, "value"),
        prevent_initial_call=True,
    )
    def show_sliders(show: object, search: object):
        ticked = flags(show, {SHOW_ALL})
        if search is None:
            search = ""
        if not isinstance(search, str) or len(search) > MAX_SEARCH:
            raise PreventUpdate
        return _slot_styles(slots, SHOW_ALL in ticked, search)

    @app.callback(
        *[Output(slider, "value") for slider in slider_ids],
        Input(WHATIF_SAMPLE, "value"),
        Input(WHATIF_RESET, "n_clicks"),
        prevent_initial_call=True,
    )
    def load_sample(sample: object, _clicks: object):
        i = index(sample, probe.n_samples)
        x = probe.inputs(i)
        return [float(x[c]) for c in slots.columns]

    @app.callback(
        Output(WHATIF_RESULT, "children"),
        Output(WHATIF_CHANGED, "children"),
        Output(WHATIF_PRED_FIG, "figure"),
        Input(WHATIF_SAMPLE, "value"),
        *[Input(slider, "value") for slider in slider_ids],
        prevent_initial_call=True,
    )
    def evaluate(sample: object, *values: object):
        i = index_or_none(sample, probe.n_samples)
        if i is None:
            raise PreventUpdate
        return evaluation(state, i, _slider_values(slots, values))


register_view("whatif", "What-if", order=70, layout=layout, callbacks=register)
