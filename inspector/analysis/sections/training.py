"""The training section: overfitting, early stopping, divergence and the train/validation gap, read from
the training history (:func:`~inspector.analysis.diagnostics.training_diagnostics`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from inspector.analysis.context import AnalysisContext
from inspector.analysis.diagnostics import RISE_TOLERANCE, TrainingDiagnostics, training_diagnostics
from inspector.analysis.findings import Finding, count, pct
from inspector.analysis.sections.registry import SectionSpec, register


def run(ctx: AnalysisContext, done: Mapping[str, Any]) -> tuple[TrainingDiagnostics, list[Finding]]:
    assert ctx.history is not None  # needs history
    diagnostics = training_diagnostics(ctx.history)
    return diagnostics, training_findings(diagnostics)


def training_findings(d: TrainingDiagnostics) -> list[Finding]:
    out = []
    if d.nonfinite_epochs:
        out.append(
            Finding(
                "training",
                "warning",
                f"the training or validation loss was NaN or Inf in {d.nonfinite_epochs} of "
                f"{count(d.epochs_run, 'epoch')}: training diverged or was numerically unstable there "
                "(lower the learning rate or check the inputs)",
                {"nonfinite_epochs": d.nonfinite_epochs},
            )
        )
    if d.overfitting_epoch is not None:
        best, w = d.overfitting_epoch - 1, d.smoothing_window
        if d.final_val_loss_rise >= RISE_TOLERANCE:
            trend = (
                f"validation loss rose after epoch {best} (over the last {count(w, 'epoch')} it averaged "
                f"{pct(d.final_val_loss_rise)} above its smoothed minimum)"
            )
        else:
            trend = f"validation loss has not improved since epoch {best} ({count(d.epochs_run - best, 'epoch')} ago)"
        out.append(
            Finding(
                "training",
                "warning",
                f"{trend}, while the gap between validation and training loss grew by "
                f"{pct(d.loss_gap_growth)} of that minimum: the model began to overfit",
                {
                    "overfitting_epoch": d.overfitting_epoch,
                    "val_loss_rise": d.final_val_loss_rise,
                    "loss_gap_growth": d.loss_gap_growth,
                },
            )
        )
    if d.stopped_early:
        out.append(
            Finding(
                "training",
                "info",
                f"early stopping ended training at epoch {d.epochs_run} and restored epoch {d.best_epoch}",
                {"epochs_run": d.epochs_run, "best_epoch": d.best_epoch},
            )
        )
    if d.metric_name == "accuracy":
        gap = 100 * d.accuracy_gap
        out.append(
            Finding(
                "training",
                "warning" if gap > 5 else "info",
                f"train/validation accuracy gap at the best epoch: {gap:.1f} points",
                {"accuracy_gap_points": gap},
            )
        )
    else:  # R² (or another metric) is not a percentage: the gap as a number
        gap = d.accuracy_gap
        out.append(
            Finding(
                "training",
                "warning" if gap > 0.05 else "info",
                f"train/validation {d.metric_name} gap at the best epoch: {gap:.3f}",
                {"metric_gap": gap},
            )
        )
    return out


SECTION = register(SectionSpec("training", run, field="training", option="training", needs=frozenset({"history"})))
