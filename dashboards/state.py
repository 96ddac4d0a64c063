"""What the dashboard reads: the stored analysis, plus the model for on-demand questions.

The analysis answers everything precomputed. Only two questions need the
model: one sample's attribution and a zoomed region of a large layer at full
resolution. Both are answered here and cached, so a repeated request costs nothing.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from inspector.analysis import Analysis
from inspector.analysis.activations import LayerActivations
from inspector.analysis.importance import Explainer, LayerConductanceResult
from inspector.analysis.parameters import linear_weights
from inspector.analysis.weights import LayerWeights, PooledMap, zoom
from inspector.evaluation import EvalData

_ZOOM_CACHE = 64
_VIEW_CACHE = 512


@dataclass
class DashboardState:
    analysis: Analysis
    explainer: Explainer | None = None
    data: EvalData | None = None
    _weights: dict[str, np.ndarray] = field(default_factory=dict)
    _zooms: OrderedDict[tuple[str, int, int, int, int], PooledMap] = field(default_factory=OrderedDict)
    _views: OrderedDict[tuple[Any, ...], Any] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def memo(self, key: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
        """``compute()`` once per ``key``; a bounded LRU, so memory stays flat under load.

        Everything a view shows is a pure function of the stored analysis and the
        view's inputs, so a repeated request (another user, a tab switched back)
        reuses the built figures instead of rebuilding them.
        """
        with self._lock:
            if key in self._views:
                self._views.move_to_end(key)
                return self._views[key]
        value = compute()
        with self._lock:
            self._views[key] = value
            while len(self._views) > _VIEW_CACHE:
                self._views.popitem(last=False)
        return value

    @classmethod
    def build(cls, analysis: Analysis, model: nn.Module | None = None, data: EvalData | None = None,
              n_steps: int = 50) -> DashboardState:
        state = cls(analysis=analysis, data=data)
        if model is not None:
            state._weights = linear_weights(model)
            if data is not None:
                state.explainer = Explainer(model, data.X, data.y, n_steps=n_steps)
        return state

    # --- lookups into the stored analysis -------------------------------------------------

    @property
    def layer_names(self) -> list[str]:
        return [layer.name for layer in self.analysis.parameters.layers]

    def weights(self, name: str) -> LayerWeights | None:
        for w in self.analysis.weights or ():
            if w.name == name:
                return w
        return None

    def activations(self, linear: str) -> LayerActivations | None:
        for a in self.analysis.activations or ():
            if a.linear == linear:
                return a
        return None

    def conductance(self, linear: str) -> LayerConductanceResult | None:
        if self.analysis.importance is None:
            return None
        for c in self.analysis.importance.conductance:
            if c.layer == linear:
                return c
        return None

    @property
    def census_layers(self) -> list[str]:
        return [a.linear for a in self.analysis.activations or ()]

    # --- on-demand questions ---------------------------------------------------------------

    @property
    def can_zoom(self) -> bool:
        return bool(self._weights)

    def zoom(self, name: str, rows: tuple[int, int], cols: tuple[int, int]) -> PooledMap | None:
        """A region of layer ``name`` at full resolution (pooled if still too large); cached."""
        weight = self._weights.get(name)
        if weight is None:
            return None
        key = (name, int(rows[0]), int(rows[1]), int(cols[0]), int(cols[1]))
        with self._lock:
            if key in self._zooms:
                self._zooms.move_to_end(key)
                return self._zooms[key]
        region = zoom(weight, rows, cols)
        with self._lock:
            self._zooms[key] = region
            while len(self._zooms) > _ZOOM_CACHE:
                self._zooms.popitem(last=False)
        return region

    def region_values(self, name: str, region: PooledMap) -> np.ndarray | None:
        """Signed weights of a full-resolution region, for hover."""
        weight = self._weights.get(name)
        if weight is None or not region.is_full_resolution:
            return None
        r, c = region.row_offset, region.col_offset
        h, w = region.values.shape
        return weight[r:r + h, c:c + w]
