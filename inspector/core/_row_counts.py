"""The live Monitor's compiled count (numba), as a C function: :func:`inspector.core.kernels.row_counter`
calls it through ``ctypes`` with the tensors' addresses. A numba ``cfunc``, not a jitted function: a call
costs about 1 us, where a jitted call's conversion of each tensor to an array and its type dispatch cost
about 12 us, more than the count of a 128 x 256 batch itself. Compiled when this module is first
imported (numba caches the machine code, as for :mod:`inspector.core._loops`, whose rules it applies)."""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
from numba import types

from inspector.core._loops import add_rule, add_rule4

_SIGNATURE = types.intp(
    types.CPointer(types.float32),  # values (rows, m), C order
    types.CPointer(types.float32),  # counts (m,), added to
    types.CPointer(types.uint8),  # real (rows,): 1 where a row counts (read only when masked)
    types.intp,  # masked
    types.intp,  # rows
    types.intp,  # m
    types.intp,  # rule
    types.float32,  # limit
)


@numba.cfunc(_SIGNATURE, nogil=True, cache=True)
def count_rows(values: Any, counts: Any, real: Any, masked: int, rows: int, m: int, rule: int, limit: Any) -> int:
    # counts[j] += the rows r (every row, or those with real[r] != 0) where the rule holds for values[r, j],
    # four rows at a time (the real rows gathered four by four), the rest one by one; returns the rows counted
    table = numba.carray(values, (rows, m))
    sums = numba.carray(counts, (m,))
    if not masked:
        r = 0
        while r + 4 <= rows:
            add_rule4(sums, table[r], table[r + 1], table[r + 2], table[r + 3], rule, limit)
            r += 4
        while r < rows:
            add_rule(sums, table[r], rule, limit)
            r += 1
        return rows
    keep = numba.carray(real, (rows,))
    held = np.empty(4, dtype=np.intp)
    n = 0
    counted = 0
    for r in range(rows):
        if keep[r] == 0:
            continue
        held[n] = r
        n += 1
        counted += 1
        if n == 4:
            add_rule4(sums, table[held[0]], table[held[1]], table[held[2]], table[held[3]], rule, limit)
            n = 0
    for i in range(n):
        add_rule(sums, table[held[i]], rule, limit)
    return counted
