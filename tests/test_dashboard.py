"""The dashboard's logic without a browser: callbacks' helpers, state, demo cache, serving."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch
from torch import nn

from dashboards import ids
from dashboards.app import check_port, create_app
from dashboards.demo import load_demo
from dashboards.state import DashboardState
from dashboards.views import dead, importance, neurons, weights
from inspector.analysis import AnalysisOptions, analyze
from inspector.cli import main
from inspector.errors import InspectorError
from inspector.models import MLPConfig, build_mlp


@pytest.fixture(scope="module")
def state(demo):
    analysis, ckpt, data = demo
    return DashboardState.build(analysis, ckpt.model, data)


def test_demo_is_cached_after_first_use(demo, tmp_path):
    analysis, ckpt, _ = demo
    first = load_demo(tmp_path, log=lambda _: None)
    messages: list[str] = []
    second = load_demo(tmp_path, log=messages.append)
    assert messages == []  # neither trained nor analysed again
    assert second[0].data.accuracy == first[0].data.accuracy
    assert analysis.data.accuracy >= 0.9 and analysis.deaths is not None


def test_heatmap_follows_the_layer_and_modes(state):
    fig, _ = weights.heatmap(state, "fc2", sort_rows=False, magnitude=False)
    assert fig.layout.title.text.startswith("fc2: 64 × 128")
    np.testing.assert_array_equal(fig.data[0].z, state.weights("fc2").values)
    fig, _ = weights.heatmap(state, "fc2", sort_rows=False, magnitude=True)
    np.testing.assert_array_equal(fig.data[0].z, np.abs(state.weights("fc2").values))
    fig, _ = weights.heatmap(state, "fc1", sort_rows=True, magnitude=False)
    strongest = int(np.argmax(state.weights("fc1").neuron_norm))
    assert fig.data[0].customdata[0][0] == strongest


def test_click_on_a_cell_names_its_neuron(state):
    layer = state.weights("fc1")
    assert weights.neuron_from_click({"points": [{"x": 3, "y": 17, "z": 0.1}]}, layer) == 17
    assert weights.neuron_from_click({"points": [{"x": 3, "y": "42"}]}, layer) == 42
    assert weights.neuron_from_click({"points": [{"x": 3, "y": 500}]}, layer) is None
    assert weights.neuron_from_click({"points": [{"x": 3, "y": "1e309"}]}, layer) is None
    assert weights.neuron_from_click({"points": [{"x": 3, "y": float("nan")}]}, layer) is None
    assert weights.neuron_from_click({"points": ["y"]}, layer) is None
    assert weights.neuron_from_click(None, layer) is None
    order = np.argsort(-layer.neuron_norm)
    assert weights.neuron_from_click({"points": [{"x": 3, "y": 0}]}, layer, order) == int(order[0])  # sorted: rank


def test_neuron_panels_read_the_stored_results(state):
    title, activation, incoming, drivers, classes = neurons.panels(state, "fc1", 5)
    acts = state.activations("fc1")
    assert title.startswith("Neuron 5 of fc1")
    assert f"{100 * acts.fire_rate[5]:.1f}%" in activation.layout.title.text
    np.testing.assert_array_equal(incoming.data[0].z, state.weights("fc1").values[5].reshape(8, 8))
    cond = state.conductance("fc1")
    np.testing.assert_allclose(np.asarray(classes.data[0].y), np.nan_to_num(cond.by_class[:, 5]))
    top = state.analysis.model.feature_names[int(np.argmax(cond.neuron_inputs[5]))]
    assert drivers.data[0].y[-1] == top  # the longest bar, drawn last, is the top input
    rows = neurons.table_rows(state, "fc2")
    assert len(rows) == 64 and sum(r["state"] == "dead" for r in rows) == state.activations("fc2").dead_count


def test_dead_count_text_counts_from_the_census(state):
    acts = [a for a in state.analysis.activations if a.fire_rate is not None]
    for threshold in dead.THRESHOLDS:
        nearly = sum(int(((a.fire_rate > 0) & (a.fire_rate < threshold)).sum()) for a in acts)
        dead_total = sum(int(a.dead_mask.sum()) for a in acts)
        assert dead.count_text(state, threshold).startswith(f"{dead_total} dead and {nearly} nearly dead")


def test_importance_charts_follow_method_and_class(state):
    report = state.analysis.importance
    bar, image, text = importance.charts(state, "saliency", "3")
    per_class = report.method("saliency").per_class[3]
    names = state.analysis.model.feature_names
    assert bar.data[0].y[-1] == names[int(np.argmax(per_class))]
    np.testing.assert_allclose(image.data[0].z, per_class.reshape(8, 8))
    assert "Saliency" in text and f"{report.method('saliency').sanity_correlation:.2f}" in text
    bar_all, _, _ = importance.charts(state, "integrated_gradients", importance.ALL)
    assert bar_all.data[0].y[-1] == names[int(report.method("integrated_gradients").ranking[0])]


def test_sample_explorer_explains_on_demand(state):
    fig, note = importance.sample_view(state, "integrated_gradients", 4)
    expected = state.probe.explain("integrated_gradients", 4)
    np.testing.assert_allclose(np.asarray(fig.data[2].z).reshape(-1), expected)
    assert "Sample 4 of 359" in note
    out_of_range, _ = importance.sample_view(state, "integrated_gradients", 10_000)
    assert "between 0 and 358" in out_of_range.layout.annotations[0].text


def test_app_from_a_saved_analysis_alone_explains_what_is_missing(demo):
    analysis, _, _ = demo
    state = DashboardState.build(analysis)
    fig, _ = importance.sample_view(state, "saliency", 0)
    assert "start the dashboard on a checkpoint" in fig.layout.annotations[0].text
    app = create_app(analysis)
    assert app.server is not None and ids.TABS in str(app.layout)


def test_large_layers_are_pooled_and_zoom_to_full_resolution():
    torch.manual_seed(0)
    model = build_mlp(MLPConfig(2500, (1100,), 3))
    analysis = analyze(model, options=AnalysisOptions(sections=("parameters", "weights")))
    state = DashboardState.build(analysis, model)
    fig, hint = weights.heatmap(state, "fc1", False, False)
    assert "blocks" in fig.layout.title.text and "Zoom in" in hint
    assert max(np.asarray(fig.data[0].z).shape) <= 1024
    relayout = {"xaxis.range[0]": 100.2, "xaxis.range[1]": 399.7, "yaxis.range[0]": 50.4, "yaxis.range[1]": 80.6}
    fig, _ = weights.heatmap(state, "fc1", False, False, weights.zoom_region(relayout, 1100, 2500))
    np.testing.assert_array_equal(fig.data[0].z, model.fc1.weight.detach().numpy()[50:81, 100:400])
    assert state.zoom("fc1", (50, 81), (100, 400)) is state.zoom("fc1", (50, 81), (100, 400))  # cached


def test_busy_port_is_a_one_line_error(capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(InspectorError, match=f"port {port} on 127.0.0.1 is already in use"):
            check_port("127.0.0.1", port)
        assert main(["dashboard", "--port", str(port)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"inspector: error: port {port} on 127.0.0.1 is already in use; pass --port with a free one"


def test_dashboard_defaults_are_local_and_without_debug():
    from inspector.cli import _build_parser

    args = _build_parser().parse_args(["dashboard"])
    assert (args.host, args.port, args.debug, args.path) == ("127.0.0.1", 8050, False, None)
    assert (args.token, args.no_auth) == (None, False)  # on loopback: no token, as before


# --------------------------------------------------------------------------- sorting rows by norm


def _planted_model(in_features: int, hidden: int, seed: int) -> tuple[nn.Module, np.ndarray]:
    """An MLP whose fc1 row j has norm ``target[j]``: distinct values 0.01 apart, in shuffled order."""
    torch.manual_seed(seed)
    model = build_mlp(MLPConfig(in_features, (hidden,), 3))
    target = 1.0 + 0.01 * np.random.default_rng(seed).permutation(hidden)
    with torch.no_grad():
        w = model.fc1.weight
        w.mul_(
            torch.as_tensor(target / np.linalg.norm(w.numpy().astype(np.float64), axis=1), dtype=torch.float32)[:, None]
        )
    np.testing.assert_allclose(
        np.linalg.norm(model.fc1.weight.detach().numpy().astype(np.float64), axis=1), target, rtol=1e-5
    )
    return model, target


@pytest.fixture(scope="module")
def small_planted():
    model, target = _planted_model(20, 30, seed=1)
    analysis = analyze(model, options=AnalysisOptions(sections=("parameters", "weights")))
    return model, analysis, np.argsort(-target)


@pytest.fixture(scope="module")
def pooled_planted():
    """fc1 is 1000 x 40: taller than 768, so it is stored as 2 x 1 block maxima."""
    model, target = _planted_model(40, 1000, seed=2)
    analysis = analyze(model, options=AnalysisOptions(sections=("parameters", "weights")))
    assert not analysis.weights[0].magnitude.is_full_resolution
    return model, analysis, np.argsort(-target)


def _rows_shown(fig) -> np.ndarray:
    """The neuron number of each row of a sorted heatmap, as its hover reports it."""
    return np.asarray(fig.data[0].customdata)[:, 0]


def test_sorted_small_layer_shows_rows_strongest_first(small_planted):
    model, analysis, order = small_planted
    state = DashboardState.build(analysis)  # a saved analysis alone: small layers keep their values
    fig, note = weights.heatmap(state, "fc1", sort_rows=True, magnitude=False)
    np.testing.assert_array_equal(_rows_shown(fig), order)
    np.testing.assert_array_equal(fig.data[0].z, model.fc1.weight.detach().numpy()[order])
    assert "sorted by norm" in fig.layout.title.text and "sorted" in note
    ticks = dict(zip(fig.layout.yaxis.tickvals, fig.layout.yaxis.ticktext))
    assert ticks[0] == str(order[0]) and all(text == str(order[rank]) for rank, text in ticks.items())
    assert weights.neuron_from_click({"points": [{"x": 2, "y": 5}]}, analysis.weights[0], order) == order[5]
    assert weights.sort_options(state, "fc1")[0]["disabled"] is False


def test_sorted_pooled_layer_pools_the_row_sorted_weight(pooled_planted):
    model, analysis, order = pooled_planted
    state = DashboardState.build(analysis, model)
    fig, note = weights.heatmap(state, "fc1", sort_rows=True, magnitude=False)
    w = np.abs(model.fc1.weight.detach().numpy())
    expected = w[order].reshape(500, 2, 40).max(axis=1)  # 2 x 1 block maxima of the sorted rows
    np.testing.assert_array_equal(fig.data[0].z, expected)
    np.testing.assert_array_equal(_rows_shown(fig), order[::2])  # each block's strongest neuron
    assert (fig.data[0].y0, fig.data[0].dy) == (0, 2)
    assert "sorted by norm" in fig.layout.title.text and "sorted" in note
    # a click on a block (y = its first rank) opens that block's strongest neuron
    assert weights.neuron_from_click({"points": [{"x": 3, "y": 100}]}, analysis.weights[0], order) == order[100]
    unsorted, _ = weights.heatmap(state, "fc1", sort_rows=False, magnitude=False)
    np.testing.assert_array_equal(unsorted.data[0].z, analysis.weights[0].magnitude.values)


def test_zoom_into_a_sorted_pooled_layer_shows_those_ranks_strongest_first(pooled_planted):
    model, analysis, order = pooled_planted
    state = DashboardState.build(analysis, model)
    relayout = {"yaxis.range[0]": 100.3, "yaxis.range[1]": 139.6, "xaxis.range[0]": 4.8, "xaxis.range[1]": 20.2}
    region = weights.zoom_region(relayout, 1000, 40)
    assert region == ((100, 140), (4, 21))
    fig, note = weights.heatmap(state, "fc1", True, False, region)
    w = model.fc1.weight.detach().numpy()
    np.testing.assert_array_equal(_rows_shown(fig), order[100:140])
    np.testing.assert_array_equal(fig.data[0].z, w[order[100:140], 4:21])
    assert (fig.data[0].y0, fig.data[0].x0) == (100, 4)
    assert note.startswith("Neurons ranked 100-139 by norm")
    unsorted, _ = weights.heatmap(state, "fc1", False, False, region)  # the same box, unsorted: neurons 100-139
    np.testing.assert_array_equal(unsorted.data[0].z, w[100:140, 4:21])


def test_zoom_callback_on_a_sorted_view_answers_the_ranks(pooled_planted):
    import base64

    model, analysis, order = pooled_planted
    app = create_app(analysis, model=model)
    relayout = {"yaxis.range[0]": 10, "yaxis.range[1]": 19, "xaxis.range[0]": 0, "xaxis.range[1]": 39}
    body = {
        "output": "..weights-heatmap.figure...weights-note.children..",
        "outputs": [
            {"id": weights.WEIGHT_HEATMAP, "property": "figure"},
            {"id": weights.WEIGHT_NOTE, "property": "children"},
        ],
        "inputs": [
            {"id": weights.WEIGHT_LAYER, "property": "value", "value": "fc1"},
            {"id": weights.WEIGHT_SORT, "property": "value", "value": ["sort"]},
            {"id": weights.WEIGHT_MODE, "property": "value", "value": "abs"},
            {"id": weights.WEIGHT_ZOOM, "property": "data", "value": relayout},
        ],
        "changedPropIds": [f"{weights.WEIGHT_ZOOM}.data"],
        "state": [],
    }
    reply = app.server.test_client().post("/_dash-update-component", json=body).get_json()["response"]
    assert reply[weights.WEIGHT_NOTE]["children"].startswith("Neurons ranked 10-19 by norm")
    custom = reply[weights.WEIGHT_HEATMAP]["figure"]["data"][0]["customdata"]
    dtype = {"u2": np.uint16, "u4": np.uint32, "i4": np.int32}[custom["dtype"]]
    rows = np.frombuffer(base64.b64decode(custom["bdata"]), dtype=dtype).reshape(10, 40)[:, 0]
    np.testing.assert_array_equal(rows, order[10:20])


def test_a_pooled_map_s_zoom_is_passed_to_the_redraw(pooled_planted):
    # the zoom reaches the heatmap's redraw through a store, so a zoom event never re-issues (and so
    # supersedes) a redraw already in flight for a sort or layer change; a full-resolution map's zoom stays
    # in the browser (tests/test_dashboard_security.py: that request is answered with no update)
    model, analysis, _ = pooled_planted
    app = create_app(analysis, model=model)
    relayout = {"yaxis.range[0]": 10, "yaxis.range[1]": 19}

    def zoom(layer: str) -> int | dict:
        body = {
            "output": f"{weights.WEIGHT_ZOOM}.data",
            "outputs": {"id": weights.WEIGHT_ZOOM, "property": "data"},
            "inputs": [{"id": weights.WEIGHT_HEATMAP, "property": "relayoutData", "value": relayout}],
            "state": [{"id": weights.WEIGHT_LAYER, "property": "value", "value": layer}],
            "changedPropIds": [f"{weights.WEIGHT_HEATMAP}.relayoutData"],
        }
        reply = app.server.test_client().post("/_dash-update-component", json=body)
        return reply.status_code if reply.status_code != 200 else reply.get_json()["response"]

    assert zoom("fc1") == {weights.WEIGHT_ZOOM: {"data": relayout}}  # fc1 is pooled
    assert zoom("no such layer") == 204


def test_sorting_a_pooled_layer_without_the_model_is_disabled_with_a_reason(pooled_planted):
    _, analysis, _ = pooled_planted
    state = DashboardState.build(analysis)
    option = weights.sort_options(state, "fc1")[0]
    assert option["disabled"] is True and "checkpoint" in option["label"]
    fig, note = weights.heatmap(state, "fc1", sort_rows=True, magnitude=False)
    assert note.startswith("Sorting by norm is off for this layer") and "checkpoint" in note
    assert "sorted" not in fig.layout.title.text and fig.data[0].customdata is None
    np.testing.assert_array_equal(fig.data[0].z, analysis.weights[0].magnitude.values)
    app = create_app(analysis)  # the control starts disabled when the first layer is that layer
    assert "'disabled': True" in str(app.layout)


def test_a_version_1_analysis_and_units_without_a_dead_mask_still_serve():
    from inspector.analysis import Analysis
    from tests.test_report import V1_ANALYSIS, _smooth_and_unknown

    old = Analysis.load(V1_ANALYSIS)
    for analysis in (old, _smooth_and_unknown(old)):
        app = create_app(analysis)
        assert app.server is not None and ids.TABS in str(app.layout)
        state = DashboardState.build(analysis)
        assert state.census_layers == ["fc1", "fc2"]
        rows = neurons.table_rows(state, "fc1")
        assert len(rows) == 5 and neurons.panels(state, "fc1", 0)[0].startswith("Neuron 0 of fc1")
        neurons.table_rows(state, "fc2")
    assert sum(r["state"] == "dead" for r in neurons.table_rows(DashboardState.build(old), "fc1")) == 1
    smooth = DashboardState.build(_smooth_and_unknown(old))
    assert "state" not in neurons.table_rows(smooth, "fc1")[0]
    assert dead.count_text(smooth, 0.01).startswith("No ReLU-family layers")
