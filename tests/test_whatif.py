"""What-if curves (partial dependence and ICE): closed forms on hand-set models, a trained MLP on
y = 3 x2 - 2 x5, the analysis section, the report, the dashboard's live evaluation and the errors."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from dash.exceptions import PreventUpdate
from torch import nn

from inspector import figures as F
from inspector.analysis import Analysis, AnalysisOptions, PartialDependence, analyze, partial_dependence
from inspector.analysis.whatif import MAX_FEATURES, importance_ranking, ranked_rows, turns, whatif_findings
from inspector.errors import InspectorError
from inspector.render import to_html, to_markdown

V1_ANALYSIS = os.path.join(os.path.dirname(__file__), "data", "analysis-v1")  # saved by schema-1 dense-inspector
D = 8


def _regression_data(n: int = 400, d: int = D, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    return X, (3 * X[:, 2] - 2 * X[:, 5]).astype(np.float32)[:, None]


def _exact_linear(d: int = D) -> nn.Linear:
    """The model y = 3 x2 - 2 x5, exactly: it uses features 2 and 5 and nothing else."""
    model = nn.Linear(d, 1)
    with torch.no_grad():
        model.weight.zero_()
        model.weight[0, 2], model.weight[0, 5] = 3.0, -2.0
        model.bias.zero_()
    return model


class Square(nn.Module):
    """y = x0²: a U-shaped partial dependence for x0 centred on 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1] ** 2 + 0 * x.sum(dim=1, keepdim=True)


class Product(nn.Module):
    """y = x0 * x1: each sample's curve of x0 has slope x1, which averages to about 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1] * x[:, 1:2]


@pytest.fixture(scope="module")
def linear_pd() -> tuple[PartialDependence, np.ndarray]:
    X, y = _regression_data()
    return partial_dependence(_exact_linear(), (X, y), n_ice=30), X


# --------------------------------------------------------------------------- closed forms


def test_exact_linear_model_has_slopes_three_and_minus_two_and_flat_elsewhere(linear_pd):
    pd, _ = linear_pd
    assert pd.task == "regression" and pd.target == "the model's output" and pd.selection == "all"
    assert pd.slope(2) == pytest.approx(3.0, abs=1e-5)
    assert pd.slope("x5") == pytest.approx(-2.0, abs=1e-5)
    for j in set(range(D)) - {2, 5}:
        assert abs(pd.slope(j)) < 1e-6 and pd.effect(j) < 1e-6


def test_partial_dependence_is_the_closed_form_mean(linear_pd):
    """PD of x2 at g = 3 g - 2 mean(x5): the other features averaged, x2 pinned at g."""
    pd, X = linear_pd
    grid, curve = pd.curve(2)
    np.testing.assert_allclose(curve, 3 * grid - 2 * X[:, 5].astype(np.float64).mean(), atol=1e-5)
    y = 3 * X[:, 2].astype(np.float64) - 2 * X[:, 5]
    assert pd.target_mean == pytest.approx(y.mean(), abs=1e-5)
    assert pd.target_std == pytest.approx(y.std(), rel=1e-5)


def test_grid_spans_the_observed_range(linear_pd):
    pd, X = linear_pd
    np.testing.assert_allclose(pd.grid[:, 0], X.min(axis=0), rtol=1e-6)
    np.testing.assert_allclose(pd.grid[:, -1], X.max(axis=0), rtol=1e-6)
    np.testing.assert_allclose(pd.grid[3], np.quantile(X[:, 3].astype(np.float64), np.linspace(0, 1, 20)), rtol=1e-6)
    uniform = partial_dependence(_exact_linear(), (X, _regression_data()[1]), grid="uniform", grid_points=5)
    np.testing.assert_allclose(uniform.grid[3], np.linspace(float(X[:, 3].min()), float(X[:, 3].max()), 5), rtol=1e-6)


def test_ice_curves_of_a_linear_model_are_parallel_to_the_partial_dependence(linear_pd):
    pd, X = linear_pd
    r = pd.row(5)
    assert pd.ice.shape == (D, 30, 20) and list(pd.ice_samples) == list(range(30))
    np.testing.assert_allclose(
        pd.ice[r] - pd.ice[r, :, :1], np.broadcast_to(pd.average[r] - pd.average[r, 0], (30, 20)), atol=1e-5
    )
    # each ICE curve is the model on that sample with x5 set to the grid value
    k = 7
    expected = 3 * X[k, 2] - 2 * pd.grid[r]
    np.testing.assert_allclose(pd.ice[r, k], expected, atol=1e-5)


def test_batching_does_not_change_the_curves(linear_pd):
    pd, X = linear_pd
    tiny = partial_dependence(_exact_linear(), (X, _regression_data()[1]), n_ice=30, batch_size=7)
    np.testing.assert_allclose(tiny.average, pd.average, atol=1e-6)
    np.testing.assert_allclose(tiny.ice, pd.ice, atol=1e-6)


def test_a_feature_with_few_values_uses_those_values():
    X, y = _regression_data(100)
    X[:, 1] = (X[:, 1] > 0).astype(np.float32)
    pd = partial_dependence(_exact_linear(), (X, y), grid_points=10)
    r = pd.row(1)
    assert int(pd.n_grid[r]) == 2
    np.testing.assert_array_equal(pd.grid[r], [0.0] + [1.0] * 9)
    assert pd.curve(1)[0].tolist() == [0.0, 1.0]


def test_classifier_target_is_the_true_class_logit_and_probabilities_are_stored():
    """Logits (0, 2 x0): the true-class logit is 2 g for samples labelled 1 and 0 for those labelled 0,
    so the PD of x0 is 2 g times the share of label 1; P(class 1) = sigmoid(2 g) whatever the sample."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 3)).astype(np.float32)
    labels = rng.integers(0, 2, size=300)
    model = nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
        model.weight[1, 0] = 2.0
    pd = partial_dependence(model, (X, labels), n_ice=10)
    assert pd.task == "classification" and pd.target == "the true class's logit"
    assert pd.slope(0) == pytest.approx(2 * labels.mean(), abs=1e-5)
    grid = pd.grid[0]
    np.testing.assert_allclose(pd.average[0], 2 * grid * labels.mean(), atol=1e-5)
    for k in range(10):
        np.testing.assert_allclose(pd.ice[0, k], 2 * grid * labels[k], atol=1e-5)
    assert pd.class_average is not None and pd.class_average.shape == (3, 2, 20)
    np.testing.assert_allclose(pd.class_average[0, 1], 1 / (1 + np.exp(-2 * grid)), atol=1e-6)
    np.testing.assert_allclose(pd.class_average[0].sum(axis=0), 1.0, atol=1e-6)
    assert pd.effect(1) < 1e-6 and pd.effect(2) < 1e-6


def test_trained_mlp_recovers_the_slopes_within_a_tolerance():
    torch.manual_seed(0)
    X, y = _regression_data(256, seed=2)
    model = nn.Sequential(nn.Linear(D, 32), nn.ReLU(), nn.Linear(32, 1))
    optimiser = torch.optim.Adam(model.parameters(), lr=0.03)
    xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    for _ in range(120):
        optimiser.zero_grad()
        nn.functional.mse_loss(model(xt), yt).backward()
        optimiser.step()
    pd = partial_dependence(model, (X, y), grid="uniform")
    assert pd.slope(2) == pytest.approx(3.0, abs=0.25)
    assert pd.slope(5) == pytest.approx(-2.0, abs=0.25)
    for j in set(range(D)) - {2, 5}:
        assert abs(pd.slope(j)) < 0.2, j


def test_the_model_is_left_as_it_was(linear_pd):
    model = _exact_linear()
    model.train()
    model.bias.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    X, y = _regression_data(50)
    partial_dependence(model, (X, y))
    assert model.training and not model.bias.requires_grad and model.weight.requires_grad
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


# --------------------------------------------------------------------------- feature selection and errors


def test_many_features_take_the_most_important_or_the_first_sixty_four():
    d = MAX_FEATURES + 6
    X, _ = _regression_data(40, d=d)
    y = X[:, :1].copy()
    model = nn.Linear(d, 1)
    first = partial_dependence(model, (X, y), grid_points=3, n_ice=2)
    assert first.selection == "first" and first.features.tolist() == list(range(MAX_FEATURES))
    ranking = np.arange(d)[::-1]
    ranked = partial_dependence(model, (X, y), grid_points=3, n_ice=2, ranking=ranking)
    assert ranked.selection == "importance" and ranked.features.tolist() == list(ranking[:MAX_FEATURES])
    given = partial_dependence(model, (X, y), features=["x3", 5, 3], grid_points=3)
    assert given.selection == "given" and given.features.tolist() == [3, 5] and given.feature_names == ("x3", "x5")


@pytest.mark.parametrize(
    ("features", "message"), [(["height"], "unknown feature 'height'"), ([D], "unknown feature 8"), ([], "is empty")]
)
def test_unknown_features_are_one_line_errors(features, message):
    X, y = _regression_data(20)
    with pytest.raises(InspectorError, match=message):
        partial_dependence(_exact_linear(), (X, y), features=features)


def test_an_unknown_feature_of_a_result_is_an_error(linear_pd):
    with pytest.raises(InspectorError, match="no what-if curve"):
        linear_pd[0].slope("height")


def test_token_and_image_inputs_are_refused():
    ids = torch.randint(0, 10, (12, 5))
    tokens = nn.Sequential(nn.Embedding(10, 3), nn.Flatten(), nn.Linear(15, 2))
    with pytest.raises(InspectorError, match="tabular inputs.*token ids"):
        partial_dependence(tokens, (ids, torch.zeros(12, dtype=torch.long)))
    images = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    with pytest.raises(InspectorError, match=r"tabular inputs.*\(1, 4, 4\)"):
        partial_dependence(images, (torch.randn(12, 1, 4, 4), torch.zeros(12, dtype=torch.long)))


def test_bad_arguments_are_one_line_errors():
    X, y = _regression_data(20)
    with pytest.raises(InspectorError, match="unknown grid"):
        partial_dependence(_exact_linear(), (X, y), grid="log")
    with pytest.raises(InspectorError, match="grid_points"):
        partial_dependence(_exact_linear(), (X, y), grid_points=1)


# --------------------------------------------------------------------------- findings


def test_turns_measures_rises_and_falls():
    assert turns(np.array([3.0, 1.0, 0.0, 2.0])) == (2.0, 3.0)
    assert turns(np.array([0.0, 1.0, 2.0])) == (2.0, 0.0)


def test_findings_name_a_u_shape_and_an_interaction_and_nothing_for_a_linear_model(linear_pd):
    X, _ = _regression_data(300)
    assert whatif_findings(linear_pd[0]) == []
    u = whatif_findings(partial_dependence(Square(), (X, X[:, :1] ** 2)))
    assert len(u) == 1 and "not monotonic" in u[0].text and ": x0;" in u[0].text
    product = whatif_findings(partial_dependence(Product(), (X, X[:, :1] * X[:, 1:2])))
    assert len(product) == 1 and "interaction" in product[0].text and "x0, x1;" in product[0].text


class LinearPlusProduct(nn.Module):
    """y = 3 x2 - 2 x5 + c x1 x3: an interaction of size c on top of the linear function."""

    def __init__(self, c: float) -> None:
        super().__init__()
        self.linear, self.c = _exact_linear(), c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + self.c * (x[:, 1] * x[:, 3]).unsqueeze(1)


@pytest.mark.parametrize("c,named", [(0.1, False), (1.0, True)])
def test_an_interaction_is_named_only_when_it_moves_single_samples_by_a_quarter_of_the_spread(c, named):
    # x1's single-sample effect is c |x3| (max x1 - min x1): about 0.8 c x 6 against a spread of about
    # 3.6; c = 0.1 (a trained network's wobble on an unused feature) is well below a quarter of it
    X, _ = _regression_data(300)
    model = LinearPlusProduct(c)
    with torch.no_grad():
        y = model(torch.from_numpy(X)).numpy()
    found = [f.text for f in whatif_findings(partial_dependence(model, (X, y))) if "interaction" in f.text]
    assert bool(found) == named
    if named:
        assert "x1, x3;" in found[0]


# --------------------------------------------------------------------------- analysis, report, saving


@pytest.fixture(scope="module")
def regression_analysis() -> Analysis:
    X, y = _regression_data(200)
    options = AnalysisOptions(
        sections=("parameters", "importance", "whatif"),
        methods=("integrated_gradients",),
        conductance=False,
        n_steps=8,
    )
    return analyze(_exact_linear(), (X, y), options=options)


def test_analysis_section_holds_the_curves(regression_analysis):
    a = regression_analysis
    assert a.whatif is not None and "whatif" in a.timings
    assert a.whatif.slope(2) == pytest.approx(3.0, abs=1e-5) and a.whatif.slope(5) == pytest.approx(-2.0, abs=1e-5)
    ranking = importance_ranking(a.importance)
    assert ranking is not None and ranking[:2].tolist() == [2, 5]
    assert [int(a.whatif.features[r]) for r in ranked_rows(a.whatif, ranking)[:2]] == [2, 5]
    assert not [f for f in a.findings if f.section == "whatif"]


def test_the_section_is_skipped_for_tokens_and_images():
    options = AnalysisOptions(sections=("whatif",))
    ids = torch.randint(0, 10, (16, 5))
    tokens = nn.Sequential(nn.Embedding(10, 3), nn.Flatten(), nn.Linear(15, 2))
    a = analyze(tokens, (ids, torch.randint(0, 2, (16,))), options=options)
    assert a.whatif is None and "whatif" not in a.timings
    images = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    b = analyze(images, (torch.randn(16, 1, 4, 4), torch.randint(0, 2, (16,))), options=options)
    assert b.whatif is None and "whatif" not in b.timings


def test_the_section_is_skipped_without_labels_to_explain():
    X, _ = _regression_data(20)
    a = analyze(_exact_linear(), X, options=AnalysisOptions(sections=("activations", "whatif")))
    assert a.whatif is None


def test_save_and_load_round_trip(regression_analysis, tmp_path):
    regression_analysis.save(tmp_path / "a")
    back = Analysis.load(tmp_path / "a").whatif
    pd = regression_analysis.whatif
    assert back is not None and back.feature_names == pd.feature_names and back.selection == pd.selection
    for name in ("features", "grid", "n_grid", "average", "ice", "ice_samples", "observed"):
        np.testing.assert_array_equal(getattr(back, name), getattr(pd, name))
    assert back.class_average is None and back.target_std == pd.target_std


def test_an_analysis_saved_before_what_if_loads_without_it():
    assert Analysis.load(V1_ANALYSIS).whatif is None


def test_report_has_a_what_if_section(regression_analysis):
    md = to_markdown(regression_analysis)
    assert "## What-if (partial dependence)" in md
    line = next(x for x in md.splitlines() if x.startswith("| x2 "))
    assert "| 3 |" in line
    html_text = to_html(regression_analysis)
    assert "What-if (partial dependence)" in html_text and "Friedman 2001" in html_text


def test_figure_draws_ice_pd_and_the_observed_values(linear_pd):
    pd, X = linear_pd
    fig = F.partial_dependence_figure(pd, 2)
    ice = [t for t in fig.data if t.legendgroup == "ice"]
    (mean,) = [t for t in fig.data if t.name == "partial dependence"]
    (hist,) = [t for t in fig.data if t.type == "histogram"]
    assert len(ice) == 30
    np.testing.assert_allclose(np.asarray(mean.y), pd.average[2])
    np.testing.assert_allclose(np.asarray(hist.x), X[:, 2], rtol=1e-6)
    assert "x2" in fig.layout.title.text
    assert "no what-if curve" in F.partial_dependence_figure(pd, "height").layout.annotations[0].text
    rows = F.whatif_rows(pd, k=2)
    assert [r["feature"] for r in rows] == ["x2", "x5"] and rows[0]["PD slope"] == "3"


# --------------------------------------------------------------------------- dashboard (no browser)


def test_dashboard_evaluates_an_edited_sample(regression_analysis):
    from dashboards.app import create_app
    from dashboards.views import whatif

    X, y = _regression_data(200)
    model = _exact_linear()
    app = create_app(regression_analysis, model=model, data=(X, y))
    state = app.state
    slots = whatif.sliders(state)
    assert slots is not None and slots.columns[:2] == (2, 5)
    np.testing.assert_allclose(slots.low, X[:, list(slots.columns)].min(axis=0))
    values = [float(X[3, c]) for c in slots.columns]
    values[0] = float(slots.high[0])  # x2 to its largest observed value
    line, edits, fig = whatif.evaluation(state, 3, values)
    edited = 3 * float(slots.high[0]) - 2 * float(X[3, 5])
    assert f"edited {edited:.6g}" in line and f"original {3 * X[3, 2] - 2 * X[3, 5]:.6g}" in line
    assert edits.startswith("Edited: x2 = ")
    assert fig.data[1].y[0] == pytest.approx(edited, abs=1e-5)
    with pytest.raises(PreventUpdate):
        whatif._slider_values(slots, (float(slots.high[0]) + 1.0, *values[1:]))
    with pytest.raises(PreventUpdate):
        whatif._slider_values(slots, ("1", *values[1:]))


def test_dashboard_says_what_if_is_for_tabular_inputs():
    from dashboards.app import create_app
    from dashboards.views import whatif

    ids_ = torch.randint(0, 10, (16, 5))
    tokens = nn.Sequential(nn.Embedding(10, 3), nn.Flatten(), nn.Linear(15, 2))
    data = (ids_, torch.randint(0, 2, (16,)))
    a = analyze(tokens, data, options=AnalysisOptions(sections=("parameters",)))
    app = create_app(a, model=tokens, data=data)
    assert "tabular inputs" in (whatif.unavailable(app.state) or "")
