"""scikit-learn MLPs read from files the real libraries write: skops (secure) and a plain pickle (only
with trust_pickle). Counts come from the estimator's own ``coefs_``; the rebuilt torch model's outputs
equal ``predict_proba`` / ``predict``."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.neural_network import MLPClassifier, MLPRegressor

from inspector.analysis import analyze
from inspector.checkpoints import load, read_header
from inspector.errors import InspectorError
from inspector.inventory import read_inventory

sio = pytest.importorskip("skops.io")


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:600], y[:600]


def _fit(estimator, X, y):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: a few iterations are enough here
        return estimator.fit(X, y)


def _expected_counts(est):
    return [(c.shape[0], c.shape[1], c.shape[1] * (c.shape[0] + 1)) for c in est.coefs_]


@pytest.mark.parametrize("activation", ["relu", "tanh", "logistic", "identity"])
def test_skops_classifier_counts_weights_and_probabilities(tmp_path, digits, activation):
    X, y = digits
    est = _fit(MLPClassifier((20, 12), activation=activation, max_iter=30, random_state=0), X, y)
    path = tmp_path / "clf.skops"
    sio.dump(est, path)

    inv = read_inventory(path)
    assert inv.format == "skops"
    assert [
        (layer.in_features, layer.out_features, layer.parameters) for layer in inv.linear_layers
    ] == _expected_counts(est)
    assert inv.totals()["parameters"] == sum(c.size + b.size for c, b in zip(est.coefs_, est.intercepts_))

    ckpt = load(path)
    state = ckpt.model.state_dict()
    for k, (coef, intercept) in enumerate(zip(est.coefs_, est.intercepts_), start=1):
        np.testing.assert_array_equal(state[f"fc{k}.weight"].numpy(), coef.T)  # (out, in)
        np.testing.assert_array_equal(state[f"fc{k}.bias"].numpy(), intercept)
    with torch.no_grad():
        probs = torch.softmax(ckpt.model(torch.from_numpy(X)), dim=-1).numpy()
    np.testing.assert_allclose(probs, est.predict_proba(X), atol=1e-6, rtol=0)
    assert (probs.argmax(1) == est.predict(X)).all()


def test_binary_classifier_logistic_unit_becomes_two_logits(tmp_path, digits):
    X, y = digits
    est = _fit(MLPClassifier((8,), max_iter=30, random_state=0), X, (y == 3).astype(int))
    assert est.out_activation_ == "logistic" and est.coefs_[-1].shape[1] == 1
    sio.dump(est, tmp_path / "bin.skops")
    ckpt = load(tmp_path / "bin.skops")
    with torch.no_grad():
        probs = torch.softmax(ckpt.model(torch.from_numpy(X)), dim=-1).numpy()
    np.testing.assert_allclose(probs, est.predict_proba(X), atol=1e-6, rtol=0)
    # the parameters are the estimator's: the two-logit head adds none
    assert sum(p.numel() for p in ckpt.model.parameters()) == sum(
        c.size + b.size for c, b in zip(est.coefs_, est.intercepts_)
    )


def test_skops_regressor_predicts_what_predict_does(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 5))
    Y = np.stack([3 * X[:, 2] - 2 * X[:, 4], X[:, 0]], axis=1)
    est = _fit(MLPRegressor(hidden_layer_sizes=(16,), max_iter=200, random_state=0), X, Y)
    sio.dump(est, tmp_path / "reg.skops")
    ckpt = load(tmp_path / "reg.skops")
    with torch.no_grad():
        pred = ckpt.model(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(pred, est.predict(X), atol=1e-6, rtol=0)
    analysis = analyze(ckpt, (X.astype(np.float32), Y.astype(np.float32)), task="regression")
    assert analysis.data is not None and analysis.data.metric_name == "R²"
    # scikit-learn's r2_score: each target's 1 - SSE / SST, averaged over the targets
    r2 = (1 - ((Y - est.predict(X)) ** 2).sum(0) / ((Y - Y.mean(0)) ** 2).sum(0)).mean()
    assert analysis.data.metric == pytest.approx(r2, abs=1e-5)


def test_the_data_sections_run_on_a_skops_classifier(tmp_path, digits):
    X, y = digits
    est = _fit(MLPClassifier((16,), max_iter=40, random_state=0), X, y)
    sio.dump(est, tmp_path / "clf.skops")
    analysis = analyze(load(tmp_path / "clf.skops"), (X.astype(np.float32), y))
    assert analysis.data is not None and analysis.data.metric == pytest.approx(est.score(X, y), abs=1e-9)
    dead = {c.layer: int(c.dead_mask.sum()) for c in analysis.activations}
    with torch.no_grad():
        hidden = np.maximum(X @ est.coefs_[0] + est.intercepts_[0], 0)
    assert dead["fc1"] == int((hidden.max(0) <= 0).sum())


def test_a_plain_pickle_needs_trust(tmp_path, digits):
    X, y = digits
    est = _fit(MLPClassifier((8,), max_iter=20, random_state=0), X, y)
    path = tmp_path / "sk.pkl"
    path.write_bytes(pickle.dumps(est))
    with pytest.raises(InspectorError, match="pickled scikit-learn model, not a PyTorch checkpoint.*--trust-pickle"):
        read_header(path)
    assert read_inventory(path, trust_pickle=True).totals()["parameters"] == sum(
        c.size + b.size for c, b in zip(est.coefs_, est.intercepts_)
    )
    cli = [sys.executable, "-m", "inspector", "info", str(path)]
    refused = subprocess.run(cli, capture_output=True, text=True)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
    assert "skops" in refused.stderr and "Warning" not in refused.stderr
    trusted = subprocess.run([*cli, "--trust-pickle"], capture_output=True, text=True)
    assert trusted.returncode == 0 and "fc1" in trusted.stdout and "sklearn-pickle" in trusted.stdout


def test_a_skops_file_with_foreign_types_is_refused(tmp_path):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    pipe = make_pipeline(FunctionTransformer(np.log1p))
    pipe.fit(np.ones((3, 2)))
    sio.dump(pipe, tmp_path / "pipe.skops")
    with pytest.raises(InspectorError, match=r"pipe.skops: (holds a scikit-learn Pipeline|the skops file holds types)"):
        load(tmp_path / "pipe.skops")
