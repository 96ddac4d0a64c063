"""ONNX models: the initializers of ``Gemm`` and ``MatMul`` nodes as dense layers.

``Gemm(A, B, C)`` computes ``alpha * A @ op(B) + beta * C``: with ``transB=1`` (what ``torch.onnx``
writes for ``nn.Linear``) ``B`` is ``(out, in)`` already, with ``transB=0`` it is ``(in, out)`` and is
transposed; ``alpha`` and ``beta`` are folded into the weight and bias. ``MatMul(X, W)`` holds ``W``
as ``(in, out)``; its bias is the 1-D initializer of a following ``Add``. A layer is named after its
weight initializer (``fc1.weight`` -> ``fc1``), else its bias
(``fc1.bias``), else its node. Other initializers are listed
under their own names. A graph that is one chain of dense layers and activations is rebuilt as a torch module (so the data
sections run); any other graph gets the weight-only analysis.
Reading needs the ``onnx`` package (``pip install 'dense-inspector[onnx]'``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from inspector.checks import printable
from inspector.errors import InspectorError
from inspector.formats import check_shape
from inspector.sources.base import (
    Contents,
    TensorSource,
    first_line,
    free_name,
    linear_from,
    module_names_fit,
    place_module,
)

# field tags that follow ModelProto's ir_version (field 1, varint): producer, domain, version, doc, graph, opsets
_NEXT_FIELDS = frozenset(b"\x12\x1a\x22\x28\x32\x3a\x42")


_FOUR_BIT = frozenset({21, 22, 23})  # TensorProto.UINT4, INT4, FLOAT4E2M1


def _values_present(tensor: Any, itemsize: int) -> int:
    """How many values a ``TensorProto`` holds: its raw bytes over the item size, else its typed field's length."""
    if tensor.HasField("raw_data"):
        per_byte = 2 if tensor.data_type in _FOUR_BIT else 1  # int4, uint4, float4: two values a byte
        return len(tensor.raw_data) * per_byte // max(1, itemsize)
    fields = ("float_data", "int32_data", "int64_data", "double_data", "uint64_data", "string_data")
    return max(len(getattr(tensor, field)) for field in fields)


def _attribute(node: Any, name: str, default: float) -> float:
    for attribute in node.attribute:
        if attribute.name == name:
            return float(attribute.f if attribute.type == 1 else attribute.i)
    return default


def _layer_name(weight_name: str, bias_name: str, node: Any, taken: set[str]) -> str:
    """The layer's name: its weight's (``fc1.weight`` -> ``fc1``), else its bias's (``fc1.bias``, as the
    dynamo exporter names a bias beside a folded ``val_0`` weight), else its node's."""
    if weight_name.endswith(".weight") and len(weight_name) > len(".weight"):
        base = weight_name[: -len(".weight")]
    elif bias_name.endswith(".bias") and len(bias_name) > len(".bias"):
        base = bias_name[: -len(".bias")]
    else:
        base = re.sub(r"[^0-9A-Za-z_.]+", ".", node.name or weight_name).strip(".") or "layer"
    name, k = base, 1
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    taken.add(name)
    return name


class OnnxSource(TensorSource):
    """An ``.onnx`` file (a ``ModelProto``), with external data beside it if it has any."""

    format = "onnx"
    infers_mlp = False  # the graph says what runs: rebuilt from it (model), never guessed from names

    def __init__(self, path: Path, *, trust_pickle: bool = False) -> None:
        super().__init__(path, trust_pickle=trust_pickle)
        self._made: dict[str, tuple[str, bool, float]] | None = None
        self._inits: dict[str, Any] = {}
        self._shapes: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        self._notices: list[str] = []
        self._metadata: dict[str, Any] = {}
        self._graph: Any = None
        self._dense: dict[int, str] = {}  # node index -> the dense layer it computes
        self._bias_adds: set[int] = set()  # node indices of the Add nodes that are a MatMul's bias

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        if path.suffix.lower() == ".onnx" and path.is_file():
            return True
        return len(head) >= 3 and head[0] == 0x08 and head[1] < 0x80 and head[2] in _NEXT_FIELDS

    def _parse(self) -> dict[str, tuple[str, bool, float]]:
        """``{our name: (initializer, transposed, scale)}``: how each tensor is made from the file's initializers."""
        if self._made is not None:
            return self._made
        try:
            import onnx
        except ImportError:
            raise InspectorError(
                f"{self.path}: an ONNX file; reading it needs onnx: pip install 'dense-inspector[onnx]'"
            ) from None
        try:
            model = onnx.load(str(self.path))
        except Exception as exc:  # protobuf decoding errors and missing external data
            raise InspectorError(f"{self.path}: corrupt ONNX file ({first_line(exc)}); re-export it") from None
        graph = model.graph
        inits = {t.name: t for t in graph.initializer}
        nodes = list(graph.node)
        consumers: dict[str, list[int]] = {}  # by index: protobuf wrappers are not the same object twice
        for index, node in enumerate(nodes):
            for name in node.input:
                consumers.setdefault(name, []).append(index)

        made: dict[str, tuple[str, bool, float]] = {}
        used: set[str] = set()
        taken: set[str] = set()
        self._graph = graph
        for index, node in enumerate(nodes):
            if node.op_type == "Gemm" and len(node.input) >= 2 and node.input[1] in inits:
                w_name = node.input[1]
                if len(inits[w_name].dims) != 2 or w_name in used:
                    continue
                trans_b, alpha, beta = (
                    _attribute(node, "transB", 0),
                    _attribute(node, "alpha", 1.0),
                    _attribute(node, "beta", 1.0),
                )
                c_name = node.input[2] if len(node.input) > 2 else ""
                has_bias = c_name in inits and len(inits[c_name].dims) == 1
                layer = _layer_name(w_name, c_name if has_bias else "", node, taken)
                made[f"{layer}.weight"] = (w_name, not trans_b, alpha)
                self._dense[index] = layer
                used.add(w_name)
                if has_bias:
                    made[f"{layer}.bias"] = (c_name, False, beta)
                    used.add(c_name)
                if alpha != 1.0 or beta != 1.0:
                    self._notices.append(f"{layer}: Gemm alpha {alpha:g} and beta {beta:g} folded into its weights")
            elif node.op_type == "MatMul" and len(node.input) == 2 and node.input[1] in inits:
                w_name = node.input[1]
                if len(inits[w_name].dims) != 2 or w_name in used:
                    continue
                out = int(inits[w_name].dims[1])
                bias = ""
                for add_index in consumers.get(node.output[0], []):
                    add = nodes[add_index]
                    other = [name for name in add.input if name != node.output[0]]
                    if add.op_type == "Add" and len(other) == 1 and other[0] in inits:
                        if list(inits[other[0]].dims) == [out] and other[0] not in used:
                            bias = other[0]
                            self._bias_adds.add(add_index)
                            break
                layer = _layer_name(w_name, bias, node, taken)
                made[f"{layer}.weight"] = (w_name, True, 1.0)
                self._dense[index] = layer
                used.add(w_name)
                if bias:
                    made[f"{layer}.bias"] = (bias, False, 1.0)
                    used.add(bias)
        for name in inits:
            if name not in used and name not in made:
                made[name] = (name, False, 1.0)
        self._inits = inits
        for name, (source, transposed, _) in made.items():
            dims = check_shape(self.path, source, tuple(int(d) for d in inits[source].dims))
            try:
                dtype = onnx.helper.tensor_dtype_to_np_dtype(inits[source].data_type)
            except Exception:  # an unknown data type number
                raise InspectorError(
                    f"{self.path}: initializer {printable(source)[:80]!r} has unknown data type "
                    f"{inits[source].data_type}; the file is corrupt"
                ) from None
            present = _values_present(inits[source], dtype.itemsize)
            if present != math.prod(dims):  # what the file holds, not what it declares, sizes the tensor
                raise InspectorError(
                    f"{self.path}: initializer {printable(source)[:80]!r} declares shape {dims} but holds "
                    f"{present:,} values; the file is crafted or corrupt (re-export it)"
                )
            self._shapes[name] = (dims[::-1] if transposed else dims, dtype)
        self._metadata = {
            "producer": f"{model.producer_name} {model.producer_version}".strip(),
            "opsets": {op.domain or "ai.onnx": int(op.version) for op in model.opset_import},
        }
        self._made = made
        return made

    def header(self) -> Contents:
        self._parse()
        meta = {
            name: torch.empty(shape, dtype=torch.from_numpy(np.empty(0, dtype)).dtype, device="meta")
            for name, (shape, dtype) in self._shapes.items()
        }
        return Contents(meta, metadata=dict(self._metadata), notices=tuple(self._notices))

    def read(self, names: list[str]) -> Iterator[tuple[str, torch.Tensor]]:
        from onnx import numpy_helper  # _parse has checked that onnx is installed

        made = self._parse()
        for name in names:
            source, transposed, scale = made[name]
            value = numpy_helper.to_array(self._inits[source])
            value = value.T if transposed else value
            if scale != 1.0:
                value = value * np.asarray(scale, value.dtype)
            yield name, torch.from_numpy(np.array(value, order="C"))  # a copy: to_array may be read-only

    def model(self, activation: str | None) -> nn.Module | None:
        """The graph as a torch ``nn.Sequential`` when it is one chain from its input to its output of
        dense layers (Gemm, MatMul + Add) and element-wise activations (Relu, LeakyRelu, Gelu, Tanh,
        Sigmoid; Identity and Dropout pass through; a final Softmax is left out: the module returns
        logits); ``None`` for any other graph (the analysis is then weight-only)."""
        self._parse()
        graph = self._graph
        inputs = [i.name for i in graph.input if i.name not in {t.name for t in graph.initializer}]
        if len(inputs) != 1 or len(graph.output) != 1:
            return None
        tensors = dict(self.read(list(self._shapes)))
        current = inputs[0]
        chain: list[tuple[str | None, nn.Module]] = []  # (layer name, module); None for an activation
        last = len(graph.node) - 1
        for index, node in enumerate(graph.node):
            if not node.input or node.input[0] != current and not (index in self._bias_adds and current in node.input):
                return None
            if index in self._dense:
                layer = self._dense[index]
                chain.append((layer, linear_from(tensors[f"{layer}.weight"], tensors.get(f"{layer}.bias"))))
            elif node.op_type in _ONNX_ACTIVATIONS:
                chain.append((None, _ONNX_ACTIVATIONS[node.op_type](node)))
            elif not (
                node.op_type in ("Identity", "Dropout")
                or index in self._bias_adds
                or node.op_type == "Softmax"
                and index == last
            ):
                return None
            current = node.output[0]
        if current != graph.output[0].name or not any(name is not None for name, _ in chain):
            return None
        # the layers keep the names the header gives them (``encoder.0`` is module 0 of a Sequential
        # named encoder), where those can name one Sequential's modules in order; else dots become _
        names = [name for name, _ in chain if name is not None]
        nested = module_names_fit(names)
        taken = set(names) if nested else {name.replace(".", "_") for name in names}
        root = nn.Sequential()
        beside = ""
        for k, (name, module) in enumerate(chain):
            if name is None:
                place_module(root, free_name(root, beside, f"act{k}", taken), module)
                continue
            beside = name if nested else name.replace(".", "_")
            place_module(root, beside, module)
        return root.eval()


def _gelu(node: Any) -> nn.Module:
    approximate = next((a.s.decode() for a in node.attribute if a.name == "approximate"), "none")
    return nn.GELU(approximate="tanh" if approximate == "tanh" else "none")


_ONNX_ACTIVATIONS: dict[str, Callable[[Any], nn.Module]] = {
    "Relu": lambda node: nn.ReLU(),
    "LeakyRelu": lambda node: nn.LeakyReLU(_attribute(node, "alpha", 0.01)),
    "Gelu": _gelu,
    "Tanh": lambda node: nn.Tanh(),
    "Sigmoid": lambda node: nn.Sigmoid(),
}
