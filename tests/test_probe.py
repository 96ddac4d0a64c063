"""Probe: one sample's input, prediction, attribution and what-if answer, for every input kind;
and AnalysisOptions.max_samples (the CLI's --max-samples)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from inspector.analysis import AnalysisOptions, Probe, analyze
from inspector.analysis.attribution import attribute
from inspector.analysis.inputs import Batch, as_source
from inspector.errors import InspectorError
from tests.models import digits_images, lenet_digits, padded_batches, plant_dead, tiny_bert


def _linear_regression() -> nn.Module:
    """y = 3 x2 - 2 x5 exactly."""
    model = nn.Linear(8, 1)
    with torch.no_grad():
        model.weight.zero_()
        model.weight[0, 2], model.weight[0, 5] = 3.0, -2.0
        model.bias.zero_()
    return model


@pytest.fixture(scope="module")
def regression_data() -> tuple[torch.Tensor, torch.Tensor]:
    X = torch.randn(100, 8, generator=torch.Generator().manual_seed(0))
    return X, 3 * X[:, 2] - 2 * X[:, 5]


def test_regression_prediction_and_what_if_are_the_models_own_numbers(regression_data):
    X, y = regression_data
    probe = Probe(_linear_regression(), (X, y), batch_size=16)  # samples spread over 7 chunks
    assert probe.n_samples == 100 and probe.task is not None and probe.task.kind == "regression"
    i = 37  # in the third chunk
    np.testing.assert_allclose(probe.inputs(i), X[i].numpy())
    assert float(probe.label(i)) == pytest.approx(float(y[i]))
    np.testing.assert_allclose(probe.predict(i), [float(y[i])], rtol=1e-5, atol=1e-6)  # the output, no softmax
    edited = X[i].numpy().copy()
    edited[2] += 1.0  # one unit more of x2 adds exactly 3
    edited[5] += 0.5  # half a unit more of x5 takes away 1
    value, prediction = probe.evaluate(i, edited)
    assert value == pytest.approx(float(y[i]) + 3.0 - 1.0, abs=1e-5)
    assert prediction[0] == pytest.approx(value, abs=1e-6)
    ig = probe.explain("integrated_gradients", i)
    assert ig.shape == (8,)
    np.testing.assert_allclose(ig, [0, 0, 3 * X[i, 2], 0, 0, -2 * X[i, 5], 0, 0], atol=1e-5)  # w * x from 0


def test_classifier_probabilities_and_a_chosen_class():
    X, y = digits_images(64)
    model = lenet_digits()
    probe = Probe(model, torch.utils.data.TensorDataset(X, y), batch_size=20)
    assert probe.input_kind == "array" and probe.inputs(45).shape == (1, 8, 8)
    p = probe.predict(45)
    with torch.no_grad():
        expected = torch.softmax(model(X[45:46]), 1)[0].numpy()
    np.testing.assert_allclose(p, expected, rtol=1e-5, atol=1e-7)
    own = probe.explain("integrated_gradients", 45)
    other_class = (int(y[45]) + 1) % 10
    other = probe.explain("integrated_gradients", 45, target=other_class)
    direct, _ = attribute(model.eval(), "integrated_gradients", Batch(X[45:46], torch.tensor([other_class])))
    np.testing.assert_allclose(other, direct.detach().numpy()[0], rtol=1e-5, atol=1e-7)
    assert own.shape == (1, 8, 8) and not np.allclose(own, other)
    assert probe.explain("integrated_gradients", 45) is own  # cached


def test_tokens_text_mask_and_zero_attribution_on_padding():
    pytest.importorskip("transformers")
    model = tiny_bert(num_labels=3)
    batches = padded_batches(2, 4, 10, num_labels=3)
    vocabulary = [f"w{i}" for i in range(50)]
    probe = Probe(model, batches, vocabulary=vocabulary)
    assert probe.input_kind == "tokens" and probe.n_samples == 8
    i = 5  # second batch, second row
    ids = batches[1]["input_ids"][1].numpy()
    mask = batches[1]["attention_mask"][1].numpy().astype(bool)
    np.testing.assert_array_equal(probe.inputs(i), ids)
    np.testing.assert_array_equal(probe.mask(i), mask)
    assert probe.tokens(i) == tuple(f"w{t}" for t in ids)
    scores = probe.explain("integrated_gradients", i)
    assert scores.shape == (10,)
    assert np.all(scores[~mask] == 0) and np.any(scores[mask] != 0)
    with pytest.raises(InspectorError, match="token ids"):
        probe.evaluate(i, ids)


def test_unlabelled_data_predicts_but_does_not_explain(regression_data):
    X, _ = regression_data
    probe = Probe(_linear_regression(), X)
    assert probe.task is None and probe.label(3) is None
    np.testing.assert_allclose(probe.predict(3), [3 * X[3, 2] - 2 * X[3, 5]], atol=1e-5)
    with pytest.raises(InspectorError, match="no labels"):
        probe.explain("saliency", 3)


@pytest.mark.parametrize("bad", [-1, 100, 2.5, True, "3"])
def test_a_sample_outside_the_held_ones_is_one_line(regression_data, bad):
    probe = Probe(_linear_regression(), regression_data)
    with pytest.raises(InspectorError, match="not among the 100 held samples"):
        probe.predict(bad)


def test_max_samples_holds_only_the_first_samples(regression_data):
    X, y = regression_data
    probe = Probe(_linear_regression(), (X, y), max_samples=30, batch_size=16)
    assert probe.n_samples == 30
    np.testing.assert_allclose(probe.inputs(29), X[29].numpy())


def test_a_limited_source_cuts_the_last_batch_and_counts_right(regression_data):
    X, y = regression_data
    source = as_source((X, y), batch_size=16).limited(37)
    sizes = [len(b) for b in source]
    assert sizes == [16, 16, 5] and source.n_samples == 37
    assert [len(b) for b in source.limited(100)] == [16, 16, 5]  # a wider cap keeps the narrower one


def test_analysis_options_max_samples_analyses_only_the_first_samples():
    X = torch.randn(200, 6, generator=torch.Generator().manual_seed(1))
    late = (torch.arange(200) >= 120).float().unsqueeze(1)  # 1 from sample 120 on
    model = nn.Sequential(nn.Linear(7, 5), nn.ReLU(), nn.Linear(5, 2))
    with torch.no_grad():
        model[0].weight[:, 6] = 0.0
        model[0].weight[1].zero_()
        model[0].weight[1, 6] = 1.0  # neuron 1 fires only on the late samples
        model[0].bias[1] = -0.5
    plant_dead(model[0], 3)
    data = (torch.cat([X, late], 1), torch.zeros(200, dtype=torch.long))
    options = AnalysisOptions(sections=("parameters", "activations"), max_samples=100, batch_size=64)
    analysis = analyze(model, data, options=options)
    census = analysis.activations[0]
    assert analysis.data.n_samples == 100 and census.n_samples == 100
    assert np.flatnonzero(census.dead_mask).tolist() == [1, 3]
    everything = analyze(model, data, options=AnalysisOptions(sections=("parameters", "activations")))
    assert np.flatnonzero(everything.activations[0].dead_mask).tolist() == [3]
    with pytest.raises(InspectorError, match="max_samples"):
        AnalysisOptions(max_samples=0)


def test_a_tokenizer_without_text_for_an_id_shows_its_number():
    pytest.importorskip("transformers")

    class Partial:
        def convert_ids_to_tokens(self, i: int):
            return {1: "[CLS]"}.get(i)  # None for every other id, as a broken tokenizer gives

    batches = padded_batches(1, 2, 5, num_labels=2)
    probe = Probe(tiny_bert(num_labels=2), batches, tokenizer=Partial())
    ids = batches[0]["input_ids"][0].tolist()
    assert probe.tokens(0) == tuple("[CLS]" if t == 1 else f"#{t}" for t in ids)
