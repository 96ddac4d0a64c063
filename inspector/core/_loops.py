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
def max4_into(destination: Any, previous: Any, a: Any, b: Any, c: Any, d: Any) -> None:
    for j in range(destination.shape[0]):
        destination[j] = max(max(previous[j], a[j]), max(max(b[j], c[j]), d[j]))


@_loop
def chunk_maximum(
    peaks: Any, running: Any, current: int, chunk: int, start: int, size: int, a: Any, b: Any, c: Any, d: Any
) -> int:
    # rows start .. start + size - 1 (size 1 or 4, within one chunk; a single row passed as a = b = c = d)
    # into their chunk's running maximum, which alternates between running's two rows (no aliasing: it
    # vectorizes), or into peaks at the chunk's last row; returns the running row now current
    n, k = start // chunk, start % chunk
    if n >= peaks.shape[0]:  # rows after the last whole chunk
        return current
    if k == 0 and size == chunk:
        max4_into(peaks[n], a, a, b, c, d)
    elif k == 0:
        max4_into(running[current], a, a, b, c, d)
    elif k + size == chunk:
        max4_into(peaks[n], running[current], a, b, c, d)
    else:
        max4_into(running[1 - current], running[current], a, b, c, d)
        return 1 - current
    return current


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
def add_rule4(counts: Any, a: Any, b: Any, c: Any, d: Any, rule: int, limit: Any) -> None:
    # add_rule over four rows at once: each count is loaded and stored once per four values (the single-row
    # loop is bound by those loads and stores, not by the values); 0/1 sums in float32 are exact
    if rule == POSITIVE:
        for j in range(counts.shape[0]):
            counts[j] += (np.float32(a[j] > 0) + np.float32(b[j] > 0)) + (np.float32(c[j] > 0) + np.float32(d[j] > 0))
    elif rule == BEYOND:
        for j in range(counts.shape[0]):
            counts[j] += (np.float32(abs(a[j]) > limit) + np.float32(abs(b[j]) > limit)) + (
                np.float32(abs(c[j]) > limit) + np.float32(abs(d[j]) > limit)
            )
    elif rule == OFF_HALF:
        half = np.float32(0.5)
        for j in range(counts.shape[0]):
            counts[j] += (np.float32(abs(a[j] - half) > limit) + np.float32(abs(b[j] - half) > limit)) + (
                np.float32(abs(c[j] - half) > limit) + np.float32(abs(d[j] - half) > limit)
            )
    elif rule == NEAR_ZERO:
        for j in range(counts.shape[0]):
            counts[j] += (np.float32(abs(a[j]) < limit) + np.float32(abs(b[j]) < limit)) + (
                np.float32(abs(c[j]) < limit) + np.float32(abs(d[j]) < limit)
            )


@_loop
def add_sum(total: Any, row: Any) -> None:
    for j in range(total.shape[0]):
        total[j] += row[j]


@_loop
def add_sum4(total: Any, a: Any, b: Any, c: Any, d: Any) -> None:
    # the four rows added one after the other, as four add_sum calls would add them (no reassociation)
    for j in range(total.shape[0]):
        total[j] = total[j] + a[j] + b[j] + c[j] + d[j]


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
    partial: Any,
    running: Any,
) -> bool:
    # partial (3, m) float32 and running (2, m) float32: scratch (see kernels._buffer)
    rows, width = out.shape
    partial[:] = 0
    fired, zero, total = partial[0], partial[1], partial[2]
    current = 0  # which of running's two rows holds the chunk's maximum so far (see chunk_maximum)
    masked = real.shape[0] > 0
    nan = False
    pending = 0
    # rows go four at a time where the four are counted and in one chunk, else one at a time
    grouped = chunk % 4 == 0
    i = 0
    while i < rows:
        whole = grouped and i + 4 <= rows
        if whole and masked:
            whole = real[i] and real[i + 1] and real[i + 2] and real[i + 3]
        if whole:
            a, b, c, d = out[i], out[i + 1], out[i + 2], out[i + 3]
            add_rule4(fired, source[i], source[i + 1], source[i + 2], source[i + 3], fire_rule, fire_limit)
            add_rule4(zero, a, b, c, d, near_rule, near_limit)
            add_sum4(total, a, b, c, d)
            pending += 4
            current = chunk_maximum(peaks, running, current, chunk, i, 4, a, b, c, d)
            i += 4
        else:
            stop = min(i + 4, rows) if grouped else i + 1
            for r in range(i, stop):
                row = out[r]
                if not masked or real[r]:
                    add_rule(fired, source[r], fire_rule, fire_limit)
                    add_rule(zero, row, near_rule, near_limit)
                    add_sum(total, row)
                    pending += 1
                else:  # not counted, but in its chunk's maximum: a NaN here must be seen as well
                    for j in range(width):
                        if row[j] != row[j]:
                            nan = True
                current = chunk_maximum(peaks, running, current, chunk, r, 1, row, row, row, row)
            i = stop
        if pending >= FOLD_ROWS or i == rows:
            for j in range(width):
                if total[j] != total[j]:
                    nan = True
            fold(partial, totals)
            pending = 0
    return nan


@_loop
def insert(values: Any, slot: Any, entered: Any, threshold: Any, j: int, value: Any, row: int) -> None:
    # into neuron j's ranking values[j] (descending; an equal value already held stays ahead: it came
    # first), in the storage slot of the value that drops out; entered[slot, j] := row; threshold[j] := the
    # new k-th value
    k = values.shape[1]
    rank = k - 1
    while rank > 0 and values[j, rank - 1] < value:
        rank -= 1
    freed = slot[j, k - 1]
    for r in range(k - 1, rank, -1):
        values[j, r] = values[j, r - 1]
        slot[j, r] = slot[j, r - 1]
    values[j, rank] = value
    slot[j, rank] = freed
    entered[freed, j] = row
    threshold[j] = values[j, k - 1]


@_loop
def kth_smallest(a: Any, n: int, index: int) -> Any:
    # a[:n] (no NaN) reordered in place until a[index] holds what sorting would put there (quickselect:
    # np.partition would allocate a copy per column)
    lo, hi = 0, n - 1
    while lo < hi:
        pivot = a[(lo + hi) // 2]
        i, j = lo, hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if index <= j:
            hi = j
        elif index >= i:
            lo = i
        else:
            break
    return a[index]


@_compiled
def top_update(
    flat: Any,
    real: Any,
    peaks: Any,
    values: Any,
    slot: Any,
    entered: Any,
    chunk: int,
    threshold: Any,
    floor: Any,
    column: Any,
    flagged: Any,
) -> None:
    # threshold, floor (m,) float32, column (chunks,) float32, flagged (m,) int64: scratch (see kernels._buffer)
    rows, width = flat.shape
    k = values.shape[1]
    masked = real.shape[0] > 0
    # each neuron's k-th value (-inf while it holds fewer), side by side: what a row must beat
    first = True  # nothing held yet
    for j in range(width):
        threshold[j] = values[j, k - 1]
        first = first and threshold[j] == -np.inf
    entered[:] = -1
    chunks = peaks.shape[0]
    # on a first call (nothing held) without padding: no entry below a column's k-th largest chunk maximum
    # can be in its top k (k chunks hold one at least that large), so only chunks reaching it are read
    floor[:] = -np.inf
    if not masked and chunks >= 2 * k and first:
        for j in range(width):
            n = 0
            for c in range(chunks):
                peak = peaks[c, j]
                if peak == peak:  # a chunk holding a NaN is read whole anyway
                    column[n] = peak
                    n += 1
            if n >= k:
                floor[j] = kth_smallest(column, n, n - k)
    for c in range(chunks):
        # the columns whose chunk maximum beats their k-th value (or is NaN), then those columns of each
        # row of the chunk in row order: each row read left to right (not a column down the rows)
        count = 0
        for j in range(width):
            peak = peaks[c, j]
            if peak != peak or (peak > threshold[j] and peak >= floor[j]):
                flagged[count] = j
                count += 1
        if count == 0:
            continue
        for i in range(c * chunk, (c + 1) * chunk):
            if masked and not real[i]:
                continue
            row = flat[i]
            for f in range(count):
                j = flagged[f]
                value = row[j]
                if value > threshold[j] and value >= floor[j]:
                    insert(values, slot, entered, threshold, j, value, i)
    for i in range(chunks * chunk, rows):  # the rows after the last whole chunk
        if masked and not real[i]:
            continue
        row = flat[i]
        for j in range(width):
            value = row[j]
            if value > threshold[j] and value >= floor[j]:
                insert(values, slot, entered, threshold, j, value, i)


@_compiled
def column_moments(a: Any) -> tuple[Any, float]:
    # each column's mean and the total sum of squares about the means, in float64, rows in order (one
    # thread: the same bits wherever the same rows are finished)
    rows, width = a.shape
    mean = np.zeros(width)
    for i in range(rows):
        row = a[i]
        for j in range(width):
            mean[j] += np.float64(row[j])
    for j in range(width):
        mean[j] /= rows
    squares = np.zeros(width)
    for i in range(rows):
        row = a[i]
        for j in range(width):
            d = np.float64(row[j]) - mean[j]
            squares[j] += d * d
    total = 0.0
    for j in range(width):
        total += squares[j]
    return mean, total


# a row's dot product summed in vector lanes (reassociated): the float32 rows are read once, as float64
@numba.njit(nogil=True, cache=True, fastmath={"reassoc", "contract"})
def shifted_matvec(a: Any, mean: Any, x: Any, out: Any) -> None:
    rows, width = a.shape
    shift = 0.0
    for j in range(width):
        shift += mean[j] * x[j]
    for i in range(rows):
        row = a[i]
        total = 0.0
        for j in range(width):
            total += np.float64(row[j]) * x[j]
        out[i] = total - shift


@numba.njit(nogil=True, cache=True, fastmath={"contract"})
def shifted_rmatvec(a: Any, mean: Any, y: Any, out: Any) -> None:
    rows, width = a.shape
    for j in range(width):
        out[j] = 0.0
    weight = 0.0
    for i in range(rows):
        row = a[i]
        yi = y[i]
        weight += yi
        for j in range(width):
            out[j] += np.float64(row[j]) * yi
    for j in range(width):
        out[j] -= mean[j] * weight


@_compiled
def histogram(a: Any, lo: Any, span: Any, bins: int, counts: Any) -> None:
    # counts[j, b] += rows whose value v in column j has int((v - lo) / span * bins) == b (clamped): the
    # operations' float32 arithmetic, step by step
    rows, width = a.shape
    scale = np.float32(bins)
    for i in range(rows):
        row = a[i]
        for j in range(width):
            b = int((row[j] - lo) / span * scale)
            counts[j, min(max(b, 0), bins - 1)] += 1


LOOPS = {
    "histogram": histogram,
    "site_counts": site_counts,
    "top_update": top_update,
    "column_moments": column_moments,
    "shifted_matvec": shifted_matvec,
    "shifted_rmatvec": shifted_rmatvec,
}
