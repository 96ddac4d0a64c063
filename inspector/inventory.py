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

    ``parameters = weights + biases``; with a bias that is ``m * (n + 1)``. A tensor
    stored as a view of an earlier tensor's bytes (tied weights) counts 0 here, like
    :class:`inspector.analysis.parameters.LayerParameters`: ``tied_to`` names the layer
    (or tensor) it is counted in.
    """

    name: str
    in_features: int
    out_features: int
    weights: int
    biases: int
    dtype: str
    nbytes: int
    tied_to: str | None = None
    tensor_names: tuple[str, ...] = ()

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
        linear = {name for layer in self.linear_layers for name in layer.tensor_names}
        return tuple(t for t in self.tensors if t.name not in linear)

    def totals(self) -> dict[str, int]:
        return {
            "weights": sum(layer.weights for layer in self.linear_layers),
            "biases": sum(layer.biases for layer in self.linear_layers),
            "parameters": sum(layer.parameters for layer in self.linear_layers),
            "bytes": sum(layer.nbytes for layer in self.linear_layers),
            "other_parameters": sum(t.numel for t in self.other_tensors if t.tied_to is None),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "layers": [
                {"name": layer.name, "in_features": layer.in_features, "out_features": layer.out_features,
                 "weights": layer.weights, "biases": layer.biases, "parameters": layer.parameters,
                 "dtype": layer.dtype, "bytes": layer.nbytes, "tied_to": layer.tied_to}
                for layer in self.linear_layers
            ],
            "other_tensors": [
                {"name": t.name, "shape": list(t.shape), "dtype": t.dtype, "bytes": t.nbytes, "tied_to": t.tied_to}
                for t in self.other_tensors
            ],
            "totals": self.totals(),
            "metadata": self.metadata,
        }


def linear_layers(tensors: tuple[TensorInfo, ...]) -> tuple[LinearLayerInfo, ...]:
    """Each 2-D tensor is a layer's weight, in file order, paired with a matching 1-D
    ``<prefix>.bias`` when it is named ``<prefix>.weight``.

    Every 2-D tensor counts (a bare ``w`` too), so ``info`` and ``info --json`` list the
    same layers. Tied tensors (:attr:`TensorInfo.tied_to`) count 0 where they repeat.
    """
    by_name = {t.name: t for t in tensors}
    layer_of: dict[str, str] = {}
    layers = []
    for t in tensors:
        if len(t.shape) != 2:
            continue
        prefix, _, leaf = t.name.rpartition(".")
        named_weight = leaf == "weight"
        m, n = t.shape
        bias = by_name.get(f"{prefix}.bias") if named_weight else None
        if bias is not None and bias.shape != (m,):
            bias = None
        name = (prefix or t.name) if named_weight else t.name
        for member in (t, bias):
            if member is not None:
                layer_of[member.name] = name
        counted = [x for x in (t, bias) if x is not None and x.tied_to is None]
        tied_to = layer_of.get(t.tied_to, t.tied_to) if t.tied_to is not None else None
        layers.append(LinearLayerInfo(
            name=name, in_features=n, out_features=m, weights=m * n if t.tied_to is None else 0,
            biases=m if bias is not None and bias.tied_to is None else 0, dtype=t.dtype,
            nbytes=sum(x.nbytes for x in counted), tied_to=tied_to,
            tensor_names=tuple(x.name for x in (t, bias) if x is not None),
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
    """A torchinfo-like text table: one row per linear layer, then totals.

    The parameters column shows each row's arithmetic with the analyze table's
    :meth:`~inspector.analysis.parameters.LayerParameters.formula` (``m*(n+1)``, ``m*n``
    without a bias, and only what a tied row counts).
    """
    from inspector.analysis.parameters import LayerParameters

    head = ("layer", "in n", "out m", "weights", "biases", "parameters", "dtype", "bytes")
    rows = []
    for layer in inv.linear_layers:
        arithmetic = LayerParameters(
            name=layer.name, in_features=layer.in_features, out_features=layer.out_features,
            weights=layer.weights, biases=layer.biases, parameters=layer.parameters, trainable=True,
            bytes=layer.nbytes, macs_per_sample=layer.in_features * layer.out_features, dtype=layer.dtype,
            tied_to=layer.tied_to).formula("*", space="")
        rows.append((printable(layer.name + (f" (tied to {layer.tied_to})" if layer.tied_to else "")), f"{layer.in_features:,}", f"{layer.out_features:,}", f"{layer.weights:,}",
                     f"{layer.biases:,}", f"{printable(arithmetic)} = {layer.parameters:,}", layer.dtype,
                     human_bytes(layer.nbytes)))
    totals = inv.totals()
    rows.append(("total", "", "", f"{totals['weights']:,}", f"{totals['biases']:,}",
                 f"{totals['parameters']:,}", "", human_bytes(totals["bytes"])))
    widths = [max(len(str(r[i])) for r in (head, *rows)) for i in range(len(head))]

    def line(r: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) if i in (0, 6) else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

    rule = "-" * len(line(head))
    out = [line(head), rule, *map(line, rows[:-1]), rule, line(rows[-1])]
    if totals["other_parameters"]:
        out.append(f"other tensors (batch norm, embeddings, ...): {totals['other_parameters']:,} values")
    return "\n".join(out)


def human_bytes(n: int) -> str:
    """``n`` bytes in the largest binary unit that keeps the number >= 1: ``384 B``, ``12.6 MiB``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
