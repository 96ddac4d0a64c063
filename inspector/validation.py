"""Former name of :mod:`inspector.checks` (in ML, "validation" means a held-out split).

A thin re-export kept for the modules and scripts that still import from here; new code
imports :mod:`inspector.checks`.
"""

from __future__ import annotations

from inspector.checks import check_fields, is_int, printable

__all__ = ["check_fields", "is_int", "printable"]
