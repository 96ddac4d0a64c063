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
from inspector.sources.base import free_name, module_names_fit, place_module

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
    #: the dense layers' module names, first to last (a foreign state dict's own: ``0``, ``2``, ``4``, or
    #: ``encoder.0``); empty for ``fc1 .. fcL``
    layer_names: tuple[str, ...] = ()
    #: the batch norms' module names, one per hidden layer; empty for ``bn1 ..``
    norm_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_sizes", tuple(int(h) for h in self.hidden_sizes))
        object.__setattr__(self, "layer_names", tuple(self.layer_names))
        object.__setattr__(self, "norm_names", tuple(self.norm_names))
        if self.activation not in ACTIVATIONS:
            raise InspectorError(f"unknown activation {self.activation!r}; choose one of {', '.join(ACTIVATIONS)}")
        if not 0.0 <= self.dropout < 1.0:
            raise InspectorError(f"dropout must be in [0, 1), got {self.dropout}")
        sizes = (self.input_size, *self.hidden_sizes, self.output_size)
        if any(int(s) < 1 for s in sizes):
            raise InspectorError(f"layer sizes must be positive, got {list(sizes)}")
        if self.layer_names and len(self.layer_names) != len(sizes) - 1:
            raise InspectorError(f"layer_names must name {len(sizes) - 1} layers, got {len(self.layer_names)}")
        if self.norm_names and (not self.batch_norm or len(self.norm_names) != len(self.hidden_sizes)):
            raise InspectorError(
                f"norm_names must name {len(self.hidden_sizes) if self.batch_norm else 0} batch norms, "
                f"got {len(self.norm_names)}"
            )
        if (self.layer_names or self.norm_names) and not module_names_fit(self._ordered_names()):
            shown = printable(", ".join((*self.layer_names, *self.norm_names)))[:120]
            raise InspectorError(f"layer names {shown} can't name an MLP's modules (empty, repeated or out of order)")

    @property
    def linear_names(self) -> tuple[str, ...]:
        """The dense layers' module names: :attr:`layer_names`, or ``fc1 .. fcL``."""
        return self.layer_names or tuple(f"fc{k + 1}" for k in range(len(self.hidden_sizes) + 1))

    @property
    def batch_norm_names(self) -> tuple[str, ...]:
        """The batch norms' module names (none without ``batch_norm``): :attr:`norm_names`, or ``bn1 ..``."""
        if not self.batch_norm:
            return ()
        return self.norm_names or tuple(f"bn{k + 1}" for k in range(len(self.hidden_sizes)))

    def _ordered_names(self) -> list[str]:
        """Every named module in the order the computation runs them (each layer, then its batch norm)."""
        norms = self.batch_norm_names
        out: list[str] = []
        for k, name in enumerate(self.linear_names):
            out.append(name)
            if k < len(norms):
                out.append(norms[k])
        return out

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """``(input, hidden..., output)``: layer k maps sizes[k] to sizes[k + 1]."""
        return (self.input_size, *self.hidden_sizes, self.output_size)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["hidden_sizes"] = list(self.hidden_sizes)
        for key in ("layer_names", "norm_names"):  # written only when a file gave its own names
            if d[key]:
                d[key] = list(d[key])
            else:
                del d[key]
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
        linear, norms = self.linear_names, self.batch_norm_names
        shapes: dict[str, tuple[int, ...]] = {}
        for k in range(len(sizes) - 1):
            shapes[f"{linear[k]}.weight"] = (sizes[k + 1], sizes[k])
            shapes[f"{linear[k]}.bias"] = (sizes[k + 1],)
            if k < len(norms):
                for leaf in ("weight", "bias", "running_mean", "running_var"):
                    shapes[f"{norms[k]}.{leaf}"] = (sizes[k + 1],)
                shapes[f"{norms[k]}.num_batches_tracked"] = ()
        return shapes


class MLP(nn.Sequential):
    """A plain MLP whose modules are named ``fc1, bn1, act1, drop1, ..., fcL``, or, rebuilt from a
    foreign state dict, with the file's names for its layers and batch norms (``0, act1, 2, act2, 4``
    for an ``nn.Sequential``'s keys ``0.weight, 2.weight, 4.weight``; ``encoder.0`` in a nested one).

    ``forward(x)``: ``x`` is ``(batch, input_size)``, the result ``(batch, output_size)``: logits,
    or regression predictions in the targets' units.
    """

    def __init__(self, config: MLPConfig) -> None:
        super().__init__()
        sizes = config.layer_sizes
        linear, norms = config.linear_names, config.batch_norm_names
        named = set(config._ordered_names())  # an activation's name must not be a layer's still to come
        n_linear = len(sizes) - 1
        for k in range(n_linear):
            place_module(self, linear[k], nn.Linear(sizes[k], sizes[k + 1]))
            if k == n_linear - 1:
                break
            last = linear[k]
            if norms:
                place_module(self, norms[k], nn.BatchNorm1d(sizes[k + 1]))
                last = norms[k]
            # the activation (and dropout) go beside the module before them, named so as to clash with none
            act = free_name(self, last, f"act{k + 1}", named)
            place_module(self, act, ACTIVATIONS[config.activation]())
            if config.dropout > 0:
                place_module(self, free_name(self, last, f"drop{k + 1}", named), nn.Dropout(config.dropout))
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


def _key(prefix: str, leaf: str) -> str:
    """The state-dict key of ``leaf`` in module ``prefix`` (a bare module's keys have no prefix: ``weight``)."""
    return f"{prefix}.{leaf}" if prefix else leaf


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
    # the file's own names, where they can name the modules of one MLP (a bare nn.Linear's keys,
    # "weight" and "bias", have no module name: those layers are called fc1 .. fcL)
    ordered = [name for k, p in enumerate(linear) for name in (p, *(batch_norm[k : k + 1] if batch_norm else ()))]
    named = module_names_fit(ordered)
    config = MLPConfig(
        input_size=sizes[0],
        hidden_sizes=hidden,
        output_size=sizes[-1],
        activation=activation,
        batch_norm=bool(batch_norm),
        layer_names=tuple(linear) if named else (),
        norm_names=tuple(batch_norm) if named else (),
    )
    return InferredLayout(config, tuple(linear), tuple(batch_norm))


def mlp_from_state_dict(
    state_dict: Mapping[str, torch.Tensor], activation: str = "relu", *, source: str = "state dict"
) -> MLP:
    """Rebuild an :class:`MLP` from a foreign state dict (see :func:`infer_mlp_layout`)."""
    layout = infer_mlp_layout(state_dict, activation, source=source)
    model = build_mlp(layout.config)  # its modules carry the file's names (where they can name modules)
    linear, norms = layout.config.linear_names, layout.config.batch_norm_names
    renamed: dict[str, torch.Tensor] = {}
    for name, prefix in zip(linear, layout.linear_prefixes):
        renamed[f"{name}.weight"] = state_dict[_key(prefix, "weight")]
        renamed[f"{name}.bias"] = state_dict[_key(prefix, "bias")]
    for name, prefix in zip(norms, layout.batch_norm_prefixes):
        for leaf in _BN_SUFFIXES:
            if _key(prefix, leaf) in state_dict:
                renamed[f"{name}.{leaf}"] = state_dict[_key(prefix, leaf)]
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
            setattr(model.get_submodule(module), leaf, getattr(model.get_submodule(owner), owner_leaf))
