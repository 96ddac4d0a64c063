"""Weight-magnitude maps, norms, histograms and spectra of linear layers.

For a weight ``W`` of shape ``(m, n)`` (m neurons, n inputs):

* ``neuron_norm[j] = ||W[j, :]||_2``: how strongly neuron j listens to its inputs;
* ``input_norm[i] = ||W[:, i]||_2``: how strongly input i is read by the layer;
* ``stable_rank = ||W||_F^2 / ||W||_2^2`` (Rudelson & Vershynin 2007), a smooth
  rank that is 1 for a rank-one matrix and ``min(m, n)`` for an orthogonal one;
* a layer too large to show cell by cell is block-max-pooled: each cell of the
  map holds ``max |w|`` over a block, so a single large weight is never hidden.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from inspector.analysis.parameters import linear_layers
from inspector.results import result

MAX_MAP_SIDE = 768  # 768 x 768 float32 cells stay under 6 MB once Dash has serialised them
HISTOGRAM_BINS = 60
EXACT_SVD_SIDE = 1024  # above this, the top singular values come from a randomised SVD


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
    """Weight statistics of one linear layer; ``values`` is the signed ``(m, n)`` weight when small enough."""

    name: str
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


def pool_magnitude(weight: torch.Tensor | np.ndarray, max_side: int = MAX_MAP_SIDE, *,
                   row_offset: int = 0, col_offset: int = 0, full_shape: tuple[int, int] | None = None) -> PooledMap:
    """Block-max-pool ``|weight|`` ``(m, n)`` so that neither side exceeds ``max_side``."""
    w = torch.as_tensor(weight).detach().float().abs()
    m, n = w.shape
    br, bc = max(1, math.ceil(m / max_side)), max(1, math.ceil(n / max_side))
    if br > 1 or bc > 1:
        rows, cols = math.ceil(m / br), math.ceil(n / bc)
        padded = torch.zeros(rows * br, cols * bc, dtype=w.dtype, device=w.device)
        padded[:m, :n] = w  # |w| >= 0, so zero padding never wins a max
        w = padded.view(rows, br, cols, bc).amax(dim=(1, 3))
    return PooledMap(values=w.cpu().numpy().astype(np.float32), block_rows=br, block_cols=bc,
                     row_offset=row_offset, col_offset=col_offset, full_shape=full_shape or (int(m), int(n)))


def zoom(weight: torch.Tensor | np.ndarray, rows: tuple[int, int], cols: tuple[int, int],
         max_side: int = MAX_MAP_SIDE) -> PooledMap:
    """The region ``weight[rows[0]:rows[1], cols[0]:cols[1]]``, at full resolution when it fits in ``max_side``."""
    w = torch.as_tensor(weight)
    m, n = w.shape
    r0, r1 = max(0, int(rows[0])), min(m, int(rows[1]))
    c0, c1 = max(0, int(cols[0])), min(n, int(cols[1]))
    if r0 >= r1 or c0 >= c1:
        raise ValueError(f"empty zoom region rows {rows}, cols {cols} of a {m}x{n} weight")
    return pool_magnitude(w[r0:r1, c0:c1], max_side, row_offset=r0, col_offset=c0, full_shape=(int(m), int(n)))


def _spectrum(w: torch.Tensor, top_k: int) -> tuple[np.ndarray, float]:
    """Top ``top_k`` singular values (descending) and the largest one."""
    if min(w.shape) <= EXACT_SVD_SIDE:
        s = torch.linalg.svdvals(w.double())
    else:  # randomised SVD: exact enough for the top values, affordable for 4096 x 4096
        _, s, _ = torch.svd_lowrank(w.double(), q=min(top_k + 10, min(w.shape)), niter=6)
    s = s[:top_k]
    return s.cpu().numpy(), float(s[0]) if s.numel() else 0.0


@torch.no_grad()
def layer_weights(name: str, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
                  image_shape: tuple[int, int] | None = None, near_zero_rel: float = 0.01,
                  top_k: int = 20, max_side: int = MAX_MAP_SIDE) -> LayerWeights:
    """Statistics of one weight ``(m, n)``; ``image_shape`` (h, w) with ``h * w == n`` adds neuron images."""
    w = weight.detach().float().cpu()
    m, n = w.shape
    w_np = w.numpy()
    finite = torch.isfinite(w)
    all_finite = bool(finite.all())
    # NaN/Inf weights are reported, not hidden: statistics that need every value become NaN,
    # the histogram and the near-zero fraction describe the finite ones
    finite_values = w[finite]
    abs_max = float(finite_values.abs().max()) if finite_values.numel() else 0.0
    threshold = near_zero_rel * abs_max
    counts, edges = np.histogram(finite_values.numpy(), bins=HISTOGRAM_BINS)
    if all_finite:
        singular, spectral = _spectrum(w, top_k)
        frobenius = float(torch.linalg.vector_norm(w.double()))
    else:
        singular, spectral, frobenius = np.full(min(top_k, m, n), np.nan), float("nan"), float("nan")
    small = m <= max_side and n <= max_side
    images = None
    if image_shape is not None and image_shape[0] * image_shape[1] == n:
        images = w_np.reshape(m, *image_shape).copy()
    return LayerWeights(
        name=name, out_features=int(m), in_features=int(n),
        values=w_np.copy() if small else None,
        magnitude=pool_magnitude(w, max_side),
        neuron_norm=torch.linalg.vector_norm(w, dim=1).numpy(),
        input_norm=torch.linalg.vector_norm(w, dim=0).numpy(),
        bias=bias.detach().float().cpu().numpy().copy() if bias is not None else None,
        histogram_counts=counts.astype(np.int64), histogram_edges=edges.astype(np.float64),
        near_zero_threshold=threshold,
        near_zero_fraction=float((finite_values.abs() < threshold).float().mean()) if finite_values.numel() else 0.0,
        singular_values=singular, spectral_norm=spectral, frobenius_norm=frobenius,
        stable_rank=frobenius ** 2 / spectral ** 2 if spectral > 0 else (0.0 if all_finite else float("nan")),
        neuron_images=images,
    )


def weight_report(model: nn.Module, image_shape: tuple[int, int] | None = None,
                  **options: float | int) -> tuple[LayerWeights, ...]:
    """:func:`layer_weights` for every linear layer; neuron images only for the first layer."""
    out = []
    for k, (name, layer) in enumerate(linear_layers(model)):
        out.append(layer_weights(name, layer.weight, layer.bias,
                                 image_shape=image_shape if k == 0 else None, **options))
    return tuple(out)
