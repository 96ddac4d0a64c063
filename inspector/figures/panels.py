"""Report panels: a figure module adds a section to the analysis report by registering it here.

The renderer (``analysis_sections`` and ``to_markdown``) iterates :func:`report_panels` after its
own sections, so a new picture reaches the HTML/PDF/PNG and Markdown reports without an edit to
the renderer::

    # inspector/figures/spectrum.py
    from inspector.figures.panels import report_panel

    def spectrum_figure(weights: LayerWeights) -> go.Figure: ...  # the builder the dashboard view calls too

    @report_panel("spectrum", "Singular value spectra", order=45)
    def spectrum_panel(analysis: Analysis) -> list[str | go.Figure] | None:
        if not analysis.weights:
            return None  # nothing to show: the report leaves the section out
        return [spectrum_figure(w) for w in analysis.weights]

A panel's blocks are what a report section holds: plotly figures and HTML text, in order.
``markdown`` (optional) returns the section's Markdown body. :func:`report_panels` imports every
module of :mod:`inspector.figures` first, so a registration is found without any import list.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import plotly.graph_objects as go

if TYPE_CHECKING:
    from inspector.analysis import Analysis

Blocks = list[str | go.Figure]
PanelBuilder = Callable[["Analysis"], Blocks | None]
MarkdownBuilder = Callable[["Analysis"], str | None]

FIGURES_PACKAGE = "inspector.figures"


@dataclass(frozen=True)
class ReportPanel:
    """One section of the analysis report: ``name`` is its anchor (``id``), ``title`` its heading;
    ``build(analysis)`` returns its blocks or ``None`` when the analysis has nothing for it;
    ``markdown(analysis)`` its Markdown body (``None``: left out of Markdown reports)."""

    name: str
    title: str
    order: int
    build: PanelBuilder
    markdown: MarkdownBuilder | None = None


_PANELS: dict[str, ReportPanel] = {}


def report_panel(
    name: str, title: str, order: int = 100, *, markdown: MarkdownBuilder | None = None
) -> Callable[[PanelBuilder], PanelBuilder]:
    """Register the decorated ``analysis -> blocks | None`` function as the report section ``name``
    (a second registration under ``name`` replaces the first). Returns the function unchanged."""

    def register(build: PanelBuilder) -> PanelBuilder:
        _PANELS[name] = ReportPanel(name, title, order, build, markdown)
        return build

    return register


def unregister_panel(name: str) -> None:
    _PANELS.pop(name, None)


def report_panels() -> list[ReportPanel]:
    """Every registered panel, by ``order`` then name; imports the figure modules first."""
    package = importlib.import_module(FIGURES_PACKAGE)
    for module in pkgutil.iter_modules(package.__path__, prefix=f"{FIGURES_PACKAGE}."):
        if not module.name.rsplit(".", 1)[-1].startswith("_"):
            importlib.import_module(module.name)
    return sorted(_PANELS.values(), key=lambda panel: (panel.order, panel.name))
