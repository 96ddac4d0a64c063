"""Training diagnostics from a per-epoch history."""

from __future__ import annotations

import numpy as np

from inspector.results import result
from inspector.training import History


@result
class TrainingDiagnostics:
    """Epochs are 1-based.

    ``overfitting_epoch``: the first epoch after the validation-loss minimum,
    when validation loss ended up at least ``rise_tolerance`` (relative) above
    that minimum while training loss kept falling; ``None`` if it never did.
    The gaps are taken at the best (restored) epoch.
    """

    epochs_run: int
    best_epoch: int
    stopped_early: bool
    overfitting_epoch: int | None
    accuracy_gap: float
    loss_gap: float
    final_val_loss_rise: float
    train_loss: np.ndarray
    val_loss: np.ndarray
    train_accuracy: np.ndarray
    val_accuracy: np.ndarray


def training_diagnostics(history: History, rise_tolerance: float = 0.05) -> TrainingDiagnostics:
    val, train = history.val_loss, history.train_loss
    best_index = int(np.argmin(val))
    minimum = float(val[best_index])
    rise = float(val[-1] - minimum) / max(abs(minimum), 1e-12)
    overfitting = None
    if best_index < len(val) - 1 and rise >= rise_tolerance and train[-1] < train[best_index]:
        overfitting = best_index + 2  # the first epoch after the minimum, 1-based
    b = history.best_epoch - 1
    return TrainingDiagnostics(
        epochs_run=history.epochs_run, best_epoch=history.best_epoch, stopped_early=history.stopped_early,
        overfitting_epoch=overfitting,
        accuracy_gap=float(history.train_accuracy[b] - history.val_accuracy[b]),
        loss_gap=float(history.val_loss[b] - history.train_loss[b]),
        final_val_loss_rise=rise,
        train_loss=history.train_loss, val_loss=history.val_loss,
        train_accuracy=history.train_accuracy, val_accuracy=history.val_accuracy,
    )
