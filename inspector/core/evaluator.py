"""The one evaluator of loss and metric, for training, analysis, pruning and the CLI alike.

What is evaluated is the :class:`~inspector.analysis.task.Task` (:func:`~inspector.analysis.task.make_task`):

* ``classification``: mean cross-entropy and accuracy, samples labelled :data:`IGNORE_INDEX` (``-100``,
  Hugging Face's ignore index) left out of both;
* ``regression``: mean squared error (over every output) and R² (``1 - SSE / SST``, SST about the
  evaluation data's own mean; with several targets the mean of each target's R², as scikit-learn's
  ``r2_score``, a constant target left out);
* ``causal-lm``: a causal language model on labels ``(n, T)`` (the token ids, ``-100`` where there
  is nothing to predict, as Hugging Face's): the loss is the mean cross-entropy of each next token
  over every predicted position of every sequence (Hugging Face's own ``loss``), the metric its
  perplexity ``exp(loss)``, lower is better (:data:`LOWER_IS_BETTER`);
* ``custom``: an optional ``metric(output, batch)`` (per-sample ``(n,)`` values or a batch mean),
  else the mean target; no loss.

:class:`Scores` streams the sums in float64 (a :class:`~inspector.core.statistic.Statistic`, merged
across ranks by its base class); :func:`evaluate_task` runs a model over batches (one share per rank
of a :class:`~inspector.analysis.inputs.DataSource`); :func:`evaluate_arrays` over tensors ``X``,
``y`` (training's per-epoch curves, ``inspector prune``). Each result carries the metric's own name
(``"accuracy"``, ``"R²"``, a custom metric's), so nothing prints R² as "accuracy".
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from inspector.core import distributed
from inspector.core.batches import Batch, DataSource
from inspector.core.statistic import Statistic
from inspector.errors import InspectorError

if TYPE_CHECKING:
    from inspector.analysis.task import Task

IGNORE_INDEX = -100  # Hugging Face's label for "no label here", cross_entropy's default ignore_index
LOWER_IS_BETTER = ("perplexity",)  # metrics a model improves by lowering (every other one: by raising)


@dataclass(frozen=True)
class Evaluation:
    """A model's ``loss`` and ``metric`` over ``n_samples`` samples, named by its task
    (``"accuracy"``/``"cross-entropy"``, ``"R²"``/``"MSE"``, a custom metric with ``loss_name`` ``None``
    and ``loss`` NaN)."""

    loss: float
    metric: float
    n_samples: int
    metric_name: str
    loss_name: str | None


def nested_tensors(value: Any) -> Iterator[torch.Tensor]:
    """Every tensor a model's output holds, in order: the tensor itself, or a tuple's, a list's, a dict's
    or a ``ModelOutput``'s tensors (nested ones too)."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from nested_tensors(v)
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from nested_tensors(v)


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


def per_sample(out: torch.Tensor, what: str) -> torch.Tensor:
    if out.dim() != 2:
        raise InspectorError(
            f"{what} needs an output of shape (n, classes), the model returns "
            f"{tuple(out.shape)}; pass target=lambda out, batch: ... to say what to explain"
        )
    return out


def label_classes(batch: Batch) -> torch.Tensor:
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


def class_numbers(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """``(n,)`` class numbers of ``batch``, each an output of ``logits`` or :data:`IGNORE_INDEX`."""
    labels = label_classes(batch)
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


def next_token_nll(logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """``(n, T - 1)``: the negative log-probability the model gives each actual next token, float32.

    ``logits`` ``(n, T, V)``: position ``t`` predicts token ``t + 1``; ``labels`` ``(n, T)``: the token
    ids, :data:`IGNORE_INDEX` where nothing is predicted (padding), which gives 0 there. One fused
    cross-entropy (no ``(n, T, V)`` log-softmax kept)."""
    if labels is None or labels.dim() != 2:
        raise InspectorError(
            "a causal language model is scored on labels of shape (n, T): the input ids, -100 at padding; "
            "give them as the batch's 'labels'"
        )
    if logits.dim() != 3 or tuple(logits.shape[:2]) != tuple(labels.shape):
        raise InspectorError(
            f"a causal language model's logits should be (n, T, vocabulary) for labels {tuple(labels.shape)}; "
            f"the model returns {tuple(logits.shape)}"
        )
    n, width, vocabulary = logits.shape
    if width < 2:
        return logits.new_zeros((n, 0), dtype=torch.float32)
    nll = nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, vocabulary).float(),
        labels[:, 1:].reshape(-1).long(),
        ignore_index=IGNORE_INDEX,
        reduction="none",
    )
    return nll.reshape(n, width - 1)


def regression_outputs(out: torch.Tensor) -> torch.Tensor:
    """``(n, k)``: the model's ``k`` outputs per sample."""
    return out.reshape(out.shape[0], -1) if out.dim() else out.reshape(1, 1)


def regression_output(out: torch.Tensor) -> torch.Tensor:
    """``(n,)``: the output a regression explains: the one output, or the mean of several
    (attributions of the mean are the mean of each output's; ``target=`` picks one)."""
    flat = regression_outputs(out)
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


class Scores(Statistic):
    """Streaming evaluation sums of one task, a :class:`~inspector.core.statistic.Statistic`: feed
    ``(output, batch)`` to :meth:`update`, :meth:`merge` across ranks, read ``(loss, metric)`` from
    :meth:`finish`.

    States, all "sum" (float64, or int64 for counts): ``n`` samples, ``loss_sum``, ``metric_sum``,
    ``scored`` (classification: the samples whose label is not :data:`IGNORE_INDEX`), and for
    regression per target ``(k,)``: ``sse``, ``y_sum``, ``y_sq_sum``. The loss, metric and R² of the
    union of the ranks' shards follow exactly from the summed terms.
    """

    n: int
    loss_sum: float
    metric_sum: float
    sse: np.ndarray | float
    y_sum: np.ndarray | float
    y_sq_sum: np.ndarray | float
    scored: int

    def __init__(self, task: Task) -> None:
        super().__init__()
        self.task = task
        self.add_state("n", 0)
        self.add_state("loss_sum", 0.0)
        self.add_state("metric_sum", 0.0)
        self.add_state("sse", 0.0)  # regression: per target, (k,) once a batch is seen
        self.add_state("y_sum", 0.0)
        self.add_state("y_sq_sum", 0.0)
        self.add_state("scored", 0)

    @property
    def width(self) -> int:
        """Regression targets per sample (1 before any batch)."""
        return int(np.size(self.sse))

    @property
    def metric_name(self) -> str:
        return str(self.task.metric_name)

    @property
    def loss_name(self) -> str | None:
        return self.task.loss_name  # type: ignore[no-any-return]

    def update(self, output: Any, batch: Batch) -> None:
        """Add the model's ``output`` on ``batch`` (``n`` samples)."""
        n = len(batch)
        task = self.task
        if task.kind == "custom" or task.metric_fn is not None:
            if task.metric_fn is not None:
                self.metric_sum += _metric_sum(task.metric_fn(output, batch.user), n)
            else:
                self.metric_sum += float(task.target(output, batch).double().sum())
            if task.kind == "custom":
                self.n += n
                return
        out = output_tensor(output)
        if task.kind == "causal-lm":
            nll = next_token_nll(out, batch.labels)
            self.loss_sum += float(nll.double().sum())
            self.scored += int((batch.labels[:, 1:] != IGNORE_INDEX).sum())  # type: ignore[index]
        elif task.kind == "classification":
            logits = per_sample(out, "classification")
            labels = class_numbers(logits, batch)
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
            pred = task.target(output, batch)[:, None] if task.target_fn is not None else regression_outputs(out)
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
        self.n += n

    def finish(self) -> tuple[float, float]:
        """``(loss, metric)`` over everything added; NaN where undefined (no samples, no loss)."""
        if self.n == 0:
            return math.nan, math.nan
        task = self.task
        if task.kind == "causal-lm":  # per predicted token, over every sequence
            loss = self.loss_sum / self.scored if self.scored else math.nan
            return loss, self.metric_sum / self.n if task.metric_fn is not None else math.exp(loss)
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
    shared = isinstance(batches, DataSource)  # other iterables: each rank evaluates all it is given
    if shared:
        batches = distributed.shard(batches)
    scores = Scores(task)
    with distributed.together("the evaluation") if shared else contextlib.nullcontext(), torch.no_grad():
        for batch in batches:
            scores.update(batch.call(model), batch)
    if shared:
        scores.merge()
    loss, metric = scores.finish()
    return loss, metric, scores.n


def evaluate(model: nn.Module, batches: Any, task: Task) -> Evaluation:
    """:func:`evaluate_task` as an :class:`Evaluation`, the metric and loss under their names."""
    loss, metric, n = evaluate_task(model, batches, task)
    return Evaluation(loss, metric, n, task.metric_name, task.loss_name)


def evaluate_arrays(
    model: nn.Module, X: torch.Tensor, y: torch.Tensor, task: Task, batch_size: int = 4096
) -> Evaluation:
    """``model`` on ``X`` ``(n, ...)`` against ``y`` (class numbers ``(n,)``, or targets ``(n,)`` /
    ``(n, k)``) in batches of ``batch_size``, in eval mode (``training`` restored), without gradients.
    Every rank evaluates what it is given (no sharding)."""
    was_training = model.training
    model.eval()
    try:
        batches = [
            Batch(X[start : start + batch_size], y[start : start + batch_size])
            for start in range(0, len(X), batch_size)
        ]
        return evaluate(model, batches, task)
    finally:
        model.train(was_training)


def metric_key(metric_name: str, split: str = "test") -> str:
    """The key a checkpoint's metrics store ``metric_name`` under: ``test_accuracy``, ``test_r2``, else
    ``test_`` and the name in lower case with every run of other characters as one ``_``."""
    known = {"accuracy": "accuracy", "R²": "r2"}
    slug = known.get(metric_name) or "_".join("".join(c if c.isalnum() else " " for c in metric_name.lower()).split())
    return f"{split}_{slug or 'metric'}"


def format_metric(metric_name: str, value: float) -> str:
    """``value`` as the CLI prints ``metric_name``: accuracy as a percentage, anything else to 4 decimals."""
    return f"{value:.2%}" if metric_name == "accuracy" else f"{value:.4f}"
