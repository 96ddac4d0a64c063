"""Datasets with no downloads, deterministic splits and train-only standardisation.

* ``digits``: the 8x8 handwritten digits that scikit-learn ships (1797 x 64, 10 classes).
* ``synthetic``: a task with planted ground truth: the label depends only on
  :attr:`PlantedTruth.informative_features`.
* ``synthetic-regression``: ``y = 3 x2 - 2 x5 + noise`` on 8 standard normal features.
* user files: ``.npz`` (``X``, ``y``, optional ``feature_names``) and ``.csv``.

A dataset's ``task`` is ``classification`` (``y`` holds class indices) or ``regression``
(``y`` holds float targets, one column per target); loaders take ``task="auto"`` to
infer it: labels that are numbers and not all whole numbers are regression targets.
"""

from __future__ import annotations

import csv
import math
import os
import zipfile
import zlib
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inspector.errors import InspectorError
from inspector.formats import MAX_DIM, zip_read_error
from inspector.records import MAX_SEED, check_seed  # re-exported: where callers have always found them

BUILTIN_DATASETS = ("digits", "synthetic", "synthetic-regression")
DATA_TASKS = ("classification", "regression")


def finite_float32(values: np.ndarray, describe: Callable[[int, int], str]) -> np.ndarray:
    """``values`` ``(n, d)`` as float32, or an error naming the first cell that is not finite there.

    A float64 value beyond float32's range becomes Inf in the cast, so the check runs after it.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.asarray(values).astype(np.float32)
    bad = ~np.isfinite(out)
    if bad.any():
        i, j = (int(k) for k in np.argwhere(bad)[0])
        raise InspectorError(describe(i, j))
    return out


@dataclass(frozen=True)
class PlantedTruth:
    """What generated a synthetic label, so tests and users can check an analysis."""

    informative_features: tuple[int, ...]
    description: str


@dataclass(frozen=True)
class Dataset:
    """A labelled table: ``X`` is ``(n_samples, n_features)`` float32.

    Classification: ``y`` ``(n_samples,)`` int64 indices into ``class_names``.
    Regression: ``y`` float32, ``(n_samples,)`` for one target or ``(n_samples, k)`` for
    ``k`` targets, named by ``target_names``; ``class_names`` is empty.
    """

    name: str
    X: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...]
    image_shape: tuple[int, int] | None = None
    planted: PlantedTruth | None = None
    task: str = "classification"
    target_names: tuple[str, ...] = ()

    @property
    def n_samples(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def n_outputs(self) -> int:
        """The model outputs this data needs: one logit per class, or one value per target."""
        return len(self.target_names) if self.task == "regression" else self.n_classes


@dataclass(frozen=True)
class Standardizer:
    """Per-feature ``(x - mean) / scale``, fitted on the training split only.

    Constant features (digits has pixels that are always 0) get ``scale = 1``.
    """

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, X: np.ndarray) -> Standardizer:
        # float64: a float32 sum of large features (1e37 x 100 rows) overflows to Inf
        # and would turn every standardised value into NaN.
        X64 = np.asarray(X, dtype=np.float64)
        mean = X64.mean(axis=0).astype(np.float32)
        scale = X64.std(axis=0).astype(np.float32)
        scale[scale < 1e-8] = 1.0
        return cls(mean=mean, scale=scale)

    def transform(self, X: np.ndarray) -> np.ndarray:
        """``(X - mean) / scale`` as float32; refuses values that standardise beyond float32's range."""
        if X.shape[1] != self.mean.shape[0]:
            raise InspectorError(
                f"data has {X.shape[1]} features but the model was trained on "
                f"{self.mean.shape[0]}; use the same feature columns as in training"
            )
        with np.errstate(over="ignore", invalid="ignore"):
            shifted = (np.asarray(X, np.float64) - self.mean) / self.scale
        return finite_float32(
            shifted,
            lambda i, j: (
                f"row {i}, feature {j}: {float(X[i, j])!r} is too far from the training mean {self.mean[j]:.4g} "
                f"(scale {self.scale[j]:.4g}) to standardise; check the data's units"
            ),
        )

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Standardizer:
        return cls(np.asarray(d["mean"], np.float32), np.asarray(d["scale"], np.float32))


@dataclass(frozen=True)
class SplitSpec:
    """How a dataset was split, stored with the checkpoint so the split can be recreated."""

    seed: int = 0
    val_fraction: float = 0.15
    test_fraction: float = 0.2

    def check(self) -> SplitSpec:
        """``self`` when it can split a dataset: fractions in (0, 1) summing below 1, seed in range."""
        if not (
            0 < self.test_fraction < 1 and 0 < self.val_fraction < 1 and self.val_fraction + self.test_fraction < 1
        ):
            raise InspectorError("validation and test fractions must be in (0, 1) and sum to less than 1")
        check_seed(self.seed)
        return self


@dataclass(frozen=True)
class Splits:
    """Standardised train/validation/test arrays and the standardiser fitted on train."""

    dataset: Dataset
    spec: SplitSpec
    standardizer: Standardizer
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    train_index: np.ndarray = field(repr=False)
    val_index: np.ndarray = field(repr=False)
    test_index: np.ndarray = field(repr=False)


def split_dataset(dataset: Dataset, spec: SplitSpec | None = None) -> Splits:
    """Split ``dataset`` deterministically from ``spec.seed`` (stratified by class when possible;
    regression targets are split at random)."""
    from sklearn.model_selection import train_test_split

    spec = spec or SplitSpec()
    regression = dataset.task == "regression"
    # Only here, not in the loaders: evaluating a model on rows of one class is fine, training is not.
    if not regression and dataset.n_classes < 2:
        classes = ", ".join(repr(c) for c in dataset.class_names) or "none"
        raise InspectorError(
            f"dataset {dataset.name!r} has {dataset.n_classes} class ({classes}); "
            "a classifier needs at least two classes"
        )
    spec.check()
    n = dataset.n_samples
    index = np.arange(n)
    n_test = max(1, round(n * spec.test_fraction))
    n_val = max(1, round(n * spec.val_fraction))
    if n - n_test - n_val < 1:
        raise InspectorError(f"dataset {dataset.name!r} has only {n} samples; too few to split")
    stratify = (
        not regression
        and np.bincount(dataset.y, minlength=dataset.n_classes).min() >= 3
        and min(n_test, n_val) >= dataset.n_classes
    )
    rest, test = train_test_split(
        index,
        test_size=n_test,
        random_state=spec.seed,
        stratify=dataset.y if stratify else None,
    )
    train, val = train_test_split(
        rest,
        test_size=n_val,
        random_state=(spec.seed + 1) % (MAX_SEED + 1),  # sklearn takes seeds below 2**32
        stratify=dataset.y[rest] if stratify else None,
    )
    train, val, test = np.sort(train), np.sort(val), np.sort(test)
    standardizer = Standardizer.fit(dataset.X[train])
    return Splits(
        dataset=dataset,
        spec=spec,
        standardizer=standardizer,
        X_train=standardizer.transform(dataset.X[train]),
        y_train=dataset.y[train],
        X_val=standardizer.transform(dataset.X[val]),
        y_val=dataset.y[val],
        X_test=standardizer.transform(dataset.X[test]),
        y_test=dataset.y[test],
        train_index=train,
        val_index=val,
        test_index=test,
    )


# --------------------------------------------------------------------------- #
# Built-in datasets
# --------------------------------------------------------------------------- #


def load_digits() -> Dataset:
    """scikit-learn's bundled 8x8 digits: 1797 samples, 64 pixel features (0..16), 10 classes."""
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    return Dataset(
        name="digits",
        X=bunch.data.astype(np.float32),
        y=bunch.target.astype(np.int64),
        feature_names=tuple(f"pixel_{r}_{c}" for r in range(8) for c in range(8)),
        class_names=tuple(str(d) for d in range(10)),
        image_shape=(8, 8),
    )


def make_synthetic(
    n_samples: int = 2000,
    n_features: int = 10,
    informative: tuple[int, ...] = (2, 5),
    n_classes: int = 2,
    seed: int = 0,
) -> Dataset:
    """Gaussian features whose label depends only on the ``informative`` columns.

    ``y = argmax(X[:, informative] @ W)`` for a fixed random ``W`` of shape
    ``(len(informative), n_classes)``; for two classes that is the sign of
    ``X[:, informative] @ (W[:, 1] - W[:, 0])``. Every other column is pure noise,
    so a faithful importance method must rank the informative columns on top.
    """
    informative = tuple(int(i) for i in informative)
    if not informative or any(not 0 <= i < n_features for i in informative):
        raise InspectorError(f"informative features {informative} must lie in [0, {n_features})")
    if len(set(informative)) != len(informative):
        raise InspectorError(f"informative features {informative} repeat a column")
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, n_features)).astype(np.float32)
    W = rng.standard_normal((len(informative), n_classes))
    if n_classes == 2:
        # Equal weight on every informative feature, so none can be ignored.
        W = np.stack([np.zeros(len(informative)), np.ones(len(informative))], axis=1)
    y = np.argmax(X[:, list(informative)] @ W, axis=1).astype(np.int64)
    names = ", ".join(f"x{i}" for i in informative)
    return Dataset(
        name="synthetic",
        X=X,
        y=y,
        feature_names=tuple(f"x{i}" for i in range(n_features)),
        class_names=tuple(str(c) for c in range(n_classes)),
        planted=PlantedTruth(
            informative_features=informative,
            description=f"label = argmax(W^T [{names}]); all other features are noise",
        ),
    )


SYNTHETIC_REGRESSION_WEIGHTS = {2: 3.0, 5: -2.0}  # y = 3 x2 - 2 x5 + noise


def make_synthetic_regression(n_samples: int = 2000, n_features: int = 8, noise: float = 0.1, seed: int = 0) -> Dataset:
    """Standard normal features ``X`` ``(n, 8)`` and ``y = 3 x2 - 2 x5 + noise`` ``(n,)`` float32.

    ``noise`` is the standard deviation of Gaussian noise, so the best possible R² is
    ``13 / (13 + noise**2)`` (0.9992 for the default 0.1): every other feature is irrelevant.
    """
    if n_features <= max(SYNTHETIC_REGRESSION_WEIGHTS):
        raise InspectorError(f"synthetic regression needs at least {max(SYNTHETIC_REGRESSION_WEIGHTS) + 1} features")
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, n_features)).astype(np.float32)
    y = sum(w * X[:, j].astype(np.float64) for j, w in SYNTHETIC_REGRESSION_WEIGHTS.items())
    y = (y + noise * rng.standard_normal(n_samples)).astype(np.float32)
    return Dataset(
        name="synthetic-regression",
        X=X,
        y=y,
        feature_names=tuple(f"x{i}" for i in range(n_features)),
        class_names=(),
        planted=PlantedTruth(
            informative_features=tuple(SYNTHETIC_REGRESSION_WEIGHTS),
            description=f"y = 3 x2 - 2 x5 + N(0, {noise:g}^2); all other features are noise",
        ),
        task="regression",
        target_names=("y",),
    )


# --------------------------------------------------------------------------- #
# User files
# --------------------------------------------------------------------------- #

# Deflate cannot expand a byte to more than 1032 (RFC 1951: 258-byte matches from
# 2-bit codes), so a member's declared size is checked against its compressed
# bytes before anything is allocated.
_DEFLATE_MAX_RATIO = 1032
_NPZ_KEYS = ("X", "y", "feature_names")
_MISSING_LABELS = frozenset({"", "nan"})
_FLOAT32_MAX = float(np.finfo(np.float32).max)
REGRESSION_HINT = 'for a continuous target pass --task regression (task="regression" from Python)'
# Whole-number labels with at least this many classes, and more classes than half the samples
# (fewer than two samples per class on average), are a continuous target written as integers
# (prices, counts, ids): no classifier can learn classes it sees about once.
CONTINUOUS_MIN_CLASSES = 20


def check_classification_labels(dataset: Dataset, source: str) -> None:
    """Refuse labels that are a continuous target rather than classes (see :data:`CONTINUOUS_MIN_CLASSES`)."""
    n, k = dataset.n_samples, dataset.n_classes
    if k >= CONTINUOUS_MIN_CLASSES and 2 * k > n and all(_parse_number(c) is not None for c in dataset.class_names):
        raise InspectorError(
            f"{source}: the labels look continuous ({k:,} distinct numbers in {n:,} rows, fewer than two samples "
            f"per class), too many classes for a classifier; {REGRESSION_HINT}"
        )


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def preview_names(items: Sequence[str], limit: int = 8) -> str:
    """``'a', 'b' and 3 more``: a list of names short enough for a one-line message."""
    shown = ", ".join(repr(i) for i in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _short(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _parse_number(text: str) -> int | float | None:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return None


def _encode_numbers(
    values: Sequence[int | float] | np.ndarray, path: Path, where: Callable[[int], str]
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Whole-number labels as indices into their sorted distinct values (never as indices themselves)."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "iu":
        classes, y = np.unique(values, return_inverse=True)
        return y.astype(np.int64), tuple(str(int(c)) for c in classes)
    whole: list[int] = []
    for i, v in enumerate(values.tolist() if isinstance(values, np.ndarray) else values):
        if isinstance(v, float):
            if not math.isfinite(v):
                raise InspectorError(f"{path}: the label at {where(i)} is {v}; every sample needs a class label")
            if not v.is_integer():
                raise InspectorError(
                    f"{path}: the labels are continuous (e.g. {v!r} at {where(i)}), and class labels must be "
                    f"names or whole numbers; {REGRESSION_HINT}"
                )
            v = int(v)
        whole.append(v)
    distinct = sorted(set(whole))
    code = {c: i for i, c in enumerate(distinct)}
    return np.fromiter((code[v] for v in whole), np.int64, len(whole)), tuple(str(c) for c in distinct)


def _encode_labels(
    raw: np.ndarray | Sequence[str], path: Path, where: Callable[[int], str]
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Class indices ``(n,)`` and class names for the labels ``raw``.

    The classes are the distinct labels that occur, sorted numerically when every
    label is a number (``"9"`` before ``"10"``; ``1000`` and ``2000`` are two classes
    named ``"1000"`` and ``"2000"``), else as text. Numbers are named by their integer
    value, so ``1``, ``1.0`` and ``"01"`` are one class ``"1"`` in CSV and .npz files alike.
    """
    if isinstance(raw, np.ndarray):
        if raw.ndim != 1:
            raise InspectorError(f"{path}: labels must be one-dimensional, got shape {raw.shape}")
        kind = raw.dtype.kind
        if kind in "iuf":
            return _encode_numbers(raw, path, where)
        if kind == "S":
            try:
                raw = np.char.decode(raw, "utf-8")
            except UnicodeDecodeError:
                raise InspectorError(f"{path}: the labels are bytes that are not UTF-8 text") from None
        elif kind not in "Ub":
            raise InspectorError(f"{path}: labels must be numbers or text, got dtype {raw.dtype}")
        raw = [str(v) for v in raw.tolist()]
    text = [t.strip() for t in raw]
    for i, t in enumerate(text):
        if t.lower() in _MISSING_LABELS:
            raise InspectorError(
                f"{path}: the label at {where(i)} is {repr(t) if t else 'blank'}; every sample needs a class label"
            )
    numbers = [_parse_number(t) for t in text]
    if all(n is not None for n in numbers):
        y, names = _encode_numbers(numbers, path, where)  # type: ignore[arg-type]
    else:
        classes = sorted(set(text))
        code = {c: i for i, c in enumerate(classes)}
        y, names = np.fromiter((code[t] for t in text), np.int64, len(text)), tuple(classes)
    return y, names


def _looks_continuous(raw: np.ndarray | Sequence[str]) -> bool:
    """Whether labels are numbers and some (finite) one is not a whole number: a regression target."""
    if isinstance(raw, np.ndarray) and raw.dtype.kind in "iub":
        return False
    if isinstance(raw, np.ndarray) and raw.dtype.kind == "f":
        values = raw[np.isfinite(raw)]
        return bool(np.any(values != np.round(values)))
    if isinstance(raw, np.ndarray) and raw.dtype.kind not in "SU":
        return False
    texts = [(t.decode("utf-8", "replace") if isinstance(t, bytes) else str(t)).strip() for t in np.ravel(raw)]
    numbers = [_parse_number(t) for t in texts if t.lower() not in _MISSING_LABELS]
    if not numbers or any(v is None for v in numbers):
        return False
    return any(isinstance(v, float) and math.isfinite(v) and not v.is_integer() for v in numbers)


def resolve_task(task: str, raw: np.ndarray | Sequence[str]) -> str:
    """``task`` (``classification`` or ``regression``), or for ``"auto"`` the task the labels ``raw`` imply:
    numbers that are not all whole numbers are regression targets; anything else is class labels."""
    if task not in ("auto", *DATA_TASKS):
        raise InspectorError(f"unknown task {task!r}; choose classification or regression")
    if task != "auto":
        return task
    return "regression" if _looks_continuous(raw) else "classification"


def _regression_targets(raw: np.ndarray | Sequence[str], path: Path, where: Callable[[int], str]) -> np.ndarray:
    """Float32 targets ``(n,)`` or ``(n, k)`` from numeric labels; a missing, non-numeric or
    non-finite target is an error naming it (the tool does not impute)."""
    if isinstance(raw, np.ndarray) and raw.dtype.kind in "iuf":
        values = np.asarray(raw, dtype=np.float64)
    elif isinstance(raw, np.ndarray) and raw.dtype.kind not in "SU":
        raise InspectorError(f"{path}: regression targets must be numbers, got dtype {raw.dtype}")
    else:
        flat = np.ravel(raw) if isinstance(raw, np.ndarray) else list(raw)
        parsed = np.empty(len(flat), dtype=np.float64)
        for i, item in enumerate(flat):
            text = (item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)).strip()
            try:
                parsed[i] = float(text)
            except ValueError:
                what = "blank" if not text else f"{_short(text)}, not a number"
                row = i // (raw.shape[1] if isinstance(raw, np.ndarray) and raw.ndim == 2 else 1)
                raise InspectorError(
                    f"{path}: the target at {where(row)} is {what}; regression targets must be numbers "
                    "(drop or impute the row)"
                ) from None
        values = parsed.reshape(np.shape(raw)) if isinstance(raw, np.ndarray) else parsed
    with np.errstate(over="ignore", invalid="ignore"):
        targets = values.astype(np.float32)
    bad = ~np.isfinite(targets)
    if bad.any():
        at = tuple(int(k) for k in np.argwhere(bad)[0])
        column = f" (target {at[1]})" if len(at) == 2 else ""
        raise InspectorError(
            f"{path}: the target at {where(at[0])}{column} is {values[at].item()!r}; regression targets must be "
            f"finite numbers within float32 range (|y| <= {_FLOAT32_MAX:.3g}): drop or impute the row"
        )
    return targets


def _finish(
    name: str,
    X: np.ndarray,
    raw_y: np.ndarray | Sequence[str],
    feature_names: tuple[str, ...],
    path: Path,
    n_features: int | None,
    *,
    cell: Callable[[int, int], str],
    where: Callable[[int], str],
    task: str = "classification",
    target_name: str = "y",
) -> Dataset:
    """Check ``X`` ``(n, d)`` and encode ``raw_y`` ``(n,)`` into a :class:`Dataset`: class labels, or
    for ``task`` ``regression`` float targets ``(n,)`` or ``(n, k)`` named ``target_name``
    (``target_name0`` ... for several). ``task`` ``auto`` infers it (:func:`resolve_task`).

    NaN, Inf and values beyond float32's range (which would become Inf) are
    refused, naming the first such cell: the tool does not impute.
    """
    if X.dtype.kind == "c":
        raise InspectorError(f"{path}: X is complex ({X.dtype}); give real-valued features")
    if X.dtype.kind not in "iufb":
        raise InspectorError(f"{path}: X must be numeric, got dtype {X.dtype}")
    if X.ndim != 2:
        raise InspectorError(f"{path}: X must be 2-D (samples x features), got shape {X.shape}")
    if X.shape[0] != len(raw_y):
        raise InspectorError(f"{path}: X has {X.shape[0]} rows but y has {len(raw_y)} labels")
    if X.shape[0] < 2:
        raise InspectorError(f"{path}: needs at least two samples, found {X.shape[0]}")
    if X.shape[1] < 1:
        raise InspectorError(f"{path}: has no feature columns; a dataset needs at least one besides the label")
    if len(feature_names) != X.shape[1]:
        raise InspectorError(f"{path}: feature_names has {len(feature_names)} entries but X has {X.shape[1]} columns")
    _check_feature_names(feature_names, path)
    if n_features is not None and X.shape[1] != n_features:
        raise InspectorError(
            f"{path}: has {X.shape[1]} features but the model expects {n_features}; "
            "pass the same feature columns the model was trained on"
        )
    X32 = finite_float32(
        X,
        lambda i, j: (
            f"{path}: {cell(i, j)} is {X[i, j].item()!r}; features must be finite numbers within float32 range "
            f"(|x| <= {_FLOAT32_MAX:.3g}): clean or impute them first"
        ),
    )
    if resolve_task(task, raw_y) == "regression":
        targets = _regression_targets(raw_y, path, where)
        if targets.ndim == 2 and targets.shape[1] == 0:
            raise InspectorError(f"{path}: y has no target columns")
        names = tuple(f"{target_name}{j}" for j in range(targets.shape[1])) if targets.ndim == 2 else (target_name,)
        return Dataset(name, X32, targets, feature_names, (), task="regression", target_names=names)
    y, class_names = _encode_labels(raw_y, path, where)
    return Dataset(name=name, X=X32, y=y, feature_names=feature_names, class_names=class_names)


def _check_feature_names(names: tuple[str, ...], path: Path, noun: str = "feature") -> None:
    # A repeated name is how a copied label column slips into the features unnoticed.
    seen: dict[str, int] = {}
    for j, name in enumerate(names):
        if name in seen:
            raise InspectorError(
                f"{path}: {noun} {name!r} appears twice (columns {seen[name] + 1} and {j + 1}); "
                "give every column a distinct name"
            )
        seen[name] = j


def _npy_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, key: str, disk_size: int) -> np.ndarray:
    """One array of an .npz, its header checked against the bytes present before reading it."""
    if info.compress_type == zipfile.ZIP_STORED:
        most = info.compress_size
    elif info.compress_type == zipfile.ZIP_DEFLATED:
        most = _DEFLATE_MAX_RATIO * info.compress_size + 1024
    else:
        raise InspectorError(f"{path}: array {key!r} uses an unsupported zip compression; save it with numpy.savez")
    if info.compress_size > disk_size or info.file_size > most:
        raise InspectorError(f"{path}: array {key!r} declares more bytes than the file holds; it is corrupt")
    with zf.open(info) as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise InspectorError(f"{path}: array {key!r} uses .npy format {version}; save it with numpy.savez")
        header_size = fh.tell()
    if dtype.hasobject:
        raise InspectorError(
            f"{path}: array {key!r} holds Python objects, which are not loaded for safety; "
            "save plain numeric or text arrays"
        )
    if any(d < 0 for d in shape):
        raise InspectorError(f"{path}: array {key!r} declares a negative shape {shape}; it is corrupt")
    if any(d > MAX_DIM for d in shape) or (math.prod(shape) == 0 and any(d > 0 for d in shape)):
        # an empty array holds no byte: nothing may be sized by its other dimension (feature names for 10^12 columns)
        raise InspectorError(
            f"{path}: array {key!r} declares shape {shape}: "
            + ("a dimension over 2^31" if any(d > MAX_DIM for d in shape) else "no element")
            + "; save the data with at least one sample and one feature"
        )
    declared = math.prod(shape) * dtype.itemsize
    present = info.file_size - header_size
    if declared > present:
        raise InspectorError(
            f"{path}: array {key!r} declares shape {shape} ({declared:,} bytes) but holds only "
            f"{max(present, 0):,} bytes; the file is truncated or corrupt"
        )
    with zf.open(info) as fh:
        return np.lib.format.read_array(fh, allow_pickle=False)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        disk_size = path.stat().st_size
        with zipfile.ZipFile(path) as zf:
            members = {info.filename[:-4]: info for info in zf.infolist() if info.filename.endswith(".npy")}
            if not {"X", "y"} <= members.keys():
                raise InspectorError(f"{path}: an .npz dataset needs arrays 'X' and 'y', found {sorted(members)}")
            return {key: _npy_member(zf, members[key], path, key, disk_size) for key in _NPZ_KEYS if key in members}
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        zlib.error,
        OSError,
        EOFError,
        ValueError,
        NotImplementedError,
        RuntimeError,
    ) as exc:
        # RuntimeError: an encrypted member; ValueError: a malformed .npy header or short data.
        if (corrupt := zip_read_error(path, exc)) is not None:  # an array read to its end fails its CRC
            raise corrupt from None
        raise InspectorError(f"{path}: not a readable .npz file, as numpy.savez writes ({_one_line(exc)})") from None


def load_npz(path: str | os.PathLike[str], n_features: int | None = None, *, task: str = "classification") -> Dataset:
    """Read ``X`` ``(n, d)``, ``y`` ``(n,)`` and optional ``feature_names`` ``(d,)`` from an .npz.

    ``y`` may hold numbers or text; see :func:`_encode_labels` for how classes are named.
    Regression (``task``, or ``"auto"`` and continuous ``y``) also takes ``y`` ``(n, k)``: ``k`` targets.
    """
    path = Path(path)
    arrays = _read_npz(path)
    X, y = arrays["X"], arrays["y"]
    if "feature_names" in arrays:
        names = arrays["feature_names"]
        if names.ndim != 1 or names.dtype.kind not in "USiu":
            raise InspectorError(
                f"{path}: feature_names must be a 1-D array of names, got {names.dtype} of shape {names.shape}"
            )
        if names.dtype.kind == "S":
            try:
                names = np.char.decode(names, "utf-8")
            except UnicodeDecodeError:
                raise InspectorError(f"{path}: feature_names are bytes that are not UTF-8 text") from None
        feature_names = tuple(str(n) for n in names.tolist())
    else:
        feature_names = tuple(f"x{i}" for i in range(X.shape[1] if X.ndim == 2 else 0))
    task = resolve_task(task, y)
    if y.ndim != 1 and not (task == "regression" and y.ndim == 2):
        several = " or (rows, targets) for regression" if task == "regression" else ""
        hint = "; for several regression targets pass --task regression" if y.ndim == 2 and task != "regression" else ""
        raise InspectorError(
            f"{path}: y must be one-dimensional (one label per row){several}, got shape {y.shape}{hint}"
        )
    return _finish(
        path.stem,
        X,
        y,
        feature_names,
        path,
        n_features,
        cell=lambda i, j: f"X[{i}, {j}]",
        where=lambda i: f"y[{i}]",
        task=task,
    )


def _label_index(header: list[str], label_column: str, path: Path) -> int:
    for j, name in enumerate(header):
        if not name:
            raise InspectorError(
                f"{path}: column {j + 1} of the header has no name; name every column "
                "(a pandas index? save with index=False)"
            )
    _check_feature_names(tuple(header), path, "column")
    label = label_column.strip()
    if label not in header:
        hint = ""
        if len(header) == 1 and any(sep in header[0] for sep in ";\t|"):
            hint = " (the file does not look comma-separated; save it as CSV with ',' between fields)"
        raise InspectorError(
            f"{path}: no column named {label!r}; columns are {', '.join(header[:20])}"
            f"{' ...' if len(header) > 20 else ''}{hint}"
        )
    return header.index(label)


def _feature_value(text: str, column: str, line: int, path: Path) -> float:
    try:
        return float(text)
    except ValueError:
        what = "an empty cell" if not text.strip() else f"a non-numeric value {_short(text)}"
        raise InspectorError(
            f"{path}: line {line} has {what} in feature column {column!r}; features must be numbers "
            "(fill in missing values, encode categories as numbers)"
        ) from None


def load_csv(
    path: str | os.PathLike[str],
    label_column: str | None,
    n_features: int | None = None,
    *,
    task: str = "classification",
) -> Dataset:
    """Read a CSV with a header row; ``label_column`` names the label (or the regression target,
    per ``task``: see :func:`resolve_task`), every other column is a feature.

    UTF-8 with or without a byte-order mark; blank lines are skipped. Every column
    needs a distinct name, every row as many fields as the header, every feature
    cell a finite number and every row a label.
    """
    path = Path(path)
    if not label_column:
        raise InspectorError(f"{path}: name the label column with --label-column")
    values = array("d")  # 8 bytes a cell while reading, not a Python list of strings
    labels: list[str] = []
    lines: list[int] = []
    reader = None
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if not header:
                raise InspectorError(f"{path}: empty file; a CSV dataset needs a header row")
            header = [h.strip() for h in header]
            label_at = _label_index(header, label_column, path)
            feature_at = [j for j in range(len(header)) if j != label_at]
            for row in reader:
                if not row:
                    continue
                if len(row) != len(header):
                    raise InspectorError(
                        f"{path}: line {reader.line_num} has {len(row)} fields, the header has {len(header)}"
                    )
                labels.append(row[label_at])
                lines.append(reader.line_num)
                values.extend(_feature_value(row[j], header[j], reader.line_num, path) for j in feature_at)
    except UnicodeDecodeError:
        raise InspectorError(f"{path}: not UTF-8 text; save the CSV as UTF-8") from None
    except csv.Error as exc:
        line = f" line {reader.line_num}:" if reader is not None else ""
        raise InspectorError(f"{path}:{line} not a well-formed CSV file ({_one_line(exc)})") from None
    except OSError as exc:
        raise InspectorError(f"{path}: cannot be read ({exc.strerror or _one_line(exc)})") from None
    feature_names = tuple(header[j] for j in feature_at)
    X = np.frombuffer(values, dtype=np.float64).reshape(len(labels), len(feature_names))
    return _finish(
        path.stem,
        X,
        labels,
        feature_names,
        path,
        n_features,
        cell=lambda i, j: f"column {feature_names[j]!r} on line {lines[i]}",
        where=lambda i: f"line {lines[i]}",
        task=task,
        target_name=header[label_at],
    )


def load_dataset(
    spec: str,
    *,
    label_column: str | None = None,
    n_features: int | None = None,
    task: str = "classification",
) -> Dataset:
    """``digits``, ``synthetic``, ``synthetic-regression`` or a path to an ``.npz`` / ``.csv`` file.

    ``task``: ``classification`` (labels are classes), ``regression`` (float targets) or
    ``auto`` (inferred from the labels, see :func:`resolve_task`); a built-in dataset has its own.
    """
    if spec in BUILTIN_DATASETS:
        dataset = {
            "digits": load_digits,
            "synthetic": make_synthetic,
            "synthetic-regression": make_synthetic_regression,
        }[spec]()
        if task not in ("auto", dataset.task):
            resolve_task(task, [])  # an unknown task name is its own error
            raise InspectorError(
                f"dataset {spec!r} is a {dataset.task} dataset, not {task}; leave out --task or pick another dataset"
            )
        return dataset
    path = Path(spec)
    if not path.exists():
        raise InspectorError(
            f"dataset {spec!r} is neither a built-in ({', '.join(BUILTIN_DATASETS)}) nor an existing file"
        )
    if path.is_dir():
        raise InspectorError(f"{path} is a directory; give an .npz or .csv file")
    if not path.is_file():  # a FIFO or device would block or never end
        raise InspectorError(f"{path} is not a regular file; give an .npz or .csv file")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return load_npz(path, n_features, task=task)
    if suffix == ".csv":
        return load_csv(path, label_column, n_features, task=task)
    raise InspectorError(f"{path}: unknown data format {suffix!r}; use .npz or .csv")
