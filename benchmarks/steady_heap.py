"""glibc's heap held steady for a benchmark of large forwards: :func:`steady_heap` re-executes the script
once with heap trimming and ``mmap`` allocations off (``GLIBC_TUNABLES``), for the numerator and the
denominator alike.

Why: with glibc's defaults, freeing a forward's large tensors (a MiniLM intermediate is 25 MB) can leave
the top of the heap free, which glibc returns to the system; the next tensors then fault it back page by
page. Whether that happens depends on where the last long-lived allocation happened to land, not on the
work measured: on this machine 100,000 to 300,000 page faults (0.2 to 0.7 s of system time on a 9 s
MiniLM forward) landed on one run in two or three, on the census or on the bare forward alike, and moved
with unrelated changes (an extra buffer allocated once per census moved them onto the bare forwards).
Held steady, neither side faults after its first run. ``--system-malloc`` keeps glibc's defaults.
"""

from __future__ import annotations

import os
import platform
import sys

TUNABLES = "glibc.malloc.trim_threshold=68719476736:glibc.malloc.mmap_max=0"
FLAG = "--system-malloc"


def steady_heap() -> str:
    """Re-execute this process (same interpreter, options and arguments) with :data:`TUNABLES`, unless it
    already runs with them, ``GLIBC_TUNABLES`` is set otherwise, ``--system-malloc`` is among the arguments
    (removed from ``sys.argv`` here) or the C library is not glibc. Returns the heap in words, for the
    benchmark's first line."""
    if FLAG in sys.argv:
        sys.argv.remove(FLAG)
        return "glibc's default heap (--system-malloc)"
    given = os.environ.get("GLIBC_TUNABLES")
    if given == TUNABLES:
        return "glibc heap held steady (no trim, no mmap; --system-malloc: the defaults)"
    if given is not None:
        return f"GLIBC_TUNABLES={given} as given"
    if platform.libc_ver()[0] != "glibc":
        return "the system's allocator"
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], {**os.environ, "GLIBC_TUNABLES": TUNABLES})
    raise AssertionError("unreachable: execve returns only by raising")
