"""Every dashboard view and the report for every kind of analysis (issue 10).

Kinds: tabular classification, tabular regression (y = 3 x2 - 2 x5), images (a CNN fed by a
DataLoader), tokens (a 6-block BERT built from a config, 1,536-unit MLPs), a weight-only analysis
and a saved analysis reopened without its model. Each view's layout is built and walked: no
exception, no empty figure without a message, no "accuracy" for a regression; the regression's
R² is recomputed with numpy; the module tree's parameter shares are recomputed from the model.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import numpy as np
import plotly.io as pio
import pytest
import torch
from plotly.utils import PlotlyJSONEncoder
from torch import nn

import inspector
from dashboards import ids
from dashboards.app import create_app
from dashboards.state import DashboardState
from dashboards.views import activations, dead, layer_block, layer_options, neurons
from inspector import figures as F
from inspector.analysis import Analysis, AnalysisOptions
from tests.models import digits_loader, lenet_digits, padded_batches, shared_relu, tiny_bert

FAST = AnalysisOptions(
    n_steps=4,
    max_importance_samples=32,
    sparsities=(0.0, 0.5),
    methods=("integrated_gradients", "saliency"),
)
BERT_SECTIONS = AnalysisOptions(sections=("parameters", "weights", "activations"))
BLOCKS, WIDTH = 6, 1536


def regression_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 8)).astype(np.float32)
    return X, (3 * X[:, 2] - 2 * X[:, 5]).astype(np.float32)


def regression_mlp() -> nn.Module:
    """A ReLU MLP that computes y = 3 x2 - 2 x5 exactly: relu(z) - relu(-z) = z per feature."""
    model = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 1))
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.zero_()
        model[0].weight[0, 2], model[0].weight[1, 2] = 1.0, -1.0
        model[0].weight[2, 5], model[0].weight[3, 5] = 1.0, -1.0
        model[2].weight.copy_(torch.tensor([[3.0, -3.0, -2.0, 2.0]]))
        model[2].bias.zero_()
    return model.eval()


def six_block_bert() -> nn.Module:
    return tiny_bert(num_labels=3, hidden_size=16, num_hidden_layers=BLOCKS, intermediate_size=WIDTH)


@pytest.fixture(scope="module")
def kinds(tmp_path_factory) -> dict[str, dict[str, Any]]:
    """name -> {analysis, model, data}: the six kinds every view must handle."""
    pytest.importorskip("transformers")
    torch.manual_seed(0)
    out: dict[str, dict[str, Any]] = {}
    clf, X, y = shared_relu(), torch.randn(120, 6), torch.randint(0, 3, (120,))
    out["classification"] = {"analysis": inspector.analyze(clf, (X, y), options=FAST), "model": clf, "data": (X, y)}
    reg, (Xr, yr) = regression_mlp(), regression_data()
    out["regression"] = {"analysis": inspector.analyze(reg, (Xr, yr), options=FAST), "model": reg, "data": (Xr, yr)}
    cnn, loader = lenet_digits(), digits_loader(48, batch_size=16)
    cnn_options = AnalysisOptions(
        n_steps=4, max_importance_samples=16, conductance=False, sparsities=(0.0, 0.5), methods=("saliency",)
    )
    out["images"] = {"analysis": inspector.analyze(cnn, loader, options=cnn_options), "model": cnn, "data": loader}
    bert, batches = six_block_bert(), padded_batches(n_batches=2, batch_size=4, width=8, num_labels=3)
    out["tokens"] = {
        "analysis": inspector.analyze(bert, batches, options=BERT_SECTIONS),
        "model": bert,
        "data": batches,
    }
    out["weight-only"] = {"analysis": inspector.analyze(shared_relu()), "model": None, "data": None}
    folder = tmp_path_factory.mktemp("saved") / "regression"
    out["regression"]["analysis"].save(folder)
    out["saved, no model"] = {"analysis": Analysis.load(folder), "model": None, "data": None}
    return out


def _layout_json(app) -> dict[str, Any]:
    return json.loads(json.dumps(app.layout.to_plotly_json(), cls=PlotlyJSONEncoder))


def _walk(node: Any):
    """Every component dict (``{"type", "namespace", "props"}``) under ``node``."""
    if isinstance(node, dict):
        if "props" in node and "type" in node:
            yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _figure_problem(figure: dict[str, Any]) -> str | None:
    """Why ``figure`` (a plotly dict) is blank: no trace and no annotation saying why; None when fine."""
    traces = figure.get("data") or []
    if traces:
        return None
    notes = [a.get("text") for a in (figure.get("layout") or {}).get("annotations") or ()]
    return None if any(isinstance(t, str) and t.strip() for t in notes) else "empty figure without a message"


def _texts(kind: dict[str, Any], app) -> str:
    """Everything the dashboard would show for ``kind`` in its first render, plus the per-layer panels
    its callbacks would draw for the last layer of each picker, as one lower-case string."""
    state: DashboardState = app.state
    parts = [json.dumps(_layout_json(app), ensure_ascii=False)]
    names = state.layer_names
    last = names[-1]
    parts.append(
        json.dumps(
            neurons.panels(state, last, neurons.width(state, last) - 1), cls=PlotlyJSONEncoder, ensure_ascii=False
        )
    )
    for name in state.census_layers[-2:]:
        acts = state.activations(name)
        parts.append(pio.to_json(activations.figure(state, name)))
        parts.append(pio.to_json(F.firing_strip_figure(acts, 0.01)))
    return "\n".join(parts).lower()


@pytest.mark.parametrize("kind", ["classification", "regression", "images", "tokens", "weight-only", "saved, no model"])
def test_every_view_renders_for_every_kind_and_says_what_it_lacks(kinds, kind):
    entry = kinds[kind]
    analysis = entry["analysis"]
    app = create_app(analysis, model=entry["model"], data=entry["data"])
    layout = _layout_json(app)
    tabs = [c for c in _walk(layout) if c["type"] == "Tab"]
    assert [t["props"]["value"] for t in tabs] == [
        "overview",
        "weights",
        "neurons",
        "dead",
        "importance",
        "text",
        "whatif",
        "pruning",
        "activations",
    ]
    assert "Dead neurons" in [t["props"]["label"] for t in tabs]
    for tab in tabs:
        for component in _walk(tab["props"].get("children")):
            if component["type"] == "Graph":
                problem = _figure_problem(component["props"]["figure"])
                assert problem is None, (kind, tab["props"]["value"], component["props"]["id"], problem)
    state: DashboardState = app.state
    names = state.layer_names
    widest = max(names, key=lambda name: neurons.width(state, name))
    for name in dict.fromkeys([names[0], widest, names[-1]]):  # the panels a user opens first, widest, last
        title, *figures = neurons.panels(state, name, neurons.width(state, name) - 1)
        assert title.startswith(f"Neuron {neurons.width(state, name) - 1} of {name}")
        for fig in figures:
            assert _figure_problem(fig.to_plotly_json()) is None, (kind, name)
    for name in state.census_layers[:2] + state.census_layers[-2:]:
        assert _figure_problem(activations.figure(state, name).to_plotly_json()) is None
    text = _texts(entry, app)
    if analysis.model.task == "regression":
        assert "accuracy" not in text, kind
    if analysis.data is None:
        assert "needs evaluation data" in dead.count_text(state, 0.01)


def test_regression_dashboard_and_report_show_r2_not_accuracy(kinds):
    entry = kinds["regression"]
    analysis = entry["analysis"]
    X, y = entry["data"]
    with torch.no_grad():
        pred = entry["model"](torch.from_numpy(X)).numpy()[:, 0].astype(np.float64)
    r2 = 1 - np.sum((pred - y) ** 2) / np.sum((y - y.mean(dtype=np.float64)) ** 2)
    assert r2 == pytest.approx(1.0, abs=1e-9)  # the MLP computes y exactly
    assert analysis.data.metric_name == "R²" and analysis.data.metric == pytest.approx(r2, abs=1e-6)
    assert analysis.pruning.metric_name == "R²"
    assert analysis.pruning.baseline_metric == pytest.approx(r2, abs=1e-6)

    app = create_app(analysis, model=entry["model"], data=entry["data"])
    text = _texts(entry, app)
    assert f"r² {analysis.data.metric:.4f}" in text  # the overview's data line
    assert "all classes" not in text
    pruning = F.pruning_figure(analysis.pruning, 0.5)
    assert pruning.layout.annotations[0].text == "R²"  # the metric subplot's title
    assert f"R² {F.format_metric('R²', analysis.pruning.baseline_metric)}" in pruning.layout.title.text
    rows = F.pruning_preview_rows(analysis.pruning, 0.0)
    assert all(row["R²"] == F.format_metric("R²", r2) for row in rows)
    assert "accuracy" not in json.dumps(rows).lower()

    # the inlined plotly.js library (megabytes, with its own "accuracy" words) is not the report's text
    html = re.sub(
        r"<script[^>]*>.*?</script>",
        lambda m: "" if len(m[0]) > 1_000_000 else m[0],
        inspector.to_html(analysis),
        flags=re.S,
    ).lower()
    markdown = inspector.to_markdown(analysis).lower()
    for report in (html, markdown):
        assert "accuracy" not in report and "all classes" not in report  # a regression has no classes
    assert f"r² <b>{analysis.data.metric:.4f}</b>" in html


def test_regression_projection_is_coloured_by_the_target_and_neurons_show_output_conductance(kinds):
    entry = kinds["regression"]
    state = DashboardState.build(entry["analysis"], entry["model"], entry["data"])
    fig = activations.figure(state, "0")
    coloured = [t for t in fig.data if t.marker.colorscale is not None]
    X, y = entry["data"]
    k = min(len(y), state.probe.n_samples, entry["analysis"].activations[0].projection.shape[0])
    np.testing.assert_allclose(np.asarray(coloured[0].marker.color), y[:k], rtol=0, atol=1e-6)
    cond = state.conductance("0")
    figure = F.neuron_classes_figure(cond, 1, (), "regression")
    np.testing.assert_allclose(np.asarray(figure.data[0].y), np.nan_to_num(cond.mean_conductance))
    assert "conductance to the output" in figure.layout.title.text


def test_layer_block_is_the_path_up_to_the_first_number_inside_the_name():
    assert layer_block("bert.encoder.layer.3.intermediate.dense") == "bert.encoder.layer.3"
    assert layer_block("encoder.layer.10.output.dense") == "encoder.layer.10"
    for name in ("classifier", "fc1", "0", "net.2", "bert.pooler.dense"):
        assert layer_block(name) is None


def test_layer_picker_groups_a_six_block_bert_by_block_and_searches_full_names(kinds):
    analysis = kinds["tokens"]["analysis"]
    names = [layer.layer for layer in analysis.parameters.layers]
    options = layer_options(names)
    headers = [o for o in options if o.get("disabled")]
    assert [h["search"] for h in headers] == [f"bert.encoder.layer.{b}" for b in range(BLOCKS)]
    assert all(h["label"].endswith("· 6 layers") for h in headers)  # query, key, value, attention out, MLP in/out
    layers = [o for o in options if not o.get("disabled")]
    assert [o["value"] for o in layers] == names and all(o["search"] == o["value"] for o in layers)
    picked = next(o for o in layers if o["value"] == "bert.encoder.layer.5.intermediate.dense")
    assert picked["label"] == "bert.encoder.layer.5 › intermediate.dense"
    assert not set(h["value"] for h in headers) & set(names)
    # an MLP's layers are not grouped
    assert layer_options(["fc1", "fc2"]) == [
        {"label": "fc1", "value": "fc1", "search": "fc1"},
        {"label": "fc2", "value": "fc2", "search": "fc2"},
    ]


def test_a_1536_neuron_layer_is_navigable(kinds):
    entry = kinds["tokens"]
    app = create_app(entry["analysis"], model=entry["model"], data=entry["data"])
    state: DashboardState = app.state
    name = "bert.encoder.layer.5.intermediate.dense"
    assert neurons.width(state, name) == WIDTH and neurons.width_text(state, name) == "0-1535 (1,536 neurons)"
    index_input = next(c for c in _walk(_layout_json(app)) if c["props"].get("id") == ids.NEURON_INDEX)
    assert (
        index_input["props"]["min"] == 0
        and index_input["props"]["max"] == neurons.width(state, state.layer_names[0]) - 1
    )
    strip = F.firing_strip_figure(state.activations(name), 0.01)
    assert len(strip.data[0].y) == WIDTH and strip.layout.bargap == 0
    layer = state.weights(name)
    heatmap = F.weight_heatmap_figure(layer)
    assert _figure_problem(heatmap.to_plotly_json()) is None
    title, *_ = neurons.panels(state, name, WIDTH - 1)
    assert title.startswith(f"Neuron {WIDTH - 1} of {name}")


@pytest.mark.parametrize("kind", ["tokens", "classification", "images"])
def test_module_tree_shares_add_up_to_the_models_parameters(kinds, kind):
    entry = kinds[kind]
    model, analysis = entry["model"], entry["analysis"]
    total = sum(p.numel() for p in model.parameters())
    nodes = F.module_tree_nodes(analysis.model, analysis.parameters)
    by_id = {n["id"]: n for n in nodes}
    assert by_id[""]["total"] == total == analysis.parameters.total_parameters
    assert sum(n["own"] for n in nodes) == total
    for path, module in model.named_modules():  # every module's total is its parameters, recounted
        assert by_id[path]["total"] == sum(p.numel() for p in module.parameters()), path
        if isinstance(module, nn.Linear):
            m, n = module.weight.shape
            assert by_id[path]["kind"] == "dense" and by_id[path]["own"] == m * (n + (module.bias is not None))
    dense = sum(n["own"] for n in nodes if n["kind"] == "dense")
    assert dense == analysis.parameters.linear_parameters
    embedded = sum(n["own"] for n in nodes if n["kind"] == "embedding")
    assert (
        embedded
        == analysis.parameters.embedding_parameters
        == sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Embedding))
    )
    fig = F.module_tree_figure(analysis.model, analysis.parameters)
    assert fig.data[0].values[0] == total and len(fig.data[0].ids) == len(nodes)
    assert f"dense layers {100 * dense / total:.1f}%" in fig.layout.title.text
    if kind == "classification":  # an MLP stays a small tree
        assert len(nodes) == len(list(model.named_modules()))


def test_report_architecture_section_has_the_module_tree(kinds):
    from inspector.report import analysis_sections

    for kind, chain in (("tokens", False), ("classification", True)):
        # the weight maps of 36 layers are not what this test is about: drop the data sections
        analysis = dataclasses.replace(kinds[kind]["analysis"], weights=None, activations=None, importance=None)
        arch = next(s for s in analysis_sections(analysis) if s.id == "architecture")
        figures = [b for b in arch.blocks if not isinstance(b, str)]
        assert [f.data[0].type if f.data else "shapes" for f in figures] == ["shapes"] * chain + ["treemap"]
