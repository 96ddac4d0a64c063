"""The views of the dashboard: each module of :mod:`dashboards.views` registers itself here.

A view is one file. At import time it calls :func:`register_view` with its name (the tab's
value), its label, its place among the tabs, a ``layout`` and a ``callbacks`` function, and it
names its component ids with :class:`ViewIds`, so every id it owns reads ``<name>-<part>``::

    # dashboards/views/spectrum.py
    from dashboards.registry import ViewIds, register_view

    ID = ViewIds("spectrum")
    FIG = ID("figure")  # "spectrum-figure"

    def layout(state): ...
    def callbacks(app, state): ...

    register_view("spectrum", "Spectrum", order=75, layout=layout, callbacks=callbacks)

:func:`views` imports every module of the package (``pkgutil``, as Dash pages finds its pages),
so ``dashboards/app.py`` lists none of them. Ids shared by several views (the tabs, the neuron a
weights click selects, the sample two views share) live in :mod:`dashboards.ids`.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from dash import Dash
from dash.development.base_component import Component

# What a view is built from: the analysis (a DashboardState) or the training runs (LiveRuns).
Subject = Literal["analysis", "live"]

VIEWS_PACKAGE = "dashboards.views"


@dataclass(frozen=True)
class View:
    """One tab of the dashboard.

    ``layout(subject)`` returns the tab's content and ``callbacks(app, subject)`` wires its callbacks,
    where ``subject`` is the :class:`~dashboards.state.DashboardState` for ``needs="analysis"`` views
    and the :class:`~dashboards.views.live.LiveRuns` for ``needs="live"`` ones. ``available(subject)``:
    whether the tab is shown for this subject (default: always). Tabs are ordered by ``order``, then name.
    """

    name: str
    label: str
    order: int
    layout: Callable[[Any], Component]
    callbacks: Callable[[Dash, Any], None]
    needs: Subject = "analysis"
    available: Callable[[Any], bool] | None = None

    def shown_for(self, subject: object) -> bool:
        return subject is not None and (self.available is None or self.available(subject))


_REGISTRY: dict[str, View] = {}


def register_view(
    name: str,
    label: str,
    order: int,
    layout: Callable[[Any], Component],
    callbacks: Callable[[Dash, Any], None],
    *,
    needs: Subject = "analysis",
    available: Callable[[Any], bool] | None = None,
) -> View:
    """Add a view (a tab) to every app built from now on; a second registration under ``name`` replaces
    the first (a module reloaded in a notebook). Returns the :class:`View`."""
    view = View(name, label, order, layout, callbacks, needs, available)
    _REGISTRY[name] = view
    return view


def unregister_view(name: str) -> None:
    """Remove the view ``name`` (tests that register a throwaway view remove it again)."""
    _REGISTRY.pop(name, None)


def discover(package: str = VIEWS_PACKAGE) -> None:
    """Import every module of ``package`` so that each registers its view (modules starting with ``_`` are skipped)."""
    root = importlib.import_module(package)
    for module in pkgutil.iter_modules(root.__path__, prefix=f"{package}."):
        if not module.name.rsplit(".", 1)[-1].startswith("_"):
            importlib.import_module(module.name)


def views(needs: Subject | None = None) -> list[View]:
    """Every registered view (those ``needs`` only, when given), in tab order; discovers them first."""
    discover()
    found = sorted(_REGISTRY.values(), key=lambda view: (view.order, view.name))
    return [view for view in found if needs is None or view.needs == needs]


class ViewIds:
    """A view's component ids, each prefixed with the view's name (explainerdashboard's instance names).

    ``ID = ViewIds("weights")``; ``ID("layer")`` is ``"weights-layer"``. Two views cannot collide
    as long as their names differ; :meth:`owned` lists what a view has named so far.
    """

    def __init__(self, view: str) -> None:
        self.view = view
        self._named: list[str] = []

    def __call__(self, part: str) -> str:
        component_id = f"{self.view}-{part}"
        self._named.append(component_id)
        return component_id

    def owned(self) -> tuple[str, ...]:
        return tuple(self._named)

    def __iter__(self) -> Iterator[str]:
        return iter(self._named)
