"""Parameter counts of every ``nn.Linear`` in any module, torchinfo-style.

A linear layer with n inputs and m outputs has an ``(m, n)`` weight and an
``(m,)`` bias: ``m * (n + 1)`` parameters and ``m * n`` multiply-adds per sample.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from inspector.results import result


@result
class LayerParameters:
    """One ``nn.Linear``. ``tied_to`` names an earlier layer whose weight this one shares."""

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
    for name, layer in linear_layers(model):
        m, n = layer.weight.shape
        bias = layer.bias
        tied_to = seen.get(id(layer.weight))
        unique = 0
        for p in (layer.weight, bias):
            if p is None or id(p) in seen:
                continue
            seen[id(p)] = name
            unique += p.numel()
            total_bytes += p.numel() * p.element_size()
            if p.requires_grad:
                trainable += p.numel()
        unique_linear += unique
        macs += m * n
        layers.append(LayerParameters(
            name=name, in_features=int(n), out_features=int(m), weights=int(m * n),
            biases=int(bias.numel()) if bias is not None else 0,
            parameters=int(m * n + (bias.numel() if bias is not None else 0)),
            trainable=bool(layer.weight.requires_grad), bytes=int(layer.weight.numel() * layer.weight.element_size()
                                                               + (bias.numel() * bias.element_size() if bias is not None else 0)),
            macs_per_sample=int(m * n), dtype=str(layer.weight.dtype).removeprefix("torch."), tied_to=tied_to,
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
