"""Compiled CPU loops for the census (numba): its counts, its top examples and its projection's products.

With stock PyTorch operations each statistic of a dense site is its own pass over the site's output: a
comparison that writes an indicator, a GEMM against a row of ones that reads it back, the maximum of
each chunk for the top examples. On a CPU those passes are memory-bound: on a MiniLM-sized census,
seven passes over each 4096 x 1536 intermediate, about as long as reading it from memory three times.
The loops here:

* :func:`site_counts` reads each value once and writes only the ``(m,)`` sums and the chunk maxima:
  every statistic of four rows at a time while they are in the L1 cache (about half the time; four
  rows per load and store of the sums, about a tenth less again);
* :func:`top_update` enters each row into its neurons' running top ``k`` in row order, reading only
  the chunks whose maximum beats a neuron's ``k``-th value (no candidate lists, sorts or merges);
* :func:`histogram` counts the kept rows into each neuron's bins in one pass;
* :class:`CentredRows` gives the projection's products of the kept float32 rows less their column
  means in float64 without forming the centred float64 matrix (half the memory read per product).

They count exactly what :mod:`inspector.core.counting`'s operations count (the same float32
comparisons: a Python threshold compares in float32 there too) and sum in float32 within a block of
:data:`FOLD_ROWS` rows, then in float64: counts exactly, sums to float32 rounding within a block. They
take float32, C-contiguous CPU tensors of at least :data:`MIN_VALUES` values; the census uses the
operations everywhere else (smaller calls, a GPU, other dtypes), when numba is missing or fails to
compile (warned once), or when ``DENSE_INSPECTOR_KERNELS=torch`` is set (the same numbers, the
earlier way). Compiled once per installation (about 16 s): numba caches the machine code beside
:mod:`inspector.core._loops` (or in its user cache directory); then importing numba and loading that
code cost about 0.6 s once per process.

The live Monitor's per-step count (:func:`row_counter`) is one C function of numba's (``cfunc``), called
through ``ctypes`` with the tensors' addresses: on its 128 x 256 batches the cost is the calls, not
memory, and a jitted call's conversion of each tensor to an array cost more than the count itself.
"""

from __future__ import annotations

import ctypes
import functools
import importlib
import math
import os
import threading
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

# the rules a count applies to each value v, by number (the loops' argument)
NONE, POSITIVE, BEYOND, OFF_HALF, NEAR_ZERO = -1, 0, 1, 2, 3
# float32 sums are folded into the float64 totals after this many rows (counts stay exact far below 2**24)
FOLD_ROWS = 1024

# the loops pay once per process (importing numba and loading its cached machine code: about 0.6 s here)
# and gain about 1 ns per value counted: below this many values in a call, the operations count, and a
# small model's analysis never imports numba
MIN_VALUES = 2**20
ENABLED = os.environ.get("DENSE_INSPECTOR_KERNELS", "numba").strip().lower() != "torch"
_failed: list[str] = []  # why the loops could not be compiled, once (then the operations count)


def usable(*tensors: torch.Tensor) -> bool:
    """Whether the loops take these tensors: each a float32, C-contiguous CPU tensor, the first of at least
    :data:`MIN_VALUES` values, and numba there and not switched off (imported here, on the first such call)."""
    if not ENABLED or _failed or tensors[0].numel() < MIN_VALUES:
        return False
    if not all(t.device.type == "cpu" and t.dtype == torch.float32 and t.is_contiguous() for t in tensors):
        return False
    return _loops() is not None


def site_counts(
    source: torch.Tensor,
    out: torch.Tensor,
    real: torch.Tensor | None,
    fire_rule: int,
    fire_limit: float,
    near_zero: float | None,
    totals: torch.Tensor,
    peaks: torch.Tensor | None,
    chunk: int,
) -> bool:
    """Add a census call's rows into ``totals`` ``(3, m)`` float64: row 0 the rows where ``fire_rule``
    holds for ``source`` ``(r, m)``, row 1 those where ``|out| < near_zero`` (``None``: not counted), row
    2 the sum of ``out`` ``(r, m)``; ``real`` ``(r,)`` bool: only its true rows count (``None``: all).
    ``peaks`` ``(r // chunk, m)``: each whole chunk's column maxima of ``out`` (every row, real or not;
    ``chunk >= 2``).

    Returns ``False`` (and adds nothing) when the loops are unavailable; the caller then counts with the
    operations. A NaN in ``out`` has its chunk's maximum rewritten here by ``torch.amax`` (NaN), as the
    operations give it."""
    if not usable(source, out):
        return False
    assert chunk >= 2, "a chunk's maximum is kept over two rows or more"
    width = out.shape[-1]
    mask = real.numpy() if real is not None else _NO_ROWS
    peaks_array = peaks.numpy() if peaks is not None else _buffer("no peaks", (0, width), np.float32)
    near = NEAR_ZERO if near_zero is not None else NONE
    arguments = (
        source.numpy(),
        out.numpy(),
        mask,
        fire_rule,
        np.float32(fire_limit),
        near,
        np.float32(near_zero if near_zero is not None else 0.0),
        totals.numpy(),
        peaks_array,
        chunk,
        _buffer("partial", (3, width), np.float32),
        _buffer("running", (2, width), np.float32),
    )
    ran, nan = _run("site_counts", *arguments)
    if not ran:
        return False
    if nan and peaks is not None:  # the compiled maximum does not carry NaN through: the operations' here
        whole = peaks.shape[0] * chunk
        torch.amax(out[:whole].view(peaks.shape[0], chunk, width), 1, out=peaks)
    return True


def top_update(
    flat: torch.Tensor,
    real: torch.Tensor | None,
    peaks: torch.Tensor,
    values: torch.Tensor,
    slot: torch.Tensor,
    entered: torch.Tensor,
    chunk: int,
) -> bool:
    """Enter a call's rows ``flat`` ``(r, m)`` into each neuron's running top ``k``, in row order (an equal
    value already held stays ahead): ``values`` ``(m, k)`` float32, each neuron's descending (-inf where
    empty), and ``slot`` ``(m, k)`` int64, where its rank r's example is stored, both updated in place; an
    entering row takes the storage slot of the one it pushes out. ``entered`` ``(k, m)`` int64 := the row
    now stored at each (slot, neuron) if it entered on this call, else -1. ``real`` ``(r,)`` bool: only
    its true rows enter (``None``: all). ``peaks``: :func:`site_counts`' chunk maxima of ``flat``: only the
    chunks whose maximum beats a column's k-th value (or holds a NaN) are read entry by entry; on the
    first call without ``real``, only those reaching the column's k-th largest chunk maximum (no entry
    below it can be among the top k). NaN and -inf never enter.

    ``False`` (nothing changed) when the loop is unavailable: then the operations' merge."""
    if not usable(flat, peaks, values) or slot.dtype != torch.int64 or entered.dtype != torch.int64:
        return False
    mask = real.numpy() if real is not None else _NO_ROWS
    width = flat.shape[1]
    arguments = (
        flat.numpy(),
        mask,
        peaks.numpy(),
        values.numpy(),
        slot.numpy(),
        entered.numpy(),
        chunk,
        _buffer("threshold", (width,), np.float32),
        _buffer("floor", (width,), np.float32),
        _buffer("column", (peaks.shape[0],), np.float32),
        _buffer("flagged", (width,), np.int64),
    )
    return _run("top_update", *arguments)[0]


def row_counter(
    counts: torch.Tensor, rule: int, limit: float
) -> Callable[[torch.Tensor, torch.Tensor | None], int] | None:
    """The live Monitor's count, compiled: ``count(values, real)`` adds to ``counts`` ``(m,)`` (float32, a
    C-contiguous CPU tensor, kept by the count) the rows of ``values`` ``(..., m)`` (float32 CPU; copied
    first if not C-contiguous) where ``rule`` holds against ``limit`` (the float32 comparisons of
    :mod:`inspector.core.counting`'s operations), only the rows whose ``real`` (bool, one per row) is true
    when given, and returns the rows counted. The sums are float32: the caller folds them into float64
    before they reach 2**24 (:class:`~inspector.core.counting.Sums`).

    One pass over the values and no indicator written, in one C call (about 1 us, plus the values' reading:
    about 5 us for 128 x 256 warm): the operations' comparison and one-row GEMM cost about 14 us, and
    their 128 KB indicator pushes the training step's own tensors out of the cache. ``None`` when the
    loops are unavailable (numba missing, switched off, or failing to compile: warned once) or ``counts``
    is not such a tensor; then the operations count. Raises ``ValueError`` for values of another dtype,
    device or width (the C function reads memory by address: it must never be handed the wrong layout)."""
    if not ENABLED or _failed or counts.device.type != "cpu" or counts.dtype != torch.float32:
        return None
    if counts.dim() != 1 or not counts.is_contiguous():
        return None
    function = _count_rows()
    if function is None:
        return None
    width = counts.shape[0]
    target = counts.data_ptr()
    everything = _NO_ROWS.ctypes.data  # never read: the call is told it is not masked
    float32 = torch.float32

    def count(values: torch.Tensor, real: torch.Tensor | None = None) -> int:
        if values.dtype is not float32 or not values.is_cpu or not values.dim() or values.shape[-1] != width:
            raise ValueError(
                f"row_counter counts float32 CPU values of width {width}, got {values.dtype} {tuple(values.shape)} on {values.device}"
            )
        if not values.is_contiguous() or values.is_neg():  # read by address: the values as laid out in memory
            values = values.resolve_neg().contiguous()
        rows = values.numel() // width if width else 0
        if real is None:
            return function(values.data_ptr(), target, everything, 0, rows, width, rule, limit)
        if real.dtype is not torch.bool or not real.is_cpu or real.numel() != rows:
            raise ValueError(
                f"row_counter's rows to count are {rows} bools on the CPU, got {real.dtype} {tuple(real.shape)}"
            )
        if not real.is_contiguous():
            real = real.contiguous()
        return function(values.data_ptr(), target, real.data_ptr(), 1, rows, width, rule, limit)

    count.counts = counts  # type: ignore[attr-defined]  # the sums stay alive while the count is held
    return count


@functools.cache
def _count_rows() -> Any:
    """:mod:`inspector.core._row_counts`' C function as a ``ctypes`` callable, compiled (or loaded from numba's
    cache) on first use; ``None`` when it cannot be (said once, as for the other loops)."""
    if _loops() is None:
        return None
    try:
        address = importlib.import_module("inspector.core._row_counts").count_rows.address
    except Exception as error:  # noqa: BLE001 - a compiler failure must not stop a training loop
        _run_failed(error)
        return None
    prototype = ctypes.CFUNCTYPE(
        ctypes.c_ssize_t,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_ssize_t,
        ctypes.c_ssize_t,
        ctypes.c_ssize_t,
        ctypes.c_ssize_t,
        ctypes.c_float,
    )
    return prototype(address)


def histogram(kept: torch.Tensor, lo: float, hi: float, bins: int) -> np.ndarray | None:
    """Per-column counts ``(m, bins)`` int64 of ``kept`` ``(k, m)`` over ``bins`` equal bins from ``lo`` to
    ``hi`` (finite, ``hi > lo``: the bounds of ``kept``): a value's bin is ``(v - lo) / (hi - lo) * bins``
    in float32, truncated and clamped, as the census's operations compute it; ``None`` when the loop is
    unavailable."""
    if not usable(kept):
        return None
    counts = np.zeros((kept.shape[1], bins), dtype=np.int64)
    ran, _ = _run("histogram", kept.numpy(), np.float32(lo), np.float32(hi - lo), bins, counts)
    return counts if ran else None


class CentredRows:
    """The kept rows ``a`` ``(k, m)`` float32 less their column means ``mean`` ``(m,)`` float64, as products:
    the centred matrix is never formed (``(a - mean) x = a x - (mean . x)``, each float32 value read once
    as float64: half the memory of the float64 centred copy, which need not be written either). ``total``:
    the sum of squares about the means. Products as scipy's ``LinearOperator`` calls them: ``x`` ``(m,)``
    or ``(m, q)``, ``y`` ``(k,)`` or ``(k, q)``. Equal to the formed matrix's products to float64 rounding
    (the means are exact to it; no cancellation beyond what the centred values carry). Made by
    :func:`centred_rows`."""

    def __init__(self, a: np.ndarray, mean: np.ndarray, total: float, loops: dict[str, Any]) -> None:
        self.a, self.mean, self.total = a, mean, total
        self.shape = a.shape
        self._matvec, self._rmatvec = loops["shifted_matvec"], loops["shifted_rmatvec"]

    def matvec(self, x: np.ndarray) -> np.ndarray:
        """``(a - mean) @ x``."""
        return self._apply(self._matvec, x, self.shape[0])

    def rmatvec(self, y: np.ndarray) -> np.ndarray:
        """``(a - mean).T @ y``."""
        return self._apply(self._rmatvec, y, self.shape[1])

    def _apply(self, loop: Any, x: np.ndarray, size: int) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 1 or (x.ndim == 2 and x.shape[1] == 1):
            out = np.empty(size)
            loop(self.a, self.mean, np.ascontiguousarray(x.reshape(-1)), out)
            return out.reshape(size, 1) if x.ndim == 2 else out
        out = np.empty((x.shape[1], size))
        for column in range(x.shape[1]):
            loop(self.a, self.mean, np.ascontiguousarray(x[:, column]), out[column])
        return out.T


def centred_rows(a: torch.Tensor) -> CentredRows | None:
    """:class:`CentredRows` of ``a`` (a float32, C-contiguous CPU tensor), or ``None`` when the loops are
    unavailable (then the caller forms the centred matrix). Both products run once here, on ``a``'s first
    row: a loop that cannot compile falls back now, not inside the solver."""
    if not usable(a):
        return None
    rows = a.numpy()
    ran, moments = _run("column_moments", rows)
    if not ran:
        return None
    mean, total = moments
    first, width = rows[:1], rows.shape[1]
    if not (
        _run("shifted_matvec", first, mean, np.zeros(width), np.empty(1))[0]
        and _run("shifted_rmatvec", first, mean, np.zeros(1), np.empty(width))[0]
    ):
        return None
    loops = _loops()
    assert loops is not None  # usable() imported them
    return CentredRows(rows, mean, total, loops)


_NO_ROWS = np.zeros(0, dtype=np.bool_)


class _Scratch(threading.local):
    """The arrays the loops work in, per thread, kept from call to call (see :func:`_buffer`)."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}


_scratch = _Scratch()


def _buffer(name: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """A scratch array of ``shape`` for a loop, uninitialised, reused by every call of this thread (grown as
    needed): the loops allocate nothing themselves, so a call in a forward hook adds no allocation and no
    free to those of the forward around it."""
    size = math.prod(shape)
    array = _scratch.arrays.get(name)
    if array is None or array.size < size or array.dtype != dtype:
        array = _scratch.arrays[name] = np.empty(max(size, 1), dtype=dtype)
    return array[:size].reshape(shape)


def _run(name: str, *arguments: Any) -> tuple[bool, Any]:
    """Call loop ``name``: ``(True, what it returned)``, or ``(False, None)`` if it cannot be compiled here
    (said once; from then on the operations count)."""
    loops = _loops()
    assert loops is not None
    try:
        return True, loops[name](*arguments)
    except Exception as error:  # noqa: BLE001 - a compiler failure must not stop an analysis or a training loop
        _run_failed(error)
        return False, None


def _run_failed(error: Exception) -> None:
    """Say once why the loops cannot run here; from then on :func:`usable` is ``False``."""
    if not _failed:
        _failed.append(f"{type(error).__name__}: {error}".splitlines()[0])
        warnings.warn(
            f"dense-inspector: numba could not compile its counting loops ({_failed[0]}); counting with "
            "PyTorch operations instead (the same numbers, more slowly)",
            RuntimeWarning,
            stacklevel=4,
        )


@functools.cache
def _loops() -> dict[str, Any] | None:
    """The compiled loops by name, imported on first use; ``None`` without numba (then the operations count)."""
    try:
        return importlib.import_module("inspector.core._loops").LOOPS
    except ImportError as error:  # numba missing (or failing to import)
        _failed.append(f"{type(error).__name__}: {error}".splitlines()[0])
        return None
