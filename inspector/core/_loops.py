"""The compiled loops behind :mod:`inspector.core.kernels` (numba), imported on the first count: importing
numba costs about 0.3 s, which a command that counts nothing should not pay. Rules and block size are
:mod:`~inspector.core.kernels`'s; see it for what each loop computes."""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from inspector.core.kernels import BEYOND, FOLD_ROWS, NEAR_ZERO, OFF_HALF, POSITIVE

_fast = numba.njit(nogil=True, fastmath={"nnan", "nsz"})
_loop = numba.njit(nogil=True, inline="always")
_compiled = numba.njit(nogil=True, cache=True)  # compiled on the first call, then loaded from numba's cache


# no NaN assumed: a plain maximum that vectorizes (vmaxps); a chunk holding a NaN is redone by the caller.
# Compiled apart, not inlined by numba (the caller's flags would replace these)
@_fast
def max_into(destination: Any, a: Any, b: Any) -> None:
    for j in range(destination.shape[0]):
        destination[j] = max(a[j], b[j])


@_loop
def add_rule(counts: Any, values: Any, rule: int, limit: Any) -> None:
    # one loop per rule: a test inside the loop would keep it from vectorizing
    if rule == POSITIVE:
        for j in range(counts.shape[0]):
            counts[j] += np.float32(values[j] > 0)
    elif rule == BEYOND:
        for j in range(counts.shape[0]):
            counts[j] += np.float32(abs(values[j]) > limit)
    elif rule == OFF_HALF:
        for j in range(counts.shape[0]):
            counts[j] += np.float32(abs(values[j] - np.float32(0.5)) > limit)
    elif rule == NEAR_ZERO:
        for j in range(counts.shape[0]):
            counts[j] += np.float32(abs(values[j]) < limit)


@_loop
def fold(partial: Any, totals: Any) -> None:
    for a in range(partial.shape[0]):
        for j in range(partial.shape[1]):
            totals[a, j] += partial[a, j]
            partial[a, j] = 0


@_compiled
def site_counts(
    source: Any,
    out: Any,
    real: Any,
    fire_rule: int,
    fire_limit: Any,
    near_rule: int,
    near_limit: Any,
    totals: Any,
    peaks: Any,
    chunk: int,
) -> bool:
    rows, width = out.shape
    partial = np.zeros((3, width), dtype=np.float32)
    fired, zero, total = partial[0], partial[1], partial[2]
    even, odd = np.empty(width, dtype=np.float32), np.empty(width, dtype=np.float32)
    masked = real.shape[0] > 0
    nan = False
    pending = 0
    for i in range(rows):
        row = out[i]
        if not masked or real[i]:
            add_rule(fired, source[i], fire_rule, fire_limit)
            add_rule(zero, row, near_rule, near_limit)
            for j in range(width):
                total[j] += row[j]
            pending += 1
        else:  # not counted, but in its chunk's maximum: a NaN here must be seen as well
            for j in range(width):
                if row[j] != row[j]:
                    nan = True
        c, k = i // chunk, i % chunk
        if c < peaks.shape[0]:  # the running maximum alternates between two buffers (no aliasing: it vectorizes)
            if chunk == 1:
                peaks[c][:] = row
            elif k == 0:
                even[:] = row
            elif k == chunk - 1:
                max_into(peaks[c], even if k % 2 == 1 else odd, row)
            elif k % 2 == 1:
                max_into(odd, even, row)
            else:
                max_into(even, odd, row)
        if pending == FOLD_ROWS or i == rows - 1:
            for j in range(width):
                if total[j] != total[j]:
                    nan = True
            fold(partial, totals)
            pending = 0
    return nan


LOOPS = {"site_counts": site_counts}
