"""Regression with several targets: MSE over every output, R² the mean of each target's (as
scikit-learn's r2_score), attributions of the mean output; pruning curves in the same R²."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from inspector.analysis import AnalysisOptions, analyze
from inspector.analysis.inputs import as_source
from inspector.analysis.task import evaluate_task, make_task
from inspector.errors import InspectorError


def _two_outputs() -> nn.Linear:
    model = nn.Linear(6, 2)
    with torch.no_grad():
        model.weight.zero_()
        model.weight[0, 2], model.weight[0, 5] = 3.0, -2.0
        model.weight[1, 0] = 1.0
        model.bias.copy_(torch.tensor([0.0, 10.0]))
    return model


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    X = torch.randn(300, 6, generator=torch.Generator().manual_seed(0))
    noise = 0.3 * torch.randn(300, 2, generator=torch.Generator().manual_seed(1))
    Y = torch.stack([3 * X[:, 2] - 2 * X[:, 5], X[:, 0] + 10], 1) + noise * torch.tensor([1.0, 5.0])
    return X, Y


def _r2_numpy(pred: np.ndarray, y: np.ndarray) -> float:
    sse = ((pred - y) ** 2).sum(0)
    sst = ((y - y.mean(0)) ** 2).sum(0)
    return float(np.mean(1 - sse / sst))


def test_mse_and_r2_over_several_targets_equal_numpy(data):
    X, Y = data
    model = _two_outputs()
    source = as_source((X, Y), batch_size=64)
    task = make_task("regression", source.first())
    loss, r2, n = evaluate_task(model, source, task)
    pred = model(X).detach().double().numpy()
    y = Y.double().numpy()
    assert n == 300
    assert loss == pytest.approx(float(((pred - y) ** 2).mean()), rel=1e-9)
    assert r2 == pytest.approx(_r2_numpy(pred, y), rel=1e-9)
    # the second target is noisier, so its R² is lower: the mean is not either one alone
    per_target = 1 - ((pred - y) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0)
    assert per_target[1] < per_target[0] - 0.05


def test_analysis_explains_the_mean_output_and_prunes_in_r2(data):
    X, Y = data
    model = _two_outputs()
    options = AnalysisOptions(
        sections=("parameters", "importance", "pruning"),
        methods=("integrated_gradients",),
        sparsities=(0.0, 0.5),
        pruning_scopes=("global",),
    )
    analysis = analyze(model, (X, Y), options=options)
    assert analysis.model.task == "regression" and analysis.model.target == "the mean of the model's 2 outputs"
    assert analysis.data.metric_name == "R²"
    pred = model(X).detach().double().numpy()
    assert analysis.data.metric == pytest.approx(_r2_numpy(pred, Y.double().numpy()), rel=1e-9)
    # IG of the mean output from a zero baseline: (w0 + w1)/2 * x, exactly, for a linear model
    ig = analysis.importance.method("integrated_gradients")
    w = model.weight.detach().double().numpy().mean(0)
    n = analysis.importance.n_samples
    expected = np.abs(X[:n].double().numpy() * w).mean(0)
    np.testing.assert_allclose(ig.global_importance, expected, rtol=1e-4, atol=1e-7)
    curve = analysis.pruning.curves[0]
    assert analysis.pruning.metric_name == "R²"
    assert curve.metric[0] == pytest.approx(analysis.data.metric, rel=1e-9)
    # at 50% global sparsity the 6 smallest of 12 weights go: all the zeros; the model is unchanged
    assert curve.metric[1] == pytest.approx(analysis.data.metric, rel=1e-9)


def test_targets_and_outputs_of_different_widths_are_one_line(data):
    X, Y = data
    with pytest.raises(InspectorError, match="1 value\\(s\\) per sample but the model gives 2"):
        analyze(_two_outputs(), (X, Y[:, 0]), options=AnalysisOptions(sections=("parameters",)))
