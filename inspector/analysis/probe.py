"""What only the model can answer, one sample at a time: :class:`Probe`.

The stored analysis answers every question about the data as a whole. A few
questions need the model itself: one sample's prediction and attribution (the
dashboard's sample explorer and Text view), and the model's answer for an edited
copy of a sample (the what-if sliders). A probe holds the model and the first
``max_samples`` samples of the evaluation data, in the form the analysis read
them (any data :func:`~inspector.analysis.inputs.as_source` accepts), and answers
those questions for any input kind: feature columns, arrays (images) and token ids.
Answers are cached per (method, sample, class); the model is never changed.

    probe = Probe(model, loader, tokenizer=tok)
    probe.tokens(3), probe.explain("integrated_gradients", 3)   # per-token scores
    probe.evaluate(0, edited)                                   # what-if: target and prediction
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from inspector.analysis.attribution import attribute
from inspector.analysis.guard import inspecting
from inspector.analysis.inputs import Batch, InputAdapter, as_source, floating_dtype, make_adapter, model_device
from inspector.analysis.task import Metric, Target, Task, make_task, output_tensor
from inspector.errors import InspectorError

BACKGROUND_SIZE = 32  # GradientShap's baselines: the first samples, as in the analysis
DEFAULT_MAX_SAMPLES = 1000
CACHE_ENTRIES = 2048


class Probe:
    """The model and its first ``max_samples`` evaluation samples, for per-sample questions.

    Args:
        model: the analysed ``nn.Module``.
        data: the evaluation data (anything :func:`~inspector.analysis.analyze` accepts).
        task, target, metric: as for :func:`~inspector.analysis.analyze`; the task decides what
            an attribution explains (the true class's logit, the regression output, ``target``).
        tokenizer, vocabulary, feature_names: names for token ids and columns.
        max_samples: how many samples (from the start of the data) are held.
        n_steps: Integrated Gradients steps (and the path methods').
    """

    def __init__(
        self,
        model: nn.Module,
        data: Any,
        *,
        task: Task | str | None = None,
        target: Target | None = None,
        metric: Metric | None = None,
        tokenizer: Any = None,
        vocabulary: Sequence[str] | None = None,
        feature_names: Sequence[str] | None = None,
        max_samples: int = DEFAULT_MAX_SAMPLES,
        n_steps: int = 50,
        batch_size: int = 256,
    ) -> None:
        if max_samples < 1:
            raise InspectorError(f"max_samples must be at least 1, got {max_samples}")
        self.model = model
        self.n_steps = n_steps
        device = model_device(model)
        source = as_source(data, batch_size=batch_size, device=device, dtype=floating_dtype(model))
        self.name, self.split = source.name, source.split
        self._chunks = source.head(max_samples)
        if not self._chunks:
            raise InspectorError(f"the data {source.name!r} holds no samples")
        first = self._chunks[0]
        self.adapter: InputAdapter = make_adapter(
            model,
            first,
            feature_names=feature_names or source.feature_names or (),
            tokenizer=tokenizer,
            vocabulary=vocabulary,
        )
        self.task: Task | None
        if isinstance(task, Task):
            self.task = task
        elif task is None and target is None and first.labels is None:
            self.task = None  # unlabelled and nothing named to explain: predictions only
        else:
            self.task = make_task(task, first, target=target, metric=metric)
        self._starts = np.cumsum([0] + [len(b) for b in self._chunks])
        self.n_samples = int(self._starts[-1])
        self._background: torch.Tensor | None = None
        if not self.adapter.through_embedding:  # GradientShap's background: input rows
            rows = [b.inputs for b in self._chunks]
            self._background = torch.cat(rows)[:BACKGROUND_SIZE] if rows else None
        self._cache: dict[tuple[Any, ...], np.ndarray] = {}
        self._lock = threading.Lock()  # the dashboard answers requests on several threads

    # --- the held samples -----------------------------------------------------------------

    @property
    def input_kind(self) -> str:
        """``features``, ``array`` (images and other arrays) or ``tokens``."""
        return self.adapter.kind

    def sample(self, i: int) -> Batch:
        """Sample ``i`` as a one-row :class:`Batch` (padding of token batches kept)."""
        i = self._index(i)
        k = int(np.searchsorted(self._starts, i, side="right") - 1)
        return self._chunks[k].rows(slice(i - int(self._starts[k]), i - int(self._starts[k]) + 1))

    def inputs(self, i: int) -> np.ndarray:
        """Sample ``i``'s input: ``(d,)`` features, ``(C, H, W)`` or any array shape, ``(T,)`` token ids."""
        return self.sample(i).inputs[0].detach().cpu().numpy()

    def mask(self, i: int) -> np.ndarray | None:
        """Token inputs: ``(T,)`` bool, True at real tokens (all True without an attention mask); else ``None``."""
        if not self.adapter.features_are_ids:
            return None
        batch = self.sample(i)
        if batch.mask is None:
            return np.ones(batch.inputs.shape[1:], dtype=bool)
        return batch.mask[0].detach().cpu().numpy().astype(bool)

    def tokens(self, i: int) -> tuple[str, ...]:
        """The text of each of sample ``i``'s tokens (``#id`` without a tokenizer or vocabulary)."""
        if not self.adapter.features_are_ids:
            raise InspectorError(f"tokens() applies to token-id inputs; these inputs are {self.adapter.description}")
        ids = self.inputs(i).reshape(-1)
        return tuple(self.adapter.token_text(ids))

    def label(self, i: int) -> np.ndarray | None:
        """Sample ``i``'s label (a scalar array for one label per sample), or ``None`` without labels."""
        batch = self.sample(i)
        return None if batch.labels is None else batch.labels[0].detach().cpu().numpy()

    # --- questions for the model -----------------------------------------------------------

    def predict(self, i: int) -> np.ndarray:
        """The model's output for sample ``i``: class probabilities for a classifier, else the output."""
        return self._cached(("predict", self._index(i)), lambda: self._prediction(self.sample(i)))

    def explain(self, method: str, i: int, target: int | None = None) -> np.ndarray:
        """Sample ``i``'s attribution by ``method``, for its label (classification: ``target``, a
        class, overrides it): the input's shape for floats, one score per token ``(T,)`` for ids."""
        i = self._index(i)
        return self._cached(("explain", method, i, target), lambda: self._explain(method, i, target))

    def evaluate(self, i: int, inputs: np.ndarray | torch.Tensor) -> tuple[float, np.ndarray]:
        """What-if: the explained target and the prediction (as :meth:`predict`) when sample ``i``'s
        input is replaced by ``inputs`` (same shape; float inputs only). Not cached."""
        if not self.adapter.editable:
            raise InspectorError(f"what-if evaluation edits float inputs; these inputs are {self.adapter.description}")
        batch = self.sample(i)
        x = torch.as_tensor(np.asarray(inputs), dtype=batch.inputs.dtype, device=batch.inputs.device)
        if tuple(x.shape) != tuple(batch.inputs.shape[1:]):
            raise InspectorError(
                f"the edited input has shape {tuple(x.shape)}; sample {i}'s has {tuple(batch.inputs.shape[1:])}"
            )
        edited = dataclasses.replace(batch, inputs=x.unsqueeze(0))
        with inspecting(self.model), torch.no_grad():
            output = edited.call(self.model)
            value = float("nan") if self.task is None else float(self.task.target(output, edited).reshape(-1)[0])
        return value, self._from_output(output)

    def target_value(self, i: int) -> float:
        """The explained target (true-class logit, regression output, ``target``) for sample ``i``."""
        return self.evaluate(i, self.inputs(i))[0]

    # --- internals ---------------------------------------------------------------------------

    def _index(self, i: int) -> int:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= int(i) < self.n_samples:
            raise InspectorError(
                f"sample {i!r} is not among the {self.n_samples} held samples (0 to {self.n_samples - 1})"
            )
        return int(i)

    def _cached(self, key: tuple[Any, ...], compute: Any) -> np.ndarray:
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        value = compute()
        with self._lock:
            if len(self._cache) >= CACHE_ENTRIES:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = value
        return value

    def _prediction(self, batch: Batch) -> np.ndarray:
        with inspecting(self.model), torch.no_grad():
            return self._from_output(batch.call(self.model))

    def _from_output(self, output: Any) -> np.ndarray:
        out = output_tensor(output).detach().float()
        if self.task is not None and self.task.kind == "classification":
            out = torch.softmax(out.reshape(out.shape[0], -1), dim=-1)
        return out[0].cpu().numpy()

    def _explain(self, method: str, i: int, target: int | None) -> np.ndarray:
        batch = self.sample(i)
        task = self.task
        if task is None:
            raise InspectorError("the data has no labels; pass task= or target= to say what to explain")
        if target is not None:
            if task.kind != "classification":
                raise InspectorError("a class to explain applies to classifiers only")
            labels = torch.full((1,), int(target), dtype=torch.long, device=batch.inputs.device)
            batch = dataclasses.replace(batch, labels=labels)
        elif batch.labels is None and task.target_fn is None:
            raise InspectorError(f"sample {i} has no label to explain; pass target= for unlabelled data")
        with inspecting(self.model):
            attribution, _ = attribute(
                self.model,
                method,
                batch,
                task,
                self.adapter,
                n_steps=self.n_steps,
                background=self._background,
            )
        return attribution.detach().float().cpu().numpy()[0]
