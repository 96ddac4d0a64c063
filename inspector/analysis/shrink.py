"""Structured removal: pruned neurons taken out of the model, so it is smaller and faster.

The neuron scope of :mod:`~inspector.analysis.pruning` *masks* a neuron: row j and bias j of its
layer are zeroed, and so is column j of each consumer (see :func:`~inspector.analysis.pruning.neuron_masks`).
:func:`shrink` turns that into a smaller model: a **new** module (a deep copy; the input is never
changed) in which each such layer keeps only its kept rows (weight and bias), each consumer only
the matching input columns, and each ``BatchNorm1d`` between them only the matching entries
(weight, bias, running mean and variance). Because the masked model multiplies whatever a removed
neuron still emits (GELU(0), sigmoid(0) = 0.5, a batch-norm shift) by a zeroed column, nothing has
to be folded into the consumer's bias: the shrunk model computes what the masked one computes (up
to the summation order of the matrix products, ~1e-7 relative in float32).

A layer is removed only where everything that reads its output is known. One forward pass on one
batch is traced with a :class:`torch.overrides.TorchFunctionMode` that sees every torch function
applied to the layer's output and to what is computed from it:

* per-feature steps pass it on: elementwise functions of that output alone (ReLU, GELU written out
  as GPT-2's ``mul``/``tanh``/``add``, dropout, casts), ``batch_norm`` of a 2-D ``(batch, features)``
  tensor by a module, and ``view``/``reshape`` that keep the last (feature) dimension;
* a dense layer (``nn.Linear`` via ``linear``, a Hugging Face ``Conv1D`` via ``addmm``) taking it as
  its input is a consumer; the consumers must be the pruning plan's
  (:func:`~inspector.analysis.pruning.neuron_plan`) and must read nothing else;
* a gated unit's product (Llama's ``silu(gate_proj(x)) * up_proj(x)``) of the layer's activation output
  with its partner's output (:attr:`~inspector.analysis.pruning.NeuronPlan.partners`) passes it on, and
  the partner loses the same rows, provided nothing else reads the partner's output;
* anything else (a residual ``add`` with another tensor, ``layer_norm``, which mixes features, an
  attention ``matmul``, a model output) keeps the layer masked, and :attr:`Shrunk.kept_masked`
  says why in one line (``"encoder.x: its output feeds layer_norm; kept masked"``).

A layer or consumer whose weight or bias another module also holds (tied) stays masked too. Only
dense layers' rows are removed; a convolution's channels are out of scope (a CNN's dense head is
shrunk, its convolutions are left as they are). Structured removal of this kind is what
Li et al. 2017 ("Pruning Filters for Efficient ConvNets") and Torch-Pruning's dependency graph
(Fang et al. 2023, "DepGraph") do for channels.
"""

from __future__ import annotations

import copy
import weakref
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from inspector.analysis.guard import inspecting
from inspector.analysis.inputs import Batch, as_source
from inspector.analysis.parameters import linear_layers
from inspector.analysis.pruning import (
    PRODUCTS,
    NeuronPlan,
    apply_masks,
    check_sparsity,
    dead_keep,
    finetune_data,
    finetune_masked,
    gated_partners,
    neuron_keep,
    neuron_masks,
    neuron_plan,
)
from inspector.analysis.sites import Site
from inspector.analysis.task import Task
from inspector.core.batches import model_device
from inspector.core.dense import dense_bias, dense_weight, is_conv1d, out_features
from inspector.core.evaluator import nested_tensors
from inspector.errors import InspectorError

# Torch functions that compute feature j of their output from feature j of their inputs alone.
ELEMENTWISE = frozenset(
    {
        "relu", "relu6", "gelu", "silu", "sigmoid", "tanh", "elu", "selu", "celu", "leaky_relu", "softplus",
        "mish", "hardtanh", "hardswish", "hardsigmoid", "threshold", "erf", "exp", "log", "sqrt", "rsqrt",
        "abs", "neg", "pow", "square", "mul", "add", "sub", "rsub", "div", "true_divide", "clamp", "clip",
        "dropout", "alpha_dropout", "feature_alpha_dropout", "dropout1d", "dropout2d", "dropout3d",
        "contiguous", "clone", "float", "double", "half", "bfloat16", "to", "detach",
        "__mul__", "__rmul__", "__add__", "__radd__", "__sub__", "__rsub__", "__truediv__", "__rtruediv__",
        "__pow__", "__neg__",
    }
)  # fmt: skip
# Functions that read only a tensor's shape or type, never its values.
METADATA = frozenset(
    {"size", "dim", "numel", "nelement", "ndimension", "__get__", "__len__", "is_floating_point", "is_complex",
     "is_contiguous", "stride", "element_size", "get_device"}
)  # fmt: skip
RESHAPES = frozenset({"view", "reshape", "flatten"})


@dataclass(frozen=True)
class Shrunk:
    """The result of :func:`shrink_model`.

    ``model``: the new, smaller module. ``widths``: ``{layer: (neurons before, neurons after)}`` for
    every layer whose pruned neurons were removed. ``kept_masked``: ``{layer: why}`` for every layer
    whose pruned neurons stay in place, zeroed (masked), because not every reader of its output is
    known. ``weight_masks`` / ``bias_masks``: per dense layer of ``model`` (registration order) the
    keep-masks, ``(out, in)`` and ``(out,)``, that make ``model`` the masked model: all ones in what
    was removed; fine-tuning re-applies them after each step so kept-masked neurons stay zero.
    """

    model: nn.Module
    widths: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    kept_masked: Mapping[str, str] = field(default_factory=dict)
    weight_masks: tuple[torch.Tensor, ...] = ()
    bias_masks: tuple[torch.Tensor, ...] = ()

    def notes(self) -> list[str]:
        """One line per kept-masked layer: ``"LAYER: why; kept masked"``."""
        return [f"{layer}: {why}; kept masked" for layer, why in self.kept_masked.items()]


# --------------------------------------------------------------------------- who reads a layer's output


def _name(func: Any) -> str:
    name = str(getattr(func, "__name__", func))
    return name[:-1] if name.endswith("_") and not name.endswith("__") else name  # relu_ is relu, in place


class _Readers(TorchFunctionMode):
    """Every torch function applied to the outputs of ``layers`` (and to what is computed from them
    feature by feature) during one forward pass: the dense consumers, the batch-norm modules on the
    way, and the first step that is neither (the reason a layer cannot be shrunk)."""

    def __init__(self, model: nn.Module, layers: set[str], partners: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.layers = layers
        self.partner_of = dict(partners or {})  # {partner: the layer whose gated product it is the other factor of}
        self.joined: dict[str, str] = {}  # {partner: the layer it was seen multiplying}
        modules = dict(model.named_modules())
        self.dense_by_weight = {id(m.weight): name for name, m in linear_layers(model)}
        self.norm_by_tensor = {
            id(t): name
            for name, m in modules.items()
            if isinstance(m, (nn.BatchNorm1d, nn.SyncBatchNorm))
            for t in (m.weight, m.bias, m.running_mean, m.running_var)
            if t is not None
        }
        self._origin: dict[int, tuple[weakref.ref[torch.Tensor], str]] = {}
        self.consumers: dict[str, list[str]] = {layer: [] for layer in (*layers, *self.partner_of)}
        self.norms: dict[str, list[str]] = {layer: [] for layer in (*layers, *self.partner_of)}
        self.blocked: dict[str, str] = {}
        self.inputs: dict[str, set[str | None]] = {}  # dense module -> origins of its inputs

    def origin(self, tensor: Any) -> str | None:
        if not isinstance(tensor, torch.Tensor):
            return None
        entry = self._origin.get(id(tensor))
        return entry[1] if entry is not None and entry[0]() is tensor else None

    def mark(self, tensor: Any, layer: str) -> None:
        if isinstance(tensor, torch.Tensor):
            self._origin[id(tensor)] = (weakref.ref(tensor), layer)

    def block(self, layer: str, why: str) -> None:
        self.blocked.setdefault(layer, why)

    def produced(self, name: str) -> Any:
        def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            self.mark(output, name)

        return hook

    def reads(self, name: str) -> Any:
        def hook(module: nn.Module, inputs: tuple[Any, ...]) -> None:
            self.inputs.setdefault(name, set()).add(self.origin(inputs[0]) if inputs else None)

        return hook

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        given = list(nested_tensors(list(args))) + list(nested_tensors(list(kwargs.values())))
        origins = {o for t in given if (o := self.origin(t)) is not None}
        if not origins:
            return out
        name = _name(func)
        if self._gated(name, origins, given, out):
            return out
        if len(origins) > 1:
            for layer in origins:
                self.block(layer, f"its output meets {', '.join(sorted(origins - {layer}))}'s in {name}")
            return out
        (layer,) = origins
        self._follow(layer, name, args, given, out)
        return out

    def _gated(self, name: str, origins: set[str], given: list[torch.Tensor], out: Any) -> bool:
        """Whether this call is a gated unit's product (a layer's output times its partner's, the same shape):
        then its result is followed as the layer's."""
        pair = [o for o in origins if o in self.partner_of]
        if name not in PRODUCTS or len(origins) != 2 or len(pair) != 1 or len(given) != 2:
            return False
        partner = pair[0]
        layer = self.partner_of[partner]
        if origins != {layer, partner} or not isinstance(out, torch.Tensor) or any(t.shape != out.shape for t in given):
            return False
        self.joined.setdefault(partner, layer)
        self.mark(out, layer)
        return True

    def _follow(self, layer: str, name: str, args: Any, given: list[torch.Tensor], out: Any) -> None:
        if name in METADATA and not isinstance(out, torch.Tensor):
            return
        first = args[0] if args else None
        if name == "linear" and self.origin(first) == layer and len(args) > 1 and id(args[1]) in self.dense_by_weight:
            self._consumed(layer, self.dense_by_weight[id(args[1])])
            return
        if name == "addmm" and len(args) > 2 and self.origin(args[1]) == layer and id(args[2]) in self.dense_by_weight:
            self._consumed(layer, self.dense_by_weight[id(args[2])])  # a Conv1D: addmm(bias, x, weight)
            return
        if not isinstance(out, torch.Tensor):
            self.block(layer, f"its output feeds {name}")
        elif name in ELEMENTWISE:
            ours = [self.origin(t) is not None for t in given]
            if any(t.numel() != 1 for t, own in zip(given, ours) if not own) or any(
                t.shape != out.shape for t, own in zip(given, ours) if own
            ):
                self.block(layer, f"its output feeds {name} with another tensor")
            else:
                self.mark(out, layer)
        elif not isinstance(first, torch.Tensor) or self.origin(first) != layer:
            self.block(layer, f"its output feeds {name}")
        elif name == "batch_norm":
            norm = {self.norm_by_tensor.get(id(t)) for t in given[1:]}
            if first.dim() != 2 or (None in norm and len(given) > 1) or len(norm) > 1:
                self.block(layer, "its output feeds a batch_norm that is not a BatchNorm1d over its features")
                return
            if norm and (module := next(iter(norm))) is not None and module not in self.norms[layer]:
                self.norms[layer].append(module)
            self.mark(out, layer)
        elif name in RESHAPES:
            if out.dim() == 0 or first.shape[-1] != out.shape[-1]:
                self.block(layer, f"its output feeds a {name} that moves its features")
            else:
                self.mark(out, layer)
        else:
            why = " (which mixes features)" if name in ("layer_norm", "group_norm", "softmax") else ""
            self.block(layer, f"its output feeds {name}{why}")

    def _consumed(self, layer: str, consumer: str) -> None:
        if consumer not in self.consumers[layer]:
            self.consumers[layer].append(consumer)


def _trace(model: nn.Module, batch: Batch, layers: set[str], partners: Mapping[str, str] | None = None) -> _Readers:
    """One forward pass of ``model`` on ``batch``, every reader of ``layers``' outputs (and of their
    ``partners``' outputs, ``{partner: layer}``) recorded."""
    readers = _Readers(model, layers, partners)
    with inspecting(model) as guard:
        for name, module in linear_layers(model):
            guard.hook(module.register_forward_pre_hook(readers.reads(name)))
            if name in layers or name in readers.partner_of:
                guard.hook(module.register_forward_hook(readers.produced(name)))
        with torch.no_grad(), readers:
            output = batch.call(model)
        for t in nested_tensors(output):
            if (layer := readers.origin(t)) is not None:
                readers.block(layer, "its output is a model output")
    return readers


# --------------------------------------------------------------------------- what is removed


def _check_keep(model: nn.Module, keep: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    modules = dict(linear_layers(model))
    out = {}
    for name, mask in keep.items():
        layer = modules.get(name)
        if layer is None:
            raise InspectorError(f"keep names {name!r}, which is not a dense layer of the model")
        kv = torch.as_tensor(np.asarray(mask.cpu() if isinstance(mask, torch.Tensor) else mask, dtype=bool))
        if kv.shape != (out_features(layer),):
            raise InspectorError(
                f"keep[{name!r}] has shape {tuple(kv.shape)}; {name} has {out_features(layer)} neurons"
            )
        out[name] = kv.to(dense_weight(layer).device)
    return out


def zeroed_neurons(model: nn.Module, plan: NeuronPlan) -> dict[str, torch.Tensor]:
    """``{hidden layer: (m,) keep}`` read off a masked model (what ``prune(..., "neuron")`` returns):
    a neuron is removed when its row, its bias and its column in every consumer are exactly zero. A layer
    with no known consumer is listed only when some of its rows and biases are zero (the neuron scope
    pruned it by its rows alone): :func:`shrink_model` then says it stays masked, and why."""
    modules = dict(linear_layers(model))
    keep = {}
    for layer in plan.hidden:
        consumers = plan.consumers.get(layer, ())
        module = modules[layer]
        zero = (dense_weight(module).detach() == 0).all(dim=1)
        bias = dense_bias(module)
        if bias is not None:
            zero &= bias.detach() == 0
        if not consumers and not bool(zero.any()):
            continue
        for consumer in consumers:
            zero &= (dense_weight(modules[consumer]).detach() == 0).all(dim=0)
        keep[layer] = ~zero
    return keep


def _owners(model: nn.Module) -> Counter[int]:
    return Counter(id(p) for m in model.modules() for p in m.parameters(recurse=False))


def _removable(
    model: nn.Module,
    keep: Mapping[str, torch.Tensor],
    plan: NeuronPlan,
    readers: _Readers,
    gated: Mapping[str, list[str]],
) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    """``({layer: its batch-norm modules}, {layer: why it stays masked})`` for the layers ``keep`` prunes;
    ``gated``: each layer's partners (:func:`~inspector.analysis.pruning.gated_partners`)."""
    modules = dict(linear_layers(model))
    owners = _owners(model)
    norm_use = Counter(n for layer in keep for n in readers.norms.get(layer, ()))

    def tied(name: str) -> bool:
        module = modules[name]
        return any(owners[id(t)] > 1 for t in (module.weight, dense_bias(module)) if t is not None)

    removable: dict[str, tuple[str, ...]] = {}
    masked: dict[str, str] = {}
    for layer, kv in keep.items():
        if bool(kv.all()):
            continue
        consumers = plan.consumers.get(layer, ())
        seen = readers.consumers.get(layer, [])
        if layer not in plan.hidden:
            masked[layer] = "not a hidden layer (no activation follows it, or it is a model output)"
        elif layer in readers.blocked:
            masked[layer] = readers.blocked[layer]
        elif not consumers:
            masked[layer] = "no consumer of its output is known for certain"
        elif tied(layer) or any(tied(c) for c in consumers):  # before the readers: a tied weight names one of them
            masked[layer] = "its weights or its consumer's are shared with another module"
        elif set(seen) != set(consumers):
            masked[layer] = (
                f"its output is read by {', '.join(seen) or 'no dense layer'}, not only by {', '.join(consumers)}"
            )
        elif not bool(kv.any()):
            masked[layer] = "every neuron is pruned (a layer of width 0 is not built)"
        elif any(readers.inputs.get(c, set()) != {layer} for c in consumers):
            masked[layer] = "a consumer of its output also reads another input"
        elif any(norm_use[n] > 1 for n in readers.norms[layer]):
            masked[layer] = "its batch norm also normalises another layer"
        elif (why := _partner_problem(layer, gated.get(layer, []), readers, tied)) is not None:
            masked[layer] = why
        else:
            removable[layer] = tuple(readers.norms[layer])
    return removable, masked


def _partner_problem(layer: str, partners: list[str], readers: _Readers, tied: Any) -> str | None:
    """Why ``layer``'s gated partners cannot lose its removed rows, or ``None`` when they can."""
    for partner in partners:
        if readers.joined.get(partner) != layer:
            return f"its partner {partner} was not seen multiplying its output"
        if partner in readers.blocked:
            return f"its partner {partner}: {readers.blocked[partner]}"
        if readers.consumers.get(partner) or readers.norms.get(partner):
            return f"its partner {partner}'s output is also read by {', '.join(readers.consumers[partner]) or 'a norm'}"
        if tied(partner):
            return f"its partner {partner}'s weights are shared with another module"
    return None


# --------------------------------------------------------------------------- cutting


def _parameter(like: torch.Tensor, value: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(value.detach().clone().contiguous(), requires_grad=like.requires_grad)


def _cut_dense(module: nn.Module, rows: torch.Tensor | None, cols: torch.Tensor | None) -> None:
    """Keep rows ``rows`` (neurons) and columns ``cols`` (inputs) of a dense layer, in place."""
    conv = is_conv1d(module)  # asked before the weight changes shape (it compares nf with the weight)
    weight = dense_weight(module).detach()  # (out, in)
    if rows is not None:
        weight = weight[rows]
    if cols is not None:
        weight = weight[:, cols]
    stored = module.weight
    assert isinstance(stored, torch.Tensor)
    module.weight = _parameter(stored, weight.t() if conv else weight)
    bias = dense_bias(module)
    if bias is not None and rows is not None:
        module.bias = _parameter(bias, bias.detach()[rows])
    m, n = weight.shape
    for attribute, value in (("nf", m), ("nx", n)) if conv else (("out_features", m), ("in_features", n)):
        setattr(module, attribute, value)


def _cut_norm(module: nn.Module, rows: torch.Tensor) -> None:
    assert isinstance(module, nn.modules.batchnorm._NormBase)
    if module.weight is not None:
        module.weight = _parameter(module.weight, module.weight.detach()[rows])
    if module.bias is not None:
        module.bias = _parameter(module.bias, module.bias.detach()[rows])
    for buffer in ("running_mean", "running_var"):
        value = getattr(module, buffer)
        if value is not None:
            setattr(module, buffer, value[rows].clone())
    module.num_features = int(rows.numel())


def _cut_mask(mask: torch.Tensor, rows: torch.Tensor | None, cols: torch.Tensor | None) -> torch.Tensor:
    if rows is not None:
        mask = mask[rows]
    if cols is not None and mask.dim() == 2:
        mask = mask[:, cols]
    return mask.clone()


def _first_batch(model: nn.Module, data: Any) -> Batch:
    if data is None:
        raise InspectorError("shrink needs data: one batch of the model's inputs, to see what reads each layer")
    if isinstance(data, Batch):
        return data
    return as_source(data, device=model_device(model)).first()


def shrink_model(
    model: nn.Module,
    keep: Mapping[str, Any] | None = None,
    data: Any = None,
    *,
    dead: Mapping[str, np.ndarray] | None = None,
    plan: NeuronPlan | None = None,
    sites: tuple[Site, ...] | None = None,
) -> Shrunk:
    """A smaller **copy** of ``model`` with the neurons ``keep`` drops removed, and what was done.

    Args:
        model: any module with dense layers; never modified.
        keep: ``{layer path: (m,) bool}``, True for the neurons that stay (one level of
            :func:`~inspector.analysis.pruning.neuron_keep`). ``None``: the neurons ``model`` already
            has zeroed (row, bias and every consumer column exactly 0, as ``prune(..., "neuron")`` leaves).
        data: anything :func:`~inspector.analysis.inputs.as_source` accepts (or a ``Batch``); its first
            batch is run once to see what reads each layer.
        dead: ``{layer path: (m,) bool}``, a census's dead neurons, removed (instead of ``keep``).
        plan: the neuron scope's hidden layers and consumers (``None``: :func:`neuron_plan` on the batch).
        sites: the discovered sites, passed to :func:`neuron_plan`.

    The new model computes what the masked model (``model`` with
    :func:`~inspector.analysis.pruning.neuron_masks` applied) computes.
    """
    batch = _first_batch(model, data)
    plan = neuron_plan(model, batch, sites) if plan is None else plan
    if dead is not None:
        keep = dead_keep(model, dead)
    keep = zeroed_neurons(model, plan) if keep is None else _check_keep(model, keep)
    pruned = {layer for layer, kv in keep.items() if not bool(kv.all())}
    gated = gated_partners(model, plan)
    partners = {p: layer for layer in pruned for p in gated.get(layer, [])}
    readers = _trace(model, batch, pruned, partners)
    removable, masked = _removable(model, keep, plan, readers, gated)
    w_masks, b_masks = neuron_masks(model, keep, plan)

    new = copy.deepcopy(model)
    apply_masks(new, w_masks, b_masks)  # the masked model, everywhere
    names = [name for name, _ in linear_layers(new)]
    modules = dict(new.named_modules())
    rows: dict[str, torch.Tensor] = {}
    cols: dict[str, torch.Tensor] = {}
    widths = {}
    for layer, norms in removable.items():
        kept = torch.nonzero(keep[layer]).flatten()
        rows[layer] = kept
        for partner in gated.get(layer, []):
            rows[partner] = kept
        for consumer in plan.consumers[layer]:
            cols[consumer] = kept
        for norm in norms:
            _cut_norm(modules[norm], kept)
        widths[layer] = (int(keep[layer].numel()), int(kept.numel()))
    for name in set(rows) | set(cols):
        _cut_dense(modules[name], rows.get(name), cols.get(name))
    cut_w = tuple(_cut_mask(m, rows.get(n), cols.get(n)) for n, m in zip(names, w_masks))
    cut_b = tuple(_cut_mask(m, rows.get(n), None) for n, m in zip(names, b_masks))
    return Shrunk(new, widths, masked, cut_w, cut_b)


def shrink(
    model: nn.Module,
    keep: Mapping[str, Any] | None = None,
    data: Any = None,
    *,
    dead: Mapping[str, np.ndarray] | None = None,
    sites: tuple[Site, ...] | None = None,
) -> nn.Module:
    """A smaller **copy** of ``model``: the pruned neurons' rows, their consumers' columns and their
    batch-norm entries removed where every reader of the layer is known (else left masked).

    ``shrink(prune(model, 0.5, "neuron", data=X), data=X)`` or ``shrink(model, keep, X)``; see
    :func:`shrink_model` for the arguments and for why a layer stays masked.
    """
    return shrink_model(model, keep, data, dead=dead, sites=sites).model


def shrink_and_finetune(
    model: nn.Module,
    sparsity: float,
    data: Any,
    labels: Any = None,
    epochs: int = 1,
    lr: float = 1e-3,
    seed: int = 0,
    *,
    task: Task | str | None = None,
    sites: tuple[Site, ...] | None = None,
) -> Shrunk:
    """Neuron-scope pruning at ``sparsity``, the pruned neurons removed (:func:`shrink_model`), then
    ``epochs`` of fine-tuning of the smaller model on ``data`` (with ``labels``) with the task's loss;
    what stays masked stays zero. ``epochs=0``: no fine-tuning."""
    check_sparsity(sparsity)
    if epochs > 0:
        source, resolved = finetune_data(model, data, labels, task)
        first = source.first()
    else:
        first = _first_batch(model, data if labels is None else (data, labels))
    plan = neuron_plan(model, first, sites)
    (keep,) = neuron_keep(model, plan, (sparsity,))
    shrunk = shrink_model(model, keep, first, plan=plan)
    if epochs > 0:
        finetune_masked(
            shrunk.model, list(shrunk.weight_masks), list(shrunk.bias_masks), source, resolved, epochs, lr, seed
        )
    return shrunk


def model_size(model: nn.Module) -> tuple[int, int]:
    """``(parameters, bytes)`` of ``model``: every distinct parameter once; bytes of parameters and buffers."""
    params = {id(p): p for p in model.parameters()}
    buffers = {id(b): b for b in model.buffers()}
    n_bytes = sum(t.numel() * t.element_size() for t in (*params.values(), *buffers.values()))
    return sum(p.numel() for p in params.values()), int(n_bytes)


__all__ = ["Shrunk", "model_size", "shrink", "shrink_and_finetune", "shrink_model", "zeroed_neurons"]
