"""Batches and sources of data: what every analysis section, the evaluator and the Monitor read.

A :class:`Batch` is one batch as the model is called with it (inputs, labels, the keyword arguments
``forward`` takes, the attention mask), and gives back the user's own batch (:attr:`Batch.user`: the
dict, tuple or tensor their loader yielded, on the device) for their ``target=`` and ``metric=``; a :class:`DataSource` streams batches from whatever the user
gave (arrays, a tensor, a ``Dataset``, a ``DataLoader``, a list of batches; :func:`as_source`), on a
device and in a dtype, limited to a number of samples, and sharded across ranks
(:func:`inspector.core.distributed.shard`). Nothing here knows what the inputs mean: that is the
input adapter's job (:mod:`inspector.core.adapters`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from inspector.errors import InspectorError
from inspector.records import EvalData

LABEL_KEYS = ("labels", "label")
MASK_KEY = "attention_mask"
INPUT_KEYS = ("input_ids", "inputs_embeds", "pixel_values", "input_values", "inputs", "input", "x", "features")


@dataclass(frozen=True)
class Layout:
    """How the user's loader shaped a batch, so that :attr:`Batch.user` can give it back.

    ``kind``: ``"mapping"`` (a dict of ``keys``, in their order, its labels under ``label_key``),
    ``"sequence"`` (``(inputs, labels)`` or ``(inputs,)``, a ``list`` when ``is_list``) or
    ``"tensor"`` (the inputs alone).
    """

    kind: str
    keys: tuple[str, ...] = ()
    label_key: str | None = None
    is_list: bool = False


@dataclass(frozen=True)
class Batch:
    """One batch, split into what the analysis needs to know.

    ``inputs`` ``(n, ...)``: the attributed input. ``extra``: the other keyword
    arguments of ``forward`` (a mapping batch), passed as they are. ``labels``
    ``(n,)`` or ``(n, ...)`` or ``None``. ``mask`` ``(n, T)`` bool (True = a real
    position) or ``None`` (every position is real). ``key``: the keyword under
    which ``inputs`` is passed, ``None`` when positional. ``layout``: how the user's
    loader shaped the batch (``None``: ``(inputs, labels)``, or the inputs alone without
    labels, as array data is given); see :attr:`user`.
    """

    inputs: torch.Tensor
    labels: torch.Tensor | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    mask: torch.Tensor | None = None
    key: str | None = None
    layout: Layout | None = None

    @property
    def user(self) -> Any:
        """The batch as the user's loader yielded it: the dict (every key, ``labels`` included), the
        ``(inputs, labels)`` tuple or the tensor, holding this batch's tensors (on its device, the
        floating inputs in the model's dtype, these rows). What ``target(out, batch)`` and
        ``metric(out, batch)`` receive; where an attribution substitutes the attributed input (an
        interpolated or ablated copy), the substitute stands in its place."""
        layout = self.layout
        if layout is None:
            return self.inputs if self.labels is None else (self.inputs, self.labels)
        if layout.kind == "mapping":
            out: dict[str, Any] = {}
            for k in layout.keys:
                if k == self.key:
                    out[k] = self.inputs
                elif k == layout.label_key:
                    out[k] = self.labels
                elif k in self.extra:
                    out[k] = self.extra[k]
            return out
        if layout.kind == "sequence":
            items = (self.inputs,) if self.labels is None else (self.inputs, self.labels)
            return list(items) if layout.is_list else items
        return self.inputs

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def call(self, model: nn.Module, inputs: torch.Tensor | None = None, **overrides: Any) -> Any:
        """``model``'s output on this batch (``inputs`` replaces the attributed input when given)."""
        x = self.inputs if inputs is None else inputs
        kwargs = {**self.extra, **overrides}
        if self.key is None:
            return model(x, **kwargs)
        return model(**{self.key: x}, **kwargs)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Batch:
        """This batch on ``device``; ``dtype``: the floating dtype the floating inputs (the attributed
        input and the other forward arguments, never the labels or the mask) are cast to."""
        return Batch(
            _to(self.inputs, device, dtype),
            _to(self.labels, device),
            {k: _to(v, device, dtype) for k, v in self.extra.items()},
            _to(self.mask, device),
            self.key,
            self.layout,
        )

    def rows(self, index: slice | torch.Tensor) -> Batch:
        """The rows ``index`` of every per-sample tensor."""
        n = len(self)
        return Batch(
            self.inputs[index],
            _rows(self.labels, index, n),
            {k: _rows(v, index, n) for k, v in self.extra.items()},
            _rows(self.mask, index, n),
            self.key,
            self.layout,
        )

    def position_mask(self, shape: torch.Size | tuple[int, ...]) -> torch.Tensor | None:
        """``(n, T)`` bool selecting the real positions of a per-position tensor of ``shape`` ``(n, T, m)``,
        or ``None`` when every row of it counts (no mask, or a tensor that is not per position)."""
        if self.mask is None or len(shape) != 3 or tuple(shape[:2]) != tuple(self.mask.shape):
            return None
        return self.mask

    @staticmethod
    def concat(batches: Sequence[Batch], pad_id: int = 0) -> Batch:
        """One batch from several; per-position tensors of different lengths are right-padded
        (``pad_id`` for token ids, 0 elsewhere, the mask with False)."""
        if not batches:
            raise ValueError("no batches to concatenate")
        first = batches[0]
        lengths = {b.inputs.shape[1] for b in batches if b.inputs.dim() >= 2}
        width = max(lengths) if lengths else None

        def cat(values: list[Any], fill: float) -> Any:
            if not all(isinstance(v, torch.Tensor) for v in values):
                return values[0]
            ragged = len({tuple(v.shape[1:]) for v in values}) > 1
            if ragged and width is not None:
                values = [_pad_dim1(v, width, fill) for v in values]
            return torch.cat(values)

        labels = cat([b.labels for b in batches], -100) if first.labels is not None else None
        mask = cat([b.mask for b in batches], 0) if first.mask is not None else None
        extra = {k: cat([b.extra[k] for b in batches], 0) for k in first.extra}
        return Batch(cat([b.inputs for b in batches], pad_id), labels, extra, mask, first.key, first.layout)


def _to(value: Any, device: torch.device | str, dtype: torch.dtype | None = None) -> Any:
    if not isinstance(value, torch.Tensor):
        return value
    if dtype is not None and value.is_floating_point() and value.dtype != dtype:
        return value.to(device, dtype, non_blocking=True)
    return value.to(device, non_blocking=True)


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (CPU for a model without parameters)."""
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def floating_dtype(model: nn.Module) -> torch.dtype | None:
    """The dtype of ``model``'s first floating parameter or buffer (what its floating inputs should be),
    ``None`` when it has none."""
    for t in (*model.parameters(), *model.buffers()):
        if t.is_floating_point():
            return t.dtype
    return None


def _rows(value: Any, index: slice | torch.Tensor, n: int) -> Any:
    if isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == n:
        return value[index]
    return value


def _pad_dim1(value: torch.Tensor, width: int, fill: float) -> torch.Tensor:
    if value.dim() < 2 or value.shape[1] >= width:
        return value
    pad = value.new_full((value.shape[0], width - value.shape[1], *value.shape[2:]), fill)
    return torch.cat([value, pad], dim=1)


def _tensor(value: Any, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise InspectorError(f"{what} is an object array; give numbers (a float or integer array)")
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], (int, float, list, tuple)):
        return torch.as_tensor(value)
    raise InspectorError(f"{what} is a {type(value).__name__}; a batch must hold tensors or arrays")


def to_batch(raw: Any) -> Batch:
    """Split one batch as a ``DataLoader`` yields it into a :class:`Batch`."""
    if isinstance(raw, Mapping):
        return _mapping_batch(raw)
    if isinstance(raw, (tuple, list)):
        layout = Layout("sequence", is_list=isinstance(raw, list))
        if len(raw) == 1:
            return Batch(_tensor(raw[0], "the batch's inputs"), layout=layout)
        if len(raw) == 2:
            return Batch(_tensor(raw[0], "the batch's inputs"), _tensor(raw[1], "the batch's labels"), layout=layout)
        raise InspectorError(
            f"a batch is a tuple of {len(raw)} items; give (inputs, labels), or a dict of keyword "
            "arguments for forward (with 'labels' and 'attention_mask' keys)"
        )
    return Batch(_tensor(raw, "the batch"), layout=Layout("tensor"))


def _mapping_batch(raw: Mapping[str, Any]) -> Batch:
    keys = list(raw)
    label_key = next((k for k in LABEL_KEYS if k in raw), None)
    candidates = [k for k in INPUT_KEYS if k in raw]
    if not candidates:
        candidates = [
            k
            for k in keys
            if k not in (*LABEL_KEYS, MASK_KEY, "token_type_ids", "position_ids")
            and isinstance(raw[k], (torch.Tensor, np.ndarray))
        ]
    if not candidates:
        raise InspectorError(
            f"a dict batch with keys {keys} has no input tensor; name it one of {', '.join(INPUT_KEYS)}"
        )
    key = candidates[0]
    extra = {
        k: (_tensor(v, f"batch[{k!r}]") if isinstance(v, np.ndarray) else v)
        for k, v in raw.items()
        if k not in (key, label_key)
    }
    mask = None
    if MASK_KEY in raw:
        m = _tensor(raw[MASK_KEY], "the attention_mask")
        mask = m.bool() if m.dim() == 2 else None
    labels = _tensor(raw[label_key], "the batch's labels") if label_key is not None else None
    layout = Layout("mapping", tuple(str(k) for k in keys), label_key)
    return Batch(_tensor(raw[key], f"batch[{key!r}]"), labels, extra, mask, key, layout)


@dataclass(frozen=True)
class Shard:
    """Rank ``rank`` of ``world`` reads its own share; ``strided``: it keeps batch ``i`` of the stream when
    ``i % world == rank`` (else the stream is already its share, e.g. a ``DistributedSampler``)."""

    rank: int
    world: int
    strided: bool


class DataSource:
    """A re-iterable stream of :class:`Batch` objects on ``device``.

    ``name``/``split`` describe the data; ``feature_names``/``class_names`` are
    what the data itself knows (a tabular file), empty otherwise. ``dtype``: the
    floating dtype floating inputs are cast to (the model's, see :func:`floating_dtype`);
    ``None`` leaves them as they are.
    """

    def __init__(
        self,
        batches: Callable[[], Iterable[Any]],
        *,
        name: str = "data",
        split: str = "all",
        n_samples: int | None = None,
        feature_names: tuple[str, ...] = (),
        class_names: tuple[str, ...] = (),
        image_shape: tuple[int, int] | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype | None = None,
        max_samples: int | None = None,
    ) -> None:
        self._batches = batches
        self.max_samples = max_samples
        self.dtype = dtype
        self.name = name
        self.split = split
        self.n_samples = n_samples if n_samples is None or max_samples is None else min(n_samples, max_samples)
        self.feature_names = feature_names
        self.class_names = class_names
        self.image_shape = image_shape
        self.device = torch.device(device)
        self.shard: Shard | None = None  # see inspector.analysis.distributed.shard

    def on(self, device: torch.device | str, dtype: torch.dtype | None = None) -> DataSource:
        """This data on ``device``; ``dtype`` (when given) replaces the floating dtype inputs are cast to."""
        clone = DataSource(
            self._batches,
            name=self.name,
            split=self.split,
            n_samples=self.n_samples,
            feature_names=self.feature_names,
            class_names=self.class_names,
            image_shape=self.image_shape,
            device=device,
            dtype=dtype if dtype is not None else self.dtype,
            max_samples=self.max_samples,
        )
        clone.shard = self.shard
        return clone

    def limited(self, max_samples: int | None) -> DataSource:
        """This data cut to its first ``max_samples`` samples (``None``: as it is)."""
        if max_samples is None:
            return self
        clone = self.on(self.device)
        clone.max_samples = max_samples if self.max_samples is None else min(self.max_samples, max_samples)
        if clone.n_samples is not None:
            clone.n_samples = min(clone.n_samples, clone.max_samples)
        return clone

    def __iter__(self) -> Iterator[Batch]:
        seen = 0
        for index, raw in enumerate(self._batches()):
            if self.shard is not None and self.shard.strided and index % self.shard.world != self.shard.rank:
                continue
            if self.max_samples is not None and seen >= self.max_samples:
                break
            batch = raw if isinstance(raw, Batch) else to_batch(raw)
            if len(batch) == 0:
                continue
            if self.max_samples is not None and seen + len(batch) > self.max_samples:
                batch = batch.rows(slice(0, self.max_samples - seen))
            batch = batch.to(self.device, self.dtype)
            if batch.inputs.is_floating_point() and not all_finite(batch.inputs):
                where = f"samples {seen}..{seen + len(batch) - 1}"
                if self.shard is not None:  # a rank's share: its own count is not the data's
                    where = (
                        f"batch {index} of the data"
                        if self.shard.strided
                        else f"{where} of rank {self.shard.rank}'s share"
                    )
                raise InspectorError(
                    f"the data's inputs hold NaN or Inf ({where}); remove or impute them before the analysis"
                )
            seen += len(batch)
            yield batch
        if self.n_samples is None:
            self.n_samples = seen

    def first(self) -> Batch:
        """The first batch; an error when the data holds none.

        A rank's share that holds no batch (fewer batches than ranks) gives the first batch of the whole
        stream instead: what the callers read from it is the data's structure (shapes, dtypes, labels'
        kind, the model's sites), which every rank must know alike; the share itself still contributes
        nothing to any statistic."""
        for batch in self:
            return batch
        if self.shard is not None and self.shard.strided:
            whole = self.on(self.device)
            whole.shard = None
            for batch in whole:
                return batch
        raise InspectorError(f"the data {self.name!r} holds no samples")

    def head(self, n: int) -> list[Batch]:
        """The first ``n`` samples, as the batches that hold them (the last one cut); a fixed,
        bounded sample: the same rows every call."""
        return take(self, n)


def all_finite(x: torch.Tensor) -> bool:
    """Whether every element of the floating tensor ``x`` is finite, with one sync.

    A NaN or an infinity makes the sum NaN or infinite, so a finite sum proves every element
    finite; only a non-finite sum (a bad element, or finite ones overflowing) needs the
    elementwise test. The sum is a vectorised reduction, ``isfinite(x).all()`` an elementwise
    pass plus a boolean tensor: about 30x slower on CPU, a quarter of a small MLP's forward pass.
    """
    if math.isfinite(x.sum().item()):  # a Python float: ~10 us less per batch than torch.isfinite on a scalar
        return True
    return bool(torch.isfinite(x).all())


def take(batches: Iterable[Batch], n: int) -> list[Batch]:
    """The first ``n`` samples of ``batches``, as the batches that hold them (the last one cut);
    reads no batch past them."""
    out: list[Batch] = []
    for batch in batches:
        if n <= 0:
            break
        if len(batch) > n:
            batch = batch.rows(slice(0, n))
        out.append(batch)
        n -= len(batch)
    return out


def _dataloader(dataset: Any, batch_size: int) -> Callable[[], Iterable[Any]]:
    from torch.utils.data import DataLoader

    return lambda: DataLoader(dataset, batch_size=batch_size, shuffle=False)


def _array_batches(X: torch.Tensor, y: torch.Tensor | None, batch_size: int) -> Callable[[], Iterable[Batch]]:
    def batches() -> Iterator[Batch]:
        for start in range(0, X.shape[0], batch_size):
            stop = start + batch_size
            yield Batch(X[start:stop], None if y is None else y[start:stop])

    return batches


def _as_input_tensor(X: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
    t = _tensor(X, "X")
    if t.is_floating_point():
        if dtype is not None:
            return t.to(dtype)
        return t.float() if t.dtype == torch.float64 else t
    if t.dtype == torch.bool:
        return t.to(dtype if dtype is not None else torch.float32)
    return t.long()


def as_source(
    data: Any,
    *,
    batch_size: int = 1024,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
) -> DataSource:
    """Whatever a user hands :func:`~inspector.analysis.analyze` as data, as a :class:`DataSource`.

    ``dtype``: the model's floating dtype (:func:`floating_dtype`); floating inputs are cast to it
    batch by batch (token ids and labels are not). ``None``: float64 arrays become float32, other
    data is passed as it is."""
    from torch.utils.data import DataLoader, IterableDataset
    from torch.utils.data import Dataset as TorchDataset

    if isinstance(data, DataSource):
        return data.on(device, dtype)
    if isinstance(data, EvalData):
        X = torch.as_tensor(np.asarray(data.X, dtype=np.float32))
        y = torch.as_tensor(np.asarray(data.y))
        return DataSource(
            _array_batches(X, y, batch_size),
            name=data.name,
            split=data.split,
            n_samples=int(X.shape[0]),
            feature_names=tuple(data.feature_names),
            class_names=tuple(data.class_names),
            image_shape=data.image_shape,
            device=device,
            dtype=dtype,
        )
    if isinstance(data, (torch.Tensor, np.ndarray)):
        X = _as_input_tensor(data, dtype)
        return DataSource(_array_batches(X, None, batch_size), n_samples=int(X.shape[0]), device=device, dtype=dtype)
    if isinstance(data, tuple) and len(data) == 2 and all(isinstance(v, (torch.Tensor, np.ndarray)) for v in data):
        X = _as_input_tensor(data[0], dtype)
        y = _tensor(data[1], "y")
        if y.shape[:1] != X.shape[:1]:
            raise InspectorError(
                f"X has {X.shape[0]} samples but y has {y.shape[0] if y.dim() else 1}; give one label per sample"
            )
        if y.dtype == torch.float64:
            y = y.float()
        return DataSource(_array_batches(X, y, batch_size), n_samples=int(X.shape[0]), device=device, dtype=dtype)
    if isinstance(data, Mapping):
        first = to_batch(data)
        return DataSource(
            lambda: (first.rows(slice(s, s + batch_size)) for s in range(0, len(first), batch_size)),
            n_samples=len(first),
            device=device,
            dtype=dtype,
        )
    if isinstance(data, DataLoader):
        return DataSource(lambda: data, n_samples=_maybe_len(data.dataset), device=device, dtype=dtype)
    if isinstance(data, TorchDataset) and not isinstance(data, IterableDataset):
        return DataSource(_dataloader(data, batch_size), n_samples=_maybe_len(data), device=device, dtype=dtype)
    if isinstance(data, IterableDataset):
        return DataSource(_dataloader(data, batch_size), device=device, dtype=dtype)
    if isinstance(data, Iterable):
        if iter(data) is data:
            raise InspectorError(
                "the data is a one-shot iterator (e.g. a generator); the analysis reads the data more than "
                "once: pass a DataLoader, a Dataset or a list of batches"
            )
        return DataSource(lambda: data, device=device, dtype=dtype)
    raise InspectorError(
        f"cannot read data of type {type(data).__name__}; give (X, y) arrays, a torch "
        "Dataset, a DataLoader or a list of batches"
    )


def _maybe_len(obj: Any) -> int | None:
    try:
        return int(len(obj))
    except TypeError:
        return None
