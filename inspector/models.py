"""MLPs built from a config, and rebuilt from other people's state dicts.

The config travels with every checkpoint, so ``build_mlp(config)`` followed by
``load_state_dict`` reproduces a trained model exactly.
"""

from __future__ import annotations

import dataclasses
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from inspector.checks import check_fields, printable
from inspector.errors import InspectorError, NotAnMLPError
from inspector.formats import shared_storage

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
}


@dataclass(frozen=True)
class MLPConfig:
    """Architecture of a multilayer perceptron.

    Each hidden block is ``Linear -> [BatchNorm1d] -> activation -> [Dropout]``;
    the output layer is a bare ``Linear`` producing logits (one per class) or, for
    regression, one value per target.
    """

    input_size: int
    hidden_sizes: tuple[int, ...]
    output_size: int
    activation: str = "relu"
    dropout: float = 0.0
    batch_norm: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_sizes", tuple(int(h) for h in self.hidden_sizes))
        if self.activation not in ACTIVATIONS:
            raise InspectorError(f"unknown activation {self.activation!r}; choose one of {', '.join(ACTIVATIONS)}")
        if not 0.0 <= self.dropout < 1.0:
            raise InspectorError(f"dropout must be in [0, 1), got {self.dropout}")
        sizes = (self.input_size, *self.hidden_sizes, self.output_size)
        if any(int(s) < 1 for s in sizes):
            raise InspectorError(f"layer sizes must be positive, got {list(sizes)}")

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """``(input, hidden..., output)``: layer k maps sizes[k] to sizes[k + 1]."""
        return (self.input_size, *self.hidden_sizes, self.output_size)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["hidden_sizes"] = list(self.hidden_sizes)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MLPConfig:
        """Rebuild a config read from a file; every field is type-checked first (``"64"`` is no size)."""

        return cls(**check_fields(cls, d, "model config"))

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shape of every entry of ``MLP(self).state_dict()``, computed without building it.

        Lets a loader compare a file's tensors with its config before allocating any layer.
        """
        sizes = self.layer_sizes
        shapes: dict[str, tuple[int, ...]] = {}
        for k in range(len(sizes) - 1):
            shapes[f"fc{k + 1}.weight"] = (sizes[k + 1], sizes[k])
            shapes[f"fc{k + 1}.bias"] = (sizes[k + 1],)
            if self.batch_norm and k < len(sizes) - 2:
                for leaf in ("weight", "bias", "running_mean", "running_var"):
                    shapes[f"bn{k + 1}.{leaf}"] = (sizes[k + 1],)
                shapes[f"bn{k + 1}.num_batches_tracked"] = ()
        return shapes


class MLP(nn.Sequential):
    """A plain MLP whose modules are named ``fc1, bn1, act1, drop1, ..., fcL``.

    ``forward(x)``: ``x`` is ``(batch, input_size)``, the result ``(batch, output_size)``: logits,
    or regression predictions in the targets' units.
    """

    def __init__(self, config: MLPConfig) -> None:
        modules: OrderedDict[str, nn.Module] = OrderedDict()
        sizes = config.layer_sizes
        n_linear = len(sizes) - 1
        for k in range(n_linear):
            modules[f"fc{k + 1}"] = nn.Linear(sizes[k], sizes[k + 1])
            if k == n_linear - 1:
                break
            if config.batch_norm:
                modules[f"bn{k + 1}"] = nn.BatchNorm1d(sizes[k + 1])
            modules[f"act{k + 1}"] = ACTIVATIONS[config.activation]()
            if config.dropout > 0:
                modules[f"drop{k + 1}"] = nn.Dropout(config.dropout)
        super().__init__(modules)
        self.config = config


def build_mlp(config: MLPConfig) -> MLP:
    """A freshly initialised :class:`MLP` for ``config``."""
    return MLP(config)


# --------------------------------------------------------------------------- #
# Foreign state dicts
# --------------------------------------------------------------------------- #

_BN_SUFFIXES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _natural_key(name: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _split(key: str) -> tuple[str, str]:
    prefix, _, leaf = key.rpartition(".")
    return prefix, leaf


@dataclass(frozen=True)
class InferredLayout:
    """How a foreign state dict maps onto an :class:`MLP`."""

    config: MLPConfig
    linear_prefixes: tuple[str, ...]
    batch_norm_prefixes: tuple[str, ...]


def infer_mlp_layout(
    state_dict: Mapping[str, torch.Tensor], activation: str = "relu", *, source: str = "state dict"
) -> InferredLayout:
    """Find the chain of linear layers in ``state_dict`` from weight shapes and key order.

    A linear layer is a 2-D ``<prefix>.weight`` (``(out_features, in_features)``),
    with an optional 1-D ``<prefix>.bias``. A batch norm is a module whose keys
    include ``running_mean``. Layers are taken in the dict's own order (the
    order ``nn.Module.state_dict`` writes them); if that does not chain, in
    natural-sorted key order.
    """
    modules: OrderedDict[str, dict[str, torch.Tensor]] = OrderedDict()
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise InspectorError(
                f"{source}: entry {key!r} is a {type(value).__name__}, not a tensor; expected a state dict of an MLP"
            )
        prefix, leaf = _split(key)
        modules.setdefault(prefix, {})[leaf] = value

    linear: list[str] = []
    batch_norm: list[str] = []
    for prefix, leaves in modules.items():
        if "running_mean" in leaves:
            batch_norm.append(prefix)
            if set(leaves) - set(_BN_SUFFIXES):
                raise NotAnMLPError(f"{source}: {prefix!r} looks like batch norm but has extra keys")
        elif "weight" in leaves and leaves["weight"].ndim == 2:
            w = leaves["weight"]
            b = leaves.get("bias")
            if b is not None and tuple(b.shape) != (w.shape[0],):
                raise NotAnMLPError(
                    f"{source}: {printable(prefix)}.bias has shape {tuple(b.shape)} but {printable(prefix)}.weight "
                    f"has {w.shape[0]} outputs; the file is not a consistent linear layer"
                )
            if set(leaves) - {"weight", "bias"}:
                raise NotAnMLPError(
                    f"{source}: module {prefix!r} has keys {sorted(leaves)}; it is not a plain "
                    "nn.Linear, so the model can't be rebuilt as an MLP "
                    "(use `inspector info` for weight-only inspection)"
                )
            linear.append(prefix)
        else:
            shapes = {leaf: tuple(t.shape) for leaf, t in leaves.items()}
            raise NotAnMLPError(
                f"{source}: module {prefix or '<root>'!r} with {shapes} is neither nn.Linear nor "
                "BatchNorm1d, so the model can't be rebuilt as an MLP "
                "(use `inspector info` for weight-only inspection)"
            )
    if not linear:
        raise InspectorError(f"{source}: no 2-D '.weight' tensors found; this is not a dense model")

    def chains(order: list[str]) -> bool:
        return all(modules[a]["weight"].shape[0] == modules[b]["weight"].shape[1] for a, b in zip(order, order[1:]))

    if not chains(linear):
        natural = sorted(linear, key=_natural_key)
        if not chains(natural):
            desc = ", ".join(
                f"{printable(p)}: {modules[p]['weight'].shape[1]}->{modules[p]['weight'].shape[0]}" for p in linear
            )
            raise NotAnMLPError(
                f"{source}: the linear layers' shapes don't chain ({desc}); each layer's inputs "
                "must equal the previous layer's outputs, so this is not a plain MLP "
                "(use `inspector info` for weight-only inspection)"
            )
        linear = natural

    sizes = [int(modules[linear[0]]["weight"].shape[1])] + [int(modules[p]["weight"].shape[0]) for p in linear]
    hidden = tuple(sizes[1:-1])
    if batch_norm:
        bn_sizes = [int(modules[p]["running_mean"].shape[0]) for p in batch_norm]
        if len(batch_norm) != len(hidden) or bn_sizes != list(hidden):
            raise NotAnMLPError(
                f"{source}: found batch norm on {len(batch_norm)} of {len(hidden)} hidden layers "
                f"(sizes {bn_sizes} vs {list(hidden)}); only a batch norm after every hidden layer "
                "can be rebuilt (use `inspector info` for weight-only inspection)"
            )
    for p in linear:
        if "bias" not in modules[p]:
            raise NotAnMLPError(
                f"{source}: layer {p!r} has no bias; only nn.Linear(bias=True) layers can be "
                "rebuilt as an MLP (use `inspector info` for weight-only inspection)"
            )
    config = MLPConfig(
        input_size=sizes[0],
        hidden_sizes=hidden,
        output_size=sizes[-1],
        activation=activation,
        batch_norm=bool(batch_norm),
    )
    return InferredLayout(config, tuple(linear), tuple(batch_norm))


def mlp_from_state_dict(
    state_dict: Mapping[str, torch.Tensor], activation: str = "relu", *, source: str = "state dict"
) -> MLP:
    """Rebuild an :class:`MLP` from a foreign state dict (see :func:`infer_mlp_layout`)."""
    layout = infer_mlp_layout(state_dict, activation, source=source)
    model = build_mlp(layout.config)
    renamed: dict[str, torch.Tensor] = {}
    for k, prefix in enumerate(layout.linear_prefixes, start=1):
        renamed[f"fc{k}.weight"] = state_dict[f"{prefix}.weight"]
        renamed[f"fc{k}.bias"] = state_dict[f"{prefix}.bias"]
    for k, prefix in enumerate(layout.batch_norm_prefixes, start=1):
        for leaf in _BN_SUFFIXES:
            if f"{prefix}.{leaf}" in state_dict:
                renamed[f"bn{k}.{leaf}"] = state_dict[f"{prefix}.{leaf}"]
    missing, unexpected = model.load_state_dict(renamed, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:  # pragma: no cover - infer_mlp_layout guarantees a full match
        raise InspectorError(f"{source}: could not map keys {missing or unexpected} onto the MLP")
    _retie(model, renamed)
    return model


def _retie(model: MLP, renamed: Mapping[str, torch.Tensor]) -> None:
    """Share one Parameter where the file stored one tensor under two names (tied weights),
    so the rebuilt model counts it once, as the file's own model did."""

    for name, first in shared_storage(renamed).items():
        a, b = renamed[name], renamed[first]
        if a.shape == b.shape and a.stride() == b.stride() and a.storage_offset() == b.storage_offset():
            module, _, leaf = name.rpartition(".")
            owner, _, owner_leaf = first.rpartition(".")
            setattr(getattr(model, module), leaf, getattr(getattr(model, owner), owner_leaf))
