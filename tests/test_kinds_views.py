"""Images and tokens in the dashboard and the report: maps in the input's shape, neuron images of a
CNN head, the sample explorer for every kind, the Text view and the highlighted report text."""

from __future__ import annotations

import json
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from dashboards.app import create_app
from dashboards.state import DashboardState
from dashboards.views import importance as importance_view
from dashboards.views import neurons as neurons_view
from dashboards.views import text as text_view
from inspector import analyze
from inspector import figures as F
from inspector.analysis import AnalysisOptions
from inspector.analysis.inputs import as_source
from inspector.analysis.weights import flattened_maps, weight_report
from inspector.report import analysis_sections, to_html, to_markdown
from tests.models import digits_images, padded_batches, tiny_bert

METHODS = ("integrated_gradients", "saliency")
OPTIONS = AnalysisOptions(
    sections=("parameters", "weights", "activations", "importance"), methods=METHODS, n_steps=4, conductance=False
)
SCRIPT_ID = 5  # the vocabulary's "<script>" token


class SmallCNN(nn.Module):
    """conv (1->4, 3x3, pad 1) - ReLU - maxpool 4 - flatten (4 x 2 x 2 = 16) - fc1 (16->8) - ReLU - out (8->10).

    Input ``(n, 1, 8, 8)``; ``fc1`` reads a flattened ``(4, 2, 2)`` feature map."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            OrderedDict(conv=nn.Conv2d(1, 4, 3, padding=1), relu=nn.ReLU(), pool=nn.MaxPool2d(4))
        )
        self.fc1 = nn.Linear(16, 8)
        self.act = nn.ReLU()
        self.out = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.fc1(torch.flatten(self.features(x), 1))))


@pytest.fixture(scope="module")
def cnn():
    torch.manual_seed(0)
    model = SmallCNN().eval()
    images, labels = digits_images(48)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, labels), batch_size=16)
    return analyze(model, data, options=OPTIONS), model, data


@pytest.fixture(scope="module")
def bert():
    pytest.importorskip("transformers")
    model = tiny_bert(num_labels=2, num_hidden_layers=1)
    batches = padded_batches(2, 4, 8, num_labels=2)
    batches[0]["input_ids"][1, 1] = SCRIPT_ID  # row 1 has at least 2 real tokens (min_length 2)
    vocabulary = [f"w{i}" for i in range(50)]
    vocabulary[0] = "[PAD]"
    vocabulary[SCRIPT_ID] = "<script>"
    analysis = analyze(model, batches, vocabulary=vocabulary, options=OPTIONS)
    return analysis, model, batches, vocabulary


def _bert_state(bert, probe: bool = True) -> DashboardState:
    analysis, model, batches, vocabulary = bert
    if not probe:
        return DashboardState.build(analysis)
    return DashboardState.build(analysis, model, batches, vocabulary=vocabulary, n_steps=OPTIONS.n_steps)


# --------------------------------------------------------------------------- images


def test_flattened_maps_finds_the_4x2x2_map_the_cnn_head_reads(cnn):
    _, model, data = cnn
    assert flattened_maps(model, as_source(data).first()) == {"fc1": (4, 2, 2)}


def test_mlp_on_columns_has_no_flattened_map():
    mlp = nn.Sequential(nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
    batch = as_source((torch.randn(4, 64), torch.zeros(4, dtype=torch.long))).first()
    assert flattened_maps(mlp, batch) == {}
    # the digits MLP keeps its 8x8 images from the dataset's image shape
    report = weight_report(mlp, (8, 8), input_maps={})
    assert report[0].neuron_images.shape == (8, 8, 8) and report[1].neuron_images is None


def test_cnn_head_neuron_images_are_the_rows_reshaped_to_the_map(cnn):
    analysis, model, _ = cnn
    fc1 = next(w for w in analysis.weights if w.layer == "fc1")
    weight = model.fc1.weight.detach().numpy()
    assert fc1.neuron_images.shape == (8, 4, 2, 2)
    for j in range(8):
        for c in range(4):
            for h in range(2):
                for w in range(2):
                    assert fc1.neuron_images[j, c, h, w] == weight[j, c * 4 + h * 2 + w]
    assert next(w for w in analysis.weights if w.layer == "out").neuron_images is None
    fig = F.neuron_images_figure(fc1)
    z = np.asarray(fig.data[0].z, dtype=float)
    # one row of tiles per neuron, one column per channel, one NaN gap between tiles
    assert z.shape == (8 * 3 - 1, 4 * 3 - 1)
    np.testing.assert_array_equal(z[3:5, 6:8], weight[1].reshape(4, 2, 2)[2])  # neuron 1, channel 2
    assert "one column per channel" in fig.layout.title.text
    # the Neurons view's incoming weights: the same map, channels side by side
    incoming = F.neuron_incoming_figure(fc1, 1, analysis.model.feature_names, analysis.model.image_shape)
    z = np.asarray(incoming.data[0].z, dtype=float)
    assert z.shape == (2, 4 * 3 - 1) and "4 channels side by side" in incoming.layout.title.text
    for c in range(4):
        np.testing.assert_array_equal(z[:, 3 * c : 3 * c + 2], weight[1].reshape(4, 2, 2)[c])


def test_image_map_has_the_input_shape_and_equals_the_stored_importance(cnn):
    analysis, _, _ = cnn
    report = analysis.importance
    assert report.input_kind == "array" and report.input_shape == (1, 8, 8)
    assert analysis.model.image_shape is None  # not a tabular image dataset: the map must come from the input
    state = DashboardState.build(analysis)
    bar, image, _ = importance_view.charts(state, "integrated_gradients", importance_view.ALL)
    z = np.asarray(image.data[0].z, dtype=float)
    m = report.method("integrated_gradients")
    np.testing.assert_allclose(z, m.global_importance.reshape(8, 8), rtol=0, atol=1e-12)
    # the bar names elements by (c, h, w)
    top = int(m.ranking[0])
    c, h, w = np.unravel_index(top, (1, 8, 8))
    assert bar.data[0].y[-1] == f"({c}, {h}, {w})"
    # per class too
    _, image3, _ = importance_view.charts(state, "integrated_gradients", "3")
    np.testing.assert_allclose(np.asarray(image3.data[0].z, float), np.nan_to_num(m.per_class[3]).reshape(8, 8))


def test_a_three_channel_map_is_summed_over_channels_and_says_so():
    values = np.arange(3 * 4 * 5, dtype=float)
    fig = F.importance_map_figure(values, (3, 4, 5), "IG")
    np.testing.assert_allclose(np.asarray(fig.data[0].z, float), values.reshape(3, 4, 5).sum(axis=0))
    assert "summed over 3 channels" in fig.layout.title.text
    assert F.importance_map_figure(values, (60,), "IG").layout.annotations  # not an image: says why


def test_sample_explorer_draws_the_image_and_its_attribution(cnn):
    analysis, model, data = cnn
    state = DashboardState.build(analysis, model, data, n_steps=OPTIONS.n_steps)
    fig, line = importance_view.sample_view(state, "integrated_gradients", 2)
    probe = state.probe
    heatmaps = [t for t in fig.data if t.type == "heatmap"]
    np.testing.assert_allclose(np.asarray(heatmaps[0].z, float), probe.inputs(2).reshape(8, 8))
    np.testing.assert_allclose(
        np.asarray(heatmaps[2].z, float), probe.explain("integrated_gradients", 2).reshape(8, 8), atol=1e-7
    )
    predicted = int(np.argmax(probe.predict(2)))
    assert f"predicted {predicted} " in line and f"true {int(probe.label(2))} " in line


def test_sample_explorer_for_regression_shows_output_and_true_value():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1)).eval()
    X = torch.randn(20, 3)
    y = torch.randn(20, 1)
    analysis = analyze(model, (X, y), task="regression", options=OPTIONS)
    state = DashboardState.build(analysis, model, (X, y), task="regression", n_steps=4)
    fig, line = importance_view.sample_view(state, "saliency", 1)
    output = float(model(X[1:2]).detach()[0, 0])
    assert "probabilities" not in line and "%" not in line
    assert f"predicted {output:.4g}, true {float(y[1, 0]):.4g}" in line
    bars = [t for t in fig.data if t.type == "bar"]
    np.testing.assert_allclose(np.asarray(bars[-1].y, float), [output], rtol=1e-6)
    diamond = [t for t in fig.data if t.type == "scatter"][0]
    np.testing.assert_allclose(np.asarray(diamond.y, float), [float(y[1, 0])])


def test_sample_explorer_points_token_inputs_to_the_text_view(bert):
    fig, line = importance_view.sample_view(_bert_state(bert), "saliency", 0)
    assert "Text view" in line and "Text view" in fig.layout.annotations[0].text


def test_report_draws_the_cnn_map_in_the_input_shape(cnn):
    analysis, _, _ = cnn
    sections = {s.id: s for s in analysis_sections(analysis)}
    maps = [
        b for b in sections["importance"].blocks if not isinstance(b, str) and "input grid" in str(b.layout.title.text)
    ]
    assert len(maps) == len(METHODS)
    for fig, name in zip(maps, METHODS):
        z = np.asarray(fig.data[0].z, float)
        np.testing.assert_allclose(z, analysis.importance.method(name).global_importance.reshape(8, 8))


# --------------------------------------------------------------------------- tokens


def test_highlighted_tokens_colours_and_skips_padding():
    spans = F.highlighted_tokens(["a", "b", "c", "[PAD]"], np.array([0.5, -1.0, 0.0, 9.0]), np.array([1, 1, 1, 0]))
    assert [(t, s) for t, s, _ in spans] == [("a", 0.5), ("b", -1.0), ("c", 0.0)]  # padding's 9.0 ignored
    assert spans[0][2] == "rgba(214, 39, 40, 0.500)"  # red at half the largest |score|
    assert spans[1][2] == "rgba(33, 102, 172, 1.000)"  # blue at full strength
    assert spans[2][2].endswith(", 0.000)")
    html = F.tokens_html([("<script>", 0.25, "rgba(0, 0, 0, 1)")])
    assert "&lt;script&gt;" in html and "<script>" not in html and 'title="0.25"' in html


def test_stored_examples_give_the_stored_per_token_scores(bert):
    analysis = bert[0]
    report = analysis.importance
    assert report.input_kind == "tokens"
    for name in METHODS:
        m = report.method(name)
        for i in range(len(report.example_inputs)):
            tokens, scores, mask = F.stored_example(report, m, i)
            spans = F.highlighted_tokens(tokens, scores, mask)
            assert len(spans) == int(mask.sum()) < len(mask) or len(spans) == len(mask)
            np.testing.assert_array_equal([s for _, s, _ in spans], m.examples[i][mask])
            assert np.all(m.examples[i][~mask] == 0)  # zero on padding, and not shown
            ids_real = report.example_inputs[i][mask]
            assert [t for t, _, _ in spans] == [bert[3][int(k)] for k in ids_real]


def test_text_view_with_the_model_shows_the_probes_scores(bert):
    state = _bert_state(bert)
    probe = state.probe
    report = state.analysis.importance
    for i in (0, 1, 5):
        spans, line = text_view.sample_spans(state, "integrated_gradients", i)
        mask = probe.mask(i)
        expected = probe.explain("integrated_gradients", i)[mask]
        np.testing.assert_array_equal([s for _, s, _ in spans], expected)
        assert [t for t, _, _ in spans] == list(np.array(probe.tokens(i))[mask])
        # the probe explains the same samples the analysis stored
        np.testing.assert_allclose(expected, report.method("integrated_gradients").examples[i][mask], atol=1e-5)
        assert f"true {int(probe.label(i))} " in line and "predicted" in line
    components, _ = text_view.text_view(state, "saliency", 1)
    assert "<script>" in [c.children for c in components]  # Dash renders text, never markup
    assert all(
        float(c.title) == pytest.approx(s, rel=1e-5)
        for c, (_, s, _) in zip(components, text_view.sample_spans(state, "saliency", 1)[0])
    )


def test_text_view_without_the_model_uses_the_stored_examples(bert):
    state = _bert_state(bert, probe=False)
    report = state.analysis.importance
    assert text_view.sample_count(state) == len(report.example_inputs) == 8
    spans, line = text_view.sample_spans(state, "saliency", 3)
    mask = report.example_mask[3]
    np.testing.assert_array_equal([s for _, s, _ in spans], report.method("saliency").examples[3][mask])
    assert "Stored example 3 of 8" in line and f"true {int(report.example_labels[3])}" in line


def test_text_view_callback_answers_a_sample_switch(bert):
    analysis, model, batches, vocabulary = bert
    app = create_app(analysis, model=model, data=batches, vocabulary=vocabulary)
    key = next(k for k in app.callback_map if text_view.TEXT_TOKENS in k)
    body = {
        "output": key,
        "outputs": [
            {"id": text_view.TEXT_TOKENS, "property": "children"},
            {"id": text_view.TEXT_NOTE, "property": "children"},
        ],
        "inputs": [
            {"id": text_view.TEXT_SAMPLE, "property": "value", "value": 2},
            {"id": text_view.TEXT_METHOD, "property": "value", "value": "saliency"},
        ],
        "changedPropIds": [f"{text_view.TEXT_SAMPLE}.value"],
    }
    response = app.server.test_client().post(
        "/_dash-update-component", data=json.dumps(body), content_type="application/json", headers={"Host": "127.0.0.1"}
    )
    assert response.status_code == 200
    answer = response.get_json()["response"]
    spans = answer[text_view.TEXT_TOKENS]["children"]
    probe = app.state.probe
    expected = probe.explain("saliency", 2)[probe.mask(2)]
    np.testing.assert_allclose([float(s["props"]["title"]) for s in spans], expected, rtol=1e-5)
    assert answer[text_view.TEXT_NOTE]["children"].startswith("Sample 2 of 8")
    body["inputs"][0]["value"] = 99  # not a sample: no update
    response = app.server.test_client().post(
        "/_dash-update-component", data=json.dumps(body), content_type="application/json", headers={"Host": "127.0.0.1"}
    )
    assert response.status_code == 204


def test_top_tokens_figure_ranks_by_stored_global_importance(bert):
    report = bert[0].importance
    m = report.method("integrated_gradients")
    fig = F.top_tokens_figure(report, "integrated_gradients", k=5)
    order = np.argsort(-m.global_importance, kind="stable")[:5]
    np.testing.assert_allclose(np.asarray(fig.data[0].x, float), m.global_importance[order][::-1])
    names = [report.feature_names[i] for i in order][::-1]
    assert list(fig.layout.yaxis.ticktext) == [n.replace("<", "&lt;").replace(">", "&gt;") for n in names]


def test_text_view_is_one_line_for_other_inputs(cnn):
    state = DashboardState.build(cnn[0])
    assert (
        text_view.unavailable(state) == "The Text view is for token inputs; this analysis's inputs are arrays (images)."
    )
    assert text_view.layout(state).children[0].children == text_view.unavailable(state)


def test_report_highlights_the_stored_examples_escaped(bert):
    analysis = bert[0]
    report = analysis.importance
    html = to_html(analysis)
    m = report.method("integrated_gradients")
    tokens, scores, mask = F.stored_example(report, m, 1)
    assert F.tokens_html(F.highlighted_tokens(tokens, scores, mask)) in html
    assert ">&lt;script&gt;</span>" in html and "><script></span>" not in html
    assert "Tokens with the largest mean |attribution|" in html
    top = report.feature_names[int(m.ranking[0])]
    assert f'<td class="">{top.replace("<", "&lt;").replace(">", "&gt;")}</td>' in html
    markdown = to_markdown(analysis)
    assert "### Integrated Gradients: top tokens" in markdown and "`<script>`" in markdown


def test_the_neurons_view_says_why_an_attention_projection_has_no_top_examples():
    """A layer the census does not count (BERT's query: into attention, no activation of its own) has no top
    examples: the view says so and names layers that have them, instead of asking for data and top_k > 0,
    which the analysis has."""
    model = tiny_bert(num_labels=2, num_hidden_layers=1)
    analysis = analyze(model, padded_batches(2, 4, 8, num_labels=2), options=AnalysisOptions(sections=("activations",)))
    state = DashboardState.build(analysis)
    counted = neurons_view.top_examples(state, "bert.encoder.layer.0.intermediate.dense", 0)
    assert counted[0].children.startswith("fires on")
    (why,) = neurons_view.top_examples(state, "bert.encoder.layer.0.attention.self.query", 0)
    assert "does not count it" in why.children and "bert.encoder.layer.0.intermediate.dense" in why.children
