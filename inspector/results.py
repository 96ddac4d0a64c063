"""Frozen result dataclasses and their lossless JSON + npz round trip.

A result is a tree of frozen dataclasses whose leaves are numpy arrays,
numbers, strings, booleans, ``None``, tuples and string-keyed dicts. It is
written as two files:

* ``analysis.json``: the tree, with each dataclass tagged ``{"__type__": name}``
  and each array replaced by ``{"__array__": key}``;
* ``arrays.npz``: the arrays under those keys, with their exact dtypes.

Non-finite floats are written as ``{"__float__": "nan" | "inf" | "-inf"}`` so
the JSON stays strict. Lists come back as tuples (results never hold lists).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from inspector.errors import InspectorError
from inspector.fileio import umask

SCHEMA_VERSION = 1
JSON_NAME = "analysis.json"
ARRAYS_NAME = "arrays.npz"

_REGISTRY: dict[str, type] = {}
T = TypeVar("T")


def result(cls: type[T]) -> type[T]:
    """Make ``cls`` a frozen dataclass and register it for decoding."""
    frozen = dataclasses.dataclass(frozen=True)(cls)
    if cls.__name__ in _REGISTRY and _REGISTRY[cls.__name__] is not frozen:
        raise TypeError(f"result type {cls.__name__} registered twice")
    _REGISTRY[cls.__name__] = frozen
    return frozen


def _encode(obj: Any, key: str, arrays: dict[str, np.ndarray]) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        name = type(obj).__name__
        if _REGISTRY.get(name) is not type(obj):
            raise TypeError(f"{name} is not a registered result type")
        out: dict[str, Any] = {"__type__": name}
        for f in dataclasses.fields(obj):
            out[f.name] = _encode(getattr(obj, f.name), f"{key}.{f.name}" if key else f.name, arrays)
        return out
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            raise TypeError(f"{key}: object arrays are not serialisable")
        arrays[key] = obj
        return {"__array__": key}
    if isinstance(obj, (tuple, list)):
        return [_encode(v, f"{key}.{i}", arrays) for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):
            raise TypeError(f"{key}: dict keys must be strings")
        return {k: _encode(v, f"{key}.{k}", arrays) for k, v in obj.items()}
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        if math.isfinite(value):
            return value
        return {"__float__": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    if obj is None or isinstance(obj, str):
        return obj
    raise TypeError(f"{key}: cannot serialise {type(obj).__name__}")


def _decode(obj: Any, arrays: Any) -> Any:
    if isinstance(obj, dict):
        if "__array__" in obj:
            return arrays[obj["__array__"]]
        if "__float__" in obj:
            return float(obj["__float__"])
        if "__type__" in obj:
            cls = _REGISTRY.get(obj["__type__"])
            if cls is None:
                raise InspectorError(f"unknown result type {obj['__type__']!r}; upgrade dense-inspector")
            kwargs = {k: _decode(v, arrays) for k, v in obj.items() if k != "__type__"}
            return cls(**kwargs)
        return {k: _decode(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return tuple(_decode(v, arrays) for v in obj)
    return obj


def to_json_and_arrays(obj: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Split a result tree into a JSON-able dict and a flat ``{key: array}`` dict."""
    arrays: dict[str, np.ndarray] = {}
    tree = _encode(obj, "", arrays)
    return {"schema_version": SCHEMA_VERSION, "result": tree}, arrays


def from_json_and_arrays(doc: dict[str, Any], arrays: Any) -> Any:
    version = doc.get("schema_version")
    if version != SCHEMA_VERSION:
        raise InspectorError(
            f"analysis schema version {version} is not {SCHEMA_VERSION}; re-run `inspector analyze`"
        )
    return _decode(doc["result"], arrays)


def _inline(tree: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(tree, dict):
        if set(tree) == {"__array__"}:
            a = np.ascontiguousarray(arrays[tree["__array__"]])
            return {"__ndarray__": {"dtype": a.dtype.str, "shape": list(a.shape),
                                    "base64": base64.b64encode(a.tobytes()).decode("ascii")}}
        return {k: _inline(v, arrays) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_inline(v, arrays) for v in tree]
    return tree


def _outline(tree: Any, arrays: dict[str, np.ndarray], path: str = "") -> Any:
    if isinstance(tree, dict):
        if set(tree) == {"__ndarray__"}:
            spec = tree["__ndarray__"]
            raw = base64.b64decode(spec["base64"])
            arrays[path] = np.frombuffer(raw, dtype=np.dtype(spec["dtype"])).reshape(spec["shape"]).copy()
            return {"__array__": path}
        return {k: _outline(v, arrays, f"{path}.{k}") for k, v in tree.items()}
    if isinstance(tree, list):
        return [_outline(v, arrays, f"{path}.{i}") for i, v in enumerate(tree)]
    return tree


def to_json_document(obj: Any) -> str:
    """One self-contained JSON text: the same tree, each array inline as dtype, shape and base64 bytes."""
    doc, arrays = to_json_and_arrays(obj)
    doc["result"] = _inline(doc["result"], arrays)
    return json.dumps(doc, allow_nan=False)


def from_json_document(text: str) -> Any:
    doc = json.loads(text)
    arrays: dict[str, np.ndarray] = {}
    doc["result"] = _outline(doc["result"], arrays)
    return from_json_and_arrays(doc, arrays)


def save_result(obj: Any, directory: str | os.PathLike[str], *, force: bool = False) -> Path:
    """Write ``directory/analysis.json`` and ``directory/arrays.npz`` atomically.

    Both files are written into a temporary sibling folder that is renamed onto
    ``directory`` only when complete; an existing directory is replaced only with ``force``.
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise InspectorError(f"{directory} exists and is not a directory; choose another --out")
    if directory.exists() and not force:
        raise InspectorError(f"{directory} already exists; pass --force to overwrite it")
    parent = directory.parent
    if not parent.exists():
        raise InspectorError(f"folder {parent} does not exist; create it first")
    doc, arrays = to_json_and_arrays(obj)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=parent))
    os.chmod(tmp, 0o777 & ~umask())  # mkdtemp makes it private; the result is an ordinary folder
    try:
        (tmp / JSON_NAME).write_text(json.dumps(doc, indent=1, allow_nan=False), encoding="utf-8")
        np.savez_compressed(tmp / ARRAYS_NAME, **arrays)
        if directory.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old.", dir=parent))
            os.replace(directory, old / "x")
            os.replace(tmp, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


def load_result(directory: str | os.PathLike[str]) -> Any:
    """Read a result written by :func:`save_result` (a folder) or :func:`to_json_document` (a .json file)."""
    directory = Path(directory)
    if directory.is_file() and directory.suffix.lower() == ".json":
        try:
            return from_json_document(directory.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:
            raise InspectorError(f"{directory}: not a dense-inspector JSON report ({exc})") from None
    json_path, npz_path = directory / JSON_NAME, directory / ARRAYS_NAME
    if not json_path.is_file() or not npz_path.is_file():
        raise InspectorError(f"{directory}: not an analysis folder (needs {JSON_NAME} and {ARRAYS_NAME})")
    try:
        doc = json.loads(json_path.read_text(encoding="utf-8"))
        with np.load(npz_path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (json.JSONDecodeError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise InspectorError(f"{directory}: corrupt analysis files ({exc}); re-run `inspector analyze`") from None
    try:
        return from_json_and_arrays(doc, arrays)
    except (KeyError, TypeError) as exc:
        raise InspectorError(f"{directory}: analysis files don't match ({exc}); re-run `inspector analyze`") from None


def results_equal(a: Any, b: Any) -> bool:
    """Deep equality for result trees: arrays by value and dtype, NaN equal to NaN."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype
                and a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")))
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        return type(a) is type(b) and all(
            results_equal(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    if isinstance(a, (tuple, list)):
        return isinstance(b, (tuple, list)) and len(a) == len(b) and all(map(results_equal, a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(results_equal(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b) and type(a) is type(b)
