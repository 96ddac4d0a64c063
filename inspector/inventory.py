"""What is in a checkpoint file, read from its header alone.

``read_inventory`` reads no tensor data: safetensors from its JSON header, PyTorch
files by unpickling their structure with every storage on the ``meta`` device
(:func:`inspector.checkpoints.read_header`, which validates every declared size
against the bytes in the file). ``iter_tensors`` then yields one tensor at a
time, for weight-only inspection of files larger than memory, e.g. a
transformer's MLP blocks.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from inspector.errors import InspectorError
from inspector.formats import TensorInfo, is_zip
from inspector.validation import printable

if TYPE_CHECKING:
    from inspector.models import MLPConfig

_INTERNAL = "_inspector."
_NONFINITE_CHUNK = 1 << 20  # elements per isfinite() call: the scan's memory is bounded by this, not the tensor


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
    config: MLPConfig | None = field(default=None, compare=False)

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


def read_inventory(path: str | os.PathLike[str], *, trust_pickle: bool = False) -> Inventory:
    """List the tensors and linear layers of a checkpoint without reading any tensor data."""
    from inspector.checkpoints import read_header

    header = read_header(path, trust_pickle=trust_pickle)
    tensors = tuple(t for t in header.tensors if not t.name.startswith(_INTERNAL))
    return Inventory(str(header.path), header.format, tensors, linear_layers(tensors), header.metadata,
                     header.own.config if header.own else None)


def iter_tensors(path: str | os.PathLike[str], names: list[str] | None = None, *,
                 trust_pickle: bool = False) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield ``(name, tensor)`` one at a time; memory holds one tensor, not the file.

    The header is validated first, so no tensor is read whose size the file does not back.
    """
    from inspector.checkpoints import read_header, read_parts

    path = Path(path)
    header = read_header(path, trust_pickle=trust_pickle)
    known = [t.name for t in header.tensors if not t.name.startswith(_INTERNAL)]
    for name in names or ():
        if name not in known:
            raise InspectorError(f"{path}: no tensor named {name!r}")
    wanted = names if names is not None else known
    if header.format == "safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt", device="cpu") as fh:
            for name in wanted:
                try:
                    tensor = fh.get_tensor(name)
                except Exception as exc:  # safetensors raises its own error types per version
                    raise InspectorError(f"{path}: cannot read tensor {name!r} ({printable(str(exc))[:200]})") from None
                yield name, tensor
        return
    parts, _ = read_parts(path, header, trust_pickle=trust_pickle, mmap=is_zip(path))
    for name in wanted:
        yield name, parts.state[name]


def count_nonfinite(tensor: torch.Tensor, chunk: int = _NONFINITE_CHUNK) -> int:
    """NaN and Inf entries of ``tensor`` (0 for integer tensors), counted ``chunk`` elements at a time."""
    if not (tensor.is_floating_point() or tensor.is_complex()):
        return 0
    if tensor.dim() == 0 or tensor.numel() <= chunk:
        if tensor.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64) and not tensor.is_complex():
            tensor = tensor.float()  # float8 has no isfinite kernel; the chunk bounds the copy
        return int((~torch.isfinite(tensor)).sum())
    row = tensor[0].numel()
    step = max(1, chunk // max(1, row))
    if step == 1 and tensor.dim() > 1:
        return sum(count_nonfinite(tensor[i], chunk) for i in range(tensor.shape[0]))
    return sum(count_nonfinite(tensor[i:i + step], chunk) for i in range(0, tensor.shape[0], step))


def scan_nonfinite(path: str | os.PathLike[str], *, trust_pickle: bool = False) -> dict[str, int]:
    """Count NaN/Inf entries per floating tensor, one tensor and one chunk at a time."""
    bad: dict[str, int] = {}
    for name, t in iter_tensors(path, trust_pickle=trust_pickle):
        count = count_nonfinite(t)
        if count:
            bad[name] = count
    return bad


def format_inventory(inv: Inventory) -> str:
    """A torchinfo-like text table: one row per linear layer, then totals."""
    head = ("layer", "in n", "out m", "weights", "biases", "params m*(n+1)", "dtype", "bytes")
    rows = [
        (printable(layer.name), f"{layer.in_features:,}", f"{layer.out_features:,}", f"{layer.weights:,}",
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
