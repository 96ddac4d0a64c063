"""What a dense layer is: the one place that knows.

A dense layer computes ``y = x W^T + b`` with a weight of ``(out_features, in_features)``. Two
module kinds are dense layers here:

* ``torch.nn.Linear``: weight stored ``(out, in)``;
* Hugging Face's ``transformers.pytorch_utils.Conv1D`` (GPT-2, GPT, ...): ``y = x @ W + b`` with the
  weight stored transposed, ``(in, out)``, and ``nf`` (its output width) as an attribute. It is
  recognised by duck typing (class name ``Conv1D``, a 2-D ``weight``, ``nf`` equal to the weight's
  second dimension), so ``transformers`` is never imported here.

Every analysis asks these functions, never ``isinstance(m, nn.Linear)``: a layer's weight is
always seen as ``(out, in)`` through :func:`dense_weight` (a view: writing into it writes the layer).
"""

from __future__ import annotations

import torch
from torch import nn


def is_conv1d(module: nn.Module) -> bool:
    """Whether ``module`` is a Hugging Face ``Conv1D`` (weight stored ``(in, out)``)."""
    weight = getattr(module, "weight", None)
    return (
        type(module).__name__ == "Conv1D"
        and isinstance(weight, torch.Tensor)
        and weight.dim() == 2
        and getattr(module, "nf", None) == weight.shape[1]
    )


def is_dense(module: nn.Module) -> bool:
    """Whether ``module`` is a dense layer (``nn.Linear`` or a Hugging Face ``Conv1D``)."""
    return isinstance(module, nn.Linear) or is_conv1d(module)


def dense_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(qualified name, module)`` for every dense layer of ``model``, in registration order, each module once."""
    return [(name, m) for name, m in model.named_modules() if is_dense(m)]


def dense_weight(module: nn.Module) -> torch.Tensor:
    """The layer's weight as ``(out_features, in_features)``: the parameter itself for ``nn.Linear``,
    its transposed view for ``Conv1D`` (shares storage: an in-place write changes the layer)."""
    weight: torch.Tensor = module.weight  # type: ignore[assignment]
    return weight.t() if is_conv1d(module) else weight


def weight_parameter(module: nn.Module) -> torch.Tensor:
    """The weight parameter as stored (``(out, in)`` for ``nn.Linear``, ``(in, out)`` for ``Conv1D``): what
    owns ``.grad`` and identifies a tied tensor; for numbers per neuron use :func:`dense_weight`."""
    weight: torch.Tensor = module.weight  # type: ignore[assignment]
    return weight


def dense_bias(module: nn.Module) -> torch.Tensor | None:
    """The layer's bias ``(out_features,)`` or ``None``."""
    bias = getattr(module, "bias", None)
    return bias if isinstance(bias, torch.Tensor) else None


def in_features(module: nn.Module) -> int:
    """``n``: the width of the layer's input."""
    return int(dense_weight(module).shape[1])


def out_features(module: nn.Module) -> int:
    """``m``: the number of the layer's neurons (its output width)."""
    return int(dense_weight(module).shape[0])
