"""The data an analysis looks at: an evaluation split, standardised as in training, and the
streaming evaluation of a model on any data (:func:`evaluate_model`, through the one evaluator of
:mod:`inspector.core.evaluator`). :class:`EvalData` lives in :mod:`inspector.records` and
:class:`Evaluation` in :mod:`inspector.core.evaluator`; both are re-exported here."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from torch import nn

from inspector.analysis.guard import inspecting
from inspector.analysis.inputs import as_source, floating_dtype
from inspector.analysis.parameters import linear_layers
from inspector.analysis.task import Task, make_task
from inspector.checkpoints import Checkpoint
from inspector.core.dense import in_features, out_features
from inspector.core.evaluator import Evaluation, evaluate
from inspector.data import (
    BUILTIN_DATASETS,
    Dataset,
    SplitSpec,
    Standardizer,
    load_dataset,
    preview_names,
    split_dataset,
)
from inspector.errors import InspectorError
from inspector.records import EvalData  # re-exported: where callers have always found it

__all__ = ["EvalData", "Evaluation", "eval_data_for", "evaluate_model"]


def _model_class_names(ckpt: Checkpoint, n_outputs: int) -> tuple[str, ...]:
    """The name of each output; a model that stores none has classes ``"0"`` .. ``"n_outputs - 1"``."""
    names = ckpt.dataset.class_names if ckpt.dataset is not None else ()
    if not names:
        return tuple(str(c) for c in range(n_outputs))
    if len(names) != n_outputs or len(set(names)) != len(names):
        raise InspectorError(
            f"{ckpt.source}: stores {len(names)} class names for {n_outputs} outputs; the checkpoint is "
            "inconsistent, so its outputs cannot be matched to labels"
        )
    return tuple(names)


def _label_map(ckpt: Checkpoint, dataset: Dataset, class_names: tuple[str, ...]) -> np.ndarray:
    """``(dataset.n_classes,)``: the model output each of the data's classes is, matched by name.

    Data classes are numbered by the labels that occur in that file, so an index
    means nothing to the model; only the name does (a file holding only the
    labels "cat" and "fish" of a cat/dog/fish model must score "fish" as output 2).
    """
    output = {name: i for i, name in enumerate(class_names)}
    unknown = [name for name in dataset.class_names if name not in output]
    if unknown:
        stored = "" if ckpt.dataset and ckpt.dataset.class_names else " (it stores no class names, so they are 0..n-1)"
        raise InspectorError(
            f"dataset {dataset.name!r} has labels the model was not trained on: {preview_names(unknown)}; "
            f"{ckpt.source} knows {preview_names(list(class_names))}{stored}"
        )
    return np.array([output[name] for name in dataset.class_names], dtype=np.int64)


def _model_columns(ckpt: Checkpoint, dataset: Dataset, n_inputs: int) -> np.ndarray:
    """``(n_inputs,)``: the data column for each model input.

    When the data holds exactly the columns the model was trained on, in another
    order, they are put in the model's order; columns named unlike the model's
    are refused rather than fed positionally to the wrong inputs.
    """
    if dataset.n_features != n_inputs:
        raise InspectorError(
            f"dataset {dataset.name!r} has {dataset.n_features} features but {ckpt.source} expects "
            f"{n_inputs} inputs; pass --data with the features the model was trained on"
        )
    trained = ckpt.dataset.feature_names if ckpt.dataset is not None else ()
    given = dataset.feature_names
    positional = np.arange(n_inputs)
    if len(trained) != n_inputs or tuple(trained) == tuple(given):
        return positional
    column = {name: j for j, name in enumerate(given)}
    missing = [name for name in trained if name not in column]
    if not missing:
        return np.array([column[name] for name in trained], dtype=np.int64)
    if len(missing) == len(trained):  # no name in common (e.g. an .npz without names): by position
        return positional
    raise InspectorError(
        f"dataset {dataset.name!r} lacks columns the model was trained on: {preview_names(missing)}; "
        f"pass --data with the columns of {ckpt.source}'s training data"
    )


def _for_model(ckpt: Checkpoint, dataset: Dataset, n_inputs: int, n_outputs: int) -> Dataset:
    """``dataset`` with its columns in the model's input order and its labels as the model's output indices
    (a regression model's targets as they are, one column per output)."""
    columns = _model_columns(ckpt, dataset, n_inputs)
    if ckpt.task == "regression":
        n_targets = 1 if dataset.y.ndim == 1 else int(dataset.y.shape[1])
        if n_targets != n_outputs:
            raise InspectorError(
                f"dataset {dataset.name!r} has {n_targets} regression target{'s' if n_targets != 1 else ''} but "
                f"{ckpt.source} predicts {n_outputs}; pass --data with the targets the model was trained on"
            )
        feature_names = tuple(dataset.feature_names[j] for j in columns)
        return dataclasses.replace(dataset, X=dataset.X[:, columns], feature_names=feature_names)
    class_names = _model_class_names(ckpt, n_outputs)
    label_map = _label_map(ckpt, dataset, class_names)
    feature_names = tuple(dataset.feature_names[j] for j in columns)
    return dataclasses.replace(
        dataset, X=dataset.X[:, columns], y=label_map[dataset.y], feature_names=feature_names, class_names=class_names
    )


def eval_data_for(ckpt: Checkpoint, spec: str | None = None, *, label_column: str | None = None) -> EvalData | None:
    """The evaluation data for ``ckpt``.

    With no ``spec``, a model trained on a built-in dataset gets that dataset's
    test split, recreated from the stored seed and fractions; otherwise ``None``
    (weight-only analysis). A built-in ``spec`` gives its test split; a file
    gives all its rows. Stored standardisation statistics are applied when the
    checkpoint has them. A regression checkpoint's data has float targets ``y`` ``(n,)``
    (``(n, k)`` for ``k`` targets), so an analysis of it is a regression.
    """
    layers = linear_layers(ckpt.model)
    if not layers:
        raise InspectorError(f"{ckpt.source}: the model has no nn.Linear layers")
    n_inputs, n_outputs = in_features(layers[0][1]), out_features(layers[-1][1])
    if spec is None:
        if ckpt.dataset is None or ckpt.dataset.name not in BUILTIN_DATASETS:
            return None
        spec = ckpt.dataset.name
    loaded = load_dataset(spec, label_column=label_column, n_features=n_inputs, task=ckpt.task)
    dataset = _for_model(ckpt, loaded, n_inputs, n_outputs)
    if spec in BUILTIN_DATASETS:
        split_spec = ckpt.dataset.split if ckpt.dataset and ckpt.dataset.name == spec else SplitSpec()
        # split as in training: the stratification depends on the file's own classes
        splits = split_dataset(loaded, split_spec)
        standardizer = ckpt.standardizer or Standardizer.fit(dataset.X[splits.train_index])
        raw = dataset.X
        return EvalData(
            dataset.name,
            "test",
            standardizer.transform(raw[splits.test_index]),
            dataset.y[splits.test_index],
            dataset.feature_names,
            dataset.class_names,
            dataset.image_shape,
            standardizer.transform(raw[splits.train_index]),
            dataset.y[splits.train_index],
        )
    X = ckpt.standardizer.transform(dataset.X) if ckpt.standardizer else dataset.X
    return EvalData(dataset.name, "all", X, dataset.y, dataset.feature_names, dataset.class_names, dataset.image_shape)


def evaluate_model(model: nn.Module, data: Any, task: Any = None, *, batch_size: int = 1024) -> Evaluation:
    """Evaluate ``model`` on ``data`` in one streamed pass (batch by batch, nothing gathered).

    ``data``: anything :func:`~inspector.analysis.inputs.as_source` accepts (an :class:`EvalData`,
    ``(X, y)``, a ``Dataset``, a ``DataLoader``, a list of batches). ``task``: a
    :class:`~inspector.analysis.task.Task`, a task name or ``None`` (inferred from the labels).
    The model is left as it was (eval mode inside, ``training`` restored).
    """
    device = next(model.parameters()).device
    source = as_source(data, batch_size=batch_size, device=device, dtype=floating_dtype(model))
    resolved = task if isinstance(task, Task) else make_task(task, source.first())
    with inspecting(model):
        return evaluate(model, source, resolved)
