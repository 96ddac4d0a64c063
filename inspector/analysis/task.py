"""What the model is asked to do: the target an attribution explains, the loss and the metric.

* ``classification``: explain the true class's logit; evaluate mean cross-entropy and accuracy.
* ``regression``: explain the output (the mean of the outputs for a model with several, one
  per target); evaluate mean squared error (over every output) and R² (``1 - SSE / SST``, SST
  about the evaluation data's own mean; with several targets the mean of each target's R², as
  scikit-learn's ``r2_score``).
* ``custom``: a user ``target(output, batch) -> (n,)`` scalar per sample; evaluated by an
  optional ``metric(output, batch)`` (per-sample ``(n,)`` values or a batch mean), else by
  the mean target.

Classification ignores samples labelled ``-100`` (Hugging Face's ignore index, as
``cross_entropy``'s ``ignore_index``): they count in neither the loss nor the accuracy, and
an attribution explains their predicted class's logit instead.

The model's output may be a tensor, a tuple (its first element) or a Hugging Face
``ModelOutput`` / dict (its ``logits``, else its one tensor; several tensors and no ``logits``
need ``target=``): :func:`output_tensor`.
Chosen once per analysis (:func:`make_task`) and used by importance, pruning and
evaluation alike. Evaluation streams: :class:`Scores` accumulates sums in float64.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from inspector.analysis.inputs import Batch, DataSource
from inspector.errors import InspectorError

TASKS = ("classification", "regression", "custom")
IGNORE_INDEX = -100  # Hugging Face's label for "no label here", cross_entropy's default ignore_index
Target = Callable[[Any, Batch], torch.Tensor]
Metric = Callable[[Any, Batch], "torch.Tensor | float"]


def output_tensor(output: Any) -> torch.Tensor:
    """The tensor a model's output means: itself, a tuple's first element, a ModelOutput's ``logits``
    (else its only tensor; with several tensors and no ``logits`` it is an error: ``target=`` decides)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):
        if "logits" in output and isinstance(output["logits"], torch.Tensor):
            return output["logits"]
        tensors = [str(key) for key, value in output.items() if isinstance(value, torch.Tensor)]
        if len(tensors) == 1:
            return output[tensors[0]]  # type: ignore[no-any-return]
        if len(tensors) > 1:
            raise InspectorError(
                f"the model returns several tensors ({', '.join(tensors)}) and none named 'logits'; "
                f"pass target=lambda out, batch: out[{tensors[-1]!r}][:, 0] (one scalar per sample) to say "
                "what to explain, and metric= to score it"
            )
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, (tuple, list)) and output:
        return output_tensor(output[0])
    raise InspectorError(
        f"the model returned a {type(output).__name__}, not a tensor; pass target= to say "
        "which scalar per sample to explain"
    )


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
        """Whether a larger metric is better (accuracy, R², a user metric); false for none here."""
        return True

    def target(self, output: Any, batch: Batch) -> torch.Tensor:
        """``(n,)``: the scalar per sample an attribution explains."""
        if self.target_fn is not None:
            value = self.target_fn(output, batch)
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
        if self.kind == "classification":
            logits = _per_sample(out, "classification")
            labels = _class_labels(logits, batch)
            labels = torch.where(labels == IGNORE_INDEX, logits.argmax(dim=1), labels)
            return logits.gather(1, labels[:, None]).squeeze(1)
        return _regression_output(out)

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
            part = Batch(inputs, labels, extra, mask.bool() if isinstance(mask, torch.Tensor) else None, batch.key)
            return self.target(part.call(model), part)[:, None]

        return forward

    def scores(self) -> Scores:
        return Scores(self)


def forward_args(batch: Batch) -> tuple[Any, ...]:
    """The batch's other forward arguments, then its labels: Captum's ``additional_forward_args``
    for :meth:`Task.explained`."""
    args = tuple(batch.extra.values())
    return (*args, batch.labels) if batch.labels is not None else args


def _per_sample(out: torch.Tensor, what: str) -> torch.Tensor:
    if out.dim() != 2:
        raise InspectorError(
            f"{what} needs an output of shape (n, classes), the model returns "
            f"{tuple(out.shape)}; pass target=lambda out, batch: ... to say what to explain"
        )
    return out


def _labels(batch: Batch) -> torch.Tensor:
    if batch.labels is None:
        raise InspectorError(
            "classification needs labels: give (inputs, labels) batches or a 'labels' key, or "
            "pass target= to explain something else"
        )
    if batch.labels.dim() > 1 and math.prod(batch.labels.shape[1:]) != 1:
        raise InspectorError(
            f"the labels have shape {tuple(batch.labels.shape)}, several values per sample; classification "
            "needs one class number per sample: for one-hot labels give labels.argmax(1)"
        )
    labels = batch.labels.reshape(-1)
    if labels.is_complex():
        raise InspectorError("the labels are complex numbers; give one integer class number per sample")
    if labels.is_floating_point():
        if not bool(torch.all(labels == labels.round())):
            raise InspectorError("the labels are not whole numbers; for continuous targets use task='regression'")
        labels = labels.long()
    return labels.long()


def _class_labels(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """``(n,)`` class numbers of ``batch``, each an output of ``logits`` or :data:`IGNORE_INDEX`."""
    labels = _labels(batch)
    width = int(logits.shape[1])
    if width == 1:
        raise InspectorError(
            "the model has one output, so classification (one logit per class) does not apply; for a "
            "single logit pass task='regression', or target=lambda out, batch: out[:, 0] to explain it"
        )
    kept = labels[labels != IGNORE_INDEX]
    if kept.numel() and (int(kept.min()) < 0 or int(kept.max()) >= width):
        raise InspectorError(
            f"a label lies outside the model's {width} outputs (labels {int(kept.min())}..{int(kept.max())}); "
            f"give class numbers 0..{width - 1} ({IGNORE_INDEX} marks a sample to ignore)"
        )
    return labels


def _regression_outputs(out: torch.Tensor) -> torch.Tensor:
    """``(n, k)``: the model's ``k`` outputs per sample."""
    return out.reshape(out.shape[0], -1) if out.dim() else out.reshape(1, 1)


def _regression_output(out: torch.Tensor) -> torch.Tensor:
    """``(n,)``: the output a regression explains: the one output, or the mean of several
    (attributions of the mean are the mean of each output's; ``target=`` picks one)."""
    flat = _regression_outputs(out)
    return flat[:, 0] if flat.shape[1] == 1 else flat.mean(dim=1)


def _metric_sum(value: Any, n: int) -> float:
    """The sum over ``n`` samples of what ``metric=`` returned: per-sample values or a batch mean."""
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        value = torch.from_numpy(np.asarray(value, dtype=np.float64))
    if isinstance(value, torch.Tensor):
        real = not value.is_complex()
        if real and value.dim() and value.numel() == n:
            return float(value.double().sum())
        if real and value.numel() == 1:
            return float(value) * n
        raise InspectorError(
            f"metric= returned a tensor of shape {tuple(value.shape)} for {n} samples; it must return "
            "one number per sample, shape (n,), or a single number (the batch mean)"
        )
    if isinstance(value, (str, bytes)) or not hasattr(value, "__float__"):
        raise InspectorError(
            f"metric= returned a {type(value).__name__}; it must return a number (the batch mean) or a "
            "tensor with one number per sample"
        )
    return float(value) * n


class Scores:
    """Streaming evaluation sums for one task (float64): feed batches with :meth:`add`, read :meth:`result`."""

    def __init__(self, task: Task) -> None:
        self.task = task
        self.n = 0
        self.loss_sum = 0.0
        self.metric_sum = 0.0
        self.sse: np.ndarray | float = 0.0  # regression: per target
        self.y_sum: np.ndarray | float = 0.0
        self.y_sq_sum: np.ndarray | float = 0.0
        self.width = 1  # regression: targets per sample
        self.scored = 0  # classification: the samples whose label is not IGNORE_INDEX

    def add(self, output: Any, batch: Batch) -> None:
        n = len(batch)
        task = self.task
        if task.kind == "custom" or task.metric_fn is not None:
            if task.metric_fn is not None:
                self.metric_sum += _metric_sum(task.metric_fn(output, batch), n)
            else:
                self.metric_sum += float(task.target(output, batch).double().sum())
            if task.kind == "custom":
                self.n += n
                return
        out = output_tensor(output)
        if task.kind == "classification":
            logits = _per_sample(out, "classification")
            labels = _class_labels(logits, batch)
            kept = labels != IGNORE_INDEX
            self.scored += int(kept.sum())
            self.loss_sum += float(
                nn.functional.cross_entropy(logits.float(), labels, reduction="sum", ignore_index=IGNORE_INDEX)
            )
            if task.metric_fn is None:
                self.metric_sum += float(((logits.argmax(dim=1) == labels) & kept).sum())
        else:
            if batch.labels is None:
                raise InspectorError("regression needs targets: give (inputs, targets) batches or a 'labels' key")
            # with target= the target function's value is the prediction
            pred = task.target(output, batch)[:, None] if task.target_fn is not None else _regression_outputs(out)
            pred = pred.double()
            y = batch.labels.reshape(n, -1).double()
            if y.shape[1] != pred.shape[1]:
                raise InspectorError(
                    f"the regression targets have {y.shape[1]} value(s) per sample but the model gives "
                    f"{pred.shape[1]}; give one target per output"
                    + (", or target=lambda out, batch: out[:, k] to explain one" if y.shape[1] == 1 else "")
                )
            sse = ((pred - y) ** 2).sum(dim=0).cpu().numpy()
            self.loss_sum += float(sse.sum())
            self.sse = self.sse + sse
            self.y_sum = self.y_sum + y.sum(dim=0).cpu().numpy()
            self.y_sq_sum = self.y_sq_sum + (y * y).sum(dim=0).cpu().numpy()
            self.width = int(y.shape[1])
        self.n += n

    def merge(self) -> Scores:
        """Sum every rank's sums into this one (in place; the identity without a process group): the loss,
        metric and R² of the union of the ranks' shards follow exactly from the summed terms."""
        from inspector.analysis import distributed

        if not distributed.active():
            return self
        widths = {int(w) for w in distributed.all_gather_objects(self.width if self.n else None) if w is not None}
        if len(widths) > 1:
            raise InspectorError(f"the ranks' regression targets have different widths {sorted(widths)}")
        width = widths.pop() if widths else self.width
        vector = lambda v: np.broadcast_to(np.asarray(v, dtype=np.float64), (width,))  # noqa: E731
        sums, counts = distributed.all_reduce_sum(
            np.concatenate(
                [[self.loss_sum, self.metric_sum], vector(self.sse), vector(self.y_sum), vector(self.y_sq_sum)]
            ),
            np.array([self.n, self.scored], dtype=np.int64),
        )
        self.loss_sum, self.metric_sum = float(sums[0]), float(sums[1])
        self.sse, self.y_sum, self.y_sq_sum = (sums[2 + k * width : 2 + (k + 1) * width] for k in range(3))
        self.n, self.scored = int(counts[0]), int(counts[1])
        self.width = width
        return self

    def result(self) -> tuple[float, float]:
        """``(loss, metric)`` over everything added; NaN where undefined (no samples, no loss)."""
        if self.n == 0:
            return math.nan, math.nan
        task = self.task
        if task.kind == "classification":
            # ignored samples (IGNORE_INDEX) count in neither the loss nor the accuracy
            loss = self.loss_sum / self.scored if self.scored else math.nan
            if task.metric_fn is not None:
                return loss, self.metric_sum / self.n
            return loss, self.metric_sum / self.scored if self.scored else math.nan
        width = self.width if task.kind == "regression" else 1
        loss = self.loss_sum / (self.n * width) if task.loss_name is not None else math.nan
        if task.kind == "regression" and task.metric_fn is None:
            sst = np.asarray(self.y_sq_sum, dtype=np.float64) - np.asarray(self.y_sum, dtype=np.float64) ** 2 / self.n
            sse = np.asarray(self.sse, dtype=np.float64)
            defined = sst > 0
            r2 = 1.0 - sse[defined] / sst[defined]  # per target; a constant target has none
            return loss, float(r2.mean()) if r2.size else math.nan
        return loss, self.metric_sum / self.n


def evaluate_task(model: nn.Module, batches: Any, task: Task) -> tuple[float, float, int]:
    """``(loss, metric, n_samples)`` of ``model`` over ``batches`` (an iterable of :class:`Batch`), no grad.

    Inside a process group, a :class:`~inspector.analysis.inputs.DataSource` is read one share per rank
    and the sums merged: every rank gets the result over all the data."""
    from inspector.analysis import distributed

    shared = isinstance(batches, DataSource)  # other iterables: each rank evaluates all it is given
    if shared:
        batches = distributed.shard(batches)
    scores = task.scores()
    with distributed.together("the evaluation") if shared else contextlib.nullcontext(), torch.no_grad():
        for batch in batches:
            scores.add(batch.call(model), batch)
    if shared:
        scores.merge()
    loss, metric = scores.result()
    return loss, metric, scores.n


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
