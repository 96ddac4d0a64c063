"""Weight-magnitude maps, norms, histograms and spectra of dense layers (``nn.Linear`` and
Hugging Face ``Conv1D``, whose stored ``(in, out)`` weight is read transposed).

For a weight ``W`` of shape ``(m, n)`` (m neurons, n inputs):

* ``neuron_norm[j] = ||W[j, :]||_2``: how strongly neuron j listens to its inputs;
* ``input_norm[i] = ||W[:, i]||_2``: how strongly input i is read by the layer;
* ``stable_rank = ||W||_F^2 / ||W||_2^2`` (Rudelson & Vershynin 2007), a smooth
  rank that is 1 for a rank-one matrix and ``min(m, n)`` for an orthogonal one;
* ``singular_values``: the full spectrum, all ``min(m, n)`` values, exact at every
  size (see :func:`singular_values`);
* a layer too large to show cell by cell is block-max-pooled: each cell of the
  map holds ``max |w|`` over a block, so a single large weight is never hidden;
* ``neuron_images``: for a layer that reads an image, or a flattened feature map
  ``(C, H, W)`` (a CNN's dense head, found by :func:`flattened_maps`), each of the
  first :data:`MAX_NEURON_IMAGES` neurons' incoming weights in the map's shape.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from inspector.analysis.guard import inspecting
from inspector.analysis.inputs import Batch
from inspector.analysis.parameters import linear_layers
from inspector.analysis.spectra import SHORT_TAIL, esd_alpha, singular_values
from inspector.core.dense import dense_bias, dense_weight, is_dense
from inspector.results import result

MAX_MAP_SIDE = 768  # 768 x 768 float32 cells stay under 6 MB once Dash has serialised them
HISTOGRAM_BINS = 60
MAX_NEURON_IMAGES = 64  # neurons whose incoming weights are kept as images (the figures show at most 64)
# The near-zero share counts |w| below 1% of the layer's 99.9th percentile of |w|, not of its largest |w|:
# one outlier weight (MiniLM's encoder.layer.0.output.dense: max |w| 7.9, 99.9th percentile 0.18) would
# otherwise set the scale alone. A layer of k weights has its scale unmoved by up to ~k / 1000 outliers.
NEAR_ZERO_QUANTILE = 0.999


@result
class PooledMap:
    """``values[r, c] = max |W|`` over rows ``[r*block_rows, (r+1)*block_rows)`` and the same for columns.

    ``row_offset``/``col_offset`` place the map inside the full weight (non-zero for a zoom).
    With ``block_rows == block_cols == 1`` the map is ``|W|`` itself.
    """

    values: np.ndarray
    block_rows: int
    block_cols: int
    row_offset: int
    col_offset: int
    full_shape: tuple[int, int]

    @property
    def is_full_resolution(self) -> bool:
        return self.block_rows == 1 and self.block_cols == 1


@result
class LayerWeights:
    """Weight statistics of one linear layer; ``values`` is the signed ``(m, n)`` weight when small enough.

    ``near_zero_fraction``: the share of the finite weights with ``|w| < near_zero_threshold``,
    ``near_zero_rel`` (1%) of the 99.9th percentile of ``|w|`` (:data:`NEAR_ZERO_QUANTILE`, robust to a
    few outlier weights; see :func:`abs_quantile`).
    ``singular_values`` holds all ``min(m, n)`` singular values, descending and exact
    (see :func:`singular_values`); ``spectral_norm`` is the first of them.
    ``alpha``: the power-law exponent of the eigenvalues ``s^2`` above ``alpha_xmin``
    (:func:`~inspector.analysis.spectra.esd_alpha`, Martin & Mahoney's heavy-tail metric), fitted to
    ``alpha_tail_size`` eigenvalues with Kolmogorov-Smirnov distance ``alpha_ks_distance``;
    NaN (and a tail of 0) when the layer has too few non-zero singular values to fit;
    :attr:`alpha_short_tail` when the tail is too short to trust (fewer than
    :data:`~inspector.analysis.spectra.SHORT_TAIL` eigenvalues).
    """

    layer: str
    out_features: int
    in_features: int
    values: np.ndarray | None
    magnitude: PooledMap
    neuron_norm: np.ndarray
    input_norm: np.ndarray
    bias: np.ndarray | None
    histogram_counts: np.ndarray
    histogram_edges: np.ndarray
    near_zero_threshold: float
    near_zero_fraction: float
    singular_values: np.ndarray
    spectral_norm: float
    frobenius_norm: float
    stable_rank: float
    neuron_images: np.ndarray | None
    alpha: float = float("nan")
    alpha_xmin: float = float("nan")
    alpha_ks_distance: float = float("nan")
    alpha_tail_size: int = 0

    @property
    def alpha_short_tail(self) -> bool:
        """Whether alpha was fitted to a tail too short to trust (1 to ``SHORT_TAIL - 1`` eigenvalues)."""
        return 0 < self.alpha_tail_size < SHORT_TAIL

    @property
    def image_shape(self) -> tuple[int, ...] | None:
        """The shape each neuron's incoming weights are shown in: ``(H, W)`` or ``(C, H, W)``; else ``None``."""
        return None if self.neuron_images is None else tuple(int(s) for s in self.neuron_images.shape[1:])


CHUNK_ELEMENTS = 1 << 20  # per-chunk temporaries of the weight statistics: 4-8 MB, whatever the layer's size


def pool_magnitude(
    weight: torch.Tensor | np.ndarray,
    max_side: int = MAX_MAP_SIDE,
    *,
    row_offset: int = 0,
    col_offset: int = 0,
    full_shape: tuple[int, int] | None = None,
) -> PooledMap:
    """Block-max-pool ``|weight|`` ``(m, n)`` so that neither side exceeds ``max_side``."""
    w = torch.as_tensor(weight).detach().float()
    m, n = w.shape
    br, bc = max(1, math.ceil(m / max_side)), max(1, math.ceil(n / max_side))
    if br > 1 or bc > 1:
        rows, cols = math.ceil(m / br), math.ceil(n / bc)
        pooled = torch.empty(rows, cols, dtype=w.dtype, device=w.device)
        step = max(1, CHUNK_ELEMENTS // (br * cols * bc))  # pooled rows per band: |w| of a band at a time
        for r0 in range(0, rows, step):
            r1 = min(rows, r0 + step)
            band = w[r0 * br : r1 * br].abs()
            padded = torch.zeros((r1 - r0) * br, cols * bc, dtype=w.dtype, device=w.device)
            padded[: band.shape[0], :n] = band  # |w| >= 0, so zero padding never wins a max
            pooled[r0:r1] = padded.view(r1 - r0, br, cols, bc).amax(dim=(1, 3))
        w = pooled
    else:
        w = w.abs()
    return PooledMap(
        values=w.cpu().numpy().astype(np.float32),
        block_rows=br,
        block_cols=bc,
        row_offset=row_offset,
        col_offset=col_offset,
        full_shape=full_shape or (int(m), int(n)),
    )


def zoom(
    weight: torch.Tensor | np.ndarray, rows: tuple[int, int], cols: tuple[int, int], max_side: int = MAX_MAP_SIDE
) -> PooledMap:
    """The region ``weight[rows[0]:rows[1], cols[0]:cols[1]]``, at full resolution when it fits in ``max_side``."""
    w = torch.as_tensor(weight)
    m, n = w.shape
    r0, r1 = max(0, int(rows[0])), min(m, int(rows[1]))
    c0, c1 = max(0, int(cols[0])), min(n, int(cols[1]))
    if r0 >= r1 or c0 >= c1:
        raise ValueError(f"empty zoom region rows {rows}, cols {cols} of a {m}x{n} weight")
    return pool_magnitude(w[r0:r1, c0:c1], max_side, row_offset=r0, col_offset=c0, full_shape=(int(m), int(n)))


def abs_quantile(values: torch.Tensor, q: float) -> float:
    """The ``q`` quantile of ``|values|`` (a flat tensor), as ``numpy.quantile(|values|, q)`` (linear
    interpolation between order statistics) computes it, without a copy of ``|values|``: only the
    ``n - floor(q (n - 1))`` largest are needed, kept a chunk at a time (``q = 0.999``: 0.1% of the layer).
    0 for no values."""
    n = values.numel()
    if n == 0:
        return 0.0
    position = q * (n - 1)
    low = math.floor(position)
    keep = n - low  # the order statistics low, low + 1, ... n - 1 (ascending)
    top = torch.zeros(0, dtype=values.dtype, device=values.device)
    for start in range(0, n, CHUNK_ELEMENTS):
        chunk = values[start : start + CHUNK_ELEMENTS].abs()
        top = torch.cat([top, chunk.topk(min(keep, chunk.numel())).values])
        top = top.topk(min(keep, top.numel())).values  # descending
    below, above = float(top[keep - 1]), float(top[max(keep - 2, 0)])  # ascending order statistics low, low + 1
    return below + (position - low) * (above - below)


def _chunked_counts(values: torch.Tensor, threshold: float) -> tuple[int, float]:
    """``(number of |v| < threshold, sum of v² in float64)`` over a flat tensor, a chunk at a time."""
    below, squares = 0, 0.0
    for start in range(0, values.numel(), CHUNK_ELEMENTS):
        chunk = values[start : start + CHUNK_ELEMENTS]
        below += int((chunk.abs() < threshold).sum())
        squares += float(chunk.double().square().sum())
    return below, squares


def _all_finite(values: torch.Tensor) -> bool:
    """Whether every element of the flat tensor ``values`` is finite: a finite sum proves it in one pass
    with no temporary; only a sum that is not finite (a bad value, or finite ones overflowing) is
    checked a chunk at a time (``torch.isfinite`` of the whole weight holds ~1.75x its size)."""
    if bool(torch.isfinite(values.sum())):
        return True
    return all(
        bool(torch.isfinite(values[start : start + CHUNK_ELEMENTS]).all())
        for start in range(0, values.numel(), CHUNK_ELEMENTS)
    )


@torch.no_grad()
def layer_weights(
    layer: str,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    image_shape: tuple[int, ...] | None = None,
    near_zero_rel: float = 0.01,
    max_side: int = MAX_MAP_SIDE,
) -> LayerWeights:
    """Statistics of one weight ``(m, n)``.

    ``image_shape`` ``(H, W)`` or ``(C, H, W)`` with ``prod == n`` (the shape the layer's input
    had before it was flattened) adds ``neuron_images`` ``(k, *image_shape)``: row ``W[j]``
    reshaped, for the first ``k = min(m, MAX_NEURON_IMAGES)`` neurons.
    """
    w = weight.detach().float().cpu()
    m, n = w.shape
    w_np = w.numpy()
    all_finite = _all_finite(w.reshape(-1))
    # NaN/Inf weights are reported, not hidden: statistics that need every value become NaN,
    # the histogram and the near-zero fraction describe the finite ones. With every value finite
    # (the usual case) they read the weight itself: no copy of a large layer is made here.
    finite_values = w.reshape(-1) if all_finite else w[torch.isfinite(w)]
    threshold = near_zero_rel * abs_quantile(finite_values, NEAR_ZERO_QUANTILE)
    counts, edges = np.histogram(finite_values.numpy(), bins=HISTOGRAM_BINS)  # numpy bins in blocks
    near_zero, squares = _chunked_counts(finite_values, threshold)
    if all_finite:
        # on the caller's device: a GPU diagonalises a 4096-wide Gram matrix in well under a second
        singular = singular_values(weight)
        spectral = float(singular[0]) if singular.size else 0.0
        frobenius = math.sqrt(squares)
    else:
        singular, spectral, frobenius = np.full(min(m, n), np.nan), float("nan"), float("nan")
    tail = esd_alpha(singular) if all_finite else None
    small = m <= max_side and n <= max_side
    images = None
    if image_shape is not None and len(image_shape) in (2, 3) and math.prod(image_shape) == n:
        images = w_np[:MAX_NEURON_IMAGES].reshape(-1, *image_shape).copy()
    return LayerWeights(
        layer=layer,
        out_features=int(m),
        in_features=int(n),
        values=w_np.copy() if small else None,
        magnitude=pool_magnitude(w, max_side),
        neuron_norm=torch.linalg.vector_norm(w, dim=1).numpy(),
        input_norm=torch.linalg.vector_norm(w, dim=0).numpy(),
        bias=bias.detach().float().cpu().numpy().copy() if bias is not None else None,
        histogram_counts=counts.astype(np.int64),
        histogram_edges=edges.astype(np.float64),
        near_zero_threshold=threshold,
        near_zero_fraction=near_zero / finite_values.numel() if finite_values.numel() else 0.0,
        singular_values=singular,
        spectral_norm=spectral,
        frobenius_norm=frobenius,
        stable_rank=frobenius**2 / spectral**2 if spectral > 0 else (0.0 if all_finite else float("nan")),
        neuron_images=images,
        alpha=tail.alpha if tail else float("nan"),
        alpha_xmin=tail.xmin if tail else float("nan"),
        alpha_ks_distance=tail.ks_distance if tail else float("nan"),
        alpha_tail_size=tail.tail_size if tail else 0,
    )


def weight_report(
    model: nn.Module,
    image_shape: tuple[int, int] | None = None,
    *,
    input_maps: dict[str, tuple[int, ...]] | None = None,
    near_zero_rel: float = 0.01,
    max_side: int = MAX_MAP_SIDE,
) -> tuple[LayerWeights, ...]:
    """:func:`layer_weights` for every linear layer.

    Neuron images: for each layer in ``input_maps`` (``{layer: (C, H, W)}``, the flattened
    feature map it reads; see :func:`flattened_maps`) in that shape, else for the first layer
    in ``image_shape`` (tabular images, such as the 8x8 digits as 64 columns).
    """
    maps = input_maps or {}
    out = []
    for k, (name, layer) in enumerate(linear_layers(model)):
        out.append(
            layer_weights(
                name,
                dense_weight(layer),  # (out, in): a Conv1D's stored (in, out) weight transposed
                dense_bias(layer),
                image_shape=maps.get(name, image_shape if k == 0 else None),
                near_zero_rel=near_zero_rel,
                max_side=max_side,
            )
        )
    return tuple(out)


def flattened_maps(model: nn.Module, batch: Batch) -> dict[str, tuple[int, ...]]:
    """``{linear layer: (C, H, W) or (H, W)}`` for every ``nn.Linear`` that reads a flattened map.

    One guarded forward pass on ``batch`` records, in call order, the model's input and every
    module's output tensor. A linear layer called on ``(n, d)`` reads a flattened map when,
    walking back from its call over outputs of ``d`` values per sample that are flat already
    (a ``Flatten``, a dropout after it), the first one with more than one dimension per sample
    is a ``(C, H, W)`` (or ``(H, W)``) tensor of ``d`` values; an output of another size or
    another linear layer's output ends the walk. A CNN's dense head (conv - pool - flatten - fc1)
    gives ``{"fc1": (C, H, W)}``; an MLP on ``(n, d)`` columns gives ``{}``. Token-id inputs: ``{}``.
    """
    inputs = batch.inputs
    if not inputs.is_floating_point() or inputs.ndim < 2:
        return {}
    n = int(inputs.shape[0])
    # (per-sample shape or None for a tensor of another batch size, is a linear layer's output)
    seen: list[tuple[tuple[int, ...] | None, bool]] = [(tuple(int(s) for s in inputs.shape[1:]), False)]
    found: dict[str, tuple[int, ...]] = {}
    names = {m: name for name, m in model.named_modules()}

    def after(module: nn.Module, args: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor):
            shape = tuple(int(s) for s in output.shape[1:]) if output.ndim and output.shape[0] == n else None
            seen.append((shape, is_dense(module)))

    def before(module: nn.Module, args: Any) -> None:
        x = args[0] if args else None
        name = names.get(module)
        if name is None or name in found or not isinstance(x, torch.Tensor) or x.ndim != 2:
            return
        d = int(x.shape[1])
        for shape, linear in reversed(seen):
            if linear or shape is None or math.prod(shape) != d:
                return
            if len(shape) > 1:
                if len(shape) in (2, 3):
                    found[name] = shape
                return

    with inspecting(model) as guard, torch.no_grad():
        for module in model.modules():
            guard.hook(module.register_forward_hook(after))
            if is_dense(module):
                guard.hook(module.register_forward_pre_hook(before))
        batch.call(model)
    return found
