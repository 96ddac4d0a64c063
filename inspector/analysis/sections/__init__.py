"""The sections of an analysis, one file each, registered in run order (see :mod:`.registry` and docs/sections.md).

Importing this package registers the built-in sections, in this order: ``parameters``, ``weights``,
``evaluation``, ``activations``, ``deaths``, ``importance``, ``whatif``, ``pruning``, ``training``. The
order is the run order, the order of the findings, and a dependency order (``whatif`` reads
``importance``, ``pruning`` reads ``activations``).
"""

from __future__ import annotations

# isort: off
# importing each module registers its section: this order is the run order
from inspector.analysis.sections import parameters  # noqa: F401
from inspector.analysis.sections import weights  # noqa: F401
from inspector.analysis.sections import evaluation  # noqa: F401
from inspector.analysis.sections import activations  # noqa: F401
from inspector.analysis.sections import deaths  # noqa: F401
from inspector.analysis.sections import importance  # noqa: F401
from inspector.analysis.sections import whatif  # noqa: F401
from inspector.analysis.sections import pruning  # noqa: F401
from inspector.analysis.sections import training  # noqa: F401

# isort: on
from inspector.analysis.sections.registry import (
    NEEDS,
    SectionResults,
    SectionRun,
    SectionSpec,
    register,
    registered,
    run_sections,
    section,
    sections,
    unregister,
)

__all__ = [
    "NEEDS",
    "SectionResults",
    "SectionRun",
    "SectionSpec",
    "register",
    "registered",
    "run_sections",
    "section",
    "sections",
    "unregister",
]
