"""Magnitude-pruning sweeps: the task's metric and loss against sparsity, for any model.

Scopes:

* ``global``: one magnitude ranking over the weights of every dense layer
  (``nn.Linear`` or Hugging Face ``Conv1D``) (Han et al. 2015); at sparsity s exactly ``floor(s * N)`` weights, the
  smallest by |w|, are zeroed;
* ``layer``: the same inside each layer, so every layer loses the same fraction;
* ``neuron``: structured pruning of hidden neurons by their incoming L2 norm,
  weakest first, a fraction s of each hidden layer: a removed neuron's row of
  weights and its bias are zeroed, and so is its column in the layer that
  consumes it, where that consumer is known for certain (see :class:`NeuronPlan`).
  A gated unit's neuron (SwiGLU, GeGLU: Llama's ``down_proj(silu(gate_proj(x)) * up_proj(x))``) is
  one neuron of both factors: its rows in the gate and in its partner (``up_proj``) go together,
  ranked by the norm of both rows, and so does its column in the consumer (``down_proj``).
  :func:`inspector.analysis.shrink.shrink` then takes those neurons out (a smaller model).

A *hidden layer* is a site (:mod:`~inspector.analysis.sites`) with a known
activation whose output is not a model output. Its *consumer* is a linear layer
whose input is exactly that activation's output tensor, seen by tensor identity
in one observed forward pass (through dropout, identity and batch-norm modules,
which act per neuron, and dtype casts), or in the model's ``torch.fx`` graph for functional
activations. A layer of the same width that merely comes next (a transformer's
query then key) is no consumer: its columns are never touched. Its *partner* is a
dense layer whose own output multiplies that activation output element by element
(the same shape) on the way to the consumer: the linear half of a gated unit
(Shazeer 2020, "GLU Variants Improve Transformer").

Each scope's ranking is computed once (one sort per scope), not once per level,
always on the caller's original weights, and every level is evaluated on a copy
that starts from those weights: the caller's model is never modified, and no
level or scope sees what an earlier one pruned or fine-tuned. A weight tensor
shared by several linear layers (tied) is ranked, pruned and counted once.

Every mask is made on the ``(out, in)`` weight: a ``Conv1D`` (GPT-2) stores its
weight ``(in, out)``, so its masks are made on the transposed view
(:func:`~inspector.core.dense.dense_weight`) and written through it; row j is
neuron j and column i input i for every dense layer alike.

A linear layer's tensor that a module other than ``nn.Linear`` also holds (an LM
head tied to its ``nn.Embedding``) is not a dense weight of this model: an embedding
table is a lookup, and pruning it as a matrix would remove token vectors. Such a
tensor is left out of every ranking and mask, stays intact at every level of every
scope, and is counted neither in ``PruningReport.total_parameters`` nor in
``parameters_left``, so the two count the same tensors. In the neuron scope a hidden
layer whose weight or bias is so shared is not pruned, and a consumer whose weight
is so shared keeps its columns (as where no consumer is known).

Evaluation streams over the data batch by batch with the task's
:class:`~inspector.analysis.task.Scores`: accuracy and cross-entropy for
classification, R² and MSE for regression, the user's metric (or the mean
target) for a custom task. Fine-tuning uses the task's loss.
"""

from __future__ import annotations

import copy
import math
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
from inspector.analysis.inputs import Batch, DataSource, as_source
from inspector.analysis.parameters import linear_layers
from inspector.analysis.sites import (
    FUNCTION_KINDS,
    KINDS,
    METHOD_KINDS,
    Site,
    SiteObserver,
    activation_kind,
    discover_sites,
)
from inspector.analysis.task import Task, make_task
from inspector.analysis.uses import NEUTRAL, PRODUCTS
from inspector.core.dense import dense_bias, dense_weight, in_features, is_dense, out_features, weight_parameter
from inspector.core.evaluator import (
    evaluate_task,
    label_classes,
    nested_tensors,
    output_tensor,
    per_sample,
    regression_output,
)
from inspector.errors import InspectorError
from inspector.results import result

DEFAULT_SPARSITIES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
SCOPES = ("global", "layer", "neuron")
FINETUNE_BATCH = 64
# Modules after an activation that keep neuron j in channel j (so a consumer's column j is still neuron j).
PER_NEURON: tuple[type[nn.Module], ...] = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
    nn.Identity,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
)
# Casts that keep feature j in feature j (T5 casts its gated product to the dtype of ``wo``, kept in float32).
CASTS = frozenset({"to", "type", "type_as", "float", "double", "half", "bfloat16", "contiguous"})


@result
class PruningCurve:
    """One scope's sweep: per sparsity level, the evaluation metric, loss and parameters left.

    ``metric``/``loss`` are the report's ``metric_name``/``loss_name`` (NaN where the task has no
    loss). ``parameters_left`` counts nonzero linear weights plus the biases of neurons that
    remain (see :func:`parameters_left`); ``PruningReport.total_parameters`` is the same count
    for the unpruned model (see :func:`prunable_parameters`: its linear layers' weights and
    biases, a shared tensor once, a tensor shared with a non-linear module such as a tied
    embedding not at all).
    ``finetuned_metric`` is filled when fine-tuning was asked for.
    """

    scope: str
    sparsity: np.ndarray
    metric: np.ndarray
    loss: np.ndarray
    parameters_left: np.ndarray
    finetuned_metric: np.ndarray | None = None


@result
class PruningReport:
    """Every scope's curve and the unpruned model's numbers.

    ``metric_name``: ``"accuracy"``, ``"R²"``, a user metric's name or ``"mean target"``;
    ``loss_name``: ``"cross-entropy"``, ``"MSE"`` or ``None`` (a custom task has no loss).
    ``dead_removed_metric``: the metric with the census's dead neurons removed.
    """

    curves: tuple[PruningCurve, ...]
    baseline_metric: float
    baseline_loss: float
    total_parameters: int
    n_samples: int
    dead_removed_metric: float | None = None
    dead_removed_count: int = 0
    metric_name: str = "accuracy"
    loss_name: str | None = "cross-entropy"

    def curve(self, scope: str) -> PruningCurve:
        for c in self.curves:
            if c.scope == scope:
                return c
        raise KeyError(f"no pruning curve for scope {scope!r}")


# --------------------------------------------------------------------------- which layers, which neurons


@dataclass(frozen=True)
class NeuronPlan:
    """What the neuron scope may prune.

    ``hidden``: the module paths of the hidden layers, in registration order.
    ``consumers``: ``{hidden layer: linear layers whose input is its activation output}``;
    a layer with no entry has no consumer known for certain, so only its rows are zeroed.
    ``partners``: ``{hidden layer: dense layers whose output multiplies its activation output element
    by element}`` (a gated unit's linear half: Llama's ``up_proj`` for ``gate_proj``): neuron j of the
    hidden layer is neuron j of each partner too, and goes with it.
    """

    hidden: tuple[str, ...] = ()
    consumers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    partners: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def _weights(model: nn.Module) -> list[nn.Module]:
    return [layer for _, layer in linear_layers(model)]


def shared_outside(model: nn.Module) -> set[int]:
    """The ``id`` of every linear layer's weight or bias that a module other than ``nn.Linear`` also holds.

    Such a tensor (an LM head's weight tied to an ``nn.Embedding`` table) is never ranked,
    masked or counted by pruning: it stays intact at every level.
    """
    linear = {id(t) for layer in _weights(model) for t in (layer.weight, layer.bias) if t is not None}
    return {
        id(p)
        for module in model.modules()
        if not is_dense(module)
        for p in module.parameters(recurse=False)
        if id(p) in linear
    }


def _frozen(layer: nn.Module, shared: set[int]) -> bool:
    """Whether the neuron scope must leave ``layer``'s rows alone (its weight or bias is held elsewhere)."""
    return id(layer.weight) in shared or (layer.bias is not None and id(layer.bias) in shared)


class _ConsumerObserver:
    """One observed forward pass: which linear layer takes each site's activation output as its input,
    and which dense layer's output multiplies it first (its partner in a gated unit).

    The activation outputs come from :class:`SiteObserver` (module sites: the very tensor the
    activation module returned); they are followed through :data:`PER_NEURON` modules and through
    a product (:data:`PRODUCTS`, seen by a :class:`~torch.overrides.TorchFunctionMode`) with a dense
    layer's own output of the same shape, and matched by identity (``id`` plus a weak reference, so
    a recycled id never matches) with each linear layer's input.
    """

    def __init__(self, model: nn.Module, sites: tuple[Site, ...]) -> None:
        self.model = model
        self.sites = sites
        self._produced: dict[int, tuple[weakref.ref[torch.Tensor], str]] = {}
        # each dense layer's own output: [weak reference, layer, torch calls that read it]
        self._dense: dict[int, list[Any]] = {}
        self._calls: dict[str, list[list[Any]]] = {}  # {dense layer: the entry of each of its outputs}
        self._paired: list[tuple[str, list[Any]]] = []  # (hidden layer, its partner's output entry)
        self.consumers: dict[str, list[str]] = {}
        self.partners: dict[str, list[str]] = {}
        self.outputs: set[str] = set()

    def _mark(self, tensor: Any, layer: str) -> None:
        if isinstance(tensor, torch.Tensor):
            self._produced[id(tensor)] = (weakref.ref(tensor), layer)

    def _source(self, tensor: Any) -> str | None:
        if not isinstance(tensor, torch.Tensor):
            return None
        entry = self._produced.get(id(tensor))
        return entry[1] if entry is not None and entry[0]() is tensor else None

    def run(self, batch: Batch) -> _ConsumerObserver:
        with inspecting(self.model) as guard:
            observer = SiteObserver(self.model, self.sites, lambda layer, pre, out: self._mark(out, layer), guard)
            for name, module in self.model.named_modules():
                if is_dense(module):
                    guard.hook(module.register_forward_pre_hook(self._consume(name, module)))
                    guard.hook(module.register_forward_hook(self._dense_output(name)))
                elif isinstance(module, PER_NEURON):
                    guard.hook(module.register_forward_hook(self._pass_on))
            observer.start_batch()
            with torch.no_grad(), _Products(self):
                output = batch.call(self.model)
            self.outputs = {layer for t in nested_tensors(output) if (layer := self._source(t)) is not None}
            returned = {id(t) for t in nested_tensors(output)}
        # a partner's output read by anything but the product (a residual, another layer, the model's
        # output) is no partner: removing its rows would change that reader; so is a layer called again
        # outside the product (each of its outputs must be one of this layer's products' factors)
        paired = {(layer, id(entry)) for layer, entry in self._paired}

        def only_factor(layer: str, entry: list[Any]) -> bool:
            tensor = entry[0]()
            return (
                (layer, id(entry)) in paired and entry[2] == 1 and not (tensor is not None and id(tensor) in returned)
            )

        for layer, entry in self._paired:
            if all(only_factor(layer, call) for call in self._calls[entry[1]]):
                found = self.partners.setdefault(layer, [])
                if entry[1] not in found:
                    found.append(entry[1])
        return self

    def _consume(self, name: str, module: nn.Module) -> Any:
        def hook(mod: nn.Module, inputs: tuple[Any, ...]) -> None:
            layer = self._source(inputs[0]) if inputs else None
            if layer is not None and inputs[0].shape[-1] == in_features(module):
                found = self.consumers.setdefault(layer, [])
                if name not in found:
                    found.append(name)

        return hook

    def _pass_on(self, module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        layer = self._source(inputs[0]) if inputs else None
        if layer is not None and isinstance(output, torch.Tensor) and output.shape == inputs[0].shape:
            self._mark(output, layer)

    def _dense_output(self, name: str) -> Any:
        def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            if isinstance(output, torch.Tensor):
                self._dense[id(output)] = entry = [weakref.ref(output), name, 0]
                self._calls.setdefault(name, []).append(entry)

        return hook

    def _entry(self, tensor: Any) -> list[Any] | None:
        entry = self._dense.get(id(tensor)) if isinstance(tensor, torch.Tensor) else None
        return entry if entry is not None and entry[0]() is tensor else None

    def called(self, name: str, tensors: list[torch.Tensor], out: Any) -> None:
        """A torch call ``name`` on ``tensors`` returned ``out``: each dense output among them is read once
        more; ``out = a * b`` of a site's activation output and a dense layer's own output of the same
        shape may make that layer the site's partner (when nothing else reads it: see :meth:`run`), and
        ``out`` is followed as the site's, as it is through a cast (:data:`CASTS`)."""
        for tensor in tensors:
            if (entry := self._entry(tensor)) is not None:
                entry[2] += 1
        if name in CASTS and tensors and isinstance(out, torch.Tensor) and out.shape == tensors[0].shape:
            if (layer := self._source(tensors[0])) is not None:
                self._mark(out, layer)
            return
        if name not in PRODUCTS or len(tensors) != 2 or not isinstance(out, torch.Tensor):
            return
        for gated, other in (tensors, tensors[::-1]):
            layer, entry = self._source(gated), self._entry(other)
            if (
                layer is not None
                and entry is not None
                and entry[1] != layer
                and gated.shape == other.shape == out.shape
            ):
                self._paired.append((layer, entry))
                if out is other:  # up.mul_(act): that tensor is the product now, whose readers are the layer's
                    del self._dense[id(other)]
                self._mark(out, layer)
                return


class _Products(TorchFunctionMode):
    """Within ``with``: every torch call and the tensors it reads, shown to ``watch``
    (:meth:`_ConsumerObserver.called`); never raises into the model."""

    def __init__(self, watch: _ConsumerObserver) -> None:
        super().__init__()
        self.watch = watch

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = str(getattr(func, "__name__", ""))
        if name not in NEUTRAL:
            try:
                self.watch.called(name, [*nested_tensors(list(args)), *nested_tensors(list(kwargs.values()))], out)
            except Exception:  # noqa: BLE001 - watching must never break the user's forward pass
                pass
        return out


def _traced_consumers(
    model: nn.Module, layers: set[str]
) -> tuple[dict[str, tuple[str, ...]], set[str], dict[str, tuple[str, ...]]] | None:
    """From the ``torch.fx`` graph: ``({layer: consumers}, {layers whose activation output is a model output},
    {layer: partners})`` for the ``layers`` whose output reaches a recognised activation (through per-neuron
    modules); the activation output is followed through per-neuron modules and through a product with a
    dense layer's own output (that layer: a partner). ``None`` when the model does not trace."""
    import operator

    import torch.fx

    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception:  # noqa: BLE001 - a model that does not trace has no graph to read
        return None
    modules = dict(model.named_modules())
    # Before the activation a normalisation may sit between layer and activation (as sites allow).
    before = (*PER_NEURON, nn.LayerNorm)

    def passes(node: torch.fx.Node, kinds: tuple[type[nn.Module], ...]) -> bool:
        if node.op == "call_module":
            return isinstance(modules.get(str(node.target)), kinds)
        return node.op == "call_function" and node.target is nn.functional.dropout

    def is_activation(node: torch.fx.Node) -> bool:
        if node.op == "call_function":
            return node.target in FUNCTION_KINDS
        if node.op == "call_method":
            return node.target in METHOD_KINDS
        return node.op == "call_module" and activation_kind(modules[str(node.target)]) is not None

    def partner(node: torch.fx.Node, factor: torch.fx.Node) -> torch.fx.Node | None:
        """The call of a dense layer whose output ``node`` multiplies ``factor`` by, if it is such a product."""
        product = (node.op == "call_function" and node.target in (operator.mul, torch.mul)) or (
            node.op == "call_method" and node.target in ("mul", "mul_")
        )
        if not product or node.kwargs or len(node.args) != 2 or factor not in node.args:
            return None
        other = node.args[1] if node.args[0] is factor else node.args[0]
        if isinstance(other, torch.fx.Node) and other.op == "call_module" and len(other.users) == 1:
            if is_dense(modules.get(str(other.target), nn.Identity())) and str(other.target) in modules:
                return other
        return None

    consumers: dict[str, tuple[str, ...]] = {}
    outputs: set[str] = set()
    partners: dict[str, tuple[str, ...]] = {}
    factors: dict[str, set[torch.fx.Node]] = {}  # {layer: the partners' calls seen multiplying its activation}
    for node in graph.nodes:
        if node.op != "call_module" or str(node.target) not in layers:
            continue
        current = node
        while len(current.users) == 1 and passes(next(iter(current.users)), before):
            current = next(iter(current.users))
        users = list(current.users)
        if len(users) != 1 or not is_activation(users[0]):
            continue
        found = list(consumers.get(str(node.target), ()))  # a layer called twice: both calls' consumers
        paired = list(partners.get(str(node.target), ()))
        frontier = [users[0]]
        while frontier:
            current = frontier.pop()
            for user in current.users:
                if user.op == "output":
                    outputs.add(str(node.target))
                elif user.op == "call_module" and is_dense(modules.get(str(user.target), nn.Identity())):
                    if str(user.target) not in found:
                        found.append(str(user.target))
                elif passes(user, PER_NEURON):
                    frontier.append(user)
                elif (other := partner(user, current)) is not None and str(other.target) != str(node.target):
                    factors.setdefault(str(node.target), set()).add(other)
                    if str(other.target) not in paired:
                        paired.append(str(other.target))
                    frontier.append(user)
        consumers[str(node.target)] = tuple(found)
        if paired:
            partners[str(node.target)] = tuple(paired)
    # a partner called again outside the product (each of its calls must be one of this layer's factors)
    calls: dict[str, list[torch.fx.Node]] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls.setdefault(str(node.target), []).append(node)
    only_factors = {
        layer: tuple(p for p in found if all(call in factors[layer] for call in calls[p]))
        for layer, found in partners.items()
    }
    return consumers, outputs, {layer: found for layer, found in only_factors.items() if found}


def neuron_plan(model: nn.Module, batch: Batch | None = None, sites: tuple[Site, ...] | None = None) -> NeuronPlan:
    """The hidden layers of ``model`` and their consumers.

    ``batch``: one real batch for the observed forward pass (without it only the
    ``torch.fx`` graph can tell). ``sites``: the discovered sites (``None``: discover
    them from ``batch``). Where the model does not trace and the observed pass did not
    see the last registered linear layer, that layer is taken as the output layer.
    """
    if sites is None:
        sites = discover_sites(model, batch)
    candidates = tuple(s for s in sites if s.counted and s.activation in KINDS)
    if not candidates:
        return NeuronPlan()
    consumers: dict[str, tuple[str, ...]] = {}
    partners: dict[str, tuple[str, ...]] = {}
    outputs: set[str] = set()
    observed: set[str] = set()
    module_sites = tuple(s for s in candidates if s.found_by in ("module", "convention"))
    if batch is not None and module_sites:
        watch = _ConsumerObserver(model, module_sites).run(batch)
        consumers.update({layer: tuple(found) for layer, found in watch.consumers.items()})
        partners.update({layer: tuple(found) for layer, found in watch.partners.items()})
        outputs |= watch.outputs
        observed = {s.layer for s in module_sites}
    traced = _traced_consumers(model, {s.layer for s in candidates})
    if traced is not None:
        for layer, found in traced[0].items():
            if layer not in observed:
                consumers[layer] = found
        partners.update({layer: found for layer, found in traced[2].items() if layer not in observed})
        outputs |= {layer for layer in traced[1] if layer not in observed}
    elif linear_layers(model)[-1][0] not in observed:  # nothing says what the model returns: the usual layout
        outputs.add(linear_layers(model)[-1][0])
    hidden = tuple(s.layer for s in candidates if s.layer not in outputs)
    # a partner that is itself a hidden layer is pruned as its own layer; one that multiplies two hidden
    # layers' outputs is neither's (its rows are two neurons at once); one whose weight or bias another
    # module also holds (tied) would lose that module's rows too; one of another width (a broadcast
    # factor) has no neuron j: each stays whole, as without it
    shared = Counter(p for layer in hidden for p in partners.get(layer, ()))
    owners = Counter(id(t) for module in model.modules() for t in module.parameters(recurse=False))
    dense = dict(linear_layers(model))

    def own_rows(layer: str, partner: str) -> bool:
        module = dense.get(partner)
        return (
            module is not None
            and out_features(module) == out_features(dense[layer])
            and all(owners[id(t)] == 1 for t in (module.weight, module.bias) if t is not None)
        )

    paired = {
        layer: tuple(p for p in partners.get(layer, ()) if p not in hidden and shared[p] == 1 and own_rows(layer, p))
        for layer in hidden
    }
    return NeuronPlan(
        hidden,
        {layer: consumers[layer] for layer in hidden if consumers.get(layer)},
        {layer: found for layer, found in paired.items() if found},
    )


# --------------------------------------------------------------------------- masks


def _distinct_weights(model: nn.Module) -> tuple[list[torch.Tensor], list[int | None]]:
    """The distinct prunable weight tensors of ``model``'s linear layers and, per layer, the index
    of its own among them (``None`` for a weight held by a non-linear module: never pruned).

    A weight shared by several linear layers (tied) is one set of numbers: ranked once,
    masked once, counted once.
    """
    shared = shared_outside(model)
    index: dict[int, int] = {}
    distinct: list[torch.Tensor] = []
    owner: list[int | None] = []
    for layer in _weights(model):
        if id(layer.weight) in shared:
            owner.append(None)
            continue
        if id(layer.weight) not in index:
            index[id(layer.weight)] = len(distinct)
            distinct.append(dense_weight(layer))  # (out, in): masks are made in that orientation
        owner.append(index[id(layer.weight)])
    return distinct, owner


def _per_layer(model: nn.Module, pieces: list[torch.Tensor], owner: list[int | None]) -> list[torch.Tensor]:
    """One keep-mask per linear layer: its distinct weight's piece, or all ones where it is never pruned."""
    return [
        torch.ones_like(dense_weight(layer), dtype=torch.bool) if k is None else pieces[k]
        for k, layer in zip(owner, _weights(model))
    ]


def global_masks(model: nn.Module, sparsities: tuple[float, ...]) -> list[list[torch.Tensor]]:
    """Per level, a keep-mask per linear weight; exactly ``floor(s * N)`` smallest |w| are dropped."""
    distinct, owner = _distinct_weights(model)
    flat = torch.cat([w.detach().abs().reshape(-1) for w in distinct]) if distinct else torch.zeros(0)
    order = torch.argsort(flat, stable=True)  # the one sort
    sizes = [w.numel() for w in distinct]
    out = []
    for s in sparsities:
        keep = torch.ones_like(flat, dtype=torch.bool)
        keep[order[: math.floor(s * flat.numel())]] = False
        pieces = [m.view_as(w) for m, w in zip(torch.split(keep, sizes), distinct)]
        out.append(_per_layer(model, pieces, owner))
    return out


def layer_masks(model: nn.Module, sparsities: tuple[float, ...]) -> list[list[torch.Tensor]]:
    """Per level, each layer keeps all but its ``floor(s * N_layer)`` smallest weights."""
    distinct, owner = _distinct_weights(model)
    orders = [torch.argsort(w.detach().abs().reshape(-1), stable=True) for w in distinct]
    out = []
    for s in sparsities:
        pieces = []
        for w, order in zip(distinct, orders):
            keep = torch.ones(w.numel(), dtype=torch.bool, device=w.device)
            keep[order[: math.floor(s * w.numel())]] = False
            pieces.append(keep.view_as(w))
        out.append(_per_layer(model, pieces, owner))
    return out


def neuron_keep(model: nn.Module, plan: NeuronPlan, sparsities: tuple[float, ...]) -> list[dict[str, torch.Tensor]]:
    """Per level, ``{hidden layer: (m,) keep}``: drops the ``floor(s * m)`` weakest neurons by incoming norm
    (of a gated unit: of its rows in the layer and in its partners together).

    A hidden layer whose weight or bias a non-linear module also holds is left out (never pruned).
    """
    modules = dict(linear_layers(model))
    shared = shared_outside(model)
    hidden = [(name, modules[name]) for name in plan.hidden if not _frozen(modules[name], shared)]

    def incoming(name: str, layer: nn.Module) -> torch.Tensor:
        rows = [dense_weight(modules[p]).detach() for p in _partners(plan, modules, name, shared)]
        weight = dense_weight(layer).detach()
        # in float32 at least: a bf16 norm rounds to 3 significant digits, and ties would drop the stronger
        dtype = torch.promote_types(weight.dtype, torch.float32)
        return torch.linalg.vector_norm(torch.cat([weight, *rows], dim=1) if rows else weight, dim=1, dtype=dtype)

    orders = [torch.argsort(incoming(name, layer), stable=True) for name, layer in hidden]
    out = []
    for s in sparsities:
        level = {}
        for (name, layer), order in zip(hidden, orders):
            keep = torch.ones(out_features(layer), dtype=torch.bool, device=dense_weight(layer).device)
            keep[order[: math.floor(s * out_features(layer))]] = False
            level[name] = keep
        out.append(level)
    return out


def neuron_masks(
    model: nn.Module, keep: Mapping[str, torch.Tensor], plan: NeuronPlan
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Weight and bias keep-masks that remove the neurons not in ``keep`` (``{layer: (m,) bool}``).

    Removing neuron j of layer L zeroes row j and bias j of L and column j of each
    of L's consumers in ``plan``. Zeroing the outgoing column is what makes the
    removal complete: whatever the neuron still emits (a batch-norm shift, GELU(0),
    sigmoid(0) = 0.5) is multiplied by zero downstream. Where no consumer is known
    the column stays: zeroing a layer that does not read this neuron would prune
    something else. A layer whose weight or bias a non-linear module also holds (a
    tied embedding) is never touched: its neurons stay, and so do its columns.
    """
    names = [name for name, _ in linear_layers(model)]
    index = {name: k for k, name in enumerate(names)}
    layers = _weights(model)
    shared = shared_outside(model)
    by_name = dict(zip(names, layers))
    w_masks = [torch.ones_like(dense_weight(layer), dtype=torch.bool) for layer in layers]
    b_masks = [torch.ones(out_features(layer), dtype=torch.bool, device=dense_weight(layer).device) for layer in layers]
    for layer, kv in keep.items():
        k = index[layer]
        if _frozen(layers[k], shared):
            continue
        w_masks[k] &= kv[:, None]
        b_masks[k] &= kv
        for partner in _partners(plan, by_name, layer, shared):
            w_masks[index[partner]] &= kv[:, None]
            b_masks[index[partner]] &= kv
        for consumer in plan.consumers.get(layer, ()):
            c = index[consumer]
            if in_features(layers[c]) == kv.numel() and id(layers[c].weight) not in shared:
                w_masks[c] &= kv[None, :]
    return w_masks, b_masks


def gated_partners(model: nn.Module, plan: NeuronPlan) -> dict[str, list[str]]:
    """``{hidden layer: its partners in plan that lose its removed neurons' rows}`` (see :func:`_partners`)."""
    modules, shared = dict(linear_layers(model)), shared_outside(model)
    return {
        layer: found
        for layer in plan.partners
        if layer in modules and (found := _partners(plan, modules, layer, shared))
    }


def _partners(plan: NeuronPlan, modules: Mapping[str, nn.Module], layer: str, shared: set[int]) -> list[str]:
    """``layer``'s partners in ``plan`` whose rows go with its neurons: of its width, and not held elsewhere."""
    width = out_features(modules[layer])
    return [
        p
        for p in plan.partners.get(layer, ())
        if p in modules and out_features(modules[p]) == width and not _frozen(modules[p], shared)
    ]


def dead_keep(model: nn.Module, dead_masks: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """``{layer: (m,) keep}`` dropping the neurons a census found dead (``{layer path: (m,) bool}``).

    A layer whose weight or bias a non-linear module also holds is left out: its neurons are never removed.
    """
    modules = dict(linear_layers(model))
    shared = shared_outside(model)
    out = {}
    for name, dead in dead_masks.items():
        layer = modules.get(name)
        if layer is None:
            raise InspectorError(f"dead_masks names {name!r}, which is not an nn.Linear of the model")
        mask = torch.as_tensor(np.asarray(dead, dtype=bool), device=dense_weight(layer).device)
        if mask.shape != (out_features(layer),):
            raise InspectorError(
                f"dead_masks[{name!r}] has shape {tuple(mask.shape)}; {name} has {out_features(layer)} neurons"
            )
        if not _frozen(layer, shared):
            out[name] = ~mask
    return out


def apply_masks(
    model: nn.Module, weight_masks: list[torch.Tensor], bias_masks: list[torch.Tensor] | None = None
) -> nn.Module:
    """Zero masked weights (and biases) of ``model`` in place; returns ``model``."""
    with torch.no_grad():
        for k, layer in enumerate(_weights(model)):
            dense_weight(layer).mul_(weight_masks[k])  # (out, in) masks; a Conv1D's view writes its (in, out) weight
            bias = dense_bias(layer)
            if bias_masks is not None and bias is not None:
                bias.mul_(bias_masks[k])
    return model


Masks = tuple[list[torch.Tensor], list[torch.Tensor] | None]


def level_masks(
    model: nn.Module, scope: str, sparsities: tuple[float, ...], plan: NeuronPlan | None = None
) -> list[Masks]:
    """Per sparsity level, ``(weight masks, bias masks or None)`` for ``scope``, ranked on ``model``'s weights.

    ``plan``: the neuron scope's hidden layers and consumers (``None``: from the model's graph alone).
    """
    if scope == "global":
        return [(m, None) for m in global_masks(model, sparsities)]
    if scope == "layer":
        return [(m, None) for m in layer_masks(model, sparsities)]
    if scope == "neuron":
        plan = neuron_plan(model) if plan is None else plan
        return [neuron_masks(model, keep, plan) for keep in neuron_keep(model, plan, sparsities)]
    raise ValueError(f"unknown pruning scope {scope!r}; choose from {', '.join(SCOPES)}")


# --------------------------------------------------------------------------- data, task, fine-tuning


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _source(data: Any, labels: Any, device: torch.device, *, whole: bool = False) -> DataSource:
    """``data`` (with ``labels`` when given separately, as in ``(model, X, y)`` calls) as a source on
    ``device``. ``whole``: arrays in memory are one batch (a view, nothing copied), so fine-tuning
    shuffles over all of them as it always has."""
    if labels is not None:
        data = (data, labels)
    in_memory = isinstance(data, (torch.Tensor, np.ndarray)) or (
        isinstance(data, tuple) and all(isinstance(v, (torch.Tensor, np.ndarray)) for v in data)
    )
    if whole and in_memory:
        n = len(data[0]) if isinstance(data, tuple) else len(data)
        return as_source(data, batch_size=max(1, n), device=device)
    return as_source(data, device=device)


def _resolve_task(task: Task | str | None, first: Batch) -> Task:
    return task if isinstance(task, Task) else make_task(task, first)


def task_loss(task: Task, output: Any, batch: Batch) -> torch.Tensor:
    """The mean training loss of ``task`` on one batch: cross-entropy or MSE."""
    out = output_tensor(output)
    if task.kind == "classification":
        return nn.functional.cross_entropy(per_sample(out, "classification").float(), label_classes(batch))
    if task.kind == "regression":
        if batch.labels is None:
            raise InspectorError("regression needs targets: give (inputs, targets) batches or a 'labels' key")
        pred = regression_output(out)
        return nn.functional.mse_loss(pred.float(), batch.labels.reshape(len(batch), -1)[:, 0].float())
    raise _no_loss()


def _no_loss() -> InspectorError:
    return InspectorError(
        "fine-tuning needs a loss and a custom task (target=...) has none: leave "
        "finetune_epochs at 0, or pass task='classification' or 'regression'"
    )


def finetune_masked(
    model: nn.Module,
    w_masks: list[torch.Tensor],
    b_masks: list[torch.Tensor] | None,
    data: DataSource,
    task: Task,
    epochs: int,
    lr: float,
    seed: int,
) -> None:
    """Train the pruned model for ``epochs`` with Adam on ``task``'s loss, re-applying the masks after each step.

    Each batch of ``data`` is shuffled and cut into steps of :data:`FINETUNE_BATCH` samples.
    """
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for batch in data:
            order = torch.randperm(len(batch), generator=g).to(batch.inputs.device)
            for s in range(0, len(batch), FINETUNE_BATCH):
                idx = order[s : s + FINETUNE_BATCH]
                if len(idx) < 2:
                    continue
                part = batch.rows(idx)
                opt.zero_grad(set_to_none=True)
                task_loss(task, part.call(model), part).backward()
                opt.step()
                apply_masks(model, w_masks, b_masks)
    model.eval()


# --------------------------------------------------------------------------- public verbs


def finetune_data(
    model: nn.Module, data: Any, labels: Any = None, task: Task | str | None = None
) -> tuple[DataSource, Task]:
    """Training ``data`` (with ``labels``) as a source on ``model``'s device (arrays in memory: one batch)
    and the task resolved on its first batch; a task without a loss (nothing to fine-tune on) is refused."""
    source = _source(data, labels, _device(model), whole=True)
    resolved = _resolve_task(task, source.first())
    if resolved.loss_name is None:
        raise _no_loss()
    return source, resolved


def check_sparsity(sparsity: float) -> None:
    """``ValueError`` unless ``0 <= sparsity < 1`` (the API's check; the CLI's says it in one line)."""
    if not 0 <= sparsity < 1:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")


def _plan_for(model: nn.Module, scope: str, data: Any, sites: tuple[Site, ...] | None) -> NeuronPlan | None:
    if scope != "neuron":
        return None
    batch = as_source(data, device=_device(model)).first() if data is not None else None
    return neuron_plan(model, batch, sites)


def prune(
    model: nn.Module, sparsity: float, scope: str = "global", *, data: Any = None, sites: tuple[Site, ...] | None = None
) -> nn.Module:
    """A pruned **copy** of ``model`` at ``sparsity`` (0 <= s < 1) in ``scope``.

    ``data`` (anything :func:`~inspector.analysis.inputs.as_source` accepts; its first batch
    is run once) and ``sites`` tell the neuron scope which layers are hidden and what consumes
    them; without them it reads the model's ``torch.fx`` graph.
    """
    check_sparsity(sparsity)
    plan = _plan_for(model, scope, data, sites)
    if plan is not None and not plan.hidden and sparsity > 0:
        raise InspectorError(
            "the neuron scope found no hidden layer to prune (a dense layer followed by an activation it "
            "recognises, whose output is not the model's: a fused gate_up_proj is not one); use the global "
            "or layer scope"
        )
    (masks,) = level_masks(model, scope, (sparsity,), plan)
    return apply_masks(copy.deepcopy(model), *masks)


def prune_and_finetune(
    model: nn.Module,
    sparsity: float,
    scope: str,
    data: Any,
    labels: Any = None,
    epochs: int = 1,
    lr: float = 1e-3,
    seed: int = 0,
    *,
    task: Task | str | None = None,
    sites: tuple[Site, ...] | None = None,
) -> nn.Module:
    """:func:`prune`, then ``epochs`` of masked fine-tuning on ``data`` (pruned weights stay zero).

    ``data``: a source, or inputs ``X`` with ``labels`` ``y`` (``prune_and_finetune(m, s, scope, X, y,
    epochs)``). ``task``: as in :func:`pruning_sweep`.
    """
    check_sparsity(sparsity)
    source, resolved = finetune_data(model, data, labels, task)
    first = source.first()
    plan = neuron_plan(model, first, sites) if scope == "neuron" else None
    (masks,) = level_masks(model, scope, (sparsity,), plan)
    pruned = apply_masks(copy.deepcopy(model), *masks)
    finetune_masked(pruned, *masks, source, resolved, epochs, lr, seed)
    return pruned


def pruning_sweep(
    model: nn.Module,
    data: Any,
    task: Task | str | None = None,
    *,
    sparsities: tuple[float, ...] = DEFAULT_SPARSITIES,
    scopes: tuple[str, ...] = SCOPES,
    dead_masks: Mapping[str, np.ndarray] | None = None,
    finetune: Any = None,
    finetune_epochs: int = 0,
    finetune_lr: float = 1e-3,
    seed: int = 0,
    sites: tuple[Site, ...] | None = None,
) -> PruningReport:
    """The task's metric, loss and parameters left at each sparsity for each scope.

    Args:
        model: any module with ``nn.Linear`` layers; never modified (levels run on a copy).
        data: a :class:`~inspector.analysis.inputs.DataSource` or anything ``as_source``
            accepts; streamed once per level, never gathered. ``pruning_sweep(model, X, y)``
            still works: an array or tensor in ``task``'s place is the labels of ``X``.
        task: a :class:`~inspector.analysis.task.Task`, a task name, or ``None`` (inferred from
            the labels' dtype).
        dead_masks: ``{layer path: (m,) bool}`` from a census; adds the metric with those
            neurons removed (rows, biases and known consumer columns).
        finetune: training data (anything ``as_source`` accepts, or ``(X, y)``); with
            ``finetune_epochs > 0`` each level is also fine-tuned with masks on the task's
            loss and re-evaluated. A custom task has no loss and refuses fine-tuning.
        sites: the discovered sites (``None``: discovered from the first batch).
    """
    for s in sparsities:
        if not 0 <= s < 1:
            raise ValueError(f"sparsities must lie in [0, 1), got {s}")
    unknown = set(scopes) - set(SCOPES)
    if unknown:
        raise ValueError(f"unknown pruning scopes {sorted(unknown)}; choose from {', '.join(SCOPES)}")
    labels = None
    if isinstance(task, (torch.Tensor, np.ndarray)):  # the old (model, X, y) call
        labels, task = task, None
    device = _device(model)
    source = _source(data, labels, device)
    first = source.first()
    task = _resolve_task(task, first)
    tune = None
    if finetune is not None and finetune_epochs > 0:
        if task.loss_name is None:
            raise _no_loss()
        tune = _source(finetune, None, device, whole=True)
    plan = neuron_plan(model, first, sites) if "neuron" in scopes or dead_masks else None
    total = prunable_parameters(model)
    work = copy.deepcopy(model).eval()
    # Every level starts from the caller's model, which nothing here modifies: masks are
    # ranked on its weights, and before each level the whole state of the working copy
    # (weights, biases, batch-norm parameters and running statistics) is reloaded from
    # it, so neither a previous level's pruning nor its fine-tuning can leak forward.
    original = model.state_dict()

    def restore() -> None:
        work.load_state_dict(original)

    curves = []
    with inspecting(work):
        base_loss, base_metric, n = evaluate_task(work, source, task)
        for scope in scopes:
            metric, loss, params, tuned = [], [], [], []
            for w_masks, b_masks in level_masks(model, scope, sparsities, plan):
                restore()
                apply_masks(work, w_masks, b_masks)
                lo, me, _ = evaluate_task(work, source, task)
                metric.append(me)
                loss.append(lo)
                params.append(parameters_left(model, w_masks, b_masks))
                if tune is not None:
                    finetune_masked(work, w_masks, b_masks, tune, task, finetune_epochs, finetune_lr, seed)
                    tuned.append(evaluate_task(work, source, task)[1])
            curves.append(
                PruningCurve(
                    scope=scope,
                    sparsity=np.asarray(sparsities, dtype=np.float64),
                    metric=np.asarray(metric, dtype=np.float64),
                    loss=np.asarray(loss, dtype=np.float64),
                    parameters_left=np.asarray(params, dtype=np.int64),
                    finetuned_metric=np.asarray(tuned, dtype=np.float64) if tune is not None else None,
                )
            )
        dead_metric, dead_count = None, 0
        if dead_masks:
            keep = dead_keep(model, dead_masks)
            dead_count = int(sum(int((~k).sum()) for k in keep.values()))
            restore()
            apply_masks(work, *neuron_masks(model, keep, plan or NeuronPlan()))
            dead_metric = evaluate_task(work, source, task)[1]
    return PruningReport(
        tuple(curves),
        base_metric,
        base_loss,
        int(total),
        int(n),
        dead_metric,
        dead_count,
        task.metric_name,
        task.loss_name,
    )


def prunable_parameters(model: nn.Module) -> int:
    """The linear weights and biases pruning counts: every distinct tensor once, none that a
    non-linear module also holds (a weight tied to an embedding table is not counted).

    Without such sharing this is :func:`~inspector.analysis.parameters.count_parameters`'
    ``linear_parameters``; it is :func:`parameters_left` of the unpruned model when no weight is
    exactly zero.
    """
    shared = shared_outside(model)
    tensors = {
        id(t): t for layer in _weights(model) for t in (weight_parameter(layer), dense_bias(layer)) if t is not None
    }
    return int(sum(t.numel() for key, t in tensors.items() if key not in shared))


def parameters_left(
    model: nn.Module, weight_masks: list[torch.Tensor], bias_masks: list[torch.Tensor] | None = None
) -> int:
    """Nonzero weights of ``model`` kept by ``weight_masks`` plus the biases kept by ``bias_masks``.

    A tensor shared by several layers counts once, and only the entries that every
    layer using it keeps are left; a tensor that a non-linear module also holds (a
    weight tied to an embedding table) is not counted at all. So at sparsity 0 this
    equals :func:`prunable_parameters` (when no weight is exactly zero).
    """
    shared = shared_outside(model)
    kept: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def keep(tensor: torch.Tensor | None, mask: torch.Tensor | None, key: int | None = None) -> None:
        key = id(tensor) if key is None else key
        if tensor is None or key in shared:
            return
        mask = torch.ones_like(tensor, dtype=torch.bool) if mask is None else mask
        previous = kept.get(key)
        kept[key] = (tensor, mask if previous is None else previous[1] & mask)

    for k, layer in enumerate(_weights(model)):
        keep(dense_weight(layer), weight_masks[k], key=id(layer.weight))  # (out, in), as the masks
        keep(dense_bias(layer), None if bias_masks is None else bias_masks[k])
    weights = {id(layer.weight) for layer in _weights(model)}
    return int(
        sum(
            int((mask & (tensor.detach() != 0)).sum()) if key in weights else int(mask.sum())
            for key, (tensor, mask) in kept.items()
        )
    )
