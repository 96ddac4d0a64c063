"""``inspector.analyze`` end to end on the four kinds of model of issue 9, from every kind of data.

Each test knows its answer from first principles: a planted dead head neuron in a CNN, the
intermediate size of a BERT built from a config, a regression target that only uses features 2
and 5, a shared ReLU module; and each analysis survives the save/load round trip and the report.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import inspector
from inspector.analysis import Analysis, AnalysisOptions
from inspector.errors import InspectorError
from tests.models import (
    HEAD_LAYERS,
    digits_images,
    digits_loader,
    lenet_digits,
    padded_batches,
    plant_dead,
    shared_relu,
    tiny_bert,
)

FAST = AnalysisOptions(
    n_steps=8,
    max_importance_samples=64,
    conductance=False,
    sparsities=(0.0, 0.5),
    methods=("integrated_gradients", "saliency", "feature_ablation"),
)


def _round_trip(analysis: Analysis, tmp_path) -> Analysis:
    analysis.save(tmp_path / "a")
    loaded = Analysis.load(tmp_path / "a")
    assert loaded.model.sites == analysis.model.sites
    html = inspector.to_html(loaded)
    assert "<html" in html.lower()
    assert inspector.to_markdown(loaded)
    return loaded


def test_cnn_from_a_dataloader_finds_the_planted_dead_head_neuron(tmp_path):
    model = lenet_digits(seed=0)
    plant_dead(model.head.fc1, 7)
    analysis = inspector.analyze(model, digits_loader(300, batch_size=64), options=FAST)
    assert analysis.model.input_kind == "array" and analysis.model.input_shape == (1, 8, 8)
    assert analysis.model.task == "classification" and analysis.data.metric_name == "accuracy"
    assert [c.layer for c in analysis.activations] == list(HEAD_LAYERS)
    fc1 = analysis.activations[0]
    assert fc1.n_samples == 300 and fc1.dead_mask[7]
    # the head's rates, recomputed by hand from the flattened conv features
    images, _ = digits_images(300)
    with torch.no_grad():
        pre = model.head.fc1(torch.flatten(model.features(images), 1))
    np.testing.assert_allclose(fc1.fire_rate, (pre > 0).float().mean(0).numpy(), atol=1e-12)
    # accuracy of the streamed evaluation == a plain forward
    with torch.no_grad():
        accuracy = float((model(images).argmax(1) == digits_images(300)[1]).double().mean())
    assert analysis.data.metric == pytest.approx(accuracy, abs=1e-12)
    ig = analysis.importance.method("integrated_gradients")
    assert ig.error is None and ig.global_importance.shape == (64,)
    _round_trip(analysis, tmp_path)


def test_a_torch_dataset_and_a_list_of_batches_give_the_same_analysis_as_a_dataloader():
    model = lenet_digits(seed=1)
    images, labels = digits_images(200)
    options = AnalysisOptions(sections=("activations", "pruning"), sparsities=(0.0, 0.3))
    from_loader = inspector.analyze(model, DataLoader(TensorDataset(images, labels), batch_size=50), options=options)
    from_dataset = inspector.analyze(model, TensorDataset(images, labels), options=options)
    from_list = inspector.analyze(
        model, [(images[i : i + 70], labels[i : i + 70]) for i in range(0, 200, 70)], options=options
    )
    for other in (from_dataset, from_list):
        assert other.data.metric == from_loader.data.metric and other.data.n_samples == 200
        for a, b in zip(other.activations, from_loader.activations):
            np.testing.assert_array_equal(a.fire_rate, b.fire_rate)
        np.testing.assert_allclose(other.pruning.curves[0].metric, from_loader.pruning.curves[0].metric)


def test_a_generator_is_refused_in_one_line():
    model = shared_relu()
    with pytest.raises(InspectorError, match="one-shot iterator"):
        inspector.analyze(model, ((torch.randn(4, 6), torch.zeros(4, dtype=torch.long)) for _ in range(2)))


def test_regression_is_inferred_from_float_targets_and_scored_in_mse_and_r2(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((400, 8)).astype(np.float32)
    y = (3 * X[:, 2] - 2 * X[:, 5] + 0.01 * rng.standard_normal(400)).astype(np.float32)
    model = nn.Linear(8, 1)
    with torch.no_grad():
        model.weight.zero_()
        model.weight[0, 2], model.weight[0, 5] = 3.0, -2.0
        model.bias.zero_()
    analysis = inspector.analyze(model, (X, y), options=FAST)
    assert analysis.model.task == "regression" and analysis.data.metric_name == "R²"
    pred = X[:, 2] * 3.0 - 2.0 * X[:, 5]
    mse = float(np.mean((pred.astype(np.float64) - y) ** 2))
    r2 = 1 - mse * len(y) / float(np.sum((y - y.mean(dtype=np.float64)) ** 2))
    assert analysis.data.loss == pytest.approx(mse, rel=1e-5) and analysis.data.metric == pytest.approx(r2, abs=1e-6)
    for m in analysis.importance.methods:
        assert m.error is None, m.error
        assert set(m.ranking[:2].tolist()) == {2, 5}, m.method
    assert analysis.model.class_names == ()
    _round_trip(analysis, tmp_path)


def test_a_target_function_makes_a_custom_task():
    model = shared_relu(k=3)
    X = torch.randn(50, 6)
    analysis = inspector.analyze(model, X, target=lambda out, batch: out[:, 1], options=FAST)
    assert analysis.model.task == "custom" and analysis.data.metric_name == "mean target"
    with torch.no_grad():
        assert analysis.data.metric == pytest.approx(float(model(X)[:, 1].mean()), rel=1e-5)


def test_shared_relu_module_is_counted_per_layer():
    model = shared_relu()
    plant_dead(model.fc1, 2)
    plant_dead(model.fc2, 4)
    X = torch.randn(120, 6)
    y = torch.randint(0, 3, (120,))
    analysis = inspector.analyze(model, (X, y), options=AnalysisOptions(sections=("activations",)))
    by_layer = {c.layer: c for c in analysis.activations}
    assert set(by_layer) == {"fc1", "fc2"}
    assert by_layer["fc1"].n_samples == 120 and by_layer["fc2"].n_samples == 120
    assert np.flatnonzero(by_layer["fc1"].dead_mask).tolist() == [2]
    assert by_layer["fc2"].dead_mask[4]
    sites = {s.layer: s for s in analysis.model.sites}
    assert sites["fc1"].module == "act" and sites["fc1"].shared_with == ("fc2",)
    assert sites["out"].activation == "none"


def test_a_bert_from_a_config_fed_padded_dict_batches(tmp_path):
    pytest.importorskip("transformers")
    model = tiny_bert(num_labels=3, intermediate_size=24)
    batches = padded_batches(n_batches=2, batch_size=4, width=8, num_labels=3)
    analysis = inspector.analyze(model, batches, options=FAST)
    assert analysis.model.input_kind == "tokens"
    assert analysis.model.embeddings and all("embeddings" in e for e in analysis.model.embeddings)
    intermediate = [c for c in analysis.activations if c.layer.endswith("intermediate.dense")]
    assert len(intermediate) == 2
    real_tokens = int(sum(int(b["attention_mask"].sum()) for b in batches))
    for c in intermediate:
        assert c.activation == "gelu" and c.width == 24 and c.n_positions == real_tokens and c.n_samples == 8
    ig = analysis.importance.method("integrated_gradients")
    assert ig.error is None
    _round_trip(analysis, tmp_path)


def test_weight_only_analysis_of_any_model_still_lists_its_sites():
    model = shared_relu()
    analysis = inspector.analyze(model)
    assert analysis.data is None and [s.layer for s in analysis.model.sites] == ["fc1", "fc2", "out"]
    assert analysis.model.sites[0].activation == "relu"


def test_task_without_data_is_refused():
    with pytest.raises(InspectorError, match="need data"):
        inspector.analyze(shared_relu(), task="regression")


def test_nan_inputs_are_refused_in_one_line_naming_the_samples():
    X = torch.randn(30, 6)
    X[17, 2] = float("nan")
    with pytest.raises(InspectorError, match=r"NaN or Inf \(samples 10\.\.19\)"):
        inspector.analyze(shared_relu(), [(X[i : i + 10], torch.zeros(10, dtype=torch.long)) for i in (0, 10, 20)])


@pytest.mark.parametrize(
    ("values", "dtype", "finite"),
    [
        ([1.0, -2.0, 0.5], torch.float32, True),
        ([3e38, 3e38], torch.float32, True),  # finite values whose sum overflows
        ([6e4, 6e4], torch.float16, True),
        ([1.0, float("nan")], torch.float32, False),
        ([float("inf"), 1.0], torch.float32, False),
        ([float("-inf"), float("inf")], torch.float64, False),
        ([1.0, float("nan")], torch.bfloat16, False),
    ],
)
def test_all_finite_agrees_with_the_elementwise_test(values, dtype, finite):
    from inspector.analysis.inputs import all_finite

    x = torch.tensor(values, dtype=dtype)
    assert all_finite(x) is finite
    assert all_finite(x) == bool(torch.isfinite(x).all())


def test_an_infinite_input_is_refused_like_a_nan():
    X = torch.randn(30, 6)
    X[25, 0] = float("inf")
    with pytest.raises(InspectorError, match=r"NaN or Inf \(samples 20\.\.29\)"):
        inspector.analyze(shared_relu(), [(X[i : i + 10], torch.zeros(10, dtype=torch.long)) for i in (0, 10, 20)])


def test_a_census_alone_needs_no_labels_but_importance_does():
    pytest.importorskip("transformers")
    model = tiny_bert(intermediate_size=24)  # a base BertModel: no head, no labels
    batches = padded_batches(n_batches=2, batch_size=3, width=6)
    analysis = inspector.analyze(model, batches, options=AnalysisOptions(sections=("parameters", "activations")))
    assert analysis.data is None
    real = int(sum(int(b["attention_mask"].sum()) for b in batches))
    intermediate = [c for c in analysis.activations if c.layer.endswith("intermediate.dense")]
    assert len(intermediate) == 2 and all(c.n_positions == real for c in intermediate)
    with pytest.raises(InspectorError, match="no labels"):
        inspector.analyze(model, batches, options=AnalysisOptions(sections=("importance",)))
