"""The data an analysis looks at: an evaluation split, standardised as in training."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inspector.checkpoints import Checkpoint
from inspector.data import BUILTIN_DATASETS, Dataset, SplitSpec, load_dataset, split_dataset
from inspector.errors import InspectorError


@dataclass(frozen=True)
class EvalData:
    """Model-ready evaluation data: ``X`` ``(n, d)`` float32 already standardised, ``y`` ``(n,)`` int64.

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
    def from_arrays(cls, X: np.ndarray, y: np.ndarray, *, name: str = "data",
                    feature_names: tuple[str, ...] | None = None, class_names: tuple[str, ...] | None = None,
                    image_shape: tuple[int, int] | None = None) -> EvalData:
        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y, dtype=np.int64)
        if X.ndim != 2 or y.shape != (X.shape[0],):
            raise InspectorError(f"expected X (n, d) and y (n,), got {X.shape} and {y.shape}")
        n_classes = int(y.max()) + 1 if y.size else 0
        return cls(name, "all", X, y,
                   feature_names or tuple(f"x{i}" for i in range(X.shape[1])),
                   class_names or tuple(str(c) for c in range(n_classes)), image_shape)


def _check(ckpt: Checkpoint, dataset: Dataset, n_inputs: int, n_outputs: int) -> None:
    if dataset.n_features != n_inputs:
        raise InspectorError(
            f"dataset {dataset.name!r} has {dataset.n_features} features but {ckpt.source} expects "
            f"{n_inputs} inputs; pass --data with the features the model was trained on"
        )
    if dataset.n_classes > n_outputs:
        raise InspectorError(
            f"dataset {dataset.name!r} has {dataset.n_classes} classes but {ckpt.source} has only "
            f"{n_outputs} outputs; pass --data with the labels the model was trained on"
        )


def eval_data_for(ckpt: Checkpoint, spec: str | None = None, *, label_column: str | None = None) -> EvalData | None:
    """The evaluation data for ``ckpt``.

    With no ``spec``, a model trained on a built-in dataset gets that dataset's
    test split, recreated from the stored seed and fractions; otherwise ``None``
    (weight-only analysis). A built-in ``spec`` gives its test split; a file
    gives all its rows. Stored standardisation statistics are applied when the
    checkpoint has them.
    """
    from inspector.analysis.parameters import linear_layers

    layers = linear_layers(ckpt.model)
    if not layers:
        raise InspectorError(f"{ckpt.source}: the model has no nn.Linear layers")
    n_inputs, n_outputs = layers[0][1].in_features, layers[-1][1].out_features
    if spec is None:
        if ckpt.dataset is None or ckpt.dataset.name not in BUILTIN_DATASETS:
            return None
        spec = ckpt.dataset.name
    dataset = load_dataset(spec, label_column=label_column, n_features=n_inputs)
    _check(ckpt, dataset, n_inputs, n_outputs)
    if spec in BUILTIN_DATASETS:
        split_spec = ckpt.dataset.split if ckpt.dataset and ckpt.dataset.name == spec else SplitSpec()
        splits = split_dataset(dataset, split_spec)
        standardizer = ckpt.standardizer or splits.standardizer
        raw = dataset.X
        return EvalData(
            dataset.name, "test", standardizer.transform(raw[splits.test_index]), dataset.y[splits.test_index],
            dataset.feature_names, dataset.class_names, dataset.image_shape,
            standardizer.transform(raw[splits.train_index]), dataset.y[splits.train_index],
        )
    X = ckpt.standardizer.transform(dataset.X) if ckpt.standardizer else dataset.X
    return EvalData(dataset.name, "all", X, dataset.y, dataset.feature_names, dataset.class_names,
                    dataset.image_shape)
