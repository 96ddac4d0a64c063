"""What the model is asked to do: the target an attribution explains, the loss and the metric.

* ``classification``: explain the true class's logit; evaluate mean cross-entropy and accuracy.
* ``regression``: explain the output (the mean of the outputs for a model with several, one
  per target); evaluate mean squared error (over every output) and R² (``1 - SSE / SST``, SST
  about the evaluation data's own mean; with several targets the mean of each target's R², as
  scikit-learn's ``r2_score``).
* ``causal-lm``: explain the log-probability of the actual next tokens, summed per sequence over its
  predicted positions (labels ``(n, T)``: the ids, ``-100`` at padding); evaluate the mean token
  cross-entropy and the perplexity (lower is better).
* ``custom``: a user ``target(output, batch) -> (n,)`` scalar per sample; evaluated by an
  optional ``metric(output, batch)`` (per-sample ``(n,)`` values or a batch mean), else by
  the mean target. Both receive the user's own batch (:attr:`~inspector.core.batches.Batch.user`:
  the dict, ``(inputs, labels)`` tuple or tensor their loader yielded, on the model's device).

Classification ignores samples labelled ``-100`` (Hugging Face's ignore index, as
``cross_entropy``'s ``ignore_index``): they count in neither the loss nor the accuracy, and
an attribution explains their predicted class's logit instead.

The model's output may be a tensor, a tuple (its first element) or a Hugging Face
``ModelOutput`` / dict (its ``logits``, else its one tensor; several tensors and no ``logits``
need ``target=``): :func:`output_tensor`.
Chosen once per analysis (:func:`make_task`) and used by importance, pruning and
evaluation alike. The one evaluator (:class:`Scores`, :func:`evaluate_task`, float64 sums)
lives in :mod:`inspector.core.evaluator`; they are re-exported here.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from inspector.analysis.inputs import Batch
from inspector.core.evaluator import (
    IGNORE_INDEX,
    LOWER_IS_BETTER,
    Scores,
    class_numbers,
    evaluate_task,
    next_token_nll,
    output_tensor,
    per_sample,
    regression_output,
)
from inspector.errors import InspectorError

__all__ = [
    "IGNORE_INDEX",
    "LOWER_IS_BETTER",
    "TASKS",
    "Metric",
    "Scores",
    "Target",
    "Task",
    "evaluate_task",
    "forward_args",
    "make_task",
    "task_for_labels",
    "output_tensor",
]

TASKS = ("classification", "regression", "causal-lm", "custom")
# (model output, the user's batch as their loader yielded it: Batch.user) -> one value per sample
Target = Callable[[Any, Any], torch.Tensor]
Metric = Callable[[Any, Any], "torch.Tensor | float"]


@dataclass(frozen=True)
class Task:
    """One task; see the module docstring. ``metric_name``/``loss_name`` label the numbers in results."""

    kind: str
    metric_name: str
    loss_name: str | None
    target_fn: Target | None = field(default=None, compare=False)
    metric_fn: Metric | None = field(default=None, compare=False)

    @property
    def higher_is_better(self) -> bool:
        """Whether a larger metric is better (accuracy, R², a user metric); false for perplexity."""
        return self.metric_name not in LOWER_IS_BETTER

    def target(self, output: Any, batch: Batch) -> torch.Tensor:
        """``(n,)``: the scalar per sample an attribution explains."""
        if self.target_fn is not None:
            value = self.target_fn(output, batch.user)
            if not isinstance(value, torch.Tensor):
                raise InspectorError(
                    f"target= returned a {type(value).__name__}; it must return a tensor with one value per sample"
                )
            value = value.reshape(value.shape[0], -1) if value.dim() else value.reshape(1, 1)
            if value.shape != (len(batch), 1):
                raise InspectorError(
                    f"target= returned shape {tuple(value.shape)} for {len(batch)} samples; "
                    "it must return one scalar per sample, shape (n,)"
                )
            return value[:, 0]
        out = output_tensor(output)
        if self.kind == "causal-lm":
            return -next_token_nll(out, batch.labels).sum(dim=1)
        if self.kind == "classification":
            logits = per_sample(out, "classification")
            labels = class_numbers(logits, batch)
            labels = torch.where(labels == IGNORE_INDEX, logits.argmax(dim=1), labels)
            return logits.gather(1, labels[:, None]).squeeze(1)
        return regression_output(out)

    def explained(self, model: nn.Module, batch: Batch) -> Callable[..., torch.Tensor]:
        """``forward(inputs, *extra)`` returning the target ``(n, 1)``: what Captum attributes.

        The batch's other tensors (attention mask, labels) come back through Captum's
        ``additional_forward_args``, which it expands with the inputs; see :func:`forward_args`.
        """
        keys = tuple(batch.extra)

        def forward(inputs: torch.Tensor, *args: Any) -> torch.Tensor:
            extra = dict(zip(keys, args[: len(keys)]))
            labels = args[len(keys)] if len(args) > len(keys) else None
            mask = extra.get("attention_mask") if batch.mask is not None else None
            real = mask.bool() if isinstance(mask, torch.Tensor) else None
            part = dataclasses.replace(batch, inputs=inputs, labels=labels, extra=extra, mask=real)
            return self.target(part.call(model), part)[:, None]

        return forward

    def scores(self) -> Scores:
        """A fresh :class:`~inspector.core.evaluator.Scores` of this task (the one evaluator)."""
        return Scores(self)


def forward_args(batch: Batch) -> tuple[Any, ...]:
    """The batch's other forward arguments, then its labels: Captum's ``additional_forward_args``
    for :meth:`Task.explained`."""
    args = tuple(batch.extra.values())
    return (*args, batch.labels) if batch.labels is not None else args


def task_for_labels(labels: torch.Tensor) -> Task:
    """The built-in task ``labels`` mean: integer labels are classes (accuracy, cross-entropy), floating
    ones regression targets (R², MSE)."""
    if labels.is_floating_point():
        return Task("regression", "R²", "MSE")
    return Task("classification", "accuracy", "cross-entropy")


def make_task(
    task: str | None,
    first: Batch,
    *,
    target: Target | None = None,
    metric: Metric | None = None,
    metric_name: str | None = None,
    output: Any = None,
) -> Task:
    """The task for an analysis: ``task`` as given, or inferred from the first batch.

    A user ``target`` makes it ``custom`` unless ``task`` says otherwise. Otherwise
    inferred from the labels' dtype: integer labels mean classification, floating
    labels regression; no labels and no target is an error. ``output``, the model's
    output on ``first`` when known, lets an inferred regression on a model with several
    outputs say that float class numbers need ``task='classification'``.
    """
    if task is not None and task not in TASKS:
        raise InspectorError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    if task is None:
        if target is not None:
            task = "custom"
        elif first.labels is None:
            raise InspectorError(
                "the data has no labels; give (inputs, labels) batches, or pass "
                "target=lambda out, batch: ... to say what to explain"
            )
        else:
            task = "regression" if first.labels.is_floating_point() else "classification"
            if task == "regression" and output is not None:
                _check_inferred_regression(output, first.labels)
    if task == "custom" and target is None:
        raise InspectorError("task='custom' needs target=lambda out, batch: ... (one scalar per sample)")
    name = metric_name or ("metric" if metric is not None else None)
    if task == "classification":
        return Task(task, name or "accuracy", "cross-entropy", target, metric)
    if task == "regression":
        return Task(task, name or "R²", "MSE", target, metric)
    if task == "causal-lm":
        if first.labels is None or first.labels.dim() != 2:
            raise InspectorError(
                "task='causal-lm' needs labels (n, T): the input ids, -100 at padding, as the batch's 'labels'"
            )
        return Task(task, name or "perplexity", "cross-entropy", target, metric)
    return Task(task, name or "mean target", None, target, metric)


def _check_inferred_regression(output: Any, labels: torch.Tensor) -> None:
    """Float labels were taken as regression targets: refuse, with the way out, when the model has
    several outputs and the labels are whole numbers (class numbers, or one-hot rows, as floats)."""
    out = output_tensor(output)
    width = int(math.prod(out.shape[1:])) if out.dim() else 1
    if width == 1 or not bool(torch.all(labels == labels.round())):
        return
    one_hot = labels.dim() > 1 and math.prod(labels.shape[1:]) > 1
    raise InspectorError(
        f"the float labels were taken as regression targets, but the model has {width} outputs per sample; "
        "if they are class numbers pass task='classification' or convert them to integers"
        + (" (for one-hot labels give labels.argmax(1))" if one_hot else "")
    )
