"""Planted training histories with a known answer: improving, noisy, overfitting, memorising, short, NaN."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.analysis.diagnostics import training_diagnostics
from inspector.analysis.sections.training import training_findings
from inspector.training import History

EPOCHS = np.arange(1, 41)


def _history(val_loss, train_loss=None, best_epoch=None, stopped=False, train_accuracy=None):
    val_loss = np.asarray(val_loss, float)
    n = len(val_loss)
    train_loss = np.linspace(1.0, 0.1, n) if train_loss is None else np.asarray(train_loss, float)
    finite = np.where(np.isfinite(val_loss), val_loss, np.inf)
    return History(
        train_loss=train_loss,
        val_loss=val_loss,
        train_accuracy=np.linspace(0.5, 1.0, n) if train_accuracy is None else np.asarray(train_accuracy, float),
        val_accuracy=np.linspace(0.5, 0.9, n),
        best_epoch=best_epoch or int(np.argmin(finite)) + 1,
        stopped_early=stopped,
    )


def _noise(seed, n=40, scale=0.03):
    return 1 + scale * np.random.default_rng(seed).standard_normal(n)


def test_steadily_improving_training_is_not_overfitting():
    val = 1 / (1 + 0.2 * EPOCHS)
    d = training_diagnostics(_history(val, train_loss=0.8 * val))
    assert d.overfitting_epoch is None and d.best_epoch == 40


def test_a_one_epoch_rise_while_validation_loss_still_falls_is_not_overfitting():
    val = np.linspace(1.0, 0.4, 40)
    val[-1] = 1.06 * val[-2]  # the case: one epoch 6% up, after 39 epochs of steady improvement
    d = training_diagnostics(_history(val))
    assert d.overfitting_epoch is None


@pytest.mark.parametrize("seed", range(10))
def test_noisy_but_improving_validation_loss_is_not_overfitting(seed):
    # +-3% epoch-to-epoch noise on a loss that falls 0.015 per epoch, with a 6% spike at the end
    val = np.linspace(1.0, 0.4, 40) * _noise(seed)
    val[-1] = 1.06 * val[:-1].min()
    d = training_diagnostics(_history(val))
    assert d.overfitting_epoch is None


def test_clear_overfitting_is_dated_from_the_validation_minimum():
    val = 0.3 + 0.002 * (EPOCHS - 20) ** 2  # minimum at epoch 20, +53% by epoch 40
    d = training_diagnostics(_history(val, best_epoch=20))
    assert d.overfitting_epoch == 21
    # the last 5 epochs average 0.3 + 0.002 * mean((16..20)^2) against a smoothed minimum of 0.3 + 0.002 * 2
    tail = 0.3 + 0.002 * np.mean(np.arange(16, 21) ** 2)
    assert d.final_val_loss_rise == pytest.approx((tail - 0.304) / 0.304, rel=1e-12)
    texts = [f.text for f in training_findings(d)]
    assert any(t.startswith("validation loss rose after epoch 20") and "overfit" in t for t in texts)


@pytest.mark.parametrize("seed", range(5))
def test_noisy_overfitting_is_still_found_near_the_minimum(seed):
    val = (0.3 + 0.002 * (EPOCHS - 20) ** 2) * _noise(seed)
    d = training_diagnostics(_history(val))
    assert d.overfitting_epoch is not None and 18 <= d.overfitting_epoch <= 24


def test_memorising_model_whose_validation_loss_bottomed_long_ago_is_overfitting():
    # the case: 100% train accuracy, validation loss at its minimum at epoch 10 and only ~3% above it
    # 30 epochs later (never the 5% a rise needs), while the training loss falls to almost nothing
    val = np.where(EPOCHS <= 10, 0.25 + 0.05 * (10 - EPOCHS), 0.25 * (1 + 0.001 * (EPOCHS - 10)))
    val = val * _noise(0, scale=0.003)
    train = np.geomspace(0.5, 1e-3, 40)
    d = training_diagnostics(_history(val, train_loss=train, train_accuracy=np.minimum(1.0, EPOCHS / 10)))
    assert d.final_val_loss_rise < 0.05
    assert d.overfitting_epoch is not None and 10 <= d.overfitting_epoch <= 16
    texts = [f.text for f in training_findings(d)]
    assert any(t.startswith(f"validation loss has not improved since epoch {d.overfitting_epoch - 1}") for t in texts)


def test_a_plateau_without_a_growing_gap_is_not_overfitting():
    # both losses settle: validation flat after epoch 15, training flat too
    val = np.maximum(0.3, 1.0 - 0.05 * EPOCHS) * _noise(1, scale=0.005)
    train = np.maximum(0.2, 0.9 - 0.05 * EPOCHS) * _noise(2, scale=0.005)
    assert training_diagnostics(_history(val, train_loss=train)).overfitting_epoch is None


def test_a_diverging_run_is_not_called_overfitting():
    # both losses climb together after epoch 20: the gap does not grow, the optimisation broke down
    base = 0.3 + 0.002 * (EPOCHS - 20) ** 2
    d = training_diagnostics(_history(base + 0.1, train_loss=base))
    assert d.overfitting_epoch is None


def test_short_history_gets_no_verdict():
    val = [1.0, 0.6, 0.5, 0.7, 0.9, 1.2]  # too few epochs to tell a trend from noise
    d = training_diagnostics(_history(val))
    assert d.overfitting_epoch is None and np.isnan(d.final_val_loss_rise)


def test_nan_losses_are_skipped_and_reported():
    val = 0.3 + 0.002 * (EPOCHS - 20) ** 2
    val[[3, 19, 30]] = np.nan  # epoch 20, the minimum itself, is one of them
    train = np.linspace(1.0, 0.1, 40)
    train[7] = np.inf
    d = training_diagnostics(_history(val, train_loss=train))
    assert d.nonfinite_epochs == 4
    assert d.overfitting_epoch is not None and 20 <= d.overfitting_epoch <= 22
    texts = [f.text for f in training_findings(d)]
    assert any("NaN or Inf in 4 of 40 epochs" in t for t in texts)


def test_a_run_that_ends_in_nan_gets_a_divergence_warning_not_an_overfitting_verdict():
    val = np.concatenate([np.linspace(1.0, 0.5, 15), np.full(10, np.nan)])
    train = np.concatenate([np.linspace(0.9, 0.4, 15), np.full(10, np.nan)])
    d = training_diagnostics(_history(val, train_loss=train, best_epoch=15))
    assert d.overfitting_epoch is None and d.nonfinite_epochs == 10
    assert any(f.severity == "warning" and "NaN or Inf in 10 of 25 epochs" in f.text for f in training_findings(d))


def test_gaps_are_taken_at_the_best_epoch():
    h = _history([0.9, 0.5, 0.6], best_epoch=2)
    d = training_diagnostics(h)
    assert d.accuracy_gap == h.train_accuracy[1] - h.val_accuracy[1]
    assert d.loss_gap == h.val_loss[1] - h.train_loss[1]


def test_a_regression_history_states_its_r2_gap_as_a_number_not_accuracy_points():
    import dataclasses

    h = dataclasses.replace(_history([0.9, 0.5, 0.6], best_epoch=2), metric_name="R²")
    d = training_diagnostics(h)
    assert d.metric_name == "R²"
    gap = h.train_accuracy[1] - h.val_accuracy[1]  # the R² curves, at the best epoch
    texts = [f.text for f in training_findings(d)]
    assert f"train/validation R² gap at the best epoch: {gap:.3f}" in texts
    assert not any("accuracy" in t for t in texts)
    from inspector import figures as F

    assert [a.text for a in F.training_figure(d).layout.annotations][:2] == ["loss", "R²"]  # the curves' name
