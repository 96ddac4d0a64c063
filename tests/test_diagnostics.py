from __future__ import annotations

import numpy as np

from inspector.analysis.diagnostics import training_diagnostics
from inspector.analysis.findings import training_findings
from inspector.training import History


def _history(val_loss, best_epoch=None, stopped=False):
    n = len(val_loss)
    val_loss = np.asarray(val_loss, float)
    return History(
        train_loss=np.linspace(1.0, 0.1, n), val_loss=val_loss,
        train_accuracy=np.linspace(0.5, 1.0, n), val_accuracy=np.linspace(0.5, 0.9, n),
        best_epoch=best_epoch or int(np.argmin(val_loss)) + 1, stopped_early=stopped,
    )


def test_overfitting_begins_after_the_validation_minimum():
    val = list(np.linspace(1.0, 0.4, 12)) + [0.45, 0.5, 0.55, 0.6]  # minimum at epoch 12
    d = training_diagnostics(_history(val, best_epoch=12, stopped=True))
    assert d.best_epoch == 12 and d.overfitting_epoch == 13
    assert abs(d.final_val_loss_rise - (0.6 / 0.4 - 1)) < 1e-12
    texts = [f.text for f in training_findings(d)]
    assert any(t.startswith("validation loss rose after epoch 12") for t in texts)
    assert any("restored epoch 12" in t for t in texts)


def test_no_overfitting_while_validation_loss_falls():
    d = training_diagnostics(_history(np.linspace(1.0, 0.2, 10)))
    assert d.overfitting_epoch is None and d.best_epoch == 10


def test_gaps_are_taken_at_the_best_epoch():
    h = _history([0.9, 0.5, 0.6], best_epoch=2)
    d = training_diagnostics(h)
    assert d.accuracy_gap == h.train_accuracy[1] - h.val_accuracy[1]
    assert d.loss_gap == h.val_loss[1] - h.train_loss[1]
