"""What is in a checkpoint file, read from its header where the format allows.

``read_inventory`` never materialises the whole file: safetensors is read from
its JSON header, PyTorch zip files are memory-mapped (tensor data stays on
disk until touched). ``iter_tensors`` then yields one tensor at a time, for
weight-only inspection of files larger than memory, e.g. a transformer's MLP
blocks.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from inspector.errors import InspectorError
from inspector.formats import detect_format, read_safetensors_header

_ST_DTYPE_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
    "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8,
}
_ST_DTYPE_NAMES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
    "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
}
_INTERNAL = "_inspector."


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    dtype: str
    nbytes: int

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


@dataclass(frozen=True)
class LinearLayerInfo:
    """A 2-D weight ``(out_features m, in_features n)`` and its optional bias ``(m,)``.

    ``parameters = weights + biases``; with a bias that is ``m * (n + 1)``.
    """

    name: str
    in_features: int
    out_features: int
    weights: int
    biases: int
    dtype: str
    nbytes: int

    @property
    def parameters(self) -> int:
        return self.weights + self.biases


@dataclass(frozen=True)
class Inventory:
    """Every tensor in a file, the linear layers among them, and the stored metadata."""

    path: str
    format: str
    tensors: tuple[TensorInfo, ...]
    linear_layers: tuple[LinearLayerInfo, ...]
    metadata: dict[str, Any]

    @property
    def other_tensors(self) -> tuple[TensorInfo, ...]:
        linear = {f"{layer.name}.{leaf}" for layer in self.linear_layers for leaf in ("weight", "bias")}
        return tuple(t for t in self.tensors if t.name not in linear)

    def totals(self) -> dict[str, int]:
        return {
            "weights": sum(layer.weights for layer in self.linear_layers),
            "biases": sum(layer.biases for layer in self.linear_layers),
            "parameters": sum(layer.parameters for layer in self.linear_layers),
            "bytes": sum(layer.nbytes for layer in self.linear_layers),
            "other_parameters": sum(t.numel for t in self.other_tensors),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "layers": [
                {"name": layer.name, "in_features": layer.in_features, "out_features": layer.out_features,
                 "weights": layer.weights, "biases": layer.biases, "parameters": layer.parameters,
                 "dtype": layer.dtype, "bytes": layer.nbytes}
                for layer in self.linear_layers
            ],
            "other_tensors": [
                {"name": t.name, "shape": list(t.shape), "dtype": t.dtype, "bytes": t.nbytes}
                for t in self.other_tensors
            ],
            "totals": self.totals(),
            "metadata": self.metadata,
        }


def linear_layers(tensors: tuple[TensorInfo, ...]) -> tuple[LinearLayerInfo, ...]:
    """Pair each 2-D ``<prefix>.weight`` with a matching 1-D ``<prefix>.bias``, in file order."""
    by_name = {t.name: t for t in tensors}
    layers = []
    for t in tensors:
        prefix, _, leaf = t.name.rpartition(".")
        if leaf != "weight" or len(t.shape) != 2:
            continue
        m, n = t.shape
        bias = by_name.get(f"{prefix}.bias")
        if bias is not None and bias.shape != (m,):
            bias = None
        layers.append(LinearLayerInfo(
            name=prefix or t.name, in_features=n, out_features=m, weights=m * n,
            biases=m if bias else 0, dtype=t.dtype, nbytes=t.nbytes + (bias.nbytes if bias else 0),
        ))
    return tuple(layers)


def _torch_payload(path: Path, *, trust_pickle: bool) -> tuple[Mapping[str, torch.Tensor], dict[str, Any]]:
    from torch import nn

    from inspector.checkpoints import FORMAT_NAME, as_state_dict, torch_load_safely

    obj = torch_load_safely(path, trust_pickle=trust_pickle, mmap=_is_zip(path))
    if isinstance(obj, nn.Module):
        return obj.state_dict(), {"kind": "pickled-module", "class": type(obj).__name__}
    if isinstance(obj, Mapping) and obj.get("format") == FORMAT_NAME:
        meta = {k: obj.get(k) for k in ("format", "format_version", "package_version", "config", "dataset", "metrics")}
        return obj["state_dict"], meta
    return as_state_dict(obj, path, []), {}


def _is_zip(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(4) == b"PK\x03\x04"


def read_inventory(path: str | os.PathLike[str], *, trust_pickle: bool = False) -> Inventory:
    """List the tensors and linear layers of a checkpoint without loading its data."""
    import json

    path = Path(path)
    fmt = detect_format(path)
    if fmt == "safetensors":
        header = read_safetensors_header(path)
        tensors = []
        for name, info in header.tensors.items():
            if name.startswith(_INTERNAL):
                continue
            shape = tuple(int(s) for s in info["shape"])
            begin, end = info["data_offsets"]
            tensors.append(TensorInfo(name, shape, _ST_DTYPE_NAMES.get(info["dtype"], info["dtype"]),
                                      int(end) - int(begin)))
        metadata: dict[str, Any] = {}
        for key, value in header.metadata.items():
            try:
                metadata[key] = json.loads(value)
            except json.JSONDecodeError:
                metadata[key] = value
        metadata.pop("history", None)
        metadata.pop("train_config", None)
    else:
        state, metadata = _torch_payload(path, trust_pickle=trust_pickle)
        tensors = [
            TensorInfo(name, tuple(t.shape), str(t.dtype).removeprefix("torch."), t.numel() * t.element_size())
            for name, t in state.items()
        ]
    tensors_t = tuple(tensors)
    return Inventory(str(path), fmt, tensors_t, linear_layers(tensors_t), metadata)


def iter_tensors(path: str | os.PathLike[str], names: list[str] | None = None, *,
                 trust_pickle: bool = False) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield ``(name, tensor)`` one at a time; memory holds one tensor, not the file."""
    path = Path(path)
    if detect_format(path) == "safetensors":
        from safetensors import safe_open

        read_safetensors_header(path)  # validates length before safe_open maps it
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            for name in names if names is not None else list(fh.keys()):
                if name.startswith(_INTERNAL):
                    continue
                try:
                    yield name, fh.get_tensor(name)
                except Exception as exc:  # safetensors raises its own error types per version
                    raise InspectorError(f"{path}: cannot read tensor {name!r} ({exc})") from None
        return
    state, _ = _torch_payload(path, trust_pickle=trust_pickle)
    for name in names if names is not None else list(state):
        if name not in state:
            raise InspectorError(f"{path}: no tensor named {name!r}")
        yield name, state[name]


def scan_nonfinite(path: str | os.PathLike[str], *, trust_pickle: bool = False) -> dict[str, int]:
    """Count NaN/Inf entries per floating tensor, reading one tensor at a time."""
    bad: dict[str, int] = {}
    for name, t in iter_tensors(path, trust_pickle=trust_pickle):
        if t.is_floating_point():
            count = int((~torch.isfinite(t)).sum())
            if count:
                bad[name] = count
    return bad


def format_inventory(inv: Inventory) -> str:
    """A torchinfo-like text table: one row per linear layer, then totals."""
    head = ("layer", "in n", "out m", "weights", "biases", "params m*(n+1)", "dtype", "bytes")
    rows = [
        (layer.name, f"{layer.in_features:,}", f"{layer.out_features:,}", f"{layer.weights:,}",
         f"{layer.biases:,}", f"{layer.parameters:,}", layer.dtype, _human_bytes(layer.nbytes))
        for layer in inv.linear_layers
    ]
    totals = inv.totals()
    rows.append(("total", "", "", f"{totals['weights']:,}", f"{totals['biases']:,}",
                 f"{totals['parameters']:,}", "", _human_bytes(totals["bytes"])))
    widths = [max(len(str(r[i])) for r in (head, *rows)) for i in range(len(head))]

    def line(r: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) if i in (0, 6) else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

    rule = "-" * len(line(head))
    out = [line(head), rule, *map(line, rows[:-1]), rule, line(rows[-1])]
    if totals["other_parameters"]:
        out.append(f"other tensors (batch norm, embeddings, ...): {totals['other_parameters']:,} values")
    return "\n".join(out)


def _human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
