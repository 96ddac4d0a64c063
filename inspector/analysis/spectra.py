"""Exact singular values of a weight and the power-law exponent of its eigenvalue density.

* :func:`singular_values`: all ``min(m, n)`` singular values of a weight ``(m, n)``, each to
  1e-4 relative (values below ``1e-12`` of the largest, numerically zero, to ``1e-12`` of the largest);
* :func:`fit_power_law`: the exponent ``alpha`` of a power law ``p(x) ~ x^-alpha`` fitted to the
  tail ``x >= xmin`` of a sample by maximum likelihood, ``xmin`` chosen by the smallest
  Kolmogorov-Smirnov distance (Clauset, Shalizi & Newman 2009, "Power-law distributions in
  empirical data", SIAM Review 51(4));
* :func:`esd_alpha`: that fit on the eigenvalues ``sigma^2`` of ``W^T W``, the heavy-tailed
  self-regularisation metric of Martin & Mahoney (2021, "Implicit self-regularization in deep
  neural networks", JMLR 22(165)) that WeightWatcher reports as ``alpha``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from scipy.linalg import blas, lapack

from inspector.results import result

GRAM_BLOCK = 512  # columns of W made float64 at a time, folded into the Gram matrix or the QR factor
SINGULAR_RTOL = 1e-4  # every reported singular value is within this relative error of the exact one
MIN_TAIL = 10  # fewest eigenvalues a power-law tail is fitted to; fewer give an alpha with a standard error ~ alpha / 3
_EPS64 = float(np.finfo(np.float64).eps)


@torch.no_grad()
def singular_values(weight: torch.Tensor, rtol: float = SINGULAR_RTOL) -> np.ndarray:
    """All ``min(m, n)`` singular values of ``weight`` ``(m, n)``, descending, float64.

    With ``k = min(m, n)`` and ``N = max(m, n)``, three routes, all in float64:

    * nearly square (``N <= k + GRAM_BLOCK``): a float64 copy of the weight diagonalised in place by
      LAPACK's ``gesdd`` (values only): error ``~eps64 * s_max`` absolute, so every value above
      ``1e-12 s_max`` is within ``rtol`` and every value below is within ``1e-12 s_max``;
    * otherwise the eigenvalues of the Gram matrix of the smaller side (``W W^T`` or ``W^T W``),
      folded in float64 ``GRAM_BLOCK`` columns at a time (``syrk``) and diagonalised in place
      (``syevd``, values only). Products of float32 numbers are exact in float64, so each eigenvalue
      is off by at most ``delta ~ N * eps64 * s_max^2`` (a generous bound on the summation and the
      solver's backward error): a singular value ``s`` is then within ``delta / (2 s^2)`` relative,
      exact to ~1e-12 at the top but not for ``s`` below ``~sqrt(N * eps64 / rtol) * s_max``
      (~1e-4 of the largest for N = 4096);
    * when some value falls below that, the whole spectrum is recomputed from the triangular factor
      ``R`` of ``W^T = Q R`` (``tpqrt``, folded ``GRAM_BLOCK`` rows of ``W^T`` at a time) with ``gesdd``
      on ``R``, as exact as the first route. A tall layer with zero rows (pruned neurons) or of low
      rank takes this route.

    Memory (CPU): the weight plus one ``k x k`` float64 matrix (the Gram matrix, or ``R``) and one
    ``k x GRAM_BLOCK`` float64 block, or (nearly square) the weight's float64 copy, which is no
    larger; LAPACK's workspace is ``O(k)``: 8192 x 8192 float32 (256 MiB) takes 512 MiB more.
    A weight on another device (a GPU) is worked on there with torch (the Gram matrix and its
    eigensolver's copy, or a QR of ``2k x k``).
    """
    w = weight.detach()
    if w.shape[0] > w.shape[1]:
        w = w.T  # the smaller side first: m <= n
    m, n = w.shape
    if m == 0:
        return np.zeros(0)
    if w.device.type != "cpu":
        return _singular_values_on_device(w, rtol)
    if n - m <= GRAM_BLOCK:
        return _svdvals_in_place(_fortran(w.to(torch.float64, copy=True).numpy()))  # a copy: gesdd overwrites it
    gram = np.zeros((m, m), dtype=np.float64, order="F")
    for block in _float64_blocks(w, transposed=False):
        gram = blas.dsyrk(1.0, block, beta=1.0, c=gram, lower=1, overwrite_c=1)
    del block  # the block buffer, before the solver runs
    eigenvalues, _, info = lapack.dsyevd(gram, compute_v=0, lower=1, overwrite_a=1)
    del gram, _
    if info != 0:
        raise np.linalg.LinAlgError(f"dsyevd did not converge (info {info})")
    eigenvalues = eigenvalues[::-1]  # descending
    top = float(eigenvalues[0])
    delta = 4.0 * n * _EPS64 * top
    if float(eigenvalues[-1]) >= delta / (2.0 * rtol):
        return np.sqrt(eigenvalues)
    del eigenvalues
    return _singular_values_from_qr(w)


def _fortran(a: np.ndarray) -> np.ndarray:
    """``a`` or ``a.T``, whichever is Fortran-ordered (LAPACK then works on it in place; both have
    the same singular values); a copy only when neither is."""
    if a.flags.f_contiguous:
        return a
    if a.flags.c_contiguous:
        return a.T
    return np.asfortranarray(a)


def _float64_blocks(w: torch.Tensor, *, transposed: bool) -> Iterator[np.ndarray]:
    """Each block of ``GRAM_BLOCK`` columns ``w[:, j:j + b]`` ``(m, b)`` (or, ``transposed``, its ``(b, m)``
    transpose) in float64 and Fortran order, copied into one reused buffer that LAPACK may overwrite:
    the weight's values are never all in float64 at once."""
    m, n = w.shape
    buffer: torch.Tensor | None = None
    for start in range(0, n, GRAM_BLOCK):
        part = w[:, start : start + GRAM_BLOCK]
        source = part if transposed else part.T  # C order of the buffer = Fortran order of the block
        if buffer is None or buffer.shape != source.shape:
            buffer = torch.empty(source.shape, dtype=torch.float64)
        buffer.copy_(source)
        yield buffer.numpy().T


def _svdvals_in_place(a: np.ndarray) -> np.ndarray:
    """Singular values of the Fortran-ordered float64 ``a``, descending, by ``gesdd`` overwriting ``a``."""
    _, s, _, info = lapack.dgesdd(a, compute_uv=0, full_matrices=0, overwrite_a=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"dgesdd did not converge (info {info})")
    return np.asarray(s, dtype=np.float64)


def _singular_values_from_qr(w: torch.Tensor) -> np.ndarray:
    """Singular values of ``w`` ``(m, n)``, ``m <= n``, on the CPU, as those of ``R`` in ``w^T = Q R``.

    ``R`` (``m x m`` float64) is folded with ``GRAM_BLOCK`` rows of ``w^T`` at a time by LAPACK's
    ``tpqrt`` (the QR of ``[R; B]``, both overwritten: a tall-skinny QR), so no float64 copy of a
    wide weight is made; ``gesdd`` then takes ``R``'s singular values in place.
    """
    m, n = w.shape
    r = np.zeros((m, m), dtype=np.float64, order="F")
    nb = max(1, min(32, m))
    for block in _float64_blocks(w, transposed=True):
        r, _, _, info = lapack.dtpqrt(0, nb, r, block, overwrite_a=1, overwrite_b=1)
        if info != 0:
            raise np.linalg.LinAlgError(f"dtpqrt failed (info {info})")
    del block
    return _svdvals_in_place(r)


def _singular_values_on_device(w: torch.Tensor, rtol: float) -> np.ndarray:
    """:func:`singular_values` of ``w`` ``(m, n)``, ``m <= n``, on its own device (a GPU) with torch:
    the Gram route, else the QR of ``w^T`` folded ``max(m, GRAM_BLOCK)`` columns at a time."""
    m, n = w.shape
    gram = torch.zeros(m, m, dtype=torch.float64, device=w.device)
    for start in range(0, n, GRAM_BLOCK):
        block = w[:, start : start + GRAM_BLOCK].double()
        gram.addmm_(block, block.T)
    eigenvalues = torch.linalg.eigvalsh(gram).flip(0)  # descending
    del gram
    top = float(eigenvalues[0])
    delta = 4.0 * n * _EPS64 * top
    if float(eigenvalues[-1]) >= delta / (2.0 * rtol):
        return eigenvalues.sqrt().cpu().numpy()
    step = max(m, GRAM_BLOCK)
    r = torch.zeros(0, m, dtype=torch.float64, device=w.device)
    for start in range(0, n, step):
        stacked = torch.cat([r, w[:, start : start + step].T.double()])
        r = torch.linalg.qr(stacked, mode="r").R[: min(m, stacked.shape[0])]
    return torch.linalg.svdvals(r).cpu().numpy()


@result
class PowerLawFit:
    """``p(x) ~ x^-alpha`` for ``x >= xmin``, fitted to ``tail_size`` values.

    ``ks_distance``: the largest gap between the tail's empirical CDF and the fitted one;
    ``alpha_error = (alpha - 1) / sqrt(tail_size)``, the MLE's standard error.
    """

    alpha: float
    xmin: float
    ks_distance: float
    tail_size: int

    @property
    def alpha_error(self) -> float:
        return (self.alpha - 1.0) / math.sqrt(self.tail_size) if self.tail_size else float("nan")


def fit_power_law(values: np.ndarray, *, min_tail: int = MIN_TAIL, xmax: float | None = None) -> PowerLawFit | None:
    """The continuous power law fitted to the tail of ``values`` (positive; others are dropped).

    For each candidate ``xmin`` (each distinct value, keeping at least ``min_tail`` values at or
    above it) the maximum-likelihood exponent is ``alpha = 1 + n / sum(ln(x_i / xmin))`` over the
    ``n`` values ``xmin <= x_i <= xmax``; the fit kept is the one whose tail is closest to its power
    law in Kolmogorov-Smirnov distance ``D = max_i |F_fit(x_i) - i / n|`` over the tail's sorted values
    ``x_0 <= ... <= x_(n-1)``, ``F_fit(x) = 1 - (x / xmin)^(1 - alpha)``
    (Clauset, Shalizi & Newman 2009; the ``powerlaw`` package and WeightWatcher do the same).
    ``None`` when fewer than ``min_tail`` positive values remain. Work is ``O(k^2)`` in ``k`` values,
    done in chunks of candidates so memory stays ``O(k * 256)``.
    """
    x = np.sort(np.asarray(values, dtype=np.float64).ravel())
    x = x[np.isfinite(x) & (x > 0)]
    if xmax is not None:
        x = x[x <= xmax]
    k = x.size
    if k < max(min_tail, 2):
        return None
    log_x = np.log(x)
    # suffix sums of ln x: sum over i >= j of ln x_i, for the MLE at every candidate start j
    suffix = np.concatenate([np.cumsum(log_x[::-1])[::-1], [0.0]])
    starts = np.unique(np.searchsorted(x, x, side="left"))  # first index of each distinct value
    starts = starts[k - starts >= min_tail]
    best: tuple[float, float, float, int] | None = None
    for chunk in np.array_split(starts, max(1, math.ceil(starts.size / 256))):
        if chunk.size == 0:
            continue
        n_tail = (k - chunk).astype(np.float64)
        log_xmin = log_x[chunk]
        sum_log = suffix[chunk] - n_tail * log_xmin
        with np.errstate(divide="ignore"):
            alpha = 1.0 + n_tail / sum_log  # a tail of equal values: inf, dropped below
        # D over each candidate's tail x[j:], as a (candidates, k) grid masked to i >= j
        index = np.arange(k)
        position = index[None, :] - chunk[:, None]  # rank of x_i inside the tail starting at j
        inside = position >= 0
        with np.errstate(invalid="ignore"):
            fitted = 1.0 - np.exp((1.0 - alpha[:, None]) * (log_x[None, :] - log_xmin[:, None]))
        # the empirical CDF at the tail's i-th value taken as i / n, as the powerlaw package and WeightWatcher do
        gap = np.abs(fitted - position / n_tail[:, None])
        gap = np.where(inside, gap, 0.0)
        distance = gap.max(axis=1)
        distance[~np.isfinite(alpha)] = np.inf
        j = int(np.argmin(distance))
        if best is None or distance[j] < best[2]:
            best = (float(alpha[j]), float(x[chunk[j]]), float(distance[j]), int(n_tail[j]))
    if best is None or not math.isfinite(best[2]):
        return None
    return PowerLawFit(alpha=best[0], xmin=best[1], ks_distance=best[2], tail_size=best[3])


def esd_alpha(singular: np.ndarray, *, min_tail: int = MIN_TAIL) -> PowerLawFit | None:
    """The power law fitted to a layer's empirical spectral density: the eigenvalues ``s^2`` of ``W^T W``.

    ``singular``: the layer's singular values. ``alpha`` and ``ks_distance`` do not depend on a
    scale, so dividing the eigenvalues by ``N`` (as in ``X = W^T W / N``) only moves ``xmin``;
    like WeightWatcher (``normalize=False``), ``xmin`` is reported on ``s^2``.
    Martin & Mahoney: ``alpha`` in about [2, 6] for well-trained layers, below 2 very heavy tailed,
    above 6 close to a random matrix.
    """
    return fit_power_law(np.asarray(singular, dtype=np.float64) ** 2, min_tail=min_tail)
