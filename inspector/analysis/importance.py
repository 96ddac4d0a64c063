"""Feature importance of a model on its data: every attribution method's global and
per-class importance (:func:`method_importance`), gathered with conductance into one
:class:`ImportanceReport` (:func:`importance_report`). Per-sample attributions on demand
are :class:`~inspector.analysis.probe.Probe`'s.

Global importance is the mean |attribution| per feature: per input element, flattened in
the input's order, for float inputs; per distinct token id over the real positions where
it occurs, for token ids. Per class (classification only) is the same mean over the
samples of each class. The samples explained are the data's first ``max_samples``, in
chunks.

The pieces, one job each: :mod:`~inspector.analysis.attribution` (one method on one
batch), :mod:`~inspector.analysis.sanity` (the randomisation sanity check),
:mod:`~inspector.analysis.conductance` (hidden layers' conductance) and
:mod:`~inspector.analysis.samples` (the samples as batches). Their public names are
importable from here too.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import field
from typing import Any

import numpy as np
import torch
from torch import nn

from inspector.analysis import distributed
from inspector.analysis.attribution import (
    CAPTUM_ERRORS,
    attribute,
    chunk_rows,
    method_error,
    per_sample_elements,
    summed_gradients,
)
from inspector.analysis.conductance import (
    CONDUCTANCE_SAMPLES,
    MAX_NEURONS,
    LayerConductanceResult,
    conductance,
    hidden_layers,
    output_layer,
)
from inspector.analysis.conductance import _neuron_skip as _neuron_skip  # re-exported for the tests
from inspector.analysis.guard import inspecting
from inspector.analysis.inputs import Batch, InputAdapter, as_source, floating_dtype, make_adapter, model_device, take
from inspector.analysis.methods import METHODS
from inspector.analysis.samples import chunk_batches, class_labels, input_rows, stack_rows, token_positions
from inspector.analysis.sanity import randomization_correlation, randomized_copy, spearman_rows
from inspector.analysis.sites import Site
from inspector.analysis.task import Task, make_task, output_tensor
from inspector.core.adapters import adapter_for
from inspector.core.statistic import Rows, Statistic
from inspector.results import result

__all__ = [
    "BACKGROUND_SIZE",
    "MAX_NEURONS",
    "METHODS",
    "N_EXAMPLES",
    "SANITY_SAMPLES",
    "ImportanceReport",
    "LayerConductanceResult",
    "MethodImportance",
    "attribute",
    "conductance",
    "hidden_layers",
    "importance_report",
    "method_importance",
    "output_layer",
    "randomization_correlation",
    "randomized_copy",
    "spearman_rows",
    "summed_gradients",
]

N_EXAMPLES = 16  # per-sample attributions kept in the result, for the views
BACKGROUND_SIZE = 32  # GradientShap's baseline distribution, drawn from the explained samples
SANITY_SAMPLES = 64


def _empty(*shape: int, dtype: type = np.float64) -> Callable[[], np.ndarray]:
    return lambda: np.zeros(shape, dtype=dtype)


@result
class MethodImportance:
    """One attribution method over the explained samples.

    ``global_importance`` ``(d,)``: mean |attribution| per feature: per input element
    (flattened in the input's order) for float inputs, per distinct token id
    (:attr:`ImportanceReport.token_ids`) for tokens. ``per_class`` ``(C, d)``: the same
    over each class's samples (NaN for a class with no samples); ``None`` for tasks
    other than classification. ``mean_attribution`` ``(d,)``: the signed mean.
    ``convergence_delta``: mean |delta| for methods with a completeness property.
    ``sanity_correlation``: mean Spearman correlation against the randomised model
    (lower is better). ``examples``: the first ``k <= 16`` samples' attributions,
    ``(k, *input shape)`` for float inputs, ``(k, T)`` per-token scores for tokens
    (zero where padded). ``error`` says in one line why a method could not run on this
    model; its arrays are then empty.
    """

    method: str
    global_importance: np.ndarray
    per_class: np.ndarray | None
    mean_attribution: np.ndarray
    convergence_delta: float | None
    sanity_correlation: float | None
    seconds: float
    error: str | None = None
    examples: np.ndarray = field(default_factory=_empty(0))

    @property
    def ranking(self) -> np.ndarray:
        """Feature indices, most important first."""
        return np.argsort(-self.global_importance, kind="stable")


@result
class ImportanceReport:
    """Every method's importance and every hidden layer's conductance.

    ``task``: the task's kind (``classification`` | ``regression`` | ``custom``).
    ``input_kind``: ``features`` | ``array`` | ``tokens``; ``input_shape``: one sample's
    input shape (``(d,)``, ``(C, H, W)``, ``(T,)`` of the first batch).
    ``feature_names`` ``(d)``: the name of each feature ``global_importance`` is indexed
    by (the columns; for tokens the text of each of ``token_ids``; empty for arrays).
    ``token_ids`` ``(d,)``: the distinct token ids, sorted (tokens only, else empty).
    ``example_inputs``: the first ``k <= 16`` samples' inputs (``(k, *input shape)``
    float32, or ``(k, T)`` ids); ``example_mask`` ``(k, T)`` bool (True = real token) for
    tokens, else ``None``; ``example_labels`` ``(k,)`` float64 when each sample has one
    label, else ``None``.
    """

    methods: tuple[MethodImportance, ...]
    conductance: tuple[LayerConductanceResult, ...]
    n_samples: int
    n_steps: int
    baseline: str
    task: str = "classification"
    input_kind: str = "features"
    input_shape: tuple[int, ...] = ()
    feature_names: tuple[str, ...] = ()
    token_ids: np.ndarray = field(default_factory=_empty(0, dtype=np.int64))
    example_inputs: np.ndarray = field(default_factory=_empty(0))
    example_mask: np.ndarray | None = None
    example_labels: np.ndarray | None = None

    def method(self, name: str) -> MethodImportance:
        for m in self.methods:
            if m.method == name:
                return m
        raise KeyError(f"no importance for method {name!r}; have {[m.method for m in self.methods]}")

    def feature_label(self, index: int, fallback: Sequence[str] = ()) -> str:
        """The name of feature ``index``: its column or token text, an array element's
        position ``(c, h, w)``, else ``fallback[index]`` or ``x<index>``."""
        index = int(index)
        if index < len(self.feature_names):
            return self.feature_names[index]
        own = adapter_for(self.input_kind).element_label(index, self.input_shape)
        if own is not None:
            return own
        return fallback[index] if index < len(fallback) else f"x{index}"


class ImportanceSums(Statistic):
    """Streaming |attribution| statistics of one method, a :class:`~inspector.core.statistic.Statistic`:
    :meth:`update` per chunk, :meth:`merge` across ranks (the base class), then :meth:`finish`.

    Float inputs: float64 sums per input element (and per class) over ``width`` elements. Tokens:
    float64 sums per distinct id of ``token_ids`` (and per (class, id) cell), folded from each
    chunk's real positions as it comes. The first ``keep`` samples' attributions are kept as they
    are (sanity check, examples): a "kept" state in rank order (each rank explains one contiguous
    share of the samples, in order). Every other state is a "sum" of the same shape on every rank.
    """

    kept: Rows
    n: np.ndarray
    abs_sum: np.ndarray
    signed_sum: np.ndarray
    count: np.ndarray
    class_sum: np.ndarray
    class_count: np.ndarray
    labelled: np.ndarray
    delta_sums: np.ndarray

    def __init__(self, tokens: bool, n_classes: int | None, token_ids: np.ndarray, keep: int, width: int) -> None:
        super().__init__()
        self.tokens = tokens
        self.n_classes = n_classes
        self.token_ids = token_ids
        self.keep = keep
        d = len(token_ids) if tokens else width
        C = n_classes or 0
        self.add_state("kept", reduction="kept", limit=keep)
        self.add_state("n", np.zeros(1))
        self.add_state("abs_sum", np.zeros(d))
        self.add_state("signed_sum", np.zeros(d))
        self.add_state("count", np.zeros(d))  # tokens: real positions per id
        self.add_state("class_sum", np.zeros((C, d)))
        self.add_state("class_count", np.zeros((C, d) if tokens else (C, 1)))  # samples per class (tokens: per cell)
        self.add_state("labelled", np.zeros(1))  # chunks that carried class labels (tokens report per class only then)
        self.add_state("delta_sums", np.zeros(2))  # (sum of |convergence delta|, number of deltas)

    def update(self, attributions: np.ndarray, batch: Batch, labels: np.ndarray | None) -> None:
        """``attributions`` ``(n, ...)`` float64 for ``batch``; ``labels`` ``(n,)`` classes or ``None``."""
        n = len(attributions)
        if not self.kept.full:
            self.kept.add(attributions[: self.keep - self.kept.count].astype(np.float32))
        self.n += n
        if self.tokens:
            ids_t, real_t = token_positions(batch)
            real = real_t.cpu().numpy()
            d = len(self.token_ids)
            index = np.searchsorted(self.token_ids, ids_t.cpu().numpy()[real])
            scores = attributions[real]
            self.abs_sum += np.bincount(index, np.abs(scores), minlength=d)
            self.signed_sum += np.bincount(index, scores, minlength=d)
            self.count += np.bincount(index, minlength=d)
            if labels is not None and self.n_classes is not None:
                self.labelled += 1
                classes = np.broadcast_to(labels[:, None], real.shape)[real]
                ok = classes >= 0  # Hugging Face's ignore index (-100): a sample without a class
                cell = classes[ok] * d + index[ok]
                C = self.n_classes
                self.class_sum += np.bincount(cell, np.abs(scores[ok]), minlength=C * d).reshape(C, d)
                self.class_count += np.bincount(cell, minlength=C * d).reshape(C, d)
            return
        flat = attributions.reshape(n, -1)
        absolute = np.abs(flat)
        self.abs_sum += absolute.sum(axis=0)
        self.signed_sum += flat.sum(axis=0)
        if labels is not None and self.n_classes is not None:
            for c in np.unique(labels):
                if c < 0:  # Hugging Face's ignore index (-100): a sample without a class
                    continue
                rows = labels == c
                self.class_sum[c] += absolute[rows].sum(axis=0)
                self.class_count[c] += rows.sum()

    def finish(self) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """``(global_importance (d,), per_class (C, d) | None, mean_attribution (d,))``."""
        per_class = None
        with np.errstate(invalid="ignore", divide="ignore"):
            if self.n_classes is not None and (self.labelled[0] > 0 or not self.tokens):
                per_class = np.where(self.class_count > 0, self.class_sum / np.maximum(self.class_count, 1), np.nan)
            if self.tokens:
                return self.abs_sum / self.count, per_class, self.signed_sum / self.count
        n = float(self.n[0])
        return self.abs_sum / n, per_class, self.signed_sum / n

    def first(self, n: int) -> np.ndarray:
        """The first ``n`` samples' attributions (tokens: padded with zeros to one width)."""
        if not self.kept.chunks:
            return np.zeros(0, np.float32)
        return stack_rows(self.kept.values(), self.tokens)[:n]


def method_importance(
    model: nn.Module,
    method: str,
    batches: Sequence[Batch],
    task: Task,
    adapter: InputAdapter,
    *,
    n_steps: int = 50,
    n_classes: int | None = None,
    token_ids: np.ndarray | None = None,
    background: torch.Tensor | None = None,
    sanity_samples: int = SANITY_SAMPLES,
    sanity_batches: Sequence[Batch] | None = None,
    timings: dict[str, float] | None = None,
) -> MethodImportance:
    """Global and per-class importance of one method over ``batches`` (the chunks), and its sanity score.

    ``n_classes``: ``C`` for the per-class means (classification), else ``None``.
    ``token_ids``: the distinct ids of the samples' real positions, sorted (tokens only).
    ``model`` must already be in eval mode. Inside a process group ``batches`` is this rank's
    contiguous share of the samples (rank order = sample order) and ``sanity_batches`` the first
    samples of all of them (the same on every rank); the sums are merged by ``all_reduce``.
    ``timings``: where given, ``timings[f"importance/{method}/sanity"]`` gets the sanity check's seconds.
    """
    started = time.perf_counter()
    tokens = adapter.features_are_ids
    ids = np.zeros(0, np.int64) if token_ids is None else np.asarray(token_ids)
    # elements per sample (float inputs): from the samples, or the adapter's on a rank that has none
    width = 0 if tokens else math.prod(batches[0].inputs.shape[1:] if batches else adapter.sample_shape)
    stats = ImportanceSums(
        tokens,
        n_classes if task.kind == "classification" else None,
        ids,
        keep=max(sanity_samples, N_EXAMPLES),
        width=int(width),
    )

    def run(m: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        return attribute(m, method, batch, task, adapter, n_steps=n_steps, background=background)

    def failed(error: str) -> MethodImportance:
        return MethodImportance(
            method, np.zeros(0), None, np.zeros(0), None, None, time.perf_counter() - started, error=error
        )

    error = None
    # a rank that raises stops every rank (no collective below waits for it); Captum's refusals are
    # agreed on instead: one rank's refusal reports the method as failed on every rank
    with distributed.together(f"the {method} attributions"):
        try:
            for batch in batches:
                a, delta = run(model, batch)
                stats.update(a.detach().cpu().numpy().astype(np.float64), batch, class_labels(batch, task))
                if delta is not None:
                    stats.delta_sums += (float(delta.detach().abs().sum()), delta.numel())
        except CAPTUM_ERRORS as exc:
            # Captum refuses some architectures (e.g. DeepLift with one activation module used twice);
            # the other methods still run and the report says why.
            error = method_error(exc)
    error = next((e for e in distributed.all_gather_objects(error) if e is not None), None)
    if error is not None:
        return failed(error)
    stats.merge()
    sanity_batches = take(batches, sanity_samples) if sanity_batches is None else sanity_batches

    def explain(m: nn.Module) -> np.ndarray:
        return stack_rows([run(m, b)[0].detach().cpu().numpy() for b in sanity_batches], tokens)

    # every rank runs the same sanity check on the same first samples (no collective inside)
    checked = time.perf_counter()
    with distributed.together(f"the {method} sanity check"):
        try:
            # the trained model's attributions for these samples are already in hand
            sanity = randomization_correlation(explain, model, trained=stats.first(sanity_samples))
        except CAPTUM_ERRORS as exc:
            error = method_error(exc)
    if timings is not None:
        timings[f"importance/{method}/sanity"] = time.perf_counter() - checked
    if error is not None:
        return failed(error)
    importance, per_class, mean = stats.finish()
    delta_sums = stats.delta_sums
    delta_mean = float(delta_sums[0] / delta_sums[1]) if delta_sums[1] else None
    return MethodImportance(
        method=method,
        global_importance=importance,
        per_class=per_class,
        mean_attribution=mean,
        convergence_delta=delta_mean,
        sanity_correlation=sanity,
        seconds=time.perf_counter() - started,
        examples=stats.first(N_EXAMPLES),
    )


def _gathered(head: list[Batch], device: torch.device) -> list[Batch]:
    """Every rank's ``head`` (its own share's first samples), in rank order, on every rank (bounded:
    ``max_samples`` samples in all cross the network once)."""
    parts = distributed.all_gather_objects([b.to("cpu") for b in head])
    return [b.to(device) for part in parts for b in part]


def _share(chunks: Sequence[Batch], adapter: InputAdapter, rows: int) -> list[Batch]:
    """This rank's contiguous share of the samples in ``chunks`` (rank ``r`` of ``W``: samples
    ``[r n / W, (r + 1) n / W)``), as chunks of at most ``rows``; all of them without a process group."""
    if not distributed.active():
        return list(chunks)
    n = sum(len(b) for b in chunks)
    r, world = distributed.rank(), distributed.world_size()
    lo, hi = r * n // world, (r + 1) * n // world
    picked: list[Batch] = []
    start = 0
    for batch in chunks:
        end = start + len(batch)
        a, b = max(lo, start), min(hi, end)
        if a < b:
            picked.append(batch.rows(slice(a - start, b - start)))
        start = end
    return chunk_batches(picked, adapter, rows)


def _n_classes(model: nn.Module, batches: Sequence[Batch], task: Task) -> int | None:
    """``C`` for per-class means: the model's output width, or the largest label + 1."""
    if task.kind != "classification":
        return None
    with torch.no_grad():
        out = output_tensor(batches[0].rows(slice(0, 1)).call(model))
    largest = max((int(b.labels.max()) for b in batches if b.labels is not None and b.labels.numel()), default=-1)
    width = int(out.shape[1]) if out.dim() == 2 and task.target_fn is None else 0
    return max(width, largest + 1)


def _examples(
    batches: Sequence[Batch], adapter: InputAdapter
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``(inputs, mask, labels)`` of the first :data:`N_EXAMPLES` samples; see :class:`ImportanceReport`."""
    first = take(batches, N_EXAMPLES)
    if not first:
        return np.zeros(0), None, None
    tokens = adapter.features_are_ids
    inputs = [(token_positions(b)[0] if tokens else b.inputs).detach().cpu().numpy() for b in first]
    example_inputs = (
        stack_rows(inputs, tokens, fill=adapter.pad_id) if tokens else np.concatenate(inputs).astype(np.float32)
    )
    mask = stack_rows([token_positions(b)[1].cpu().numpy() for b in first], True, fill=False) if tokens else None
    labels = None
    if all(b.labels is not None and b.labels.numel() == len(b) for b in first):
        labels = np.concatenate([b.labels.reshape(-1).double().cpu().numpy() for b in first])  # type: ignore[union-attr]
    return example_inputs, mask, labels


def _distinct_tokens(batches: Sequence[Batch]) -> np.ndarray:
    """The distinct ids at real positions, sorted ``(d,)`` int64."""
    seen = [torch.unique(ids[real]).cpu() for ids, real in map(token_positions, batches)]
    return torch.unique(torch.cat(seen)).numpy().astype(np.int64) if seen else np.zeros(0, np.int64)


def importance_report(
    model: nn.Module,
    data: Any,
    task: Task | str | None = None,
    adapter: InputAdapter | None = None,
    *,
    methods: tuple[str, ...] = METHODS,
    n_steps: int = 50,
    max_samples: int = 1000,
    with_conductance: bool = True,
    conductance_samples: int = CONDUCTANCE_SAMPLES,
    sites: Sequence[Site] | None = None,
    sharded: bool | None = None,
    timings: dict[str, float] | None = None,
) -> ImportanceReport:
    """Every method in ``methods`` plus conductance on the first ``max_samples`` samples of ``data``,
    leaving ``model`` as it was.

    ``data``: a :class:`~inspector.analysis.inputs.DataSource` or anything
    :func:`~inspector.analysis.inputs.as_source` accepts. ``task``: a :class:`Task`, a task
    name, or ``None`` (inferred from the first batch's labels). ``adapter``: ``None`` infers it
    from the model and the first batch. ``sites``: the analysis's sites, whose counted layers other
    than the output layer get conductance (default: discovered here). The earlier form ``importance_report(model, X, y,
    n_classes)`` (a classification) is still accepted.

    Inside a ``torch.distributed`` process group every rank must call this; each explains a contiguous
    share of the samples and the sums are merged, so every rank returns the same report. ``sharded``:
    whether ``data`` is already one share per rank (default: a ``DataLoader`` with a
    ``DistributedSampler``); then the explained samples are the ranks' first
    ``ceil(max_samples / N)`` each, gathered in rank order, so every rank sees the same samples.
    ``conductance_samples``: how many of those samples conductance explains. ``timings``: where given,
    each step's seconds are added: ``importance/<method>`` (its attributions and sanity check),
    ``importance/<method>/sanity``, ``importance/conductance``.
    """
    if isinstance(task, (torch.Tensor, np.ndarray)):  # the earlier positional form (model, X, y, n_classes)
        data, task, adapter = (data, task), "classification", None
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise ValueError(f"unknown attribution methods {sorted(unknown)}; choose from {', '.join(METHODS)}")
    if sharded is None:
        sharded = distributed.already_sharded(data)
    source = as_source(data, device=model_device(model), dtype=floating_dtype(model))
    with distributed.together("reading the samples to explain"):
        if sharded and distributed.active():
            head = source.head(-(-max_samples // distributed.world_size()))
        else:
            head = source.head(max_samples)
        if not head:
            head = [source.first()]  # raises: the data holds no samples
    if sharded and distributed.active():
        head = _gathered(head, source.device)
    first = head[0]
    task = task if isinstance(task, Task) else make_task(task, first)
    if adapter is None:
        adapter = make_adapter(model, first, feature_names=source.feature_names)  # names apply to columns only
    tokens = adapter.features_are_ids
    with inspecting(model):
        n_classes = _n_classes(model, head, task)
        per_sample = per_sample_elements(adapter, model)
        chunks = chunk_batches(head, adapter, chunk_rows(per_sample))
        # every rank holds the same samples; each explains its own share and the sums are merged
        mine = _share(chunks, adapter, chunk_rows(per_sample))
        sanity_first = take(chunks, SANITY_SAMPLES)
        del head  # the chunks hold the same samples
        n_samples = sum(len(b) for b in chunks)
        background = None
        token_ids = np.zeros(0, np.int64)
        if tokens:
            token_ids = _distinct_tokens(chunks)
        else:
            pick = torch.randperm(n_samples, generator=torch.Generator().manual_seed(0))[:BACKGROUND_SIZE]
            background = input_rows(chunks, pick.tolist())
        results = []
        for m in methods:
            found = method_importance(
                model,
                m,
                mine,
                task,
                adapter,
                n_steps=n_steps,
                n_classes=n_classes,
                token_ids=token_ids,
                background=background,
                sanity_batches=sanity_first,
                timings=timings,
            )
            results.append(found)
            if timings is not None:
                timings[f"importance/{m}"] = found.seconds
        started = time.perf_counter()
        cond = (
            conductance(
                model,
                chunks,
                task,
                adapter,
                n_steps=n_steps,
                max_samples=conductance_samples,
                n_classes=n_classes,
                layers=hidden_layers(model, chunks[0], sites),
            )
            if with_conductance
            else ()
        )
        if timings is not None and with_conductance:
            timings["importance/conductance"] = time.perf_counter() - started
        example_inputs, example_mask, example_labels = _examples(chunks, adapter)
    feature_names = adapter.importance_names(token_ids)
    return ImportanceReport(
        tuple(results),
        cond,
        int(n_samples),
        int(n_steps),
        adapter.baseline_text,
        task=task.kind,
        input_kind=adapter.kind,
        input_shape=tuple(int(s) for s in adapter.sample_shape),
        feature_names=tuple(feature_names),
        token_ids=token_ids,
        example_inputs=example_inputs,
        example_mask=example_mask,
        example_labels=example_labels,
    )
