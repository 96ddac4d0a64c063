"""Keras 3 ``.keras`` files: a zip holding ``config.json`` and ``model.weights.h5``, read with ``h5py``;
Keras itself is never imported.

A ``Dense`` kernel is stored ``(in, out)``: it leaves as ``<layer>.weight`` ``(out, in)``, its bias as
``<layer>.bias``; layer names come from the config. Keras names the weights file's groups after the
layer classes in order (``layers/dense``, ``layers/dense_1``, ...), not after the layers' names; the
reader walks the config's layers in the same order to pair them. Where the model is a Sequential chain (nested Sequentials included) of
``Dense`` layers (``Dropout`` and the input layer aside) with known activations, it is rebuilt as a
torch ``nn.Sequential`` so that the data sections run; a final ``softmax`` is left out (the module
returns logits, as classifiers here do). Needs ``h5py`` (``pip install 'dense-inspector[keras]'``).
"""

from __future__ import annotations

import io
import json
import math
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from inspector.checks import printable
from inspector.errors import InspectorError
from inspector.formats import check_shape, zip_magic, zip_read_error
from inspector.sources.base import Contents, TensorSource, first_line, linear_from, zip_names

_CONFIG = "config.json"
_WEIGHTS = "model.weights.h5"
_MAX_CONFIG = 64 * 1024 * 1024
_DEFLATE_MAX_RATIO = 1032  # the most deflate can compress: a compressed dataset holds at most this times its bytes
_ACTIVATIONS: dict[str, type[nn.Module] | None] = {
    "linear": None,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "elu": nn.ELU,
    "softplus": nn.Softplus,
}
_PASSIVE = ("InputLayer", "Dropout")  # no weights, nothing at inference


def _snake(name: str) -> str:
    """Keras' ``to_snake_case``: the group name its weights file gives a layer class."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _activation(config: dict[str, Any]) -> str:
    act = config.get("activation", "linear")
    if isinstance(act, dict):  # a serialised activation object
        act = act.get("config", {}).get("name") or act.get("class_name", "")
    return str(act)


class KerasSource(TensorSource):
    """A Keras 3 ``.keras`` archive."""

    format = "keras"
    infers_mlp = False  # the config says what runs: rebuilt from it (model), never guessed from names

    def __init__(self, path: Path, *, trust_pickle: bool = False) -> None:
        super().__init__(path, trust_pickle=trust_pickle)
        self._layers: list[dict[str, Any]] | None = None
        self._arrays: dict[str, np.ndarray] = {}
        self._chain = False  # Sequential all the way down: the layers' order is the computation's

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        return zip_magic(head) and {_CONFIG, _WEIGHTS} <= zip_names(path)

    def _parse(self) -> list[dict[str, Any]]:
        """``[{name, class_name, activation, tensors: {our name: array}}]`` for the layers, in order."""
        if self._layers is not None:
            return self._layers
        try:
            import h5py
        except ImportError:
            raise InspectorError(
                f"{self.path}: a Keras file; reading it needs h5py: pip install 'dense-inspector[keras]'"
            ) from None
        try:
            with zipfile.ZipFile(self.path) as archive:
                if archive.getinfo(_CONFIG).file_size > _MAX_CONFIG:
                    raise InspectorError(f"{self.path}: the Keras config is larger than {_MAX_CONFIG} bytes")
                config = json.loads(archive.read(_CONFIG).decode("utf-8"))
                weights = archive.read(_WEIGHTS)
        except InspectorError:
            raise
        except Exception as exc:  # zip, CRC, JSON and decoding errors
            corrupt = zip_read_error(self.path, exc)  # each member is read to its end: zipfile checks its CRC
            raise corrupt or InspectorError(
                f"{self.path}: corrupt Keras file ({first_line(exc)}); re-save it"
            ) from None
        try:
            layer_configs = config["config"]["layers"]
            assert isinstance(layer_configs, list)
        except (KeyError, TypeError, AssertionError):
            raise InspectorError(
                f"{self.path}: the Keras config has no list of layers (a subclassed model?); "
                "save a Sequential or Functional model"
            ) from None
        layers: list[dict[str, Any]] = []
        taken: set[str] = set()

        def walk(h5: Any, entries: list[Any], group_prefix: str, name_prefix: str, depth: int) -> None:
            counts: dict[str, int] = {}  # Keras numbers the groups of each class within one model
            for entry in entries:
                cls = str(entry.get("class_name", ""))
                cfg = entry.get("config", {}) or {}
                snake = _snake(cls)
                k = counts.get(snake, 0)
                counts[snake] = k + 1
                group = f"{group_prefix}layers/{snake}" + (f"_{k}" if k else "")
                name = name_prefix + re.sub(r"[^0-9A-Za-z_]+", "_", str(cfg.get("name") or f"{snake}_{k}"))
                while name in taken:
                    name += "_"
                taken.add(name)
                inner = cfg.get("layers")
                if isinstance(inner, list) and depth < 8:  # a model inside the model: its layers, named under it
                    self._chain = self._chain and cls == "Sequential"
                    walk(h5, inner, f"{group}/", f"{name}.", depth + 1)
                    continue
                variables = (
                    [
                        self._variable(h5[f"{group}/vars"][key], len(weights))
                        for key in sorted(h5[f"{group}/vars"], key=int)
                    ]
                    if f"{group}/vars" in h5
                    else []
                )
                tensors: dict[str, np.ndarray] = {}
                if cls == "Dense" and variables and variables[0].ndim == 2:
                    tensors[f"{name}.weight"] = np.ascontiguousarray(variables[0].T)
                    if len(variables) > 1:
                        tensors[f"{name}.bias"] = variables[1]
                elif cls == "Embedding" and variables:
                    tensors[f"{name}.embeddings"] = variables[0]
                else:
                    tensors.update({f"{name}.var{i}": v for i, v in enumerate(variables)})
                layers.append({"name": name, "class_name": cls, "activation": _activation(cfg), "tensors": tensors})

        self._chain = config.get("class_name") == "Sequential"
        try:
            with h5py.File(io.BytesIO(weights), "r") as h5:
                walk(h5, layer_configs, "", "", 0)
        except InspectorError:
            raise
        except Exception as exc:
            raise InspectorError(f"{self.path}: corrupt Keras weights ({first_line(exc)}); re-save it") from None
        for layer in layers:
            self._arrays.update(layer["tensors"])
        self._layers = layers
        return layers

    def _variable(self, dataset: Any, available: int) -> np.ndarray:
        """One weights dataset as an array, after checking its shape and that its bytes can be in the
        file: an HDF5 dataset with no stored chunk reads as its fill value, so a tiny file could
        declare gigabytes (Keras stores weights uncompressed; a compressed one may hold 1032 times its bytes)."""
        shape = check_shape(self.path, dataset.name, dataset.shape)
        declared = math.prod(shape) * dataset.dtype.itemsize
        if declared > available * (_DEFLATE_MAX_RATIO if dataset.compression else 1):
            raise InspectorError(
                f"{self.path}: weights {printable(str(dataset.name))[:80]!r} declare shape {shape} ({declared:,} bytes) in a "
                f"{available:,}-byte weights file; the file is crafted or corrupt"
            )
        return np.asarray(dataset)

    def header(self) -> Contents:
        layers = self._parse()
        meta = {
            name: torch.empty(a.shape, dtype=torch.from_numpy(np.empty(0, a.dtype)).dtype, device="meta")
            for name, a in self._arrays.items()
        }
        shown = {"layers": [f"{layer['name']} ({layer['class_name']})" for layer in layers]}
        return Contents(meta, metadata=shown)

    def read(self, names: list[str]) -> Iterator[tuple[str, torch.Tensor]]:
        self._parse()
        for name in names:
            yield name, torch.from_numpy(np.ascontiguousarray(self._arrays[name]))

    def model(self, activation: str | None) -> nn.Module | None:
        layers = [layer for layer in self._parse() if layer["class_name"] not in _PASSIVE]
        if (
            not self._chain
            or not layers
            or any(layer["class_name"] != "Dense" or layer["activation"] not in _ACTIVATIONS for layer in layers[:-1])
        ):
            return None
        last = layers[-1]
        if last["class_name"] != "Dense" or last["activation"] not in (*_ACTIVATIONS, "softmax"):
            return None
        shapes = [layer["tensors"][f"{layer['name']}.weight"].shape for layer in layers]  # (out, in) each
        if any(after[1] != before[0] for before, after in zip(shapes, shapes[1:])):
            return None
        root = nn.Sequential()
        for layer in layers:
            bias = layer["tensors"].get(f"{layer['name']}.bias")
            linear = linear_from(
                torch.from_numpy(layer["tensors"][f"{layer['name']}.weight"].copy()),
                None if bias is None else torch.from_numpy(bias.copy()),
            )
            # a layer of a nested Sequential ("block.in1") goes into a nested nn.Sequential, so that the
            # module's own names are the file's names; in Sequential order, which is the computation's
            *blocks, leaf = layer["name"].split(".")
            container = root
            for block in blocks:
                if block not in container._modules:
                    container.add_module(block, nn.Sequential())
                container = container._modules[block]  # type: ignore[assignment]
            container.add_module(leaf, linear)
            act = _ACTIVATIONS.get(layer["activation"])
            if act is not None:
                container.add_module(f"{leaf}_{layer['activation']}", act())
        return root.eval()
