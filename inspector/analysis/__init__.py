"""One entry point for every analysis: :func:`analyze` returns an :class:`Analysis`.

The pieces, one job each: :mod:`~inspector.analysis.result` (what an analysis holds),
:mod:`~inspector.analysis.options` (which sections, how), :mod:`~inspector.analysis.context`
(what every section shares, built once per analysis), :mod:`~inspector.analysis.sections` (the
registry of sections, one file each with its computation call and findings),
:mod:`~inspector.analysis.run` (:func:`analyze`: build the context, run the sections),
:mod:`~inspector.analysis.weights_file` (a file whose weights do not rebuild as a model) and
:mod:`~inspector.analysis.paths` (from a path a user named to an analysis). See docs/sections.md.
"""

from __future__ import annotations

from inspector.analysis.options import DATA_SECTIONS, SECTIONS, AnalysisOptions
from inspector.analysis.paths import analyze_path
from inspector.analysis.probe import Probe
from inspector.analysis.result import Analysis, DataInfo, ModelInfo
from inspector.analysis.run import analyze
from inspector.analysis.weights_file import analyze_weights_file
from inspector.analysis.whatif import PartialDependence, partial_dependence

__all__ = [
    "Analysis",
    "AnalysisOptions",
    "DATA_SECTIONS",
    "DataInfo",
    "ModelInfo",
    "PartialDependence",
    "Probe",
    "SECTIONS",
    "analyze",
    "analyze_path",
    "analyze_weights_file",
    "partial_dependence",
]
