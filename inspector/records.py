"""Plain records shared across layers: what a training run was told and did, and the data an analysis
looks at. No behaviour beyond checking their own values, and no imports of the project's other
modules (but :mod:`inspector.errors`), so any layer may import them.

:class:`TrainConfig` and :class:`History` are re-exported by :mod:`inspector.training`,
:class:`EvalData` by :mod:`inspector.evaluation`, :data:`MAX_SEED` and :func:`check_seed` by
:mod:`inspector.data`, where they were first defined.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from inspector.errors import InspectorError

OPTIMIZERS = ("adam", "sgd")

MAX_SEED = 2**32 - 1  # numpy's (and so sklearn's) RandomState accepts seeds in [0, 2**32)


def check_seed(seed: object) -> int:
    """``seed`` when it is an int in ``[0, MAX_SEED]``; otherwise a one-line :class:`InspectorError`."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_SEED:
        raise InspectorError(f"seed must be an integer from 0 to {MAX_SEED}, got {seed!r}")
    return int(seed)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings. ``patience=None`` turns early stopping off."""

    epochs: int = 100
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    patience: int | None = 10
    snapshot_every: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise InspectorError(f"unknown optimizer {self.optimizer!r}; choose adam or sgd")
        if self.epochs < 1 or self.batch_size < 1:
            raise InspectorError("epochs and batch size must be at least 1")
        # isfinite first: NaN passes every `x <= 0` test, and an infinite step trains NaN weights
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise InspectorError(f"learning rate must be a finite number above 0, got {self.lr}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise InspectorError(f"weight decay must be a finite number of at least 0, got {self.weight_decay}")
        if not (math.isfinite(self.momentum) and 0 <= self.momentum < 1):
            raise InspectorError(f"momentum must be in [0, 1), got {self.momentum}")
        check_seed(self.seed)
        if self.patience is not None and self.patience < 1:
            raise InspectorError("patience must be at least 1 (or None to turn early stopping off)")
        if self.snapshot_every is not None and self.snapshot_every < 1:
            raise InspectorError("snapshot interval must be at least 1 epoch")

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class History:
    """Per-epoch curves, index e is epoch e + 1. ``best_epoch`` is 1-based.

    The losses are the training objective: cross-entropy, or for regression the MSE of the
    standardised targets (what early stopping watches). ``train_accuracy``/``val_accuracy``
    hold the task's metric, named ``metric_name``: accuracy, or ``"R²"`` for regression.
    """

    train_loss: np.ndarray
    val_loss: np.ndarray
    train_accuracy: np.ndarray
    val_accuracy: np.ndarray
    best_epoch: int
    stopped_early: bool
    metric_name: str = "accuracy"

    @property
    def epochs_run(self) -> int:
        return int(self.train_loss.shape[0])

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "train_loss": self.train_loss.tolist(),
            "val_loss": self.val_loss.tolist(),
            "train_accuracy": self.train_accuracy.tolist(),
            "val_accuracy": self.val_accuracy.tolist(),
            "best_epoch": self.best_epoch,
            "stopped_early": self.stopped_early,
        }
        if self.metric_name != "accuracy":  # left out otherwise, so older readers still read the history
            d["metric_name"] = self.metric_name
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> History:
        return cls(
            train_loss=np.asarray(d["train_loss"], np.float64),
            val_loss=np.asarray(d["val_loss"], np.float64),
            train_accuracy=np.asarray(d["train_accuracy"], np.float64),
            val_accuracy=np.asarray(d["val_accuracy"], np.float64),
            best_epoch=int(d["best_epoch"]),
            stopped_early=bool(d["stopped_early"]),
            metric_name=str(d.get("metric_name", "accuracy")),
        )


@dataclass(frozen=True)
class EvalData:
    """Model-ready evaluation data: ``X`` ``(n, d)`` float32 already standardised, ``y`` ``(n,)``:
    int64 class indices, or float32 targets for regression (:meth:`from_arrays` keeps
    continuous targets as they are).

    ``train_X``/``train_y`` are the training split when known (for pruning fine-tuning).
    """

    name: str
    split: str
    X: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...]
    image_shape: tuple[int, int] | None = None
    train_X: np.ndarray | None = None
    train_y: np.ndarray | None = None

    @classmethod
    def from_arrays(
        cls,
        X: np.ndarray,
        y: np.ndarray,
        *,
        name: str = "data",
        feature_names: tuple[str, ...] | None = None,
        class_names: tuple[str, ...] | None = None,
        image_shape: tuple[int, int] | None = None,
    ) -> EvalData:
        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y)
        # Whole numbers are class labels; anything else is a regression target, never cast to a class.
        continuous = y.dtype.kind == "f" and not bool(np.all(np.isfinite(y) & (y == np.round(y))))
        y = y.astype(np.float32) if continuous else y.astype(np.int64)
        if X.ndim != 2 or y.shape != (X.shape[0],):
            raise InspectorError(f"expected X (n, d) and y (n,), got {X.shape} and {y.shape}")
        n_classes = 0 if continuous else (int(y.max()) + 1 if y.size else 0)
        return cls(
            name,
            "all",
            X,
            y,
            feature_names or tuple(f"x{i}" for i in range(X.shape[1])),
            class_names or tuple(str(c) for c in range(n_classes)),
            image_shape,
        )
