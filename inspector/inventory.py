"""What is in a checkpoint file, read from its header alone.

``read_inventory`` reads no tensor data: safetensors from its JSON header, PyTorch
files by unpickling their structure with every storage on the ``meta`` device
(:func:`inspector.checkpoints.read_header`, which validates every declared size
against the bytes in the file). ``iter_tensors`` then yields one tensor at a
time, for weight-only inspection of files larger than memory, e.g. a
transformer's MLP blocks.

What each tensor is, from its name, shape and dtype alone (a file records no
module types and no ``requires_grad``, so ``info`` never says what is trainable):

* an **integer or boolean** tensor (``position_ids``, ``token_type_ids``, batch
  norm's ``num_batches_tracked``) is a buffer, never a parameter;
* a 2-D floating tensor is an **embedding table** ``(num_embeddings, embedding_dim)``
  when its module's name (the path component before ``.weight``; for any other
  leaf, the leaf or the component before it) is one of the usual names: a name
  whose last ``_``-separated word is ``embed``, ``embeds``, ``embedding``,
  ``embeddings`` or ``emb`` (``word_embeddings``, ``position_embeddings``,
  ``token_type_embeddings``, ``tok_embeddings``, ``pos_emb``, ``embed``),
  ``embed_tokens``, ``embed_positions``, ``embed_in``, or exactly ``wte``,
  ``wpe``, ``shared`` (T5) or ``relative_attention_bias``. Names such as
  ``unembed``, ``embed_out`` or ``embeddings_project`` are not tables;
* every other 2-D floating tensor is a linear layer's weight ``(m, n)``;
* everything else (1-D norms, orphan biases, convolution kernels) is "other".
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from inspector.checkpoints import iter_header_tensors, read_header
from inspector.checks import printable
from inspector.errors import InspectorError
from inspector.formats import TensorInfo, count_nonfinite

if TYPE_CHECKING:
    from inspector.models import MLPConfig

_INTERNAL = "_inspector."
# Embedding-table module names (see the module docstring): the families of PyTorch, Hugging Face
# (BERT, GPT-2, Llama, BART/OPT, GPT-NeoX, T5), fairseq and TransformerLens checkpoints.
_EMBEDDING_WORDS = frozenset({"embed", "embeds", "embedding", "embeddings", "emb"})
_EMBEDDING_NAMES = frozenset(
    {"wte", "wpe", "shared", "embed_tokens", "embed_positions", "embed_in", "relative_attention_bias"}
)
_INTEGER_DTYPE = re.compile(r"^(?:u?int\d*|bool)$")


@dataclass(frozen=True)
class LinearLayerInfo:
    """A 2-D weight ``(out_features m, in_features n)`` and its optional bias ``(m,)``.

    ``parameters = weights + biases``; with a bias that is ``m * (n + 1)``. A tensor
    stored as a view of an earlier tensor's bytes (tied weights) counts 0 here, like
    :class:`inspector.analysis.parameters.LayerParameters`: ``tied_to`` names the layer
    (or tensor) it is counted in.
    """

    layer: str
    in_features: int
    out_features: int
    weights: int
    biases: int
    dtype: str
    bytes: int
    tied_to: str | None = None
    tensor_names: tuple[str, ...] = ()

    @property
    def parameters(self) -> int:
        return self.weights + self.biases


@dataclass(frozen=True)
class EmbeddingInfo:
    """An embedding table ``(num_embeddings, embedding_dim)``: a lookup, not a dense layer.

    ``parameters`` is ``num_embeddings * embedding_dim``, or 0 when the table is stored
    as a view of an earlier tensor (``tied_to`` names the layer it is counted in).
    """

    layer: str
    num_embeddings: int
    embedding_dim: int
    parameters: int
    dtype: str
    bytes: int
    tied_to: str | None = None
    tensor_names: tuple[str, ...] = ()


def is_integer_dtype(dtype: str) -> bool:
    """Integer and boolean tensors (``position_ids``, ``num_batches_tracked``) are buffers, never parameters."""
    return bool(_INTEGER_DTYPE.match(dtype))


def is_embedding_name(name: str) -> bool:
    """Whether a 2-D tensor called ``name`` is an embedding table, by the rule in the module docstring."""
    parts = name.lower().split(".")
    leaf = parts[-1]
    candidates = [parts[-2]] if leaf == "weight" and len(parts) > 1 else [leaf, *parts[-2:-1]]
    for module in candidates:
        if module in _EMBEDDING_NAMES or module.split("_")[-1] in _EMBEDDING_WORDS:
            return True
    return False


@dataclass(frozen=True)
class Inventory:
    """Every tensor in a file: its linear layers, embedding tables, other tensors and
    integer buffers, and the stored metadata."""

    path: str
    format: str
    tensors: tuple[TensorInfo, ...]
    linear_layers: tuple[LinearLayerInfo, ...]
    metadata: dict[str, Any]
    config: MLPConfig | None = field(default=None, compare=False)
    embeddings: tuple[EmbeddingInfo, ...] = ()
    notices: tuple[str, ...] = ()  # what the reader noticed (tensors left out, values folded in)

    @property
    def other_tensors(self) -> tuple[TensorInfo, ...]:
        """Floating tensors outside linear layers and embeddings (norms, orphan biases, kernels): parameters."""
        claimed = {name for layer in self.linear_layers for name in layer.tensor_names}
        claimed.update(name for e in self.embeddings for name in e.tensor_names)
        return tuple(t for t in self.tensors if t.name not in claimed and not is_integer_dtype(t.dtype))

    @property
    def integer_tensors(self) -> tuple[TensorInfo, ...]:
        """Integer and boolean tensors (``position_ids``, ``num_batches_tracked``): buffers, not parameters."""
        return tuple(t for t in self.tensors if is_integer_dtype(t.dtype))

    def totals(self) -> dict[str, int]:
        """Parameter counts; ``total_parameters`` is what ``sum(p.numel() for p in model.parameters())``
        gives for the module the file was saved from (tied tensors once, buffers never)."""
        linear = sum(layer.parameters for layer in self.linear_layers)
        embedding = sum(e.parameters for e in self.embeddings)
        other = sum(t.numel for t in self.other_tensors if t.tied_to is None)
        return {
            "weights": sum(layer.weights for layer in self.linear_layers),
            "biases": sum(layer.biases for layer in self.linear_layers),
            "parameters": linear,
            "bytes": sum(layer.bytes for layer in self.linear_layers),
            "embedding_parameters": embedding,
            "other_parameters": other,
            "total_parameters": linear + embedding + other,
        }

    def to_dict(self) -> dict[str, Any]:
        def tensor_row(t: TensorInfo) -> dict[str, Any]:
            return {"tensor": t.name, "shape": list(t.shape), "dtype": t.dtype, "bytes": t.bytes, "tied_to": t.tied_to}

        return {
            "path": self.path,
            "format": self.format,
            "layers": [
                {
                    "layer": layer.layer,
                    "in_features": layer.in_features,
                    "out_features": layer.out_features,
                    "weights": layer.weights,
                    "biases": layer.biases,
                    "parameters": layer.parameters,
                    "dtype": layer.dtype,
                    "bytes": layer.bytes,
                    "tied_to": layer.tied_to,
                }
                for layer in self.linear_layers
            ],
            "embeddings": [
                {
                    "layer": e.layer,
                    "num_embeddings": e.num_embeddings,
                    "embedding_dim": e.embedding_dim,
                    "parameters": e.parameters,
                    "dtype": e.dtype,
                    "bytes": e.bytes,
                    "tied_to": e.tied_to,
                }
                for e in self.embeddings
            ],
            "other_tensors": [tensor_row(t) for t in self.other_tensors],
            "integer_tensors": [tensor_row(t) for t in self.integer_tensors],
            "notices": list(self.notices),
            "totals": self.totals(),
            "metadata": self.metadata,
        }


def layers_from_tensors(
    tensors: tuple[TensorInfo, ...],
) -> tuple[tuple[LinearLayerInfo, ...], tuple[EmbeddingInfo, ...]]:
    """The linear layers and embedding tables among a file's tensors, in file order.

    Each 2-D floating tensor is an embedding table when its name says so (see
    :func:`is_embedding_name`), else a linear layer's weight, paired with a matching
    1-D ``<prefix>.bias`` when it is named ``<prefix>.weight``. Every other 2-D
    floating tensor counts (a bare ``w`` too), so ``info`` and ``info --json`` list
    the same layers. Tied tensors (:attr:`TensorInfo.tied_to`) count 0 where they repeat.
    """
    by_name = {t.name: t for t in tensors}
    # each 2-D floating tensor's layer name and bias first: a tied copy may come before the tensor it repeats
    # (safetensors sorts names), and its tied_to names that tensor's layer
    found: list[tuple[TensorInfo, str, TensorInfo | None]] = []
    for t in tensors:
        if len(t.shape) != 2 or is_integer_dtype(t.dtype):
            continue
        prefix, _, leaf = t.name.rpartition(".")
        named_weight = leaf == "weight"
        bias = by_name.get(f"{prefix}.bias") if named_weight and not is_embedding_name(t.name) else None
        if bias is not None and (bias.shape != (t.shape[0],) or is_integer_dtype(bias.dtype)):
            bias = None
        found.append((t, (prefix or t.name) if named_weight else t.name, bias))
    layer_of = {x.name: name for t, name, bias in found for x in (t, bias) if x is not None}
    layers: list[LinearLayerInfo] = []
    embeddings: list[EmbeddingInfo] = []
    for t, name, bias in found:
        m, n = t.shape
        tied_to = layer_of.get(t.tied_to, t.tied_to) if t.tied_to is not None else None
        if is_embedding_name(t.name):
            embeddings.append(
                EmbeddingInfo(
                    layer=name,
                    num_embeddings=m,
                    embedding_dim=n,
                    parameters=m * n if t.tied_to is None else 0,
                    dtype=t.dtype,
                    bytes=t.bytes if t.tied_to is None else 0,
                    tied_to=tied_to,
                    tensor_names=(t.name,),
                )
            )
            continue
        counted = [x for x in (t, bias) if x is not None and x.tied_to is None]
        layers.append(
            LinearLayerInfo(
                layer=name,
                in_features=n,
                out_features=m,
                weights=m * n if t.tied_to is None else 0,
                biases=m if bias is not None and bias.tied_to is None else 0,
                dtype=t.dtype,
                bytes=sum(x.bytes for x in counted),
                tied_to=tied_to,
                tensor_names=tuple(x.name for x in (t, bias) if x is not None),
            )
        )
    return tuple(layers), tuple(embeddings)


def read_inventory(path: str | os.PathLike[str], *, trust_pickle: bool = False) -> Inventory:
    """List the tensors, linear layers and embeddings of a checkpoint without reading any tensor data."""
    header = read_header(path, trust_pickle=trust_pickle)
    tensors = tuple(t for t in header.tensors if not t.name.startswith(_INTERNAL))
    layers, embeddings = layers_from_tensors(tensors)
    return Inventory(
        path=str(header.path),
        format=header.format,
        tensors=tensors,
        linear_layers=layers,
        metadata=header.metadata,
        config=header.own.config if header.own else None,
        embeddings=embeddings,
        notices=tuple(printable(n) for n in header.notices),
    )


def iter_tensors(
    path: str | os.PathLike[str], names: list[str] | None = None, *, trust_pickle: bool = False
) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield ``(name, tensor)`` one at a time; memory holds one tensor, not the file
    (:func:`inspector.checkpoints.iter_header_tensors`). ``path`` may be a sharded checkpoint's
    folder or index. The header is validated first, so no tensor is read whose size the file does not back.
    """
    header = read_header(Path(path), trust_pickle=trust_pickle)
    known = [t.name for t in header.tensors if not t.name.startswith(_INTERNAL)]
    for name in names or ():
        if name not in known:
            raise InspectorError(f"{header.path}: no tensor named {name!r}")
    yield from iter_header_tensors(header, names if names is not None else known)


def scan_nonfinite(path: str | os.PathLike[str], *, trust_pickle: bool = False) -> dict[str, int]:
    """Count NaN/Inf entries per floating tensor, one tensor and one chunk at a time."""
    bad: dict[str, int] = {}
    for name, t in iter_tensors(path, trust_pickle=trust_pickle):
        count = count_nonfinite(t)
        if count:
            bad[name] = count
    return bad
