"""Datasets with no downloads, deterministic splits and train-only standardisation.

* ``digits``: the 8x8 handwritten digits that scikit-learn ships (1797 x 64, 10 classes).
* ``synthetic``: a task with planted ground truth: the label depends only on
  :attr:`PlantedTruth.informative_features`.
* user files: ``.npz`` (``X``, ``y``, optional ``feature_names``) and ``.csv``.
"""

from __future__ import annotations

import csv
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inspector.errors import InspectorError

BUILTIN_DATASETS = ("digits", "synthetic")


@dataclass(frozen=True)
class PlantedTruth:
    """What generated a synthetic label, so tests and users can check an analysis."""

    informative_features: tuple[int, ...]
    description: str


@dataclass(frozen=True)
class Dataset:
    """A labelled table: ``X`` is ``(n_samples, n_features)`` float32, ``y`` ``(n_samples,)`` int64."""

    name: str
    X: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...]
    image_shape: tuple[int, int] | None = None
    planted: PlantedTruth | None = None

    @property
    def n_samples(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


@dataclass(frozen=True)
class Standardizer:
    """Per-feature ``(x - mean) / scale``, fitted on the training split only.

    Constant features (digits has pixels that are always 0) get ``scale = 1``.
    """

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, X: np.ndarray) -> Standardizer:
        mean = X.mean(axis=0).astype(np.float32)
        scale = X.std(axis=0).astype(np.float32)
        scale[scale < 1e-8] = 1.0
        return cls(mean=mean, scale=scale)

    def transform(self, X: np.ndarray) -> np.ndarray:
        if X.shape[1] != self.mean.shape[0]:
            raise InspectorError(
                f"data has {X.shape[1]} features but the model was trained on "
                f"{self.mean.shape[0]}; use the same feature columns as in training"
            )
        return ((X - self.mean) / self.scale).astype(np.float32)

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
    """Split ``dataset`` deterministically from ``spec.seed`` (stratified by class when possible)."""
    from sklearn.model_selection import train_test_split

    spec = spec or SplitSpec()
    if not (0 < spec.test_fraction < 1 and 0 < spec.val_fraction < 1
            and spec.val_fraction + spec.test_fraction < 1):
        raise InspectorError("validation and test fractions must be in (0, 1) and sum to less than 1")
    n = dataset.n_samples
    index = np.arange(n)
    counts = np.bincount(dataset.y, minlength=dataset.n_classes)
    n_test = max(1, round(n * spec.test_fraction))
    n_val = max(1, round(n * spec.val_fraction))
    if n - n_test - n_val < 1:
        raise InspectorError(f"dataset {dataset.name!r} has only {n} samples; too few to split")
    stratify = counts.min() >= 3 and min(n_test, n_val) >= dataset.n_classes
    rest, test = train_test_split(
        index, test_size=n_test, random_state=spec.seed,
        stratify=dataset.y if stratify else None,
    )
    train, val = train_test_split(
        rest, test_size=n_val, random_state=spec.seed + 1,
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


# --------------------------------------------------------------------------- #
# User files
# --------------------------------------------------------------------------- #


def _encode_labels(raw: np.ndarray, path: Path) -> tuple[np.ndarray, tuple[str, ...]]:
    if raw.ndim != 1:
        raise InspectorError(f"{path}: labels must be one-dimensional, got shape {raw.shape}")
    if np.issubdtype(raw.dtype, np.floating):
        if not np.all(np.isfinite(raw)) or not np.all(raw == np.round(raw)):
            raise InspectorError(f"{path}: labels must be whole class numbers or names, got floats")
        raw = raw.astype(np.int64)
    if np.issubdtype(raw.dtype, np.integer) and raw.min(initial=0) >= 0 and raw.size:
        n_classes = int(raw.max()) + 1
        return raw.astype(np.int64), tuple(str(c) for c in range(n_classes))
    classes, y = np.unique(raw.astype(str), return_inverse=True)
    return y.astype(np.int64), tuple(str(c) for c in classes)


def _finish(name: str, X: np.ndarray, raw_y: np.ndarray, feature_names: tuple[str, ...],
            path: Path, n_features: int | None) -> Dataset:
    if X.ndim != 2:
        raise InspectorError(f"{path}: X must be 2-D (samples x features), got shape {X.shape}")
    if X.shape[0] != raw_y.shape[0]:
        raise InspectorError(f"{path}: X has {X.shape[0]} rows but y has {raw_y.shape[0]} labels")
    if X.shape[0] < 2:
        raise InspectorError(f"{path}: needs at least two samples, found {X.shape[0]}")
    if not np.all(np.isfinite(X)):
        raise InspectorError(f"{path}: features contain NaN or Inf; clean or impute them first")
    if n_features is not None and X.shape[1] != n_features:
        raise InspectorError(
            f"{path}: has {X.shape[1]} features but the model expects {n_features}; "
            "pass the same feature columns the model was trained on"
        )
    y, class_names = _encode_labels(raw_y, path)
    return Dataset(name=name, X=X.astype(np.float32), y=y, feature_names=feature_names,
                   class_names=class_names)


def load_npz(path: str | os.PathLike[str], n_features: int | None = None) -> Dataset:
    """Read ``X`` ``(n, d)``, ``y`` ``(n,)`` and optional ``feature_names`` ``(d,)`` from an .npz."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = set(npz.files)
            if not {"X", "y"} <= keys:
                raise InspectorError(
                    f"{path}: an .npz dataset needs arrays 'X' and 'y', found {sorted(keys)}"
                )
            X = np.asarray(npz["X"])
            y = np.asarray(npz["y"])
            names = npz["feature_names"] if "feature_names" in keys else None
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise InspectorError(f"{path}: not a readable .npz file ({exc})") from None
    except ValueError as exc:
        raise InspectorError(
            f"{path}: holds Python objects, which are not loaded for safety; "
            f"save plain numeric arrays ({exc})"
        ) from None
    if not np.issubdtype(X.dtype, np.number):
        raise InspectorError(f"{path}: X must be numeric, got dtype {X.dtype}")
    feature_names = (
        tuple(str(n) for n in names) if names is not None
        else tuple(f"x{i}" for i in range(X.shape[1] if X.ndim == 2 else 0))
    )
    if X.ndim == 2 and len(feature_names) != X.shape[1]:
        raise InspectorError(
            f"{path}: feature_names has {len(feature_names)} entries but X has {X.shape[1]} columns"
        )
    return _finish(path.stem, X, y, feature_names, path, n_features)


def load_csv(
    path: str | os.PathLike[str], label_column: str | None, n_features: int | None = None
) -> Dataset:
    """Read a CSV with a header row; ``label_column`` names the label, every other column is a feature."""
    path = Path(path)
    if not label_column:
        raise InspectorError(f"{path}: name the label column with --label-column")
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            rows = [row for row in reader if row]
    except UnicodeDecodeError:
        raise InspectorError(f"{path}: not a UTF-8 text CSV file") from None
    if not header:
        raise InspectorError(f"{path}: empty file; a CSV dataset needs a header row")
    header = [h.strip() for h in header]
    if label_column not in header:
        raise InspectorError(
            f"{path}: no column named {label_column!r}; columns are {', '.join(header)}"
        )
    label_at = header.index(label_column)
    feature_names = tuple(h for i, h in enumerate(header) if i != label_at)
    X = np.empty((len(rows), len(feature_names)), dtype=np.float32)
    labels = []
    for r, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise InspectorError(f"{path}: line {r} has {len(row)} fields, the header has {len(header)}")
        labels.append(row[label_at].strip())
        values = [v for i, v in enumerate(row) if i != label_at]
        try:
            X[r - 2] = [float(v) for v in values]
        except ValueError:
            raise InspectorError(
                f"{path}: line {r} has a non-numeric feature value; "
                "encode categorical columns as numbers first"
            ) from None
    raw_y = np.asarray(labels)
    try:
        as_float = raw_y.astype(np.float64)
        if np.all(as_float == np.round(as_float)) and np.all(as_float >= 0):
            raw_y = as_float.astype(np.int64)
    except ValueError:
        pass
    return _finish(path.stem, X, raw_y, feature_names, path, n_features)


def load_dataset(
    spec: str,
    *,
    label_column: str | None = None,
    n_features: int | None = None,
) -> Dataset:
    """``digits``, ``synthetic`` or a path to an ``.npz`` / ``.csv`` file."""
    if spec == "digits":
        return load_digits()
    if spec == "synthetic":
        return make_synthetic()
    path = Path(spec)
    if not path.exists():
        raise InspectorError(
            f"dataset {spec!r} is neither a built-in ({', '.join(BUILTIN_DATASETS)}) nor an existing file"
        )
    if path.is_dir():
        raise InspectorError(f"{path} is a directory; give an .npz or .csv file")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return load_npz(path, n_features)
    if suffix == ".csv":
        return load_csv(path, label_column, n_features)
    raise InspectorError(f"{path}: unknown data format {suffix!r}; use .npz or .csv")
