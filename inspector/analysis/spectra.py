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
# The power-law fit is WeightWatcher 0.7.7's default (``WWFit``, ``weightwatcher/WW_powerlaw.py``):
MIN_TAIL = 2  # every sorted value but the largest is an xmin candidate (WWFit's ``xmins = data[:-1]``)
SMALL_SAMPLE = 20  # below this many values WWFit takes its small-sample route (``SMALL_N_CUTOFF``) ...
SMALL_SAMPLE_MIN_TAIL = 8  # ... keeping tails of at least 8 values (``k_min``) and the bias-corrected (n - 1) / sum
SMALL_SAMPLE_MIN_LOG_SUM = 1e-12  # ... and only tails whose sum of ln(x / xmin) exceeds this (else no exponent)
EVALS_THRESH = 1e-5  # eigenvalues s^2 at or below this are left out of the fit (WeightWatcher's ``EVALS_THRESH``)
MIN_EVALS = 8  # a layer with fewer singular values than this gets no alpha (WeightWatcher skips it: ``min_evals``)
# A tail of fewer eigenvalues than this is flagged as too short to trust: the MLE's standard error
# (alpha - 1) / sqrt(n) is then over a third of alpha - 1, and WeightWatcher's own floor for a fit
# (``MIN_NUM_EVALS``) is 10; Clauset et al. (2009, sec. 3.3) find the xmin search unreliable below ~50.
SHORT_TAIL = 10
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
    """``p(x) ~ x^-alpha`` for ``x >= xmin``, fitted to the ``tail_size`` largest values.

    ``ks_distance``: the largest gap between the tail's empirical CDF and the fitted one;
    ``alpha_error = (alpha - 1) / sqrt(tail_size)``, the MLE's standard error (WeightWatcher's ``sigma``);
    ``short_tail``: fewer than :data:`SHORT_TAIL` values in the tail, too few for the exponent to be trusted.
    ``tail_size`` counts the values the exponent is fitted to: WeightWatcher's ``num_pl_spikes`` counts every
    value ``>= xmin`` and is larger only when values equal to ``xmin`` sit below the tail's start.
    """

    alpha: float
    xmin: float
    ks_distance: float
    tail_size: int

    @property
    def alpha_error(self) -> float:
        return (self.alpha - 1.0) / math.sqrt(self.tail_size) if self.tail_size else float("nan")

    @property
    def short_tail(self) -> bool:
        return self.tail_size < SHORT_TAIL


def fit_power_law(values: np.ndarray, *, min_tail: int = MIN_TAIL, xmax: float | None = None) -> PowerLawFit | None:
    """The continuous power law fitted to the tail of ``values`` (positive; others are dropped), as
    WeightWatcher 0.7.7's default fit (``WWFit``) does it.

    The ``k`` values sorted, ``x_0 <= ... <= x_(k-1)``, each index ``j`` with a tail ``x_j, ..., x_(k-1)`` of
    ``n = k - j >= min_tail`` values is a candidate (a value repeated is a candidate at each of its
    places, as in WWFit). Its maximum-likelihood exponent is ``alpha = 1 + n / S`` with
    ``S = sum_(i >= j) ln(x_i / x_j)``, and its Kolmogorov-Smirnov distance
    ``D = max_(i >= j) |1 - (x_i / x_j)^(1 - alpha) - (i - j) / n|``; the fit kept is the first candidate of
    smallest ``D`` (Clauset, Shalizi & Newman 2009, "Power-law distributions in empirical data", SIAM
    Review 51(4)). With fewer than :data:`SMALL_SAMPLE` values (WWFit's small-sample route) the exponent
    is the bias-corrected ``1 + (n - 1) / S``, candidates need ``n >= 8`` and ``S > 1e-12``, and when none
    has, the whole sample is the tail. (That route also computes an objective ``D - 0.868 / sqrt(n)``,
    but WWFit then keeps the smallest ``D``; so does this function, to report what WeightWatcher reports.)

    ``None`` when fewer than two positive values remain or the tail kept has no exponent (all its
    values equal). ``xmax``: values above it are dropped first. Work is ``O(k^2)``, done in chunks of
    candidates so memory stays ``O(k * 256)``; ``S`` is summed per candidate as WWFit sums it, so the
    result is WeightWatcher's to the last bit on the same values.
    """
    x = np.sort(np.asarray(values, dtype=np.float64).ravel())
    x = x[np.isfinite(x) & (x > 0)]
    if xmax is not None:
        x = x[x <= xmax]
    k = x.size
    if k < 2:
        return None
    small = k < SMALL_SAMPLE
    shortest = max(min_tail, 2, SMALL_SAMPLE_MIN_TAIL if small else 0)
    log_x = np.log(x)
    starts = np.arange(0, k - shortest + 1) if k >= shortest else np.zeros(0, dtype=np.int64)
    best = _best_candidate(x, log_x, starts, small)
    if best is None and small:
        best = _best_candidate(x, log_x, np.zeros(1, dtype=np.int64), small)  # WWFit: the whole sample is the tail
    if best is None:
        return None
    alpha, j, distance = best
    if not math.isfinite(alpha) or x[j] == x[-1]:
        return None
    return PowerLawFit(alpha=alpha, xmin=float(x[j]), ks_distance=distance, tail_size=int(k - j))


def _best_candidate(
    x: np.ndarray, log_x: np.ndarray, starts: np.ndarray, small: bool
) -> tuple[float, int, float] | None:
    """``(alpha, start, D)`` of the first candidate start of smallest KS distance, or ``None`` when none has
    an exponent (``alpha > 1``; on the small-sample route also ``S > 1e-12``)."""
    k = x.size
    best: tuple[float, int, float] | None = None
    for chunk in np.array_split(starts, max(1, math.ceil(starts.size / 256))):
        if chunk.size == 0:
            continue
        n_tail = (k - chunk).astype(np.float64)
        # summed slice by slice as WWFit does (np.sum's pairwise order): alpha equal to the last bit
        sum_log = np.array([np.sum(log_x[j:]) for j in chunk]) - n_tail * log_x[chunk]
        with np.errstate(divide="ignore", invalid="ignore"):
            alpha = 1.0 + (n_tail - 1.0 if small else n_tail) / sum_log  # a tail of equal values: inf or < 1
        valid = (sum_log > SMALL_SAMPLE_MIN_LOG_SUM) & (alpha > 1.0) if small else alpha > 1.0
        # D over each candidate's tail x[j:], as a (candidates, k - first) grid masked to i >= j
        first = int(chunk[0])
        tail_x = x[first:]
        position = np.arange(first, k)[None, :] - chunk[:, None]  # rank of x_i inside the tail starting at j
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            fitted = 1.0 - (tail_x[None, :] / x[chunk][:, None]) ** (1.0 - alpha[:, None])
            gap = np.abs(fitted - position / n_tail[:, None])
        gap = np.where(position >= 0, gap, 0.0)
        distance = np.where(valid, gap.max(axis=1), np.inf)
        i = int(np.argmin(distance))
        if math.isfinite(distance[i]) and (best is None or distance[i] < best[2]):
            best = (float(alpha[i]), int(chunk[i]), float(distance[i]))
    return best


def esd_alpha(singular: np.ndarray, *, min_tail: int = MIN_TAIL) -> PowerLawFit | None:
    """The power law fitted to a layer's empirical spectral density: the eigenvalues ``s^2`` of ``W^T W``,
    with WeightWatcher's defaults (``WeightWatcher(model).analyze()``, 0.7.7).

    ``singular``: the layer's ``min(m, n)`` singular values. As WeightWatcher: the eigenvalues are ``s^2``
    of ``W`` itself (``normalize=False``: not divided by ``N``; ``alpha`` and ``D`` do not depend on a
    scale, only ``xmin`` would move), those at or below :data:`EVALS_THRESH` (1e-5) are left out, no
    "fix fingers" (``fix_fingers=False``: no top eigenvalue is clipped, the tail may start anywhere),
    and a layer with fewer than :data:`MIN_EVALS` singular values gets no fit (``None``).
    Martin & Mahoney: ``alpha`` in about [2, 6] for well-trained layers, below 2 very heavy tailed,
    above 6 close to a random matrix; a fit with :attr:`PowerLawFit.short_tail` says little either way.
    """
    singular = np.asarray(singular, dtype=np.float64)
    if singular.size < MIN_EVALS:
        return None
    eigenvalues = singular**2
    return fit_power_law(eigenvalues[eigenvalues > EVALS_THRESH], min_tail=min_tail)
