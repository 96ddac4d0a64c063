"""What the dashboard reads: the stored analysis, plus the model for on-demand questions.

The analysis answers everything precomputed. Only a few questions need the
model: one sample's attribution, a zoomed region of a large layer at full
resolution, and a large layer's rows sorted by norm before pooling. They are
answered here and cached, so a repeated request costs nothing. Every cache is
bounded in entries and in estimated bytes, and keyed on validated values only,
so no sequence of requests can grow memory without limit.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from plotly.basedatatypes import BaseFigure
from torch import nn

from inspector import figures as F
from inspector.analysis import Analysis
from inspector.analysis.activations import LayerActivations
from inspector.analysis.importance import LayerConductanceResult
from inspector.analysis.parameters import linear_weights
from inspector.analysis.probe import Probe
from inspector.analysis.weights import LayerWeights, PooledMap, pool_magnitude

VIEW_CACHE_ENTRIES = 512
VIEW_CACHE_BYTES = 256 << 20
REGION_CACHE_ENTRIES = 64
REGION_CACHE_BYTES = 128 << 20


def estimate_bytes(value: Any) -> int:
    """Roughly the memory ``value`` holds: arrays by ``nbytes``, figures by their serialisable form.

    An estimate for bounding caches, not an exact count; it errs on the large side
    for figures, whose arrays it counts in their base64 form.
    """
    if isinstance(value, BaseFigure):
        return estimate_bytes(value.to_dict())
    if isinstance(value, np.ndarray):
        return value.nbytes + 112
    if isinstance(value, (str, bytes, bytearray)):
        return len(value) + 56
    if isinstance(value, dict):
        return 64 + sum(estimate_bytes(k) + estimate_bytes(v) + 16 for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return 56 + sum(estimate_bytes(v) + 8 for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return 56 + sum(estimate_bytes(getattr(value, f.name)) for f in dataclasses.fields(value))
    return sys.getsizeof(value)


class BoundedCache:
    """A thread-safe LRU of computed values, bounded by entry count and by estimated bytes.

    A value larger than the whole budget is returned but not kept.
    """

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get_or_compute(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key][0]
        value = compute()  # outside the lock: a slow figure must not block every other request
        size = estimate_bytes(value) + estimate_bytes(key)
        if size > self.max_bytes:
            return value
        with self._lock:
            if key in self._entries:
                self.bytes -= self._entries.pop(key)[1]
            self._entries[key] = (value, size)
            self.bytes += size
            while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
                self.bytes -= self._entries.popitem(last=False)[1][1]
        return value


@dataclass
class DashboardState:
    analysis: Analysis
    probe: Probe | None = None
    views: BoundedCache = field(default_factory=lambda: BoundedCache(VIEW_CACHE_ENTRIES, VIEW_CACHE_BYTES))
    regions: BoundedCache = field(default_factory=lambda: BoundedCache(REGION_CACHE_ENTRIES, REGION_CACHE_BYTES))
    _weights: dict[str, np.ndarray] = field(default_factory=dict)

    def memo(self, key: tuple[Hashable, ...], compute: Callable[[], Any]) -> Any:
        """``compute()`` once per ``key``, which callers build from validated, normalised values only.

        Everything a view shows is a pure function of the stored analysis and the
        view's inputs, so a repeated request (another user, a tab switched back)
        reuses the built figures instead of rebuilding them.
        """
        return self.views.get_or_compute(key, compute)

    @classmethod
    def build(
        cls, analysis: Analysis, model: nn.Module | None = None, data: Any = None, **probe: Any
    ) -> DashboardState:
        """The state for ``analysis``; with ``model`` (and ``data``, any data the analysis accepts) the
        on-demand answers too. ``probe``: :class:`~inspector.analysis.probe.Probe`'s keyword arguments
        (``task``, ``target``, ``tokenizer``, ``vocabulary``, ``n_steps``, ...)."""
        state = cls(analysis=analysis)
        if model is not None:
            state._weights = linear_weights(model)
            if data is not None:
                probe.setdefault("feature_names", analysis.model.feature_names or None)
                state.probe = Probe(model, data, **probe)
        return state

    # --- lookups into the stored analysis -------------------------------------------------

    @property
    def layer_names(self) -> list[str]:
        return [layer.layer for layer in self.analysis.parameters.layers]

    def weights(self, name: str) -> LayerWeights | None:
        for w in self.analysis.weights or ():
            if w.layer == name:
                return w
        return None

    def activations(self, layer: str) -> LayerActivations | None:
        for a in self.analysis.activations or ():
            if a.layer == layer:
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
        return [a.layer for a in self.analysis.activations or ()]

    # --- on-demand questions ---------------------------------------------------------------

    @property
    def can_zoom(self) -> bool:
        return bool(self._weights)

    def has_weight(self, name: str) -> bool:
        """Whether the full weight of ``name`` is at hand (the dashboard was started on a checkpoint)."""
        return name in self._weights

    def can_sort(self, name: str) -> bool:
        """Whether the rows of ``name`` can be shown sorted by norm: from the stored full-resolution
        values, or, for a layer stored pooled, by sorting the full weight before pooling."""
        layer = self.weights(name)
        return layer is not None and (layer.magnitude.is_full_resolution or self.has_weight(name))

    def region(
        self, name: str, rows: tuple[int, int], cols: tuple[int, int], sort_rows: bool = False
    ) -> PooledMap | None:
        """Rows ``rows`` by columns ``cols`` of the weight of ``name`` at full resolution, block-max-pooled
        if still too large; cached.

        With ``sort_rows`` the rows are first ordered by incoming norm, strongest first
        (:func:`inspector.figures.neuron_order`), and ``rows`` are ranks in that order: ``(0, 10)``
        is the ten strongest neurons. The map's ``row_offset`` is then a rank too.
        """
        weight, layer = self._weights.get(name), self.weights(name)
        if weight is None or layer is None:
            return None
        m, n = weight.shape
        r0, r1 = max(0, int(rows[0])), min(m, int(rows[1]))
        c0, c1 = max(0, int(cols[0])), min(n, int(cols[1]))
        if r0 >= r1 or c0 >= c1:
            return None

        def compute() -> PooledMap:
            picked = weight[F.neuron_order(layer)[r0:r1]] if sort_rows else weight[r0:r1]
            return pool_magnitude(picked[:, c0:c1], row_offset=r0, col_offset=c0, full_shape=(int(m), int(n)))

        return self.regions.get_or_compute((name, r0, r1, c0, c1, bool(sort_rows)), compute)

    def zoom(self, name: str, rows: tuple[int, int], cols: tuple[int, int]) -> PooledMap | None:
        """A region of layer ``name`` in neuron order (see :meth:`region`)."""
        return self.region(name, rows, cols)

    def region_values(self, name: str, region: PooledMap, sort_rows: bool = False) -> np.ndarray | None:
        """Signed weights of a full-resolution region (rows in the region's own order), for hover."""
        weight, layer = self._weights.get(name), self.weights(name)
        if weight is None or layer is None or not region.is_full_resolution:
            return None
        r, c = region.row_offset, region.col_offset
        h, w = region.values.shape
        picked = weight[F.neuron_order(layer)[r : r + h]] if sort_rows else weight[r : r + h]
        return picked[:, c : c + w]
