"""Site discovery: every dense layer in a model (``nn.Linear`` or Hugging Face ``Conv1D``, see
:mod:`inspector.core.dense`), and the activation applied to its output.

A :class:`Site` is one linear layer (named by its module path), its activation
(``relu``, ``gelu``, ..., ``none`` or ``unknown``) and how that was found:

``module``
    an activation module was called on exactly this layer's output tensor (or on
    it after normalisation/dropout modules) in a forward pass over a real batch.
    One module shared by several layers (``self.act``) is attributed per call, to
    the layer whose output it received.
``convention``
    the same, for a module recognised by its class name rather than its type
    (Hugging Face's ``GELUActivation``, ``NewGELUActivation``, ``SiLUActivation``
    held as ``act_fn`` / ``intermediate_act_fn``).
``traced``
    a functional call (``F.relu``, ``torch.relu``, ``x.relu()``, ``F.gelu``,
    ``F.silu``, ...) on the layer's output in the model's ``torch.fx`` graph,
    where the model traces.
``declared``
    given by the user (``activations={"head.fc1": "relu"}``); applied to the layer's output.
``output``
    the layer's output tensor is the model's output (observed in the forward pass): no
    activation, not counted by the census.
``traced-none``
    the graph shows the output goes on with no activation (an output layer, a
    projection): not an activation site, not counted by the census.
``called``
    for a model that does not trace (most Hugging Face models): the only use of the
    layer's output in the observed forward pass is a functional activation (``F.gelu``,
    ``torch.tanh``, ``x.relu()``, ...), seen by a :class:`~torch.overrides.TorchFunctionMode`.
``called-none``
    the same observation shows that every use of the output goes on with no activation:
    through reshapes, head splits and dropout into an attention product, a residual sum,
    another dense layer or the model's output (a transformer's query, key, value and output
    projections). Not counted by the census.
``gated``
    the same observation shows that the output's one use multiplies, element by element,
    another layer's activation output: the linear half of a gated unit (Llama's ``up_proj``,
    whose output multiplies ``silu(gate_proj(x))``; ``module`` names that other layer). It
    has no activation of its own (its neurons are the gate's): not counted by the census.
``unknown``
    none of the above; the census counts the layer on its pre-activation and says so.

:class:`SiteObserver` installs the hooks that report, for every application of
a site's activation, ``(layer, pre-activation, activation output)``: the census
is built on it, and discovery itself is one observed forward pass.
"""

from __future__ import annotations

import math
import operator
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from inspector.analysis.guard import _Guard, inspecting
from inspector.analysis.inputs import Batch
from inspector.analysis.uses import GATED, OutputUses, verdict
from inspector.core.counting import KINDS, SMOOTH
from inspector.core.dense import dense_layers, in_features, is_dense, out_features
from inspector.core.evaluator import nested_tensors, output_tensor
from inspector.errors import InspectorError
from inspector.results import result

FOUND_BY = (
    "module", "convention", "traced", "declared", "output", "traced-none", "called", "called-none", "gated",
    "unknown",
)  # fmt: skip

MODULE_KINDS: dict[type[nn.Module], str] = {
    nn.ReLU: "relu",
    nn.ReLU6: "relu6",
    nn.LeakyReLU: "leaky_relu",
    nn.PReLU: "prelu",
    nn.GELU: "gelu",
    nn.SiLU: "silu",
    nn.Mish: "mish",
    nn.Softplus: "softplus",
    nn.ELU: "elu",
    nn.SELU: "selu",
    nn.CELU: "celu",
    nn.Hardswish: "hardswish",
    nn.Sigmoid: "sigmoid",
    nn.Tanh: "tanh",
    nn.Hardtanh: "hardtanh",
    nn.Hardsigmoid: "hardsigmoid",
}
# Class-name fragments of activation modules in model families (lower case, longest first).
NAME_KINDS: tuple[tuple[str, str], ...] = (
    ("leakyrelu", "leaky_relu"),
    ("relu6", "relu6"),
    ("gelu", "gelu"),
    ("silu", "silu"),
    ("swish", "silu"),
    ("mish", "mish"),
    ("softplus", "softplus"),
    ("sigmoid", "sigmoid"),
    ("tanh", "tanh"),
    ("relu", "relu"),
)
FUNCTION_KINDS: dict[Any, str] = {
    F.relu: "relu",
    torch.relu: "relu",
    F.relu6: "relu6",
    F.leaky_relu: "leaky_relu",
    F.gelu: "gelu",
    F.silu: "silu",
    F.mish: "mish",
    F.softplus: "softplus",
    F.elu: "elu",
    F.selu: "selu",
    torch.selu: "selu",
    F.celu: "celu",
    F.hardswish: "hardswish",
    torch.sigmoid: "sigmoid",
    F.sigmoid: "sigmoid",
    torch.tanh: "tanh",
    F.tanh: "tanh",
    F.hardtanh: "hardtanh",
    F.hardsigmoid: "hardsigmoid",
}
METHOD_KINDS = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh"}
# The same functions by name, as a TorchFunctionMode sees them (``F.gelu``, ``torch.tanh``, ``x.relu()``)
CALLED_KINDS = {getattr(fn, "__name__", ""): kind for fn, kind in FUNCTION_KINDS.items()} | METHOD_KINDS
# Modules that carry a layer's output on unchanged in meaning (elementwise, per neuron).
TRANSPARENT: tuple[type[nn.Module], ...] = (nn.Dropout, nn.Identity, nn.modules.batchnorm._BatchNorm, nn.LayerNorm)
TRANSPARENT_FUNCTIONS = {F.dropout}

APPLY: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "relu6": F.relu6,
    "leaky_relu": F.leaky_relu,
    "prelu": lambda x: F.leaky_relu(x, 0.25),
    "gelu": F.gelu,
    "silu": F.silu,
    "mish": F.mish,
    "softplus": F.softplus,
    "elu": F.elu,
    "selu": torch.selu,
    "celu": F.celu,
    "hardswish": F.hardswish,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "hardtanh": F.hardtanh,
    "hardsigmoid": F.hardsigmoid,
}


@result
class Site:
    """One ``nn.Linear`` (``layer``, its module path) and the activation on its output.

    ``activation``: a kind in :data:`KINDS`, ``"none"`` or ``"unknown"``. ``found_by``: one of
    :data:`FOUND_BY`. ``module``: the activation module's path (``module``/``convention``), the
    function's name (``traced``, ``called``), else ``None``. ``tap``: the module whose output is the
    pre-activation for ``traced``/``called``/``declared``/``unknown`` sites (the layer, or a normalisation
    after it). ``shared_with``: other layers whose output the same activation module receives.
    """

    layer: str
    in_features: int
    out_features: int
    activation: str
    found_by: str
    module: str | None
    tap: str
    shared_with: tuple[str, ...] = ()

    @property
    def counted(self) -> bool:
        """Whether the census counts this site (everything but a proven or declared absence of an activation)."""
        return self.activation != "none"

    def describe(self) -> str:
        """One line: how the activation was found."""
        shared = f", shared with {', '.join(self.shared_with)}" if self.shared_with else ""
        return {
            "module": f"{self.activation}: module {self.module}{shared}",
            "convention": f"{self.activation}: module {self.module}, recognised by its class name{shared}",
            "traced": f"{self.activation}: functional {self.module} in the torch.fx graph",
            "declared": f"{self.activation}: declared" if self.activation != "none" else "no activation: declared",
            "output": "no activation: its output is the model's output",
            "traced-none": "no activation (its output goes on unchanged in the torch.fx graph)",
            "called": f"{self.activation}: function {self.module} called on its output in the forward pass",
            "called-none": "no activation (every use of its output in the forward pass goes on unchanged)",
            "gated": f"no activation: the linear half of a gated unit (its output multiplies {self.module}'s activation)",
            "unknown": "activation unknown: counted on its pre-activation",
        }[self.found_by]


def activation_kind(module: nn.Module) -> tuple[str, str] | None:
    """``(kind, "module" | "convention")`` when ``module`` is an activation, else ``None``."""
    kind = MODULE_KINDS.get(type(module))
    if kind is not None:
        return kind, "module"
    for cls, k in MODULE_KINDS.items():
        if isinstance(module, cls):
            return k, "module"
    if any(True for _ in module.children()) or any(True for _ in module.parameters(recurse=False)):
        return None
    lowered = type(module).__name__.lower()
    for fragment, k in NAME_KINDS:
        if fragment in lowered and (
            "activation" in lowered or lowered.startswith(fragment) or lowered.endswith(fragment)
        ):
            return k, "convention"
    return None


def _linears(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return dense_layers(model)  # nn.Linear and Hugging Face Conv1D


class SiteObserver:
    """Hooks reporting ``callback(layer, pre, out, module)`` for every application of a site's activation.

    ``module`` sites are observed at the activation module (its input is the
    pre-activation, its output the activation) and attributed to the layer whose
    output tensor it received, tracked by identity through transparent modules;
    ``traced``/``called``/``declared``/``unknown`` sites at their ``tap`` module, with the
    activation applied here (``unknown``: the output is the pre-activation itself).
    Hooks live on ``guard`` and are removed with it.
    """

    def __init__(
        self,
        model: nn.Module,
        sites: tuple[Site, ...],
        callback: Callable[[str, torch.Tensor, torch.Tensor], None],
        guard: _Guard,
        *,
        record: bool = False,
    ) -> None:
        self._produced: dict[int, tuple[weakref.ref[torch.Tensor], str]] = {}
        self.callback = callback
        self.pairs: dict[str, dict[str, tuple[str, str]]] = {}  # record: layer -> {module path: (kind, how)}
        by_module = {name: m for name, m in model.named_modules()}
        linear_names = {id(m): name for name, m in _linears(model)}
        # layer -> its activation module: a module is attributed only the calls on its own layers' outputs
        module_sites = {s.layer: s.module for s in sites if s.found_by in ("module", "convention")}
        acts: dict[str, str] = {}
        for site in sites:
            if site.found_by in ("module", "convention") and site.module:
                acts[site.module] = site.activation
        # only the layers whose output some activation module is attributed need marking (every layer
        # when recording): fewer hooks, fewer Python calls per batch
        marked = set(linear_names.values()) if record else set(module_sites)
        for name, module in model.named_modules():
            if id(module) in linear_names:
                if linear_names[id(module)] in marked:
                    guard.hook(module.register_forward_hook(self._linear_hook(linear_names[id(module)])))
            elif not marked:
                continue
            elif isinstance(module, TRANSPARENT):
                guard.hook(module.register_forward_hook(self._transparent_hook))
            elif record and activation_kind(module) is not None:
                kind, how = activation_kind(module)  # type: ignore[misc]
                guard.hook(module.register_forward_hook(self._record_hook(name, kind, how)))
            elif name in acts:
                guard.hook(module.register_forward_hook(self._activation_hook(name, module_sites)))
        for site in sites:
            if site.found_by in ("traced", "called", "declared", "unknown") and site.counted:
                fn = APPLY.get(site.activation)
                guard.hook(by_module[site.tap].register_forward_hook(self._tap_hook(site.layer, fn)))

    def start_batch(self) -> None:
        self._produced.clear()

    def _mark(self, tensor: Any, layer: str) -> None:
        if isinstance(tensor, torch.Tensor):
            self._produced[id(tensor)] = (weakref.ref(tensor), layer)

    def _source(self, tensor: Any) -> str | None:
        if not isinstance(tensor, torch.Tensor):
            return None
        entry = self._produced.get(id(tensor))
        if entry is None or entry[0]() is not tensor:
            return None
        return entry[1]

    def _linear_hook(self, layer: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            self._mark(output, layer)

        return hook

    def _transparent_hook(self, module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        layer = self._source(inputs[0]) if inputs else None
        if layer is not None:
            self._mark(output, layer)

    def _activation_hook(self, name: str, layers: dict[str, str | None]) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            layer = self._source(inputs[0]) if inputs else None
            if layer is not None and layers.get(layer) == name and isinstance(output, torch.Tensor):
                self.callback(layer, inputs[0], output)

        return hook

    def _record_hook(self, name: str, kind: str, how: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            layer = self._source(inputs[0]) if inputs else None
            if layer is not None:
                self.pairs.setdefault(layer, {})[name] = (kind, how)

        return hook

    def _tap_hook(self, layer: str, fn: Callable[[torch.Tensor], torch.Tensor] | None) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            if isinstance(output, torch.Tensor):
                self.callback(layer, output, fn(output) if fn is not None else output)

        return hook


def _trace(model: nn.Module) -> dict[str, tuple[str, str | None, str]] | None:
    """``{layer: (kind | "none" | "module:<how>:<kind>", function or module name, tap module)}`` from
    the model's ``torch.fx`` graph, or ``None`` when it does not trace."""
    import torch.fx

    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception:  # noqa: BLE001 - any model that does not trace falls back to the other rules
        return None
    modules = dict(model.named_modules())
    out: dict[str, tuple[str, str | None, str]] = {}
    for node in graph.nodes:
        if node.op != "call_module" or not _is_dense(modules.get(node.target)):
            continue
        tap = str(node.target)
        found: tuple[str, str | None] | None = None
        current = node
        while found is None:
            users = list(current.users)
            if len(users) != 1:
                # used twice (h * sigmoid(h), relu(h) + h): "none" only when every use ends the layer
                if users and all(_ends_layer(u, modules) for u in users):
                    found = ("none", None)
                break
            user = users[0]
            if user.op == "call_function" and user.target in FUNCTION_KINDS:
                found = (FUNCTION_KINDS[user.target], getattr(user.target, "__name__", str(user.target)))
            elif user.op == "call_method" and user.target in METHOD_KINDS:
                found = (METHOD_KINDS[user.target], f"Tensor.{user.target}")
            elif user.op == "call_module" and activation_kind(modules[user.target]) is not None:
                kind_how = activation_kind(modules[user.target])
                found = (f"module:{kind_how[1]}:{kind_how[0]}", str(user.target))  # type: ignore[index]
            elif user.op == "call_module" and isinstance(modules[user.target], TRANSPARENT):
                tap = str(user.target)
                current = user
                continue
            elif user.op == "call_function" and user.target in TRANSPARENT_FUNCTIONS:
                current = user
                continue
            elif _ends_layer(user, modules):
                found = ("none", None)
            break
        if found is not None:  # anything else that happens to the output: not known, so "unknown"
            out[str(node.target)] = (
                ("none", None, str(node.target)) if found[0] == "none" else (found[0], found[1], tap)
            )
    return out


def _is_dense(module: nn.Module | None) -> bool:
    return module is not None and is_dense(module)


def _ends_layer(user: Any, modules: Mapping[str, nn.Module]) -> bool:
    """Whether graph node ``user`` takes a layer's output on with no activation in between: the model's
    output, another linear layer, a residual sum, an attention product or softmax."""
    if user.op == "output":
        return True
    if user.op == "call_module":
        return _is_dense(modules.get(user.target))
    if user.op == "call_function":
        return user.target in (operator.add, torch.add, operator.matmul, torch.matmul, F.softmax, torch.softmax)
    return False


def discover_sites(
    model: nn.Module,
    batch: Batch | None = None,
    declared: Mapping[str, str] | None = None,
    *,
    outputs: list[Any] | None = None,
) -> tuple[Site, ...]:
    """Every ``nn.Linear`` of ``model`` with its activation, in registration order.

    ``batch``: one real batch for the observed forward pass (without it only the
    graph and ``declared`` say anything). ``declared``: ``{layer path: kind}`` wins
    over everything found. ``outputs``: a list the model's output on ``batch`` is appended to
    (a caller that needs it saves a second forward pass).
    """
    declared = dict(declared or {})
    layers = _linears(model)
    names = {name for name, _ in layers}
    for layer, kind in declared.items():
        if layer not in names:
            raise InspectorError(
                f"activations= names {layer!r}, which is not an nn.Linear (or Conv1D) of the model; "
                f"its linear layers are {', '.join(sorted(names)[:8])}"
                f"{' ...' if len(names) > 8 else ''}"
            )
        if kind not in KINDS and kind != "none":
            raise InspectorError(f"unknown activation {kind!r} for {layer}; choose from {', '.join(KINDS)} or none")
    observed: dict[str, dict[str, tuple[str, str]]] = {}
    output_layer = None
    called: dict[str, str] = {}
    gates: dict[str, str] = {}
    if batch is not None:
        with inspecting(model) as guard:
            observer = SiteObserver(model, (), lambda *a: None, guard, record=True)
            uses = OutputUses(CALLED_KINDS)
            for name, linear in layers:
                guard.hook(linear.register_forward_hook(_marker(uses, name)))
            observer.start_batch()
            with torch.no_grad(), uses:
                output = batch.call(model)
            if outputs is not None:
                outputs.append(output)
            observed = observer.pairs
            for tensor in nested_tensors(output):
                uses.ended(tensor)
            verdicts = {layer: verdict(found) for layer, found in uses.uses.items()}
            called = {layer: v for layer, v in verdicts.items() if v is not None}
            gates = dict(uses.gates)
            try:
                output_layer = observer._source(output_tensor(output))
            except InspectorError:  # an output with no one tensor: the target function decides
                output_layer = None
    # tracing costs more than the census of a small model's whole dataset: only when some layer needs it
    # (a layer the forward pass's calls already explain does not)
    needs_graph = any(
        name not in declared and name not in observed and name != output_layer and name not in called
        for name, _ in layers
    )
    traced = _trace(model) if needs_graph else None
    users: dict[str, list[str]] = {}
    for layer, mods in observed.items():
        for module in mods:
            users.setdefault(module, []).append(layer)
    sites = []
    for name, linear in layers:
        common: dict[str, Any] = {
            "layer": name,
            "in_features": in_features(linear),
            "out_features": out_features(linear),
        }
        if name in declared:
            sites.append(Site(**common, activation=declared[name], found_by="declared", module=None, tap=name))
        elif name in observed:
            module, (kind, how) = next(iter(observed[name].items()))
            shared = tuple(other for other in users[module] if other != name)
            sites.append(Site(**common, activation=kind, found_by=how, module=module, tap=name, shared_with=shared))
        elif name == output_layer:
            sites.append(Site(**common, activation="none", found_by="output", module=None, tap=name))
        elif traced is not None and name in traced:
            kind, fn, tap = traced[name]
            if kind == "none":
                sites.append(Site(**common, activation="none", found_by="traced-none", module=None, tap=name))
            elif kind.startswith("module:"):  # no batch to observe: the graph names the module
                _, how, module_kind = kind.split(":")
                sites.append(Site(**common, activation=module_kind, found_by=how, module=fn, tap=name))
            else:
                sites.append(Site(**common, activation=kind, found_by="traced", module=fn, tap=tap))
        elif name in called:
            kind = called[name]
            if kind == "none":
                sites.append(Site(**common, activation="none", found_by="called-none", module=None, tap=name))
            elif kind == GATED:
                sites.append(Site(**common, activation="none", found_by="gated", module=gates[name], tap=name))
            else:
                sites.append(Site(**common, activation=kind, found_by="called", module=kind, tap=name))
        else:
            sites.append(Site(**common, activation="unknown", found_by="unknown", module=None, tap=name))
    return tuple(sites)


def _marker(uses: OutputUses, layer: str) -> Callable[..., None]:
    def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        uses.mark(output, layer)

    return hook


def near_zero(kind: str) -> float:
    """The |output| below which a smooth unit's output counts as (nearly) zero."""
    return 0.01 if kind in SMOOTH else math.nan
