"""Training diagnostics from a per-epoch history: when did the model start to overfit?

The rule (Prechelt 1998, "Early stopping - but when?", judges overfitting by the
generalisation loss relative to the best validation loss; here it is made robust
to epoch-to-epoch noise by smoothing and by asking for a sustained change):

1. Non-finite losses (NaN/Inf) are left out of every average; an epoch with a
   non-finite validation or training loss is counted in ``nonfinite_epochs``.
2. Both loss curves are smoothed with a centred moving average over ``window``
   epochs (shrinking at the ends). ``b`` is the epoch of the smoothed validation
   minimum.
3. No verdict (``overfitting_epoch = None``) unless there are at least
   ``2 * window`` epochs with finite losses and at least ``window`` epochs after
   ``b``: a minimum in the last few epochs is noise until later epochs confirm it.
4. Over the last ``window`` epochs (the *tail*), the mean validation loss is
   compared with the smoothed minimum: ``val_loss_rise = (tail - min) / min``; the
   train/validation loss gap is compared with the gap at ``b``:
   ``loss_gap_growth = (gap_tail - gap_b) / min``.
5. Overfitting, from epoch ``b + 1``, when the gap grew
   (``loss_gap_growth >= rise_tolerance``: what the model learns after ``b`` no
   longer carries over to validation) and either the validation loss rose
   (``val_loss_rise >= rise_tolerance``) or it has not improved for at least
   ``2 * window`` epochs. Asking for a growing gap, not only a rising validation
   loss, keeps a diverging run (both losses rising) from being called overfitting.

A one-epoch spike is averaged away (2, 4); a validation loss that is still
falling keeps its minimum in the last epochs (3); a model at 100% train accuracy
whose validation loss bottomed long before the end is caught by the gap (5).
"""

from __future__ import annotations

import numpy as np

from inspector.records import History
from inspector.results import result

SMOOTHING_WINDOW = 5
RISE_TOLERANCE = 0.05


@result
class TrainingDiagnostics:
    """Epochs are 1-based.

    ``overfitting_epoch``: the first epoch after the smoothed validation-loss minimum
    when the rule in this module's docstring finds overfitting; ``None`` if it does
    not (or the history is too short to tell). ``final_val_loss_rise``: the mean
    validation loss over the last ``smoothing_window`` epochs relative to the smoothed
    minimum; ``loss_gap_growth``: how much the validation-minus-training loss gap grew
    from the minimum to those epochs, relative to the minimum (both NaN without a
    verdict). The accuracy and loss gaps are taken at the best (restored) epoch.
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
    loss_gap_growth: float = float("nan")
    smoothing_window: int = SMOOTHING_WINDOW
    nonfinite_epochs: int = 0
    metric_name: str = "accuracy"  # what the *_accuracy curves and accuracy_gap hold (R² for regression)


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average over ``window`` epochs that skips NaNs; NaN where a window has no finite value."""
    half = window // 2
    out = np.full(len(values), np.nan)
    for e in range(len(values)):
        chunk = values[max(0, e - half) : e + half + 1]
        chunk = chunk[~np.isnan(chunk)]
        if chunk.size:
            out[e] = chunk.mean()
    return out


def _tail_mean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")


def training_diagnostics(
    history: History, rise_tolerance: float = RISE_TOLERANCE, window: int = SMOOTHING_WINDOW
) -> TrainingDiagnostics:
    """Diagnose ``history`` (per-epoch curves of length E) with the rule in the module docstring."""
    if window < 1:
        raise ValueError(f"the smoothing window must be at least 1 epoch, got {window}")
    val = np.where(np.isfinite(history.val_loss), history.val_loss, np.nan).astype(np.float64)
    train = np.where(np.isfinite(history.train_loss), history.train_loss, np.nan).astype(np.float64)
    nonfinite = int(np.sum(np.isnan(val) | np.isnan(train)))
    n = len(val)
    overfitting, rise, growth = None, float("nan"), float("nan")
    usable = int(np.sum(~np.isnan(val) & ~np.isnan(train)))
    if usable >= 2 * window:
        smooth_val, smooth_train = _smooth(val, window), _smooth(train, window)
        b = int(np.nanargmin(smooth_val))
        if n - 1 - b >= window:
            minimum = float(smooth_val[b])
            scale = max(abs(minimum), 1e-12)
            val_tail, train_tail = _tail_mean(val[-window:]), _tail_mean(train[-window:])
            rise = (val_tail - minimum) / scale
            growth = ((val_tail - train_tail) - (minimum - float(smooth_train[b]))) / scale
            if growth >= rise_tolerance and (rise >= rise_tolerance or n - 1 - b >= 2 * window):
                overfitting = b + 2  # the first epoch after the minimum, 1-based
    accuracy_gap = loss_gap = float("nan")
    if 1 <= history.best_epoch <= n:  # 0 when no epoch ever had a finite validation loss
        best = history.best_epoch - 1
        accuracy_gap = float(history.train_accuracy[best] - history.val_accuracy[best])
        loss_gap = float(history.val_loss[best] - history.train_loss[best])
    return TrainingDiagnostics(
        epochs_run=history.epochs_run,
        best_epoch=history.best_epoch,
        stopped_early=history.stopped_early,
        overfitting_epoch=overfitting,
        accuracy_gap=accuracy_gap,
        loss_gap=loss_gap,
        final_val_loss_rise=float(rise),
        train_loss=history.train_loss,
        val_loss=history.val_loss,
        train_accuracy=history.train_accuracy,
        val_accuracy=history.val_accuracy,
        loss_gap_growth=float(growth),
        smoothing_window=int(window),
        nonfinite_epochs=nonfinite,
        metric_name=getattr(history, "metric_name", "accuracy"),
    )
