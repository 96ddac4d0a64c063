"""A view is one file: the dashboard's view registry (dashboards/registry.py), where a view registers itself
and its ids, and the report's panel registry (inspector/figures/panels.py), where a figure module adds a section."""

from __future__ import annotations

import json
import sys
import textwrap

import numpy as np
import pytest

import dashboards.views
import inspector.figures
from dashboards import ids
from dashboards.app import create_app
from dashboards.registry import ViewIds, discover, register_view, unregister_view, views
from inspector.figures.panels import report_panel, report_panels, unregister_panel
from tests.helpers import tiny_analysis

# A whole view, as a contributor would write it: nothing else in the project is edited.
PROBE_VIEW = '''
"""Widths: one line naming the chosen layer's width (a throwaway view for the registry's test)."""

from __future__ import annotations

from dash import Dash, Input, Output, dcc, html

from dashboards.registry import ViewIds, register_view
from dashboards.security import choice
from dashboards.state import DashboardState

ID = ViewIds("widths")
LAYER = ID("layer")
TEXT = ID("text")


def layout(state: DashboardState) -> html.Div:
    names = state.layer_names
    return html.Div([dcc.Dropdown(id=LAYER, options=names, value=names[0]), html.P(id=TEXT)])


def callbacks(app: Dash, state: DashboardState) -> None:
    @app.callback(Output(TEXT, "children"), Input(LAYER, "value"))
    def show(value: object) -> str:
        name = choice(value, state.layer_names)
        return f"{name} has {state.weights(name).values.shape[0]} neurons"


register_view("widths", "Widths", order=85, layout=layout, callbacks=callbacks)
'''

BUILT_IN = ["overview", "weights", "neurons", "dead", "importance", "text", "whatif", "pruning", "activations"]


@pytest.fixture(scope="module")
def tiny():
    return tiny_analysis(40, n_steps=4)


@pytest.fixture
def probe_view(tmp_path, monkeypatch):
    """PROBE_VIEW written as one file into a folder that the views package searches (as if dropped
    into dashboards/views/); removed again afterwards."""
    (tmp_path / "widths.py").write_text(textwrap.dedent(PROBE_VIEW))
    monkeypatch.setattr(dashboards.views, "__path__", [*dashboards.views.__path__, str(tmp_path)])
    yield "dashboards.views.widths"
    unregister_view("widths")
    sys.modules.pop("dashboards.views.widths", None)


def _walk(component):
    if isinstance(component, dict):
        yield component
        yield from _walk(component.get("props", {}).get("children"))
    elif isinstance(component, list):
        for child in component:
            yield from _walk(child)


def _layout(app) -> list[dict]:
    return list(_walk(json.loads(json.dumps(app.layout.to_plotly_json(), cls=_Encoder))))


class _Encoder(json.JSONEncoder):
    def default(self, o):
        if hasattr(o, "to_plotly_json"):
            return o.to_plotly_json()
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, np.generic):
            return o.item()
        return super().default(o)


def test_the_built_in_views_are_discovered_in_tab_order():
    assert [view.name for view in views("analysis")] == BUILT_IN
    assert [view.name for view in views("live")] == ["live"]
    assert [view.name for view in views()] == ["live", *BUILT_IN]


def test_a_view_dropped_into_the_package_is_a_tab_with_working_callbacks(tiny, probe_view):
    analysis, model, data = tiny
    assert probe_view not in sys.modules  # nothing imported it: the app finds it
    app = create_app(analysis, model=model, data=data)
    components = _layout(app)
    tabs = [c["props"] for c in components if c["type"] == "Tab"]
    assert [t["value"] for t in tabs] == [*BUILT_IN[:-1], "widths", "activations"]  # order 85: before 90
    assert {"label": "Widths", "value": "widths"}.items() <= tabs[-2].items()
    assert {c["props"].get("id") for c in components} >= {"widths-layer", "widths-text"}

    body = {
        "output": "widths-text.children",
        "outputs": {"id": "widths-text", "property": "children"},
        "inputs": [{"id": "widths-layer", "property": "value", "value": "fc1"}],
        "state": [],
        "changedPropIds": ["widths-layer.value"],
    }
    client = app.server.test_client()
    reply = client.post("/_dash-update-component", json=body, headers={"Host": "127.0.0.1:8050"})
    assert reply.get_json()["response"]["widths-text"]["children"] == "fc1 has 8 neurons"
    # the app's security covers the new view too: an unknown Host is refused, a forged output is not a callback
    assert client.post("/_dash-update-component", json=body, headers={"Host": "evil.example"}).status_code == 421
    forged = dict(body, output="widths-text.style", outputs={"id": "widths-text", "property": "style"})
    assert client.post("/_dash-update-component", json=forged, headers={"Host": "127.0.0.1:8050"}).status_code == 400


def test_a_view_that_is_not_available_is_left_out(tiny):
    analysis, model, data = tiny
    register_view(
        "needs-model",
        "Needs the model",
        order=15,
        layout=lambda state: None,
        callbacks=lambda app, state: None,
        available=lambda state: state.probe is not None,  # a model and data to question
    )
    try:
        with_model = [
            c["props"]["value"] for c in _layout(create_app(analysis, model=model, data=data)) if c["type"] == "Tab"
        ]
        stored_only = [c["props"]["value"] for c in _layout(create_app(analysis)) if c["type"] == "Tab"]
    finally:
        unregister_view("needs-model")
    assert with_model[:3] == ["overview", "needs-model", "weights"]
    assert stored_only == BUILT_IN


def test_every_id_on_the_page_is_owned_by_one_view_or_is_app_wide(tiny):
    analysis, model, data = tiny
    components = _layout(create_app(analysis, model=model, data=data))
    on_page = {c["props"]["id"] for c in components if isinstance(c["props"].get("id"), str)}
    discover()
    owners: dict[str, str] = {}
    for module in list(sys.modules.values()):
        if module is None or not getattr(module, "__name__", "").startswith("dashboards.views."):
            continue
        for value in vars(module).values():
            if isinstance(value, ViewIds):
                for component_id in value:
                    assert component_id.startswith(f"{value.view}-")
                    assert owners.setdefault(component_id, module.__name__) == module.__name__, component_id
    app_wide = {ids.TABS, ids.NEURON_LAYER, ids.NEURON_INDEX, ids.SAMPLE_INDEX}
    assert on_page - app_wide <= set(owners)
    assert app_wide <= on_page
    # the ids the browser tests and users' scripts know are the ones rendered before views owned them
    assert {"weights-heatmap", "neurons-table", "dead-nearly-count", "sample-figure", "whatif-slider-0"} <= on_page


def test_view_ids_prefix_the_view_name_and_remember_what_they_named():
    named = ViewIds("spectrum")
    assert named("figure") == "spectrum-figure"
    assert named("layer") == "spectrum-layer"
    assert named.owned() == ("spectrum-figure", "spectrum-layer")


PROBE_PANEL = '''
"""Widths: one bar per layer (a throwaway figure module for the panel registry's test)."""

from __future__ import annotations

import plotly.graph_objects as go

from inspector.figures.panels import report_panel


def widths_figure(names: list[str], widths: list[int]) -> go.Figure:
    return go.Figure(go.Bar(x=names, y=widths))


@report_panel("widths", "Layer widths", order=5, markdown=lambda analysis: "one bar per layer")
def widths_panel(analysis):
    layers = analysis.parameters.layers
    return ["<p>Neurons per layer.</p>", widths_figure([l.layer for l in layers], [l.out_features for l in layers])]
'''


@pytest.fixture
def probe_panel(tmp_path, monkeypatch):
    """PROBE_PANEL written as one file into a folder that inspector.figures searches; removed afterwards."""
    (tmp_path / "widths_probe.py").write_text(textwrap.dedent(PROBE_PANEL))
    monkeypatch.setattr(inspector.figures, "__path__", [*inspector.figures.__path__, str(tmp_path)])
    yield "inspector.figures.widths_probe"
    unregister_panel("widths")
    sys.modules.pop("inspector.figures.widths_probe", None)


def test_a_figure_module_dropped_into_the_package_registers_its_report_panel(tiny, probe_panel):
    analysis, _, _ = tiny
    assert probe_panel not in sys.modules
    panels = {panel.name: panel for panel in report_panels()}
    panel = panels["widths"]
    assert (panel.title, panel.order) == ("Layer widths", 5)
    text, figure = panel.build(analysis)
    assert text == "<p>Neurons per layer.</p>"
    assert list(figure.data[0].x) == ["fc1", "fc2"] and list(figure.data[0].y) == [8, 3]
    assert panel.markdown is not None and panel.markdown(analysis) == "one bar per layer"


def test_report_panels_come_in_order_and_a_later_registration_replaces_an_earlier(tiny):
    analysis, _, _ = tiny
    try:
        report_panel("probe-b", "B", order=2)(lambda a: None)
        report_panel("probe-a", "A", order=1)(lambda a: ["first"])
        report_panel("probe-a", "A again", order=3)(lambda a: ["second"])
        names = [p.name for p in report_panels() if p.name.startswith("probe-")]
        assert names == ["probe-b", "probe-a"]
        again = next(p for p in report_panels() if p.name == "probe-a")
        assert again.title == "A again" and again.build(analysis) == ["second"]
    finally:
        unregister_panel("probe-a")
        unregister_panel("probe-b")


def test_the_reports_draw_a_dropped_in_panel_without_an_edit_to_the_renderer(tiny, probe_panel):
    """The figure module above is the only new file: the HTML and Markdown reports carry its section."""
    from inspector.render import to_html, to_markdown

    analysis, _, _ = tiny
    page = to_html(analysis)
    assert '<section id="widths"><h2>Layer widths</h2><p>Neurons per layer.</p>' in page
    assert '<a href="#widths">Layer widths</a>' in page
    markdown = to_markdown(analysis)
    assert "\n## Layer widths\n\none bar per layer\n" in markdown
    unregister_panel("widths")
    assert 'id="widths"' not in to_html(analysis) and "## Layer widths" not in to_markdown(analysis)
