"""Parameter counts of every ``nn.Linear`` in any module, torchinfo-style.

A linear layer with n inputs and m outputs has an ``(m, n)`` weight and an
``(m,)`` bias: ``m * (n + 1)`` parameters and ``m * n`` multiply-adds per sample.

A tensor shared by several layers (tied weights) is counted once, in the first
layer that holds it, exactly as ``sum(p.numel() for p in model.parameters())``
does; so the rows always add up to the totals.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from inspector.results import result


@result
class LayerParameters:
    """One ``nn.Linear``; its counts are the tensors counted in this row.

    ``weights`` is ``m * n`` and ``biases`` ``m``, except that a tensor shared with
    an earlier layer counts 0 here (it is counted there): ``tied_to`` names the
    earlier layer whose weight this one shares. ``parameters = weights + biases``
    and ``bytes`` follow the same rule; ``macs_per_sample`` (``m * n``) does not,
    because a shared weight is still multiplied in every layer that uses it.
    """

    name: str
    in_features: int
    out_features: int
    weights: int
    biases: int
    parameters: int
    trainable: bool
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
class OtherParameters:
    """Parameters outside linear layers (batch norm, embeddings, ...), per module."""

    name: str
    kind: str
    parameters: int
    trainable: bool


@result
class ParameterReport:
    """Per-layer counts and model totals. Tied weights are counted once in the totals."""

    layers: tuple[LayerParameters, ...]
    other: tuple[OtherParameters, ...]
    linear_parameters: int
    other_parameters: int
    total_parameters: int
    trainable_parameters: int
    total_bytes: int
    macs_per_sample: int


def linear_layers(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """``(qualified name, module)`` for every ``nn.Linear``, in registration order, each module once."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]


def linear_weights(model: nn.Module) -> dict[str, np.ndarray]:
    """``{name: weight (out_features, in_features)}`` as float32 numpy copies, for every ``nn.Linear``."""
    return {name: layer.weight.detach().float().cpu().numpy() for name, layer in linear_layers(model)}


def count_parameters(model: nn.Module) -> ParameterReport:
    """Count parameters per linear layer; totals equal ``sum(p.numel() for p in model.parameters())``."""
    seen: dict[int, str] = {}
    layers: list[LayerParameters] = []
    unique_linear = trainable = total_bytes = macs = 0

    def claim(p: nn.Parameter | None, owner: str) -> tuple[int, int]:
        """``(count, bytes)`` of ``p`` if no earlier layer counted it, else ``(0, 0)``."""
        nonlocal trainable
        if p is None or id(p) in seen:
            return 0, 0
        seen[id(p)] = owner
        if p.requires_grad:
            trainable += p.numel()
        return p.numel(), p.numel() * p.element_size()

    for name, layer in linear_layers(model):
        m, n = layer.weight.shape
        tied_to = seen.get(id(layer.weight))
        weights, weight_bytes = claim(layer.weight, name)
        biases, bias_bytes = claim(layer.bias, name)
        unique_linear += weights + biases
        total_bytes += weight_bytes + bias_bytes
        macs += m * n
        layers.append(LayerParameters(
            name=name, in_features=int(n), out_features=int(m), weights=int(weights), biases=int(biases),
            parameters=int(weights + biases), trainable=bool(layer.weight.requires_grad),
            bytes=int(weight_bytes + bias_bytes), macs_per_sample=int(m * n),
            dtype=str(layer.weight.dtype).removeprefix("torch."), tied_to=tied_to,
        ))
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
        other.append(OtherParameters(name=name, kind=type(module).__name__, parameters=int(count),
                                     trainable=all(p.requires_grad for p in own)))
    return ParameterReport(
        layers=tuple(layers), other=tuple(other), linear_parameters=int(unique_linear),
        other_parameters=int(other_total), total_parameters=int(unique_linear + other_total),
        trainable_parameters=int(trainable), total_bytes=int(total_bytes), macs_per_sample=int(macs),
    )
