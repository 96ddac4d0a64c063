"""One protocol for every statistic streamed over batches and merged across ranks.

Modelled on torchmetrics' ``Metric.add_state(name, default, dist_reduce_fx=...)``: a subclass
declares each state with its reduction in ``__init__`` (:meth:`Statistic.add_state`), adds
batches in ``update(...)`` and reads the states in ``finish()``. Merging is written once, here:

* ``"sum"``: elementwise sum (float64, or int64 for an integer default: exact);
* ``"max"`` / ``"min"``: elementwise maximum / minimum;
* ``"cat"``: every row, in global order (a :class:`Rows` without a limit);
* ``"kept"``: the first ``limit`` rows in global order (a :class:`Rows`), as the census keeps
  rows for its histograms and projections;
* ``"topk"``: per column the ``k`` largest values and the order keys of their rows, ties broken
  by global order (a :class:`TopK`), with an optional payload per kept value (e.g. the context
  token ids of each neuron's top-activating examples).

Global order is the order of the rows' keys: a tuple of integers a subclass gives with each
chunk of rows (for instance ``(global batch index, first row in the batch)``), or, where it gives
none, the order of the ranks and then of the chunks on each rank (each rank holding one contiguous
share of the data).

:func:`merge_statistics` merges any number of statistics in three collectives whatever their
number and states: one ``all_gather`` of the states' shapes and row keys, one ``all_reduce`` per
dtype and reduction, one ``all_gather`` of only the rows that make the merged result. Without a
process group it is the identity, so one process and N processes run the same code.
:meth:`Statistic.merge_from` merges two local statistics the same way (tests, the Monitor).
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from inspector.core import distributed
from inspector.errors import InspectorError

REDUCTIONS = ("sum", "max", "min", "cat", "kept", "topk")
_ELEMENTWISE = ("sum", "max", "min")
Key = tuple[int, ...]
S = TypeVar("S", bound="Statistic")


def _rows_of(payload: Any) -> int:
    first = payload[0] if isinstance(payload, tuple) else payload
    return int(first.shape[0]) if hasattr(first, "shape") else len(first)


def _head(payload: Any, n: int) -> Any:
    if isinstance(payload, tuple):
        return tuple(part[:n] for part in payload)
    return payload[:n]


def _portable(payload: Any) -> Any:
    """A payload fit to pickle to another rank: tensors on the CPU, not views of bigger storage."""
    if isinstance(payload, tuple):
        return tuple(_portable(part) for part in payload)
    if isinstance(payload, torch.Tensor):
        return payload.detach().cpu().clone()
    return payload


class Rows:
    """The value of a ``"cat"`` or ``"kept"`` state: chunks of rows in global order, at most ``limit`` rows.

    A chunk is an array or tensor ``(n, ...)``, or a tuple of them with the same ``n`` (rows and
    their labels, say); chunks may differ in their other dimensions. :meth:`add` takes one chunk and
    the order key of its first row (its later rows follow it); give keys for every chunk or none.
    """

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit
        self.chunks: list[tuple[Key, Any]] = []
        self.count = 0
        self.keyed: bool | None = None  # unknown until the first chunk
        self._next = 0

    @property
    def full(self) -> bool:
        return self.limit is not None and self.count >= self.limit

    def add(self, payload: Any, key: Sequence[int] | None = None) -> None:
        """Append ``payload``; beyond ``limit`` only its first rows are kept, then nothing."""
        keyed = key is not None
        if self.keyed is not None and keyed != self.keyed:
            raise ValueError("give an order key with every chunk of a Rows state, or with none")
        self.keyed = keyed
        if self.full:
            return
        n = _rows_of(payload)
        if self.limit is not None and self.count + n > self.limit:
            payload, n = _head(payload, self.limit - self.count), self.limit - self.count
        full_key = tuple(int(k) for k in key) if key is not None else (self._next,)
        self._next += 1
        self.chunks.append((full_key, payload))
        self.count += n

    def values(self) -> list[Any]:
        """The chunks' payloads in global order."""
        return [payload for _, payload in sorted(self.chunks, key=lambda chunk: chunk[0])]

    def column(self, index: int) -> list[Any]:
        """Part ``index`` of every tuple payload, in global order."""
        return [payload[index] for payload in self.values()]

    def _settle(self, chunks: list[tuple[Key, Any]], keyed: bool | None) -> None:
        """Replace the chunks by ``chunks`` sorted by key and cut to ``limit`` rows."""
        self.chunks, self.count = [], 0
        self.keyed = keyed
        for key, payload in sorted(chunks, key=lambda chunk: chunk[0]):
            if self.full:
                break
            n = _rows_of(payload)
            if self.limit is not None and self.count + n > self.limit:
                payload, n = _head(payload, self.limit - self.count), self.limit - self.count
            self.chunks.append((key, payload))
            self.count += n
        self._next = len(self.chunks)

    def merge_from(self, other: Rows) -> None:
        """The union with ``other``'s rows: by key, or (unkeyed) ``other``'s after this one's."""
        keyed = self.keyed if self.keyed is not None else other.keyed
        if self.keyed is not None and other.keyed is not None and self.keyed != other.keyed:
            raise ValueError("cannot merge keyed and unkeyed rows")
        theirs = other.chunks if keyed else [((self._next + key[0],), p) for key, p in other.chunks]
        self._settle(self.chunks + list(theirs), keyed)


class TopK:
    """The value of a ``"topk"`` state: per column the ``k`` largest values seen and their rows' order keys.

    ``values`` ``(j, C)`` float64 with ``j = min(k, rows seen)``, each column in descending order;
    ``keys`` ``(j, C, L)`` int64, the order key of the row each value came from. Between equal values
    the row first in global order wins. NaN never displaces a number. ``payload`` ``(j, C, ...)``
    (``None`` unless every update gave one): what travels with each kept value (its context, its row),
    kept, merged and gathered across ranks with it.
    """

    def __init__(self, k: int) -> None:
        if k < 1:
            raise ValueError(f"a topk state keeps k >= 1 values per column, not {k}")
        self.k = k
        self.values: np.ndarray | None = None
        self.keys: np.ndarray | None = None
        self.keyed: bool | None = None
        self.payload: np.ndarray | None = None
        self._next = 0  # rows added without keys: their local index

    def add(self, values: Any, keys: Any = None, payload: Any = None, ordered: bool = False) -> None:
        """``values`` ``(n, C)``; ``keys`` ``(n, L)`` int the rows' order keys, or ``None`` for their local
        order, or ``(n, C, L)`` one key per value (candidates already chosen per column); ``payload``
        ``(n, C, ...)`` what travels with each value (give it with every update, or never).
        ``ordered``: with ``(n, C, L)`` keys and ``n <= k``, the values already are each column's top in
        this state's order (descending, NaN last, ties by key): taken as they are into an empty state
        (a running top kept elsewhere, moved in once), merged as any other update into a filled one."""
        if isinstance(values, torch.Tensor):
            values = values.detach().double().cpu().numpy()
        vals = np.asarray(values, dtype=np.float64)
        if vals.ndim == 1:
            vals = vals[:, None]
        n = vals.shape[0]
        keyed = keys is not None
        if self.keyed is not None and keyed != self.keyed:
            raise ValueError("give order keys with every update of a topk state, or with none")
        self.keyed = keyed
        if keys is None:
            row_keys = np.arange(self._next, self._next + n, dtype=np.int64)[:, None]
            self._next += n
        else:
            row_keys = np.asarray(keys, dtype=np.int64)
            if row_keys.ndim == 3:
                if ordered and self.values is None and n <= self.k:
                    self.values, self.keys, self.payload = vals, row_keys, _payload_array(payload)
                    return
                self._take(vals, row_keys, _payload_array(payload))
                return
            row_keys = row_keys.reshape(n, -1)
        candidates = np.broadcast_to(row_keys[:, None, :], (n, vals.shape[1], row_keys.shape[1]))
        self._take(vals, candidates, _payload_array(payload))

    def _take(self, vals: np.ndarray, keys: np.ndarray, payload: np.ndarray | None = None) -> None:
        if self.values is not None and (payload is None) != (self.payload is None):
            raise ValueError("give a payload with every update of a topk state, or with none")
        if self.values is not None:
            if self.values.shape[1] != vals.shape[1] or self.keys.shape[2] != keys.shape[2]:  # type: ignore[union-attr]
                raise ValueError(
                    f"a topk state of {self.values.shape[1]} columns was given {vals.shape[1]} "
                    "(or keys of another length)"
                )
            vals = np.concatenate([self.values, vals])
            keys = np.concatenate([self.keys, keys])  # type: ignore[list-item]
            if payload is not None:
                payload = np.concatenate([self.payload, payload])  # type: ignore[list-item]
        self.values, self.keys, chosen = _top(vals, keys, self.k)
        if payload is not None:
            self.payload = np.ascontiguousarray(np.take_along_axis(payload, _expand(chosen.T, payload.ndim), axis=0))

    def merge_from(self, other: TopK) -> None:
        if other.values is None or other.keys is None:
            return
        keys: np.ndarray = other.keys
        if not (self.keyed or other.keyed):  # local order: the other's rows come after this one's
            keys = keys + self._next
            self._next += other._next
        self.keyed = self.keyed if self.keyed is not None else other.keyed
        self._take(other.values, keys, other.payload)


def _payload_array(payload: Any) -> np.ndarray | None:
    if payload is None:
        return None
    if isinstance(payload, torch.Tensor):
        return payload.detach().cpu().numpy()
    return np.asarray(payload)


def _expand(index: np.ndarray, ndim: int) -> np.ndarray:
    """``index`` ``(j, C)`` with trailing unit axes up to ``ndim`` (for ``take_along_axis``)."""
    return index.reshape(index.shape + (1,) * (ndim - 2))


def _top(values: np.ndarray, keys: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column of ``values`` ``(N, C)`` the ``k`` largest, ties by ``keys`` ``(N, C, L)`` ascending;
    also the row each came from, ``(C, j)``."""
    n, columns = values.shape
    column = np.broadcast_to(np.arange(columns)[None, :], (n, columns)).T.reshape(-1)
    flat_values = values.T.reshape(-1)
    flat_keys = keys.transpose(1, 0, 2).reshape(n * columns, -1)
    descending = np.where(np.isnan(flat_values), np.inf, -flat_values)  # NaN last
    # np.lexsort: the last key is the primary one
    order = np.lexsort((*(flat_keys[:, j] for j in reversed(range(flat_keys.shape[1]))), descending, column))
    j = min(k, n)
    chosen = order.reshape(columns, n)[:, :j]
    top_values = flat_values[chosen].T.copy()  # (j, C)
    top_keys = flat_keys[chosen].transpose(1, 0, 2).copy()  # (j, C, L)
    return top_values, top_keys, chosen - np.arange(columns)[:, None] * n


@dataclass(frozen=True)
class _Spec:
    reduction: str
    default: Any
    limit: int | None = None


def _fresh(spec: _Spec) -> Any:
    if spec.reduction in ("cat", "kept"):
        return Rows(spec.limit)
    if spec.reduction == "topk":
        return TopK(int(spec.limit))  # type: ignore[arg-type]
    return copy.deepcopy(spec.default)


def _is_float(default: Any) -> bool:
    if isinstance(default, torch.Tensor):
        return bool(default.is_floating_point())
    if isinstance(default, np.ndarray):
        return default.dtype.kind == "f"
    return isinstance(default, numbers.Real) and not isinstance(default, numbers.Integral)


def _as_array(value: Any, floating: bool) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64 if floating else np.int64)


def _restore(like: Any, default: Any, array: np.ndarray) -> Any:
    """``array`` in the kind of value the state held (a tensor, an array, a Python number)."""
    if isinstance(like, torch.Tensor) or isinstance(default, torch.Tensor):
        return torch.from_numpy(np.ascontiguousarray(array))
    if isinstance(like, np.ndarray) or array.shape != ():
        return array
    return float(array) if array.dtype.kind == "f" else int(array)


class Statistic:
    """Base class of every statistic streamed over batches: states declared with their reduction.

    A subclass calls :meth:`add_state` in ``__init__`` (after ``super().__init__()``), writes
    ``update(...)`` (adding into its states, read and written as attributes) and ``finish()``
    (the result, from the states). :meth:`merge` (across ranks, once, for every state),
    :meth:`merge_from` (two local statistics) and :meth:`reset` are the base class's.

    A ``"sum"`` / ``"max"`` / ``"min"`` state holds a number, a numpy array or a tensor, merged
    in float64 (int64 when the default is an integer); ranks whose states differ in shape are
    broadcast to the common shape (so a scalar default ``0.0`` stands for "nothing seen" beside a
    vector), and a tensor state comes back from a merge as a CPU float64 / int64 tensor.
    A ``"cat"`` / ``"kept"`` state holds a :class:`Rows`, a ``"topk"`` state a :class:`TopK`.
    """

    def __init__(self) -> None:
        self._specs: dict[str, _Spec] = {}

    def add_state(self, name: str, default: Any = 0.0, reduction: str = "sum", *, limit: int | None = None) -> None:
        """Declare state ``name`` and set it to (a copy of) ``default``.

        ``reduction``: one of :data:`REDUCTIONS`. ``limit``: the rows a ``"kept"`` state keeps,
        the ``k`` of a ``"topk"`` state (both required); ``default`` is not used by those three.
        """
        if reduction not in REDUCTIONS:
            raise ValueError(f"unknown reduction {reduction!r}; choose from {', '.join(REDUCTIONS)}")
        if reduction in ("kept", "topk") and limit is None:
            raise ValueError(f"a {reduction!r} state needs limit= (rows kept, or k)")
        if reduction == "cat" and limit is not None:
            raise ValueError("a 'cat' state keeps every row; for the first rows use 'kept' with limit=")
        if not hasattr(self, "_specs"):
            raise TypeError(f"{type(self).__name__}.__init__ must call super().__init__() before add_state")
        spec = _Spec(reduction, copy.deepcopy(default), limit)
        self._specs[name] = spec
        setattr(self, name, _fresh(spec))

    @property
    def state_names(self) -> tuple[str, ...]:
        return tuple(self._specs)

    def update(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define update(...)")

    def finish(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define finish()")

    def reset(self) -> None:
        """Every state back to its default."""
        for name, spec in self._specs.items():
            setattr(self, name, _fresh(spec))

    def merge(self: S) -> S:
        """Replace every state with its merge over all ranks (in place; the identity without a
        process group); returns ``self``. Every rank must call it. To merge several statistics in
        the same three collectives, call :func:`merge_statistics` instead."""
        merge_statistics([self])
        return self

    def merge_from(self: S, other: S) -> S:
        """Merge ``other``'s states into this one's (in place), as if ``other`` were the next rank."""
        if other._specs.keys() != self._specs.keys():
            raise ValueError(f"cannot merge a {type(other).__name__} with other states into a {type(self).__name__}")
        for name, spec in self._specs.items():
            mine, theirs = getattr(self, name), getattr(other, name)
            if spec.reduction in _ELEMENTWISE:
                floating = _is_float(spec.default)
                a, b = _as_array(mine, floating), _as_array(theirs, floating)
                _check_shapes(type(self).__name__, name, [a.shape, b.shape])
                combined = {"sum": np.add, "max": np.maximum, "min": np.minimum}[spec.reduction](a, b)
                setattr(self, name, _restore(mine if np.ndim(mine) else theirs, spec.default, combined))
            else:
                mine.merge_from(theirs)
        return self


def _check_shapes(owner: str, name: str, shapes: Iterable[tuple[int, ...]]) -> tuple[int, ...]:
    shapes = list(shapes)
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        raise InspectorError(
            f"{owner}.{name} has shapes {sorted(set(shapes))} on different ranks (or parts); "
            "every rank must see data of the same width"
        ) from None


def merge_statistics(statistics: Sequence[Statistic]) -> None:
    """Merge every state of ``statistics`` over all ranks, in place, in three collectives.

    1. ``all_gather`` of each elementwise state's shape and each row state's chunk keys and sizes;
    2. one ``all_reduce`` per reduction and dtype for every elementwise state (broadcast to the
       ranks' common shape first);
    3. ``all_gather`` of the rows each rank contributes to the result: for a ``"kept"`` state only
       its chunks among the first ``limit`` rows of all ranks, for ``"cat"`` all, for ``"topk"`` its
       ``k`` per column.

    Every rank must call it with the same statistics in the same order. The identity without a
    process group (or with one process).
    """
    if not distributed.active():
        return
    me = distributed.rank()
    layout: list[list[Any]] = []
    for stat in statistics:
        described: list[Any] = []
        for name, spec in stat._specs.items():
            value = getattr(stat, name)
            if spec.reduction in _ELEMENTWISE:
                described.append(_as_array(value, _is_float(spec.default)).shape)
            elif spec.reduction in ("cat", "kept"):
                described.append((value.keyed, [(key, _rows_of(p)) for key, p in value.chunks]))
            else:
                described.append(None)
        layout.append(described)
    layouts = distributed.all_gather_objects(layout)

    # 2. elementwise states
    pending: dict[tuple[str, bool], list[tuple[Statistic, str, np.ndarray]]] = {}
    for s, stat in enumerate(statistics):
        for i, (name, spec) in enumerate(stat._specs.items()):
            if spec.reduction not in _ELEMENTWISE:
                continue
            floating = _is_float(spec.default)
            shape = _check_shapes(type(stat).__name__, name, [rank_layout[s][i] for rank_layout in layouts])
            array = np.broadcast_to(_as_array(getattr(stat, name), floating), shape).copy()
            pending.setdefault((spec.reduction, floating), []).append((stat, name, array))
    reducers = {
        "sum": distributed.all_reduce_sum,
        "max": distributed.all_reduce_max,
        "min": distributed.all_reduce_min,
    }
    for reduction in _ELEMENTWISE:
        entries = [e for (r, _), group in sorted(pending.items()) if r == reduction for e in group]
        if not entries:
            continue
        reduced = reducers[reduction](*(array for _, _, array in entries))
        for (stat, name, _), array in zip(entries, reduced, strict=True):
            spec = stat._specs[name]
            setattr(stat, name, _restore(getattr(stat, name), spec.default, array))

    # 3. rows
    sending: list[list[Any]] = []
    for s, stat in enumerate(statistics):
        parts: list[Any] = []
        for i, (name, spec) in enumerate(stat._specs.items()):
            value = getattr(stat, name)
            if spec.reduction == "topk":
                keys = value.keys
                if keys is not None and not value.keyed:
                    keys = np.concatenate([np.full(keys.shape[:2] + (1,), me, np.int64), keys], axis=2)
                parts.append((value.values, keys, value.keyed, value.payload))
            elif spec.reduction in ("cat", "kept"):
                wanted = _chosen_chunks([rank_layout[s][i] for rank_layout in layouts], spec.limit, me)
                parts.append(
                    [
                        (_global_key(key, me, value.keyed), _portable(_head(p, wanted[j])))
                        for j, (key, p) in enumerate(value.chunks)
                        if wanted.get(j, 0)
                    ]
                )
            else:
                parts.append(None)
        sending.append(parts)
    received = distributed.all_gather_objects(sending)
    for s, stat in enumerate(statistics):
        for i, (name, spec) in enumerate(stat._specs.items()):
            value = getattr(stat, name)
            if spec.reduction == "topk":
                merged = TopK(value.k)
                for rank_parts in received:
                    values, keys, keyed, payload = rank_parts[s][i]
                    if values is not None:
                        merged.keyed = True if keyed else False
                        merged._take(values, keys, payload)
                setattr(stat, name, merged)
            elif spec.reduction in ("cat", "kept"):
                keyed = next((k for k, _ in (rank_layout[s][i] for rank_layout in layouts) if k is not None), None)
                chunks = [chunk for rank_parts in received for chunk in rank_parts[s][i]]
                merged_rows = Rows(spec.limit)
                merged_rows._settle(chunks, keyed)
                setattr(stat, name, merged_rows)


def _global_key(key: Key, rank: int, keyed: bool | None) -> Key:
    return key if keyed else (rank, *key)


def _chosen_chunks(
    per_rank: list[tuple[bool | None, list[tuple[Key, int]]]], limit: int | None, me: int
) -> dict[int, int]:
    """``{chunk index: rows}`` of this rank's chunks among the first ``limit`` rows of all ranks'."""
    every = [
        (_global_key(key, r, keyed), r, j, n)
        for r, (keyed, chunks) in enumerate(per_rank)
        for j, (key, n) in enumerate(chunks)
    ]
    every.sort(key=lambda item: item[0])
    chosen: dict[int, int] = {}
    total = 0
    for _, r, j, n in every:
        if limit is not None and total >= limit:
            break
        take = n if limit is None else min(n, limit - total)
        total += take
        if r == me:
            chosen[j] = take
    return chosen
