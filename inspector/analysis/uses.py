"""What one forward pass does with each dense layer's output, for models ``torch.fx`` cannot trace.

Most Hugging Face models do not trace symbolically, so the graph cannot say that a BERT layer's
``query`` projection has no activation. :class:`OutputUses` watches the real forward pass instead:
a :class:`~torch.overrides.TorchFunctionMode` sees every torch function and tensor method called,
and each call that takes a layer's output (or a tensor derived from it by a reshape, a head split,
dropout or a normalisation) is classified:

* it **ends** the layer: a residual sum, an attention product (``matmul``, ``bmm``,
  ``scaled_dot_product_attention``, ``einsum``), a softmax, another dense layer (``linear``), or
  the model's output: the output goes on with no activation of its own;
* it **is an activation** (:data:`ACTIVATION_NAMES`): applied directly (through dropout at most)
  it is the layer's activation, after a reshape or a normalisation it is not attributed;
* it **follows** the output (:data:`FOLLOW`): reshapes, splits, dropout, casts, normalisations, and a
  rescaling by a number or by a tensor no layer made (a rotary embedding's ``q * cos`` and ``-x2``, a
  mask); their results are tracked in turn;
* it **gates** another layer: multiplied element by element (the same shape) by another layer's
  activation output, as the linear half of a gated unit (Llama's ``up_proj`` in
  ``silu(gate_proj(x)) * up_proj(x)``): it has no activation of its own, its neurons are the gate's;
* anything else (another product, a hand-written swish, a reduction): the layer's activation is not known.

:func:`verdict` turns a layer's uses into ``"none"`` (every use ends the layer), an activation kind
(its one use), :data:`GATED` (its one use gates another layer: :attr:`OutputUses.gates` names which), or
``None`` (not known: the census counts it on its pre-activation). Only what this
one batch's forward pass did is seen: a branch not taken is not, as for every observed rule.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

# Calls that carry a layer's output on element for element (``SAME``) or rearranged (the rest):
# a split into heads, a view, a cast, dropout, a normalisation. Their results are followed.
SAME = frozenset({"dropout", "contiguous", "clone", "detach", "to", "float", "type_as", "alpha_dropout"})
FOLLOW = SAME | frozenset(
    {
        "view", "view_as", "reshape", "reshape_as", "transpose", "permute", "movedim", "swapaxes", "unflatten",
        "flatten", "unsqueeze", "squeeze", "expand", "expand_as", "split", "split_with_sizes", "chunk", "unbind",
        "narrow", "select", "__getitem__", "cat", "concat", "stack", "layer_norm", "rms_norm", "batch_norm",
        "group_norm", "instance_norm",
    }
)  # fmt: skip
# Calls that take a layer's output on with no activation of its own.
ENDS = frozenset(
    {
        "add", "add_", "__add__", "__radd__", "__iadd__", "matmul", "__matmul__", "__rmatmul__", "bmm",
        "baddbmm", "einsum", "scaled_dot_product_attention", "softmax", "log_softmax", "linear", "addmm",
    }
)  # fmt: skip
# Calls on tensors that read no values (their attributes): neither a use nor followed.
NEUTRAL = frozenset({"__get__", "size", "dim", "numel", "__len__", "stride", "is_contiguous", "data_ptr"})
# Element-by-element products: the gate of a gated unit meets its linear half in one.
PRODUCTS = frozenset({"mul", "mul_", "__mul__", "__rmul__", "__imul__"})
GATED = "gated"  # the verdict of a gated unit's linear half


def _as_name(func: Any) -> str:
    return str(getattr(func, "__name__", ""))


class OutputUses(TorchFunctionMode):
    """Within ``with``, record the uses of every tensor :meth:`mark`-ed as a layer's output.

    ``activations``: ``{function or method name: kind}``, the calls that are activations
    (``relu_`` counts as ``relu``). ``uses[layer]`` is a list of ``("ends" | "other", None)`` and
    ``("activation", kind)`` / ``("activation-after", kind)`` (after a reshape or normalisation).
    Never raises into the model: a call it cannot classify is left to run as it would.
    """

    def __init__(self, activations: Mapping[str, str]) -> None:
        super().__init__()
        self.activations = dict(activations)
        self.uses: dict[str, list[tuple[str, str | None]]] = {}
        self.gates: dict[str, str] = {}  # {a gated unit's linear half: the layer whose activation it multiplies}
        self._derived: dict[int, tuple[weakref.ref[torch.Tensor], str, bool]] = {}
        self._activated: dict[int, tuple[weakref.ref[torch.Tensor], str]] = {}  # activation outputs, by layer

    def mark(self, tensor: Any, layer: str) -> None:
        """``tensor`` is ``layer``'s output (called from the layer's forward hook)."""
        if isinstance(tensor, torch.Tensor):
            self._derived[id(tensor)] = (weakref.ref(tensor), layer, True)
            self.uses.setdefault(layer, [])

    def source(self, tensor: Any) -> tuple[str, bool] | None:
        """``(layer, direct)`` when ``tensor`` is a layer's output or derived from one, else ``None``;
        ``direct``: only element-for-element calls (:data:`SAME`) in between."""
        if not isinstance(tensor, torch.Tensor):
            return None
        entry = self._derived.get(id(tensor))
        if entry is None or entry[0]() is not tensor:
            return None
        return entry[1], entry[2]

    def ended(self, tensor: Any) -> None:
        """``tensor`` leaves the model as its output: a use that ends its layer."""
        found = self.source(tensor)
        if found is not None:
            self.uses[found[0]].append(("ends", None))

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        result = func(*args, **(kwargs or {}))
        try:
            self._record(_as_name(func), args, kwargs or {}, result)
        except Exception:  # noqa: BLE001 - watching must never break the user's forward pass
            pass
        return result

    def _record(self, name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any], result: Any) -> None:
        if name in NEUTRAL:
            return
        tensors = list(_tensors(args, kwargs))
        sources = [found for found in map(self.source, tensors) if found is not None]
        if not sources:
            return
        if self._gates(name, tensors, result):
            return
        kind = self.activations.get(name.removesuffix("_"))  # relu_ is relu
        scaled = self._scaled(name, tensors, sources)
        for layer, direct in sources:
            if name in FOLLOW or scaled:
                same = direct and name in SAME
                for tensor in _tensors((result,), {}):
                    if self.source(tensor) is None:
                        self._derived[id(tensor)] = (weakref.ref(tensor), layer, same)
            elif name in ENDS:
                self.uses[layer].append(("ends", None))
            elif kind is not None:
                self.uses[layer].append(("activation" if direct else "activation-after", kind))
                if direct and isinstance(result, torch.Tensor):
                    self._activated[id(result)] = (weakref.ref(result), layer)
            else:
                self.uses[layer].append(("other", None))

    def _scaled(self, name: str, tensors: list[torch.Tensor], sources: list[tuple[str, bool]]) -> bool:
        """Whether this call rescales one layer's output feature by feature, by a number or by a tensor that
        no layer made and no activation returned (a rotary embedding's ``q * cos``, its ``-x2``, a mask):
        followed like a reshape, not its activation (the sign flip or scale is no nonlinearity)."""
        if name in ("neg", "__neg__"):
            return len(tensors) == 1
        if name not in PRODUCTS or len(sources) != 1:
            return False
        return not any(
            (entry := self._activated.get(id(t))) is not None and entry[0]() is t
            for t in tensors
            if self.source(t) is None
        )

    def _gates(self, name: str, tensors: list[torch.Tensor], result: Any) -> bool:
        """Whether this call is a product of one layer's own output (reshaped or cast at most) with another
        layer's activation output, of the same shape: then that is the first layer's use, it gates."""
        if name not in PRODUCTS or len(tensors) != 2 or not isinstance(result, torch.Tensor):
            return False
        for linear, gate in (tensors, tensors[::-1]):
            found = self.source(linear)
            entry = self._activated.get(id(gate))
            if found is None or not found[1] or entry is None or entry[0]() is not gate:
                continue
            if entry[1] != found[0] and linear.shape == gate.shape == result.shape:
                self.uses[found[0]].append((GATED, None))
                self.gates[found[0]] = entry[1]
                return True
        return False


def _tensors(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Iterator[torch.Tensor]:
    """The tensors among ``args`` and ``kwargs``, one level into lists and tuples (``cat``'s list)."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            yield value
        elif isinstance(value, (list, tuple)):
            yield from (v for v in value if isinstance(v, torch.Tensor))


def verdict(uses: list[tuple[str, str | None]]) -> str | None:
    """``"none"`` when every use ends the layer, the activation kind when its one use is an activation
    applied directly, else ``None`` (not known)."""
    if not uses:
        return None
    if all(how == "ends" for how, _ in uses):
        return "none"
    if len(uses) == 1 and uses[0][0] == "activation":
        return uses[0][1]
    if len(uses) == 1 and uses[0][0] == GATED:
        return GATED
    return None
