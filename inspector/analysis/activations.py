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

Nothing reads the model's output: each forward ends where a first one (of two rows) showed that no site
is left (:mod:`inspector.analysis.cut`), so what comes after the last counted layer (GPT-2's final norm
and its 50,257-wide ``lm_head``, a classifier head, a masked LM's decoder to its vocabulary) is not computed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse.linalg
import torch
from torch import nn

from inspector.analysis import distributed
from inspector.analysis.cut import ForwardCut
from inspector.analysis.guard import inspecting
from inspector.analysis.inputs import Batch, DataSource, as_source, model_device
from inspector.analysis.sites import (
    Site,
    SiteObserver,
    discover_sites,
    near_zero,
)
from inspector.analysis.top_examples import (
    ABOVE_CHUNK,
    BatchSizes,
    TopExamples,
    TopExamplesStatistic,
    attach,
    chunk_maxima,
)
from inspector.core import kernels
from inspector.core.counting import SATURATION as SATURATION  # re-exported: the tail the census calls saturated
from inspector.core.counting import Sums, activation_group, fire_rule, saturated
from inspector.core.statistic import Rows, Statistic, merge_statistics
from inspector.errors import InspectorError
from inspector.results import result

HISTOGRAM_BINS = 30
# rows counted per block on the CPU: a block's float32 indicator (SUM_ROWS x width) stays in the cache
SUM_ROWS = 256
assert SUM_ROWS % ABOVE_CHUNK == 0  # each block holds whole chunks of the top examples' maxima
# the projection's solver: exact up to this many rows or columns (fast there), Lanczos above
EXACT_PCA_SIDE = 256
LANCZOS_VECTORS = 32
LANCZOS_TOL = 1e-10
# PROPACK first: its Krylov dimension at most, and the residual it must reach (relative to lambda_1; an
# eigenvector's error is at most the residual over the gap to the next eigenvalue)
PROPACK_STEPS = 200
PROPACK_RESIDUAL = 1e-8


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
    existed) means the same as ``n_samples``. ``top_examples``: each neuron's top-activating examples
    (:mod:`inspector.analysis.top_examples`), ``None`` when not asked for.
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
    top_examples: TopExamples | None = None

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


class SiteCensus(Statistic):
    """One site's census over a pass, as a :class:`~inspector.core.statistic.Statistic`: ``update``
    per application of the site's activation, merged across ranks by the base class, ``finish`` to a
    :class:`LayerActivations`.

    States: ``totals`` ``(3, m)`` ("sum", float64; the :class:`~inspector.core.counting.Sums` on the
    device, exact for any dataset size): ``fired``, rows with a positive (pre-)activation (saturated,
    for squashers); ``zero``, smooth units' rows with a near-zero output; ``total``, the sum of
    outputs. ``n_rows`` and ``n_samples`` ("sum"). ``kept`` ("kept"): the first ``keep_samples`` rows
    ``(out rows, labels)`` in global (batch index, row) order; ``unlabelled`` ("sum"): kept chunks
    whose rows are not samples with one integer label (then the projection has no labels).
    """

    totals: torch.Tensor | np.ndarray | float
    n_rows: int
    n_samples: int
    unlabelled: int
    kept: Rows

    def __init__(self, site: Site, keep_samples: int, nearly_dead_threshold: float = 0.01) -> None:
        super().__init__()
        self.site = site
        self.keep_samples = keep_samples
        self.nearly_dead_threshold = nearly_dead_threshold
        self.group = activation_group(site.activation)
        self.add_state("totals", 0.0, "sum")  # becomes the Sums' (3, m) float64 totals on the first call
        self.add_state("n_rows", 0, "sum")
        self.add_state("n_samples", 0, "sum")
        self.add_state("unlabelled", 0, "sum")
        self.add_state("kept", reduction="kept", limit=keep_samples)
        self.sums: Sums | None = None  # from the first call, when the width and device are known
        self.last_batch = -1
        self.rows_in_batch = 0
        # the top examples' chunk maxima of the last call's output (see update's ``peaks``), and their buffer
        self.peaks: torch.Tensor | None = None
        self._peaks_buffer: torch.Tensor | None = None

    @property
    def reached(self) -> bool:
        """Whether the data reached the site (on some rank, once merged)."""
        return bool(np.ndim(self.totals))

    def update(self, batch: Batch, batch_index: int, pre: torch.Tensor, out: torch.Tensor, peaks: bool = False) -> None:
        """Add one application of the site's activation: ``pre``/``out`` ``(..., m)``; ``batch_index``
        is the batch's global index (it orders the kept rows across ranks as one process would).
        ``peaks``: also leave in :attr:`peaks` the top examples' chunk maxima of ``out``'s float32 rows
        (:func:`~inspector.analysis.top_examples.chunk_maxima`), computed while each block of rows is in
        the cache for the counts (else ``None``: the top examples compute their own)."""
        self.peaks = None
        # called once per site and batch: kept to the few tensor calls a 2-D float32 output needs
        width = out.shape[-1]
        positions = batch.position_mask(out.shape) if batch.mask is not None else None
        if out.dim() != 2:
            pre, out = pre.reshape(-1, width), out.reshape(-1, width)
        if out.requires_grad or pre.requires_grad:
            pre, out = pre.detach(), out.detach()
        if out.dtype != torch.float32:
            out = out.float()
        if pre.dtype != torch.float32:
            pre = pre.float()
        sums = self.sums
        if sums is None:
            sums = self.sums = Sums(int(width), out.device)
            self.totals = sums.totals  # the same tensor: each flush adds into it in place
        elif width != sums.width:
            raise InspectorError(
                f"layer {self.site.layer}: its activation saw {width} features on one call and "
                f"{sums.width} on another; declare its activation with activations="
            )
        if batch_index != self.last_batch:
            self.last_batch = batch_index
            self.n_samples += len(batch)
            self.rows_in_batch = 0
        real: torch.Tensor | None = None
        rows = out.shape[0]
        peaks_out = self._peaks_out(rows, width, out) if peaks else None
        if positions is not None:
            # padded positions are not data: they weigh 0 in the column sums' GEMM (indexing the real
            # rows out would copy both tensors on every call, the largest cost of the census after
            # the forward itself); counts of 0/1 indicators weighted 0/1 stay exact
            real = positions.reshape(-1)
            rows = int(real.sum())
            if rows == real.numel():  # no padding in this batch: every row counts, as without a mask
                real = None
            else:
                # a weight of 0 does not cancel a NaN or an infinity (0 * inf is NaN): padded rows that hold
                # one (a model need not compute anything sensible there) are zeroed in a copy first
                padded = torch.nonzero(~real).reshape(-1)
                if not bool(torch.isfinite(out.index_select(0, padded)).all()):
                    peaks_out = None  # the maxima must be of the output itself, not of this copy
                    out = torch.where(real[:, None], out, torch.zeros((), dtype=out.dtype, device=out.device))
                    pre = torch.where(real[:, None], pre, torch.zeros((), dtype=pre.dtype, device=pre.device))
        if rows:
            self._sum(sums, pre, out, real, peaks_out)
            self.peaks = peaks_out
        if not self.kept.full:
            self._keep(batch, out if real is None else _first_real(out, real, self.keep_samples), positions is None)
        self.n_rows += rows
        self.rows_in_batch += rows

    def _peaks_out(self, rows: int, width: int, out: torch.Tensor) -> torch.Tensor | None:
        """The buffer for ``out``'s chunk maxima ``(rows // ABOVE_CHUNK, m)`` (reused while the shape stays),
        or ``None`` when ``out`` is not contiguous or has no whole chunk."""
        count = rows // ABOVE_CHUNK
        if count == 0 or not out.is_contiguous():
            return None
        buffer = self._peaks_buffer
        if buffer is None or buffer.shape != (count, width) or buffer.device != out.device:
            buffer = self._peaks_buffer = torch.empty(count, width, device=out.device)
        return buffer

    def _sum(
        self,
        sums: Sums,
        pre: torch.Tensor,
        out: torch.Tensor,
        real: torch.Tensor | None,
        peaks: torch.Tensor | None = None,
    ) -> None:
        """Add the rows of ``pre``/``out`` ``(r, m)`` that ``real`` ``(r,)`` bool marks (``None``: all) into
        the sums; with ``peaks``, write ``out``'s chunk maxima there as well.

        On the CPU, one compiled pass (:func:`inspector.core.kernels.site_counts`: every statistic of a row
        while it is in the L1 cache; about half the time of the operations below on a transformer MLP's
        4096 x 1536 outputs). Else with PyTorch operations, block by block of :data:`SUM_ROWS` rows on the
        CPU (the indicator of a block stays in the cache between the comparison that writes it and the
        GEMM that reads it) and whole-batch passes on an accelerator."""
        rows = out.shape[0]
        group, kind = self.group, self.site.activation
        # ReLU fires where its output is > 0, every other unit where its input is
        source = out if group in ("rectifier", "squasher") else pre
        if kernels.usable(source, out):  # on the CPU: every statistic in one compiled pass over the rows
            near = near_zero(kind) if group == "smooth" else None
            if kernels.site_counts(source, out, real, *fire_rule(kind), near, sums.totals, peaks, ABOVE_CHUNK):
                return
        # the real rows weigh 1 and padded ones 0 in the column sums' GEMM (counts of 0/1 indicators stay exact)
        weights = real.reshape(1, -1).to(torch.float32) if real is not None else None
        sums.add_rows(rows)
        step = rows if out.device.type != "cpu" else min(rows, SUM_ROWS)
        buffer, ones = sums.scratch(step)
        fired, zero, total = sums.rows
        for start in range(0, rows, step):
            stop = min(start + step, rows)
            indicator = buffer[: stop - start]
            weight = weights[:, start:stop] if weights is not None else ones[:, : stop - start]
            block = out[start:stop]
            if group == "squasher":
                saturated(kind, block, indicator)
            else:
                torch.gt(source[start:stop], 0, out=indicator)
            fired.addmm_(weight, indicator)
            if group == "smooth":
                torch.abs(block, out=indicator)
                torch.lt(indicator, near_zero(kind), out=indicator)
                zero.addmm_(weight, indicator)
            total.addmm_(weight, block)
            if peaks is not None:  # SUM_ROWS is a multiple of ABOVE_CHUNK: the chunks of this block
                first, last = start // ABOVE_CHUNK, stop // ABOVE_CHUNK
                if last > first:
                    chunk_maxima(block, out=peaks[first:last])

    def _keep(self, batch: Batch, out: torch.Tensor, unmasked: bool) -> None:
        take = out[: self.keep_samples - self.kept.count]
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
        if rows_are_samples:
            kept_labels = labels[: take.shape[0]].detach().clone()  # type: ignore[index]
        else:
            kept_labels = torch.zeros(take.shape[0], dtype=torch.int64, device=take.device)
            self.unlabelled += 1
        self.kept.add((take.clone(), kept_labels), key=(self.last_batch, self.rows_in_batch))

    def flush(self) -> None:
        """Fold the device's float32 sums into the float64 ``totals`` (before a merge or finish)."""
        if self.sums is not None:
            self.sums.flush()

    def finish(self, scratch: Scratch | None = None) -> LayerActivations:
        """The site's :class:`LayerActivations`; call after :meth:`flush`, on a site that was reached.
        ``scratch``: the float64 memory the projection works in, shared by the layers finished one after
        another (else made here)."""
        if not self.reached:
            raise ValueError(f"layer {self.site.layer} was never called")
        threshold = self.nearly_dead_threshold
        totals = torch.as_tensor(self.totals).cpu()
        width = int(totals.shape[1])
        rows_chunks = self.kept.column(0)
        if not rows_chunks:
            kept = torch.zeros(0, width)
        else:  # usually one batch held them all: then no copy
            kept = (rows_chunks[0] if len(rows_chunks) == 1 else torch.cat(rows_chunks)).float().cpu()
        counts, edges = _histogram(kept)
        projection, variance = _pca_2d(kept, scratch)
        labels = torch.cat(self.kept.column(1)).cpu().numpy() if rows_chunks and not self.unlabelled else None
        fired, zero, total = totals
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


def _first_real(out: torch.Tensor, real: torch.Tensor, limit: int) -> torch.Tensor:
    """``out[real][:limit]`` without copying the real rows past the first ``limit``."""
    return out.index_select(0, torch.nonzero(real).reshape(-1)[:limit])


def _histogram(kept: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per-neuron counts ``(m, bins)`` of the kept rows ``(k, m)`` over shared edges ``(bins + 1,)``.

    Block by block of :data:`SUM_ROWS` rows into buffers made once, so that the bin numbers of a block
    are counted while they are in the cache (and no temporary as large as ``kept`` is made)."""
    width = kept.shape[1]
    lo, hi = (float(v) for v in torch.aminmax(kept)) if kept.numel() else (0.0, 1.0)
    if hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, HISTOGRAM_BINS + 1)
    compiled = kernels.histogram(kept, lo, hi, HISTOGRAM_BINS) if np.isfinite([lo, hi]).all() else None
    if compiled is not None:  # on the CPU: one pass, the same bins
        return compiled, edges
    counts = torch.zeros(width * HISTOGRAM_BINS, dtype=torch.int64)
    offsets = torch.arange(width) * HISTOGRAM_BINS  # neuron j's bins start at j * bins
    step = max(min(kept.shape[0], SUM_ROWS), 1)  # no row kept: no block
    scaled, bins = torch.empty(step, width), torch.empty(step, width, dtype=torch.int64)
    for start in range(0, kept.shape[0], step):
        block = kept[start : start + step]
        rows = block.shape[0]
        # the same float32 operations as ((kept - lo) / (hi - lo) * bins).long(): the same bins, bit for bit
        scaled_block, flat = scaled[:rows], bins[:rows]
        torch.sub(block, lo, out=scaled_block).div_(hi - lo).mul_(HISTOGRAM_BINS)
        flat.copy_(scaled_block).clamp_(0, HISTOGRAM_BINS - 1).add_(offsets)
        counts.add_(torch.bincount(flat.view(-1), minlength=width * HISTOGRAM_BINS))
    return counts.view(width, HISTOGRAM_BINS).numpy(), edges


class Scratch:
    """Float64 memory for the census finish, reused by each layer in turn: a layer's centred kept rows
    (2048 x 3072 are 50 MB) go where the previous layer's were, instead of into fresh memory that the
    allocator may have handed back to the system (then every page of it faults in again, a few
    microseconds each: about as long as the projection's arithmetic on a 1536-wide layer)."""

    def __init__(self) -> None:
        self._memory = torch.empty(0, dtype=torch.float64)

    def matrices(self, *shapes: tuple[int, int]) -> tuple[torch.Tensor, ...]:
        """Uninitialised float64 matrices of these ``shapes``, side by side in the reused memory (each
        call's matrices replace the previous call's)."""
        sizes = [rows * columns for rows, columns in shapes]
        if self._memory.numel() < sum(sizes):
            self._memory = torch.empty(sum(sizes), dtype=torch.float64)
        parts = self._memory[: sum(sizes)].split(sizes)
        return tuple(part.view(shape) for part, shape in zip(parts, shapes))


def _centred(a: torch.Tensor, scratch: Scratch | None = None) -> tuple[torch.Tensor, float]:
    """``a`` ``(k, m)`` in float64 with each column's mean taken off, and its total sum of squares
    (in ``scratch``'s memory when given: valid until its next use).

    Block by block of :data:`SUM_ROWS` rows: each block is converted, centred and squared while it is in
    the cache, into the one float64 matrix the solver needs (no float64 temporary besides it). The sum
    of squares is summed per column (down the rows, in row order) and then over the columns: the same
    order, and so the same bits, whatever the thread count (one process and torchrun's one-thread
    ranks must give the same ratio to the bit)."""
    k, m = a.shape
    mean = a.sum(dim=0, dtype=torch.float64).div_(k)
    squares = torch.zeros(m, dtype=torch.float64)
    step = min(k, SUM_ROWS)
    centred, blocks = (scratch or Scratch()).matrices((k, m), (step, m))
    for start in range(0, k, step):
        block = centred[start : start + step]
        torch.sub(a[start : start + step], mean, out=block)
        squared = torch.mul(block, block, out=blocks[: block.shape[0]])
        squares.add_(squared.sum(dim=0))
    return centred, float(squares.sum())


def _pca_2d(a: torch.Tensor, scratch: Scratch | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Scores on the top two principal components ``(k, 2)`` and their explained-variance ratios
    (``scratch``: the float64 memory to work in, see :class:`Scratch`).

    The top two eigenpairs of the smaller of the ``m x m`` covariance and the ``k x k`` Gram matrix
    of the centred activations ``(k, m)``: exact (LAPACK's subset eigensolver on the formed matrix)
    while the smaller side is at most :data:`EXACT_PCA_SIDE`, else by Lanczos (:func:`_top_eigenpairs`),
    which never forms the matrix: its cost grows with ``k x m``, not with the width squared.
    """
    k, m = a.shape
    scores = np.zeros((k, 2), dtype=np.float32)
    ratio = np.zeros(2)
    if k < 2 or m == 0:
        return scores, ratio
    q = min(k, m, 2)
    lanczos = min(k, m) > EXACT_PCA_SIDE
    found = None
    # Lanczos on the CPU: products of the kept float32 rows less their means, never formed
    rows = kernels.centred_rows(a) if lanczos else None
    if rows is not None:
        total = rows.total
        if total <= 0:
            return scores, ratio
        found = _top_eigenpairs(rows, q)
    if found is None:  # the centred float64 matrix: Lanczos on it without the loops, then the exact solver
        centred, total = _centred(a, scratch)
        if total <= 0:
            return scores, ratio
        if lanczos and rows is None:
            found = _top_eigenpairs(centred.numpy(), q)
    if found is None:
        gram = centred.T @ centred if m <= k else centred @ centred.T
        n = gram.shape[0]
        # only the top q eigenpairs (LAPACK's subset driver): exact, and a few times faster than all n
        values, vectors = scipy.linalg.eigh(gram.numpy(), subset_by_index=[n - q, n - 1])  # ascending
        found = values[::-1].copy(), vectors[:, ::-1].copy(), None
    eigenvalues, top, product = torch.from_numpy(found[0]), torch.from_numpy(found[1]), found[2]
    if m <= k:  # the scores are the rows on the principal axes (the solver's check computed them)
        projected = torch.from_numpy(product) if product is not None else centred @ top
    else:  # the Gram side's eigenvectors, scaled: the same scores without another product
        projected = top * eigenvalues.clamp_min(0).sqrt()
    scores[:, :q] = projected.float().numpy()
    ratio[:q] = eigenvalues.clamp_min(0).numpy() / total
    return scores, ratio


def _top_eigenpairs(
    centred: np.ndarray | kernels.CentredRows, q: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
    """The top ``q`` eigenpairs (descending) of the smaller Gram side of ``centred`` ``(k, m)`` float64
    (a matrix, or :class:`~inspector.core.kernels.CentredRows`: its products), the Gram matrix never
    formed: ``O(k m)`` per step; with them ``centred @ vectors`` ``(k, q)`` when
    ``m <= k`` (the scores, a by-product of the residual check), else ``None``.

    First by Lanczos bidiagonalization of ``centred`` itself (PROPACK, Larsen 1998, as scipy's
    ``svds(solver="propack")``: the top singular triplets, ``lambda = s^2``; about two thirds of the
    products ARPACK needs here), accepted at a residual ``||G v - lambda v|| <= PROPACK_RESIDUAL
    lambda_1``; else by implicitly restarted Lanczos (ARPACK's ``eigsh``; Lehoucq & Sorensen 1996) on
    ``x -> A^T (A x)`` (``m <= k``) or ``x -> A (A^T x)``, accepted at ``10 LANCZOS_TOL lambda_1``.
    Both residuals are checked here; ``None`` (the caller then solves exactly) when neither holds.
    Each eigenvector's sign is fixed by its largest-magnitude entry being positive. When the top
    eigenvalues tie (or nearly), any orthonormal basis of their eigenspace is as correct as another:
    only the spanned subspace, and the eigenvalues, are determined.
    """
    k, m = centred.shape
    matvec: Callable[[np.ndarray], np.ndarray]
    rmatvec: Callable[[np.ndarray], np.ndarray]
    if isinstance(centred, np.ndarray):
        formed = centred
        matvec, rmatvec = formed.__matmul__, formed.T.__matmul__
    else:
        matvec, rmatvec = centred.matvec, centred.rmatvec
    if m <= k:
        n = m

        def gram(x: np.ndarray) -> np.ndarray:
            return rmatvec(matvec(x))

    else:
        n = k

        def gram(x: np.ndarray) -> np.ndarray:
            return matvec(rmatvec(x))

    def checked(
        values: np.ndarray, vectors: np.ndarray, bound: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
        order = np.argsort(values)[::-1]
        values, vectors = values[order], vectors[:, order]
        signs = np.sign(vectors[np.abs(vectors).argmax(axis=0), np.arange(q)])
        vectors = vectors * np.where(signs == 0, 1.0, signs)
        product = matvec(vectors) if m <= k else None  # the scores, kept: gram's first half
        applied = rmatvec(product) if product is not None else gram(vectors)
        residual = np.linalg.norm(applied - vectors * values, axis=0)
        if values[0] <= 0 or not np.all(residual <= bound * values[0]):
            return None
        return values, vectors, product

    found = None
    if q < min(k, m):  # PROPACK asks for fewer triplets than the smaller side
        product = scipy.sparse.linalg.LinearOperator((k, m), matvec=matvec, rmatvec=rmatvec, dtype=np.float64)
        try:
            u, s, vt = scipy.sparse.linalg.svds(
                product, k=q, solver="propack", maxiter=PROPACK_STEPS, random_state=np.random.default_rng(0)
            )
        except (ValueError, np.linalg.LinAlgError):  # not converged in PROPACK_STEPS, or a scipy without it
            pass
        else:
            found = checked(s.astype(np.float64) ** 2, vt.T if m <= k else u, PROPACK_RESIDUAL)
    if found is not None:
        return found
    operator = scipy.sparse.linalg.LinearOperator((n, n), matvec=gram, matmat=gram, dtype=np.float64)
    start = np.random.default_rng(0).standard_normal(n)  # fixed: the same answer on every run
    try:
        values, vectors = scipy.sparse.linalg.eigsh(
            operator, k=q, which="LA", ncv=min(n, LANCZOS_VECTORS), tol=LANCZOS_TOL, v0=start
        )
    except scipy.sparse.linalg.ArpackError:  # includes ArpackNoConvergence
        return None
    return checked(values, vectors, 10 * LANCZOS_TOL)


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
    top_k: int = 0,
) -> tuple[LayerActivations, ...]:
    """Count every counted site of ``model`` over ``data`` in one pass.

    ``data``: a :class:`~inspector.analysis.inputs.DataSource` or anything
    :func:`~inspector.analysis.inputs.as_source` accepts (``(X, y)``, a tensor,
    a ``Dataset``, a ``DataLoader``, a list of batches, a dict batch); integer
    batch labels label the projection. The older ``activation_census(model, X, y)``
    still works: an array in place of ``sites`` is the labels ``y`` ``(n,)``.
    ``sites``: from :func:`~inspector.analysis.sites.discover_sites`; ``None``
    discovers them on the first batch. ``top_k``: keep each neuron's ``top_k`` top-activating
    examples in the same pass (``LayerActivations.top_examples``; 0: none).

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
    accumulators: dict[str, SiteCensus] = {}
    tops: dict[str, TopExamplesStatistic] = {}
    sizes = BatchSizes()

    def observe(layer: str, pre: torch.Tensor, out: torch.Tensor) -> None:
        if cut.probing:  # the rows that show where the forwards can end are counted with their batch
            return
        census = accumulators[layer]
        census.update(current[0], current[1], pre, out, peaks=bool(tops))
        if tops:
            tops[layer].update(current[0], current[1], out, census.peaks)

    shard = source.shard
    with distributed.together("the activation census"), inspecting(model) as guard:
        if sites is None:
            sites = discover_sites(model, source.first())
        counted = tuple(s for s in sites if s.counted)
        accumulators.update((s.layer, SiteCensus(s, keep_samples, nearly_dead_threshold)) for s in counted)
        tops.update((s.layer, TopExamplesStatistic(s.layer, top_k)) for s in counted if top_k > 0)
        observer = SiteObserver(model, counted, observe, guard)
        cut = ForwardCut(model, counted, guard)  # the forwards end after the last site: the output is not read
        with torch.inference_mode():
            for index, batch in enumerate(source):
                # the global batch index: it orders the kept rows across ranks as one process would
                current[:] = [batch, index * shard.world + shard.rank if shard is not None else index]
                sizes.update(current[1], len(batch))
                observer.start_batch()
                cut.run(batch, model)
            for acc in accumulators.values():  # the totals are inference tensors: fold them in while still in the mode
                acc.flush()
            for top in tops.values():
                top.flush()
    # every site's census from every rank, in three collectives for all sites together: the kept rows'
    # order keys, the sums (exact: 0/1 counts are whole numbers in float64), then only the kept rows
    # among the first keep_samples in global order; a site some rank never reached gets zeros there
    merge_statistics([*(accumulators[s.layer] for s in counted), *tops.values(), sizes])
    # a site the data never reached (a layer this forward pass does not use) has nothing to report
    scratch = Scratch()  # one float64 workspace for every layer's projection, one layer after another
    census = tuple(accumulators[s.layer].finish(scratch) for s in counted if accumulators[s.layer].reached)
    return attach(census, tops, sizes)


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
