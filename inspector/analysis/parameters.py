"""Parameter counts of every dense layer in any module, torchinfo-style.

A dense layer (``nn.Linear``, or Hugging Face's ``Conv1D``, see :mod:`inspector.core.dense`) with n
inputs and m outputs has an ``(m, n)`` weight (a ``Conv1D`` stores it ``(n, m)``) and an ``(m,)``
bias: ``m * (n + 1)`` parameters and ``m * n`` multiply-adds per sample.

``nn.Embedding`` tables are not dense layers: an ``(num_embeddings, embedding_dim)``
table is a lookup, not a matrix product, so it is listed under ``embeddings`` with
``num_embeddings * embedding_dim`` parameters and no multiply-adds.

A tensor shared by several layers (tied weights, e.g. a language model's output
projection tied to its word embeddings) is counted once, in the first layer or
embedding that holds it in registration order, exactly as
``sum(p.numel() for p in model.parameters())`` does; so the rows always add up
to the totals. Buffers (``position_ids``, batch-norm statistics) are never parameters.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from torch import Tensor, nn

from inspector.core.dense import dense_layers, dense_weight, is_dense
from inspector.inventory import EmbeddingInfo, LinearLayerInfo
from inspector.results import result


@result
class LayerParameters:
    """One dense layer (``nn.Linear`` or ``Conv1D``); its counts are the tensors counted in this row.

    ``weights`` is ``m * n`` and ``biases`` ``m``, except that a tensor shared with
    an earlier layer counts 0 here (it is counted there): ``tied_to`` names the
    earlier layer whose weight this one shares. ``parameters = weights + biases``
    and ``bytes`` follow the same rule; ``macs_per_sample`` (``m * n``) does not,
    because a shared weight is still multiplied in every layer that uses it.
    ``trainable`` is ``None`` when unknown (read from a file, which does not record it).
    """

    layer: str
    in_features: int
    out_features: int
    weights: int
    biases: int
    parameters: int
    trainable: bool | None
    bytes: int
    macs_per_sample: int
    dtype: str
    tied_to: str | None = None

    def formula(self, times: str = "×", space: str = " ") -> str:
        """The arithmetic behind ``parameters``: ``m × (n + 1)``, ``m × n`` without a bias, and
        only what this row counts when a tensor is counted in an earlier layer."""
        m, n = f"{self.out_features:,}", f"{self.in_features:,}"
        op = f"{space}{times}{space}"
        if self.weights and self.biases:
            text = f"{m}{op}({n}{space}+{space}1)"
        elif self.weights:
            text = f"{m}{op}{n}"
        else:
            text = m if self.biases else "0"
        if self.tied_to is not None:
            text += f" (weight counted in {self.tied_to})"
        return text


@result
class EmbeddingParameters:
    """One embedding table ``(num_embeddings, embedding_dim)``: ``num_embeddings * embedding_dim`` parameters.

    As for :class:`LayerParameters`, a table whose weight is counted in an earlier
    layer counts 0 here and ``tied_to`` names that layer. ``trainable`` is ``None``
    when unknown (read from a file).
    """

    layer: str
    num_embeddings: int
    embedding_dim: int
    parameters: int
    bytes: int
    tied_to: str | None = None
    dtype: str = ""
    trainable: bool | None = None

    def formula(self, times: str = "×", space: str = " ") -> str:
        """``num_embeddings × embedding_dim``; only what this row counts when its table is counted elsewhere."""
        text = f"{self.num_embeddings:,}{space}{times}{space}{self.embedding_dim:,}"
        return text if self.tied_to is None else f"0 (table counted in {self.tied_to})"


@result
class OtherParameters:
    """Parameters outside linear layers and embeddings (batch norm, layer norm, ...), per module."""

    name: str
    kind: str
    parameters: int
    trainable: bool | None


@result
class ParameterReport:
    """Per-layer counts and model totals. Tied weights are counted once in the totals.

    ``total_parameters = linear_parameters + embedding_parameters + other_parameters``.
    ``trainable_parameters`` is ``None`` when unknown (read from a file).
    """

    layers: tuple[LayerParameters, ...]
    other: tuple[OtherParameters, ...]
    linear_parameters: int
    other_parameters: int
    total_parameters: int
    trainable_parameters: int | None
    total_bytes: int
    macs_per_sample: int
    embeddings: tuple[EmbeddingParameters, ...] = ()
    embedding_parameters: int = 0


def trainable_text(trainable: bool | None) -> str:
    """``yes``, ``no``, or ``unknown`` where the source (a file) does not record it."""
    return "unknown" if trainable is None else ("yes" if trainable else "no")


def linear_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(qualified name, module)`` for every dense layer (``nn.Linear`` or ``Conv1D``), in registration
    order, each module once (:func:`inspector.core.dense.dense_layers`)."""
    return dense_layers(model)


def linear_weights(model: nn.Module) -> dict[str, np.ndarray]:
    """``{name: weight (out_features, in_features)}`` as float32 numpy copies, for every dense layer
    (a ``Conv1D``'s stored ``(in, out)`` weight transposed)."""
    return {name: dense_weight(layer).detach().float().cpu().numpy() for name, layer in dense_layers(model)}


def embedding_layers(model: nn.Module) -> list[tuple[str, nn.Embedding | nn.EmbeddingBag]]:
    """``(qualified name, module)`` for every ``nn.Embedding`` and ``nn.EmbeddingBag``, in registration order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag))]


def count_parameters(model: nn.Module) -> ParameterReport:
    """Count parameters per linear layer and per embedding table.

    Totals equal ``sum(p.numel() for p in model.parameters())``: a tensor shared by
    several modules is counted in the first (registration order), and every later
    row that shares it says ``tied_to``.
    """
    seen: dict[int, str] = {}
    layers: list[LayerParameters] = []
    embeddings: list[EmbeddingParameters] = []
    unique_linear = unique_embedding = trainable = total_bytes = macs = 0

    def claim(p: Tensor | None, owner: str) -> tuple[int, int]:
        """``(count, bytes)`` of ``p`` if no earlier layer counted it, else ``(0, 0)``."""
        nonlocal trainable
        if p is None or id(p) in seen:
            return 0, 0
        seen[id(p)] = owner
        if p.requires_grad:
            trainable += p.numel()
        return p.numel(), p.numel() * p.element_size()

    # one pass in registration order, so a weight tied between an embedding and a later
    # linear layer (an LM head) is counted where it is first defined: in the embedding
    for name, module in model.named_modules():
        if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
            rows, dim = module.weight.shape
            tied_to = seen.get(id(module.weight))
            count, nbytes = claim(module.weight, name)
            unique_embedding += count
            total_bytes += nbytes
            embeddings.append(
                EmbeddingParameters(
                    layer=name,
                    num_embeddings=int(rows),
                    embedding_dim=int(dim),
                    parameters=int(count),
                    bytes=int(nbytes),
                    tied_to=tied_to,
                    dtype=str(module.weight.dtype).removeprefix("torch."),
                    trainable=bool(module.weight.requires_grad),
                )
            )
            continue
        if not is_dense(module):
            continue
        layer = module
        m, n = dense_weight(layer).shape
        tied_to = seen.get(id(layer.weight))
        weights, weight_bytes = claim(layer.weight, name)
        biases, bias_bytes = claim(layer.bias, name)
        unique_linear += weights + biases
        total_bytes += weight_bytes + bias_bytes
        macs += m * n
        layers.append(
            LayerParameters(
                layer=name,
                in_features=int(n),
                out_features=int(m),
                weights=int(weights),
                biases=int(biases),
                parameters=int(weights + biases),
                trainable=bool(layer.weight.requires_grad),
                bytes=int(weight_bytes + bias_bytes),
                macs_per_sample=int(m * n),
                dtype=str(layer.weight.dtype).removeprefix("torch."),
                tied_to=tied_to,
            )
        )
    other: list[OtherParameters] = []
    other_total = 0
    for name, module in model.named_modules():
        own = [p for p in module.parameters(recurse=False) if id(p) not in seen]
        if not own:
            continue
        for p in own:
            seen[id(p)] = name
            total_bytes += p.numel() * p.element_size()
            if p.requires_grad:
                trainable += p.numel()
        count = sum(p.numel() for p in own)
        other_total += count
        other.append(
            OtherParameters(
                name=name,
                kind=type(module).__name__,
                parameters=int(count),
                trainable=all(p.requires_grad for p in own),
            )
        )
    return ParameterReport(
        layers=tuple(layers),
        other=tuple(other),
        linear_parameters=int(unique_linear),
        other_parameters=int(other_total),
        total_parameters=int(unique_linear + unique_embedding + other_total),
        trainable_parameters=int(trainable),
        total_bytes=int(total_bytes),
        macs_per_sample=int(macs),
        embeddings=tuple(embeddings),
        embedding_parameters=int(unique_embedding),
    )


def layer_row(layer: LinearLayerInfo, name: Callable[[str], str] = str) -> LayerParameters:
    """A linear layer read from a file's header as a parameter-table row; a file does not record
    ``requires_grad``, so ``trainable`` is unknown (``None``). ``name`` maps the layer names (e.g. to
    printable text)."""
    return LayerParameters(
        layer=name(layer.layer),
        in_features=layer.in_features,
        out_features=layer.out_features,
        weights=layer.weights,
        biases=layer.biases,
        parameters=layer.parameters,
        trainable=None,
        bytes=layer.bytes,
        macs_per_sample=layer.in_features * layer.out_features,
        dtype=layer.dtype,
        tied_to=name(layer.tied_to) if layer.tied_to else None,
    )


def embedding_row(table: EmbeddingInfo, name: Callable[[str], str] = str) -> EmbeddingParameters:
    """An embedding table read from a file's header as an embedding row of a parameter report."""
    return EmbeddingParameters(
        layer=name(table.layer),
        num_embeddings=table.num_embeddings,
        embedding_dim=table.embedding_dim,
        parameters=table.parameters,
        bytes=table.bytes,
        tied_to=name(table.tied_to) if table.tied_to else None,
        dtype=table.dtype,
    )
