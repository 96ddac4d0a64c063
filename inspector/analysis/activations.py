"""The activation census: one streaming pass over the data, for every dense site of any model.

The sites are the model's ``nn.Linear`` layers and the activation applied to
each one's output (:func:`~inspector.analysis.sites.discover_sites`: a module,
a function found by tracing, a declared kind, or unknown);
:class:`~inspector.analysis.sites.SiteObserver` reports every application of a
site's activation as ``(pre-activation, output)``, whatever the rank of the
layer's output. Statistics are per neuron over every row: a ``(n, m)`` output
is n rows, a ``(n, T, m)`` one n x T rows, of which only the real positions
count when the batch has an ``attention_mask``. A layer whose activation module
is shared with other layers is counted per layer; a layer called twice in one
forward pass counts both calls.

* rectifiers (ReLU, ReLU6): each neuron's **firing rate**, the fraction of rows
  whose output is > 0. A neuron that fires on no row is **dead**: its output is
  always 0 and it gets no gradient (Lu et al. 2019, "Dying ReLU and
  Initialization"). Below ``nearly_dead_threshold`` it is **nearly dead**.
* leaky units (LeakyReLU, PReLU): the same, on the pre-activation (> 0).
* smooth units (GELU, SiLU, Mish, Softplus, ELU, ...): the firing rate on the
  pre-activation and the **zero rate**, the fraction of rows whose output is
  nearly zero (``|output| < near_zero(kind)``); such a unit still passes a
  gradient when its input is negative, so it is never called dead (a neuron
  that is never positive has ``fire_rate == 0``).
* squashing units (sigmoid, tanh, hard variants): the **saturation rate**, the
  fraction of rows where the unit sits in a flat tail (``|tanh| > 0.99``;
  sigmoid ``< 0.01`` or ``> 0.99``), where its gradient all but vanishes
  (Glorot & Bengio 2010).
* an unknown activation: the firing rate of the pre-activation (> 0), no dead
  mask; the statistics are of the pre-activation.
* every unit: its mean output, and a histogram plus a 2-D PCA projection of the
  layer from the first ``keep_samples`` rows.

Memory grows with the number of neurons (plus the bounded rows kept for the
histogram and projection), not with the data: the per-batch sums stay on the
device in float32 (one GEMM against a row of ones per statistic) and are folded
into float64 totals before a float32 count could lose a unit.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.linalg
import torch
from torch import nn

from inspector.analysis import distributed
from inspector.analysis.guard import inspecting
from inspector.analysis.inputs import Batch, DataSource, as_source, model_device
from inspector.analysis.sites import (
    LEAKY,
    RECTIFIERS,
    SMOOTH,
    SQUASHERS,
    Site,
    SiteObserver,
    discover_sites,
    near_zero,
)
from inspector.errors import InspectorError
from inspector.results import result

SATURATION = 0.99
HISTOGRAM_BINS = 30


@result
class LayerActivations:
    """Census of linear layer ``layer`` (its module path) through its activation.

    ``module`` is the activation module's path (the function's name for a traced
    activation), or ``None`` when declared or unknown; ``found_by`` says how it
    was found (see :mod:`inspector.analysis.sites`).
    Per-neuron arrays have shape ``(m,)``. ``fire_rate``: rectifiers, leaky and
    smooth units and unknown activations, else ``None``. ``dead_mask`` and
    ``nearly_dead_mask``: rectifiers and leaky units only. ``zero_rate``: smooth
    units only. ``saturation_rate``: squashing units only.
    ``histogram_counts`` is ``(m, bins)`` over the shared ``histogram_edges``.
    ``projection`` is ``(k, 2)``: the first ``k`` rows' activations on the
    layer's top two principal components, with ``projection_labels`` ``(k,)``
    when every row is a sample with an integer label (else ``None``).
    ``n_samples`` counts the samples seen, ``n_positions`` the rows counted
    (samples x real positions x calls per forward); 0 (files written before it
    existed) means the same as ``n_samples``.
    """

    layer: str
    module: str | None
    activation: str
    n_samples: int
    fire_rate: np.ndarray | None
    dead_mask: np.ndarray | None
    nearly_dead_mask: np.ndarray | None
    nearly_dead_threshold: float
    saturation_rate: np.ndarray | None
    mean_activation: np.ndarray
    histogram_counts: np.ndarray
    histogram_edges: np.ndarray
    projection: np.ndarray
    projection_variance: np.ndarray
    projection_labels: np.ndarray | None
    found_by: str = "module"
    zero_rate: np.ndarray | None = None
    n_positions: int = 0

    @property
    def width(self) -> int:
        return int(self.mean_activation.shape[0])

    @property
    def rows(self) -> int:
        """Rows the rates are fractions of (``n_positions``, or ``n_samples`` for older files)."""
        return self.n_positions or self.n_samples

    @property
    def dead_count(self) -> int:
        return int(self.dead_mask.sum()) if self.dead_mask is not None else 0

    @property
    def dead_fraction(self) -> float:
        return self.dead_count / self.width if self.width else 0.0

    @property
    def never_positive_count(self) -> int:
        """Neurons whose (pre-)activation is never positive; for rectifiers these are the dead ones."""
        return int((self.fire_rate == 0).sum()) if self.fire_rate is not None else 0

    def nearly_dead_count(self, threshold: float | None = None) -> int:
        """Neurons that fire, but on fewer than ``threshold`` of the rows (units with a dead mask only)."""
        if self.fire_rate is None or self.dead_mask is None:
            return 0
        t = self.nearly_dead_threshold if threshold is None else threshold
        return int(((self.fire_rate > 0) & (self.fire_rate < t)).sum())


@result
class DeathTimeline:
    """Dead neurons over training, from weight snapshots.

    ``dead_counts`` is ``(layers, epochs)``; ``death_epoch[l][j]`` is the first
    snapshot epoch from which neuron j of layer l stayed dead to the last
    snapshot, or -1 if it is alive at the last snapshot.
    """

    epochs: np.ndarray
    layers: tuple[str, ...]
    dead_counts: np.ndarray
    death_epoch: tuple[np.ndarray, ...]


_FLUSH_ROWS = 2**23  # float32 counts are exact below 2**24; flush to float64 well before


def _group(kind: str) -> str:
    """Which rule a kind of unit is counted by: rectifier, leaky, smooth, squasher or unknown."""
    for name, kinds in (("rectifier", RECTIFIERS), ("leaky", LEAKY), ("smooth", SMOOTH), ("squasher", SQUASHERS)):
        if kind in kinds:
            return name
    return "unknown"


def _saturated(kind: str, out: torch.Tensor, indicator: torch.Tensor) -> None:
    """``indicator`` := 1 where the squashing unit ``kind`` sits in a flat tail."""
    if kind in ("tanh", "hardtanh"):  # range (-1, 1)
        torch.gt(out.abs(), SATURATION, out=indicator)
    else:  # sigmoid, hardsigmoid: range (0, 1)
        torch.gt((out - 0.5).abs(), SATURATION - 0.5, out=indicator)


class _Sums:
    """Per-neuron sums on the device: float64 ``totals`` ``(k, m)`` and the float32 ``partial`` sums
    ``(k, 1, m)`` added since the last flush (``rows``: their ``k`` views), plus one reused indicator
    buffer. The census keeps k = 3 (fired, zero, total); the live Monitor k = 2 (fired, other).

    Each batch adds into the float32 rows with one GEMM against a row of ones (the cheapest column sum
    on CPU and GPU alike); before they would pass ``_FLUSH_ROWS`` rows they are folded into float64,
    so counts stay exact for any number of rows.
    """

    def __init__(self, width: int, device: torch.device, k: int = 3) -> None:
        self.width = width
        self.totals = torch.zeros(k, width, dtype=torch.float64, device=device)
        self.partial = torch.zeros(k, 1, width, device=device)
        self.rows = self.partial.unbind(0)  # the k row views: unpacked once, not on every call
        self.pending_rows = 0
        self._buffers: tuple[torch.Tensor, torch.Tensor] | None = None

    def add_rows(self, rows: int) -> None:
        """Make room for ``rows`` more rows in the float32 sums (folding them into float64 first if needed)."""
        if self.pending_rows + rows > _FLUSH_ROWS:
            self.flush()
        self.pending_rows += rows

    def scratch(self, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(indicator (rows, m), ones (1, rows))`` on the sums' device, reused while the row count stays
        the same (only the latest shape is kept: variable-length batches must not grow a cache)."""
        if self._buffers is None or self._buffers[1].shape[1] != rows:
            device = self.totals.device
            self._buffers = (torch.empty(rows, self.width, device=device), torch.ones(1, rows, device=device))
        return self._buffers

    def flush(self) -> None:
        if self.pending_rows:
            self.totals += self.partial[:, 0]
            self.partial.zero_()
            self.pending_rows = 0


@dataclass
class _Accumulator:
    """One site's running statistics, kept on the device for the whole pass (update / flush / finish).

    Sums (:class:`_Sums`, exact for any dataset size): ``fired``, rows with a positive (pre-)activation (saturated, for squashers);
    ``zero``, smooth units' rows with a near-zero output; ``total``, the sum of outputs.
    """

    site: Site
    keep_samples: int
    group: str = ""
    sums: _Sums | None = None  # from the first call, when the width and device are known
    n_rows: int = 0
    n_samples: int = 0
    last_batch: int = -1
    kept: list[torch.Tensor] = field(default_factory=list)
    kept_labels: list[torch.Tensor] | None = field(default_factory=list)
    kept_n: int = 0
    kept_chunks: list[tuple[int, int, int]] = field(default_factory=list)  # (batch index, first row, rows)
    rows_in_batch: int = 0

    def __post_init__(self) -> None:
        self.group = _group(self.site.activation)

    def update(self, batch: Batch, batch_index: int, pre: torch.Tensor, out: torch.Tensor) -> None:
        """Add one application of the site's activation: ``pre``/``out`` ``(..., m)``."""
        # called once per site and batch: kept to the few tensor calls a 2-D float32 output needs
        width = out.shape[-1]
        positions = batch.position_mask(out.shape) if batch.mask is not None else None
        if out.dim() != 2:
            pre, out = pre.reshape(-1, width), out.reshape(-1, width)
        if out.requires_grad or pre.requires_grad:
            pre, out = pre.detach(), out.detach()
        if positions is not None:  # padded positions are not data: leave their rows out
            real = positions.reshape(-1)
            pre, out = pre[real], out[real]
        if out.dtype != torch.float32:
            out = out.float()
        if pre.dtype != torch.float32:
            pre = pre.float()
        sums = self.sums
        if sums is None:
            sums = self.sums = _Sums(int(width), out.device)
        elif width != sums.width:
            raise InspectorError(
                f"layer {self.site.layer}: its activation saw {width} features on one call and "
                f"{sums.width} on another; declare its activation with activations="
            )
        if batch_index != self.last_batch:
            self.last_batch = batch_index
            self.n_samples += len(batch)
            self.rows_in_batch = 0
        rows = out.shape[0]
        if rows:
            self._sum(sums, pre, out, rows)
        if self.kept_n < self.keep_samples:
            self._keep(batch, out, positions is None)
        self.n_rows += rows
        self.rows_in_batch += rows

    def _sum(self, sums: _Sums, pre: torch.Tensor, out: torch.Tensor, rows: int) -> None:
        sums.add_rows(rows)
        indicator, ones = sums.scratch(rows)
        fired, zero, total = sums.rows
        if self.group == "squasher":
            _saturated(self.site.activation, out, indicator)
        else:
            # ReLU fires where its output is > 0; every other unit where its input is
            torch.gt(out if self.group == "rectifier" else pre, 0, out=indicator)
        fired.addmm_(ones, indicator)
        if self.group == "smooth":
            torch.lt(out.abs(), near_zero(self.site.activation), out=indicator)
            zero.addmm_(ones, indicator)
        total.addmm_(ones, out)

    def _keep(self, batch: Batch, out: torch.Tensor, unmasked: bool) -> None:
        if self.kept_n >= self.keep_samples:
            return
        take = out[: self.keep_samples - self.kept_n]
        self.kept.append(take.clone())
        self.kept_chunks.append((self.last_batch, self.rows_in_batch, int(take.shape[0])))
        self.kept_n += take.shape[0]
        labels = batch.labels
        # a projection point is labelled only when it is one sample with one integer label
        rows_are_samples = (
            unmasked
            and labels is not None
            and labels.dim() == 1
            and out.shape[0] == len(batch)
            and not labels.is_floating_point()
            and not labels.is_complex()
        )
        if self.kept_labels is not None and rows_are_samples:
            self.kept_labels.append(labels[: take.shape[0]].detach().clone())  # type: ignore[index]
        else:
            self.kept_labels = None

    def local_state(self) -> dict[str, Any] | None:
        """What the merge needs first from this rank: the width, and the order keys ``(k, 2)`` (global batch
        index, row within the batch) of the rows kept here; ``None`` when the data never reached the site."""
        if self.sums is None:
            return None
        keys = np.array(
            [(b, first + i) for b, first, rows in self.kept_chunks for i in range(rows)], dtype=np.int64
        ).reshape(-1, 2)
        return {"width": self.sums.width, "keys": keys, "labelled": self.kept_labels is not None}

    def kept_prefix(self, count: int) -> tuple[np.ndarray, np.ndarray | None] | None:
        """The first ``count`` kept rows ``(count, m)`` and their labels (``None`` when nothing is sent)."""
        if count == 0 or not self.kept:
            return None
        rows = torch.cat(self.kept)[:count].float().cpu().numpy()
        labels = torch.cat(self.kept_labels)[:count].cpu().numpy() if self.kept_labels else None
        return rows, labels

    def merge(
        self,
        states: list[dict[str, Any] | None],
        prefixes: list[tuple[np.ndarray, np.ndarray | None] | None],
        totals: np.ndarray,
        counts: np.ndarray,
    ) -> None:
        """Replace this rank's statistics with every rank's: ``totals`` ``(3, m)`` and ``counts`` (rows,
        samples) summed over ranks; the kept rows are the ranks' ``prefixes`` (each rank's share of the
        first ``keep_samples`` rows in global (batch, row) order) in that order: the rows one process keeps."""
        present = [s for s in states if s is not None]
        width = int(present[0]["width"])
        self.sums = _Sums(width, torch.device("cpu"))
        self.sums.totals = torch.from_numpy(totals.reshape(3, width))
        self.n_rows, self.n_samples = int(counts[0]), int(counts[1])
        self.kept, self.kept_n = [], 0
        labelled = all(s["labelled"] for s in present)
        self.kept_labels = [] if labelled else None
        sent = [(s, p) for s, p in zip(states, prefixes, strict=True) if s is not None and p is not None]
        if not sent:
            return
        keys = np.concatenate([s["keys"][: len(p[0])] for s, p in sent])
        order = np.lexsort((keys[:, 1], keys[:, 0]))
        self.kept = [torch.from_numpy(np.concatenate([p[0] for _, p in sent])[order])]
        self.kept_n = len(order)
        if labelled and all(p[1] is not None for _, p in sent):
            self.kept_labels = [torch.from_numpy(np.concatenate([p[1] for _, p in sent])[order])]  # type: ignore[misc]
        else:
            self.kept_labels = None

    def finish(self, threshold: float) -> LayerActivations:
        """The site's :class:`LayerActivations`; call after :meth:`_Sums.flush`, on a site that was called."""
        if self.sums is None:
            raise ValueError(f"layer {self.site.layer} was never called")
        width = self.sums.width
        kept = torch.cat(self.kept).float().cpu() if self.kept else torch.zeros(0, width)
        counts, edges = _histogram(kept)
        projection, variance = _pca_2d(kept)
        labels = torch.cat(self.kept_labels).cpu().numpy() if self.kept_labels else None
        fired, zero, total = self.sums.totals.cpu()
        n = max(self.n_rows, 1)
        fire_rate = dead = nearly = saturation = zero_rate = None
        rate = (fired / n).numpy()
        if self.group == "squasher":
            saturation = rate
        else:
            fire_rate = rate
        if self.group in ("rectifier", "leaky"):
            dead = fired.numpy() == 0
            nearly = (~dead) & (rate < threshold)
        if self.group == "smooth":
            zero_rate = (zero / n).numpy()
        return LayerActivations(
            layer=self.site.layer,
            module=self.site.module,
            activation=self.site.activation,
            n_samples=int(self.n_samples),
            fire_rate=fire_rate,
            dead_mask=dead,
            nearly_dead_mask=nearly,
            nearly_dead_threshold=float(threshold),
            saturation_rate=saturation,
            mean_activation=(total / n).numpy(),
            histogram_counts=counts,
            histogram_edges=edges,
            projection=projection,
            projection_variance=variance,
            projection_labels=labels,
            found_by=self.site.found_by,
            zero_rate=zero_rate,
            n_positions=int(self.n_rows),
        )


def _histogram(kept: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per-neuron counts ``(m, bins)`` of the kept rows ``(k, m)`` over shared edges ``(bins + 1,)``."""
    width = kept.shape[1]
    lo, hi = (float(kept.min()), float(kept.max())) if kept.numel() else (0.0, 1.0)
    if hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, HISTOGRAM_BINS + 1)
    bins = torch.clamp(((kept - lo) / (hi - lo) * HISTOGRAM_BINS).long(), 0, HISTOGRAM_BINS - 1)
    flat = bins + torch.arange(width) * HISTOGRAM_BINS
    counts = torch.bincount(flat.reshape(-1), minlength=width * HISTOGRAM_BINS).reshape(width, HISTOGRAM_BINS)
    return counts.numpy().astype(np.int64), edges


def _pca_2d(a: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Scores on the top two principal components ``(k, 2)`` and their explained-variance ratios.

    Exact: the top two eigenpairs of the smaller of the ``m x m`` covariance and the
    ``k x k`` Gram matrix of the centred activations (LAPACK's subset eigensolver).
    """
    k, m = a.shape
    scores = np.zeros((k, 2), dtype=np.float32)
    ratio = np.zeros(2)
    if k < 2 or m == 0:
        return scores, ratio
    centred = a.double() - a.double().mean(dim=0, keepdim=True)
    total = float((centred**2).sum())
    if total <= 0:
        return scores, ratio
    q = min(k, m, 2)
    gram = centred.T @ centred if m <= k else centred @ centred.T
    n = gram.shape[0]
    # only the top q eigenpairs (LAPACK's subset driver): exact, and a few times faster than all n
    values, vectors = scipy.linalg.eigh(gram.numpy(), subset_by_index=[n - q, n - 1])  # ascending
    eigenvalues, top = torch.from_numpy(values).flip(0), torch.from_numpy(vectors).flip(1)
    if m <= k:
        projected = centred @ top
    else:
        projected = top * eigenvalues.clamp_min(0).sqrt()
    scores[:, :q] = projected.float().numpy()
    ratio[:q] = eigenvalues.clamp_min(0).numpy() / total
    return scores, ratio


def _is_sites(value: Any) -> bool:
    return isinstance(value, (tuple, list)) and all(isinstance(s, Site) for s in value)


def _source(data: Any, labels: Any, batch_size: int, device: torch.device) -> DataSource:
    if labels is None:
        return as_source(data, batch_size=batch_size, device=device)
    if isinstance(data, DataSource):
        raise InspectorError("labels were given beside a DataSource; put them in its batches")
    return as_source(
        (data, labels if isinstance(labels, (torch.Tensor, np.ndarray)) else np.asarray(labels)),
        batch_size=batch_size,
        device=device,
    )


def activation_census(
    model: nn.Module,
    data: Any,
    sites: tuple[Site, ...] | None = None,
    *,
    nearly_dead_threshold: float = 0.01,
    keep_samples: int = 2048,
    batch_size: int = 1024,
    device: torch.device | str | None = None,
) -> tuple[LayerActivations, ...]:
    """Count every counted site of ``model`` over ``data`` in one pass.

    ``data``: a :class:`~inspector.analysis.inputs.DataSource` or anything
    :func:`~inspector.analysis.inputs.as_source` accepts (``(X, y)``, a tensor,
    a ``Dataset``, a ``DataLoader``, a list of batches, a dict batch); integer
    batch labels label the projection. The older ``activation_census(model, X, y)``
    still works: an array in place of ``sites`` is the labels ``y`` ``(n,)``.
    ``sites``: from :func:`~inspector.analysis.sites.discover_sites`; ``None``
    discovers them on the first batch.

    Returns one :class:`LayerActivations` per counted site (``site.counted``) that
    the data reached, in site order. The model is left as it was: eval mode inside,
    hooks removed and ``training`` restored afterwards, even if the forward pass raises.
    """
    labels = None
    if sites is not None and not _is_sites(sites):
        labels, sites = sites, None
    dev = torch.device(device) if device is not None else model_device(model)
    source = distributed.shard(_source(data, labels, batch_size, dev), data)
    current: list[Any] = [None, -1]  # the batch in flight and its index
    accumulators: dict[str, _Accumulator] = {}

    def observe(layer: str, pre: torch.Tensor, out: torch.Tensor) -> None:
        accumulators[layer].update(current[0], current[1], pre, out)

    shard = source.shard
    with distributed.together("the activation census"), inspecting(model) as guard:
        if sites is None:
            sites = discover_sites(model, source.first())
        counted = tuple(s for s in sites if s.counted)
        accumulators.update((s.layer, _Accumulator(s, keep_samples)) for s in counted)
        observer = SiteObserver(model, counted, observe, guard)
        with torch.inference_mode():
            for index, batch in enumerate(source):
                # the global batch index: it orders the kept rows across ranks as one process would
                current[:] = [batch, index * shard.world + shard.rank if shard is not None else index]
                observer.start_batch()
                batch.call(model)
            for acc in accumulators.values():  # the totals are inference tensors: fold them in while still in the mode
                if acc.sums is not None:
                    acc.sums.flush()
    if distributed.active():
        _merge([accumulators[s.layer] for s in counted])
    # a site the data never reached (a layer this forward pass does not use) has nothing to report
    return tuple(
        accumulators[s.layer].finish(nearly_dead_threshold) for s in counted if accumulators[s.layer].sums is not None
    )


def _merge(accumulators: list[_Accumulator]) -> None:
    """Every rank's census, on every rank, in three collectives for all sites together: the order keys
    of the kept rows (``all_gather``, 16 bytes a row), counts and sums (one ``all_reduce``: exact, 0/1
    counts are whole numbers in float64), then only the kept rows that are among the first
    ``keep_samples`` in global order (``all_gather``: ``keep_samples x m`` floats per site over all
    ranks, whatever their number). A site some rank never reached gets zeros there."""
    states = distributed.all_gather_objects([acc.local_state() for acc in accumulators])
    me = distributed.rank()
    totals, counts, sending = [], [], []
    for i, acc in enumerate(accumulators):
        site_states = [rank_states[i] for rank_states in states]
        present = [s for s in site_states if s is not None]
        width = int(present[0]["width"]) if present else 0
        local = acc.sums.totals.cpu().numpy() if acc.sums is not None else np.zeros((3, width))
        totals.append(local.astype(np.float64).reshape(-1))
        counts.append(np.array([acc.n_rows, acc.n_samples], dtype=np.int64))
        # how many of this rank's kept rows are among the first keep_samples of all ranks' (its prefix)
        keys = [s["keys"] if s is not None else np.zeros((0, 2), np.int64) for s in site_states]
        owner = np.concatenate([np.full(len(k), r) for r, k in enumerate(keys)]) if keys else np.zeros(0)
        every = np.concatenate(keys) if keys else np.zeros((0, 2), np.int64)
        first = owner[np.lexsort((every[:, 1], every[:, 0]))[: acc.keep_samples]]
        sending.append(acc.kept_prefix(int((first == me).sum())))
    summed, summed_counts = distributed.all_reduce_sum(
        np.concatenate(totals) if totals else np.zeros(0),
        np.concatenate(counts) if counts else np.zeros(0, np.int64),
    )
    prefixes = distributed.all_gather_objects(sending)
    start = 0
    for i, acc in enumerate(accumulators):
        size = totals[i].size
        site_states = [rank_states[i] for rank_states in states]
        if any(s is not None for s in site_states):
            site_prefixes = [rank_prefixes[i] for rank_prefixes in prefixes]
            acc.merge(site_states, site_prefixes, summed[start : start + size], summed_counts[2 * i : 2 * i + 2])
        start += size


def death_timeline(
    model: nn.Module,
    snapshots: Mapping[int, Mapping[str, torch.Tensor]],
    data: Any,
    *,
    sites: tuple[Site, ...] | None = None,
    batch_size: int = 1024,
) -> DeathTimeline | None:
    """Dead neurons per layer at each snapshot epoch, and the epoch each final-dead neuron died.

    ``data`` as for :func:`activation_census`; ``sites`` found once (on the first
    snapshot when ``None``) and used for every snapshot. Only units with a dead mask
    (rectifiers, leaky units) are followed. ``model`` is only used as a template: it
    is copied, never changed.
    """
    if not snapshots:
        return None
    epochs = sorted(int(e) for e in snapshots)
    template = copy.deepcopy(model)
    source = _source(data, None, batch_size, model_device(template))
    masks: list[list[np.ndarray]] = []
    names: tuple[str, ...] = ()
    for epoch in epochs:
        template.load_state_dict(snapshots[epoch])
        if sites is None:
            sites = discover_sites(template, source.first())
        census = activation_census(template, source, sites, batch_size=batch_size, keep_samples=0)
        census = tuple(c for c in census if c.dead_mask is not None)
        names = tuple(c.layer for c in census)
        masks.append([c.dead_mask for c in census])  # type: ignore[misc]
    if not names:
        return None
    dead = np.array([[m.sum() for m in per_epoch] for per_epoch in masks], dtype=np.int64).T
    death_epoch = []
    for layer in range(len(names)):
        stack = np.stack([per_epoch[layer] for per_epoch in masks])  # (epochs, m)
        # stayed dead from epoch index e to the end <=> suffix-all of the stack is true
        suffix_dead = np.flip(np.logical_and.accumulate(np.flip(stack, axis=0), axis=0), axis=0)
        first = np.where(suffix_dead.any(axis=0), suffix_dead.argmax(axis=0), -1)
        death_epoch.append(np.where(first >= 0, np.asarray(epochs)[np.maximum(first, 0)], -1).astype(np.int64))
    return DeathTimeline(
        epochs=np.asarray(epochs, dtype=np.int64), layers=names, dead_counts=dead, death_epoch=tuple(death_epoch)
    )
