"""Frozen result dataclasses and their lossless JSON + npz round trip.

A result is a tree of frozen dataclasses whose leaves are numpy arrays,
numbers, strings, booleans, ``None``, tuples and string-keyed dicts. It is
written as two files into a folder that may hold other files:

* ``analysis.json``: the tree, with each dataclass tagged ``{"__type__": name}``
  and each array replaced by ``{"__array__": key}``, and the name of its arrays file;
* ``arrays-<pid>-<hex>.npz`` (``arrays.npz`` in older folders): the arrays under
  those keys, with their exact dtypes.

Non-finite floats are written as ``{"__float__": "nan" | "inf" | "-inf"}`` so
the JSON stays strict. Lists come back as tuples (results never hold lists).

Older schema versions stay readable: :data:`FIELD_RENAMES` maps each version to the
field renames that lead to the next one, applied in order while decoding, and a field
an older file lacks takes its dataclass default.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import math
import os
import re
import secrets
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from typing_extensions import dataclass_transform  # typing's own from Python 3.11; a dependency of torch

from inspector.errors import InspectorError
from inspector.fileio import (
    check_output_folder,
    describe_os_error,
    make_output_folder,
    process_alive,
    read_prefix,
    refuse_inputs,
    write_atomic,
    write_text_atomic,
)

SCHEMA_VERSION = 2
# {schema version v: {result type name: {field name in v: field name in v + 1}}}. Reading a
# version-v document applies the renames of v, v + 1, ... in turn, so each change of the
# schema is one entry here. A field added with a dataclass default needs no entry: older
# files lack it and decoding fills in the default.
FIELD_RENAMES: dict[int, dict[str, dict[str, str]]] = {
    1: {  # schema 2: one key, "layer", for which layer (the nn.Linear's module path)
        "LayerParameters": {"name": "layer"},
        "LayerWeights": {"name": "layer"},
        "LayerComparison": {"name": "layer"},
        "LayerActivations": {"name": "module", "linear": "layer"},
        "DataInfo": {"accuracy": "metric"},
        # pruning names the task's metric (accuracy, R², a user metric), not always accuracy
        "PruningCurve": {"accuracy": "metric", "finetuned_accuracy": "finetuned_metric"},
        "PruningReport": {"baseline_accuracy": "baseline_metric", "dead_removed_accuracy": "dead_removed_metric"},
    },
}
JSON_NAME = "analysis.json"
ARRAYS_NAME = "arrays.npz"  # the arrays file of folders written before analysis.json named its own
# `arrays-<pid of the writer>-<hex>.npz`, or the older fixed name.
# Arrays files this process has written but not yet committed (another thread may be sweeping the folder).
_COMMITTING: set[str] = set()
MARKER = "__dense_inspector__"  # a member of every arrays file save_result writes: how orphans are known as ours
_ARRAYS_RE = re.compile(r"^arrays(?:-(\d+)-[0-9a-f]+)?\.npz$")
_ARRAYS_PREFIX_RE = re.compile(r'\{\s*"arrays"\s*:\s*"(arrays-\d+-[0-9a-f]+\.npz)"\s*,')
_ARRAYS_MENTION_RE = re.compile(r"arrays-\d+-[0-9a-f]+\.npz")

_REGISTRY: dict[str, type] = {}
T = TypeVar("T")


@dataclass_transform(frozen_default=True)
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


def _renames_from(version: int) -> dict[str, dict[str, str]]:
    """Per type, each field name of a version-``version`` document mapped to its current name."""
    combined: dict[str, dict[str, str]] = {}
    for step in range(version, SCHEMA_VERSION):
        for type_name, renames in FIELD_RENAMES.get(step, {}).items():
            current = combined.setdefault(type_name, {})
            carried = set(current.values())  # names at this step that an older name was renamed to
            for original, name in current.items():  # a rename of a rename: follow the chain
                current[original] = renames.get(name, name)
            for old, new in renames.items():
                if old in carried or old in current:
                    continue  # already followed above, or a reused name the document never meant
                current[old] = new
    return combined


def _decode(obj: Any, arrays: Any, renames: dict[str, dict[str, str]] | None = None) -> Any:
    if isinstance(obj, dict):
        if "__array__" in obj:
            return arrays[obj["__array__"]]
        if "__float__" in obj:
            return float(obj["__float__"])
        if "__type__" in obj:
            cls = _REGISTRY.get(obj["__type__"])
            if cls is None:
                raise InspectorError(f"unknown result type {obj['__type__']!r}; upgrade dense-inspector")
            rename = (renames or {}).get(obj["__type__"], {})
            kwargs = {
                rename[k] if k in rename else k: _decode(v, arrays, renames) for k, v in obj.items() if k != "__type__"
            }
            return cls(**kwargs)
        return {k: _decode(v, arrays, renames) for k, v in obj.items()}
    if isinstance(obj, list):
        return tuple(_decode(v, arrays, renames) for v in obj)
    return obj


def to_json_and_arrays(obj: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Split a result tree into a JSON-able dict and a flat ``{key: array}`` dict."""
    arrays: dict[str, np.ndarray] = {}
    tree = _encode(obj, "", arrays)
    return {"schema_version": SCHEMA_VERSION, "result": tree}, arrays


def from_json_and_arrays(doc: dict[str, Any], arrays: Any) -> Any:
    """Decode a document of this schema version or any older one (see :data:`FIELD_RENAMES`)."""
    version = doc.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= SCHEMA_VERSION:
        raise InspectorError(
            f"analysis schema version {version} is not one this dense-inspector reads (1 to {SCHEMA_VERSION}); "
            "upgrade dense-inspector or re-run `inspector analyze`"
        )
    return _decode(doc["result"], arrays, _renames_from(version) if version < SCHEMA_VERSION else None)


def _inline(tree: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(tree, dict):
        if set(tree) == {"__array__"}:
            a = np.ascontiguousarray(arrays[tree["__array__"]])
            return {
                "__ndarray__": {
                    "dtype": a.dtype.str,
                    "shape": list(a.shape),
                    "base64": base64.b64encode(a.tobytes()).decode("ascii"),
                }
            }
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


def _arrays_name_of(doc: Any) -> str | None:
    """The arrays file an ``analysis.json`` document names, or None when the name is not one of ours."""
    name = doc.get("arrays", ARRAYS_NAME) if isinstance(doc, dict) else None
    return name if isinstance(name, str) and _ARRAYS_RE.fullmatch(name) else None


def _own_document(json_path: Path) -> dict[str, Any] | None:
    """``analysis.json`` parsed, when it is recognisably one this module wrote; else None."""
    if not json_path.is_file():  # a FIFO named analysis.json would block the read forever
        return None
    try:
        doc = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if isinstance(doc, dict) and "schema_version" in doc and "result" in doc and _arrays_name_of(doc):
        return doc
    return None


def result_files(directory: str | os.PathLike[str]) -> tuple[Path, Path | None]:
    """``(analysis.json, the arrays file it names)`` of an analysis folder; the second is None if unknown."""
    json_path = Path(directory) / JSON_NAME
    name = _arrays_name_of(_own_document(json_path))  # None unless the document is one of ours
    return json_path, (json_path.parent / name) if name is not None else None


def check_result_folder(
    directory: str | os.PathLike[str], *, force: bool = False, inputs: Iterable[str | os.PathLike[str]] = ()
) -> Path:
    """Raise unless :func:`save_result` could write into ``directory``; creates nothing.

    The folder may hold other files (a checkpoint, notes): only ``analysis.json`` and the
    arrays file it names are ever replaced, and only with ``force`` and when they are ours.
    """
    directory = Path(directory)
    check_output_folder(directory)
    json_path, arrays_path = result_files(directory)
    refuse_inputs(directory, inputs)
    refuse_inputs(json_path, inputs)
    if arrays_path is not None:
        refuse_inputs(arrays_path, inputs)
    if json_path.exists() or json_path.is_symlink():
        if not force:
            raise InspectorError(f"{json_path} already exists; pass --force to overwrite it")
        if arrays_path is None or json_path.is_symlink():
            raise InspectorError(
                f"{json_path} was not written by dense-inspector; move it away or choose another --out"
            )
    return directory


def _referenced_arrays(directory: Path) -> set[str]:
    """Every arrays file name that some ``*.json`` in ``directory`` names (a renamed old analysis, too).

    Our documents start with ``{"arrays": "<name>"``, so a short prefix suffices; any other
    JSON is searched whole, because a name it mentions must never be deleted.
    """
    names: set[str] = set()
    for json_path in directory.glob("*.json"):
        head = read_prefix(json_path, 256).decode("utf-8", "replace")
        match = _ARRAYS_PREFIX_RE.match(head)
        if match is not None:
            names.add(match.group(1))
        elif json_path.is_file():
            with contextlib.suppress(OSError):
                text = json_path.read_bytes().decode("utf-8", "replace")
                names.update(_ARRAYS_MENTION_RE.findall(text))
                if _is_older_document(text):  # names arrays.npz by leaving the name out
                    names.add(ARRAYS_NAME)
    return names


def _is_older_document(text: str) -> bool:
    """Whether ``text`` is an ``analysis.json`` of a version that wrote no ``"arrays"`` key (its arrays: ``arrays.npz``)."""
    if '"schema_version"' not in text:
        return False
    try:
        doc = json.loads(text)
    except ValueError:
        return False
    return isinstance(doc, dict) and "schema_version" in doc and "result" in doc and "arrays" not in doc


def _has_our_marker(path: Path) -> bool:
    """Whether ``path`` is an arrays file :func:`save_result` wrote: a zip holding :data:`MARKER`
    (read from the zip's directory only; a user's file of any name and content is never ours)."""
    try:
        if not path.is_file():
            return False
        with zipfile.ZipFile(path) as archive:
            return f"{MARKER}.npy" in archive.namelist()
    except (OSError, zipfile.BadZipFile, ValueError):
        return False


def _remove_orphaned_arrays(directory: Path, keep: str) -> None:
    """Delete our arrays files that no ``*.json`` names, whose writer has exited (or is this save, done).

    Ours means named ``arrays-<pid>-<hex>.npz`` *and* holding the marker this module writes, so a
    user's file that only looks like one is left alone (an unmarked orphan from an older version
    stays too: a leftover file is harmless, a deleted one is not)."""
    referenced = _referenced_arrays(directory)
    for name in os.listdir(directory):
        match = _ARRAYS_RE.fullmatch(name)
        if match is None or name == keep or match.group(1) is None or name in referenced:
            continue
        pid = int(match.group(1))
        if (pid == os.getpid() and str(directory / name) not in _COMMITTING) or not process_alive(pid):
            if _has_our_marker(directory / name):
                with contextlib.suppress(OSError):
                    (directory / name).unlink()


def save_result(obj: Any, directory: str | os.PathLike[str], *, force: bool = False) -> Path:
    """Write ``directory/analysis.json`` and the arrays file it names, atomically.

    The arrays go to a fresh ``arrays-<pid>-<hex>.npz``; renaming the new ``analysis.json``
    into place is the single commit point, so a reader (or a run killed at any moment)
    sees either the whole old result or the whole new one. The replaced arrays file is
    deleted only after that commit, and only when no other ``*.json`` in the folder names it (a
    copy of the old ``analysis.json`` keeps its arrays). Nothing else in the folder is touched.
    """
    directory = check_result_folder(directory, force=force)
    old_doc = _own_document(directory / JSON_NAME)
    old_arrays = _arrays_name_of(old_doc) if old_doc else None
    doc, arrays = to_json_and_arrays(obj)
    created = not directory.exists()
    make_output_folder(directory)
    arrays_name = f"arrays-{os.getpid()}-{secrets.token_hex(6)}.npz"
    doc = {"arrays": arrays_name, **doc}  # first, so that _referenced_arrays reads only a prefix
    arrays_path = directory / arrays_name

    def write_arrays(tmp: Path) -> None:
        with tmp.open("wb") as fh:  # a file object: given a name, numpy would append its own .npz
            # keys are result field paths ("weights.0.singular_values"); the stubs fear one could be allow_pickle
            np.savez_compressed(fh, **arrays, **{MARKER: np.array(True)})  # type: ignore[arg-type]

    _COMMITTING.add(str(arrays_path))
    try:
        write_atomic(arrays_path, write_arrays)
        write_text_atomic(directory / JSON_NAME, json.dumps(doc, indent=1, allow_nan=False), force=True)
    except BaseException:
        with contextlib.suppress(OSError):
            arrays_path.unlink()
        if created:
            with contextlib.suppress(OSError):  # only if still empty: a failed first write leaves no folder
                directory.rmdir()
        raise
    finally:
        _COMMITTING.discard(str(arrays_path))
    # the replaced arrays go, unless another JSON in the folder still names them (a copy the user
    # kept, e.g. analysis-v1.json): that copy must still open
    if old_arrays is not None and old_arrays != arrays_name and old_arrays not in _referenced_arrays(directory):
        with contextlib.suppress(OSError):
            (directory / old_arrays).unlink()
    _remove_orphaned_arrays(directory, keep=arrays_name)
    return directory


def load_result(directory: str | os.PathLike[str]) -> Any:
    """Read a result written by :func:`save_result` (a folder) or :func:`to_json_document` (a .json file)."""
    directory = Path(directory)
    if directory.is_file() and directory.suffix.lower() == ".json":
        try:
            return from_json_document(directory.read_text(encoding="utf-8"))
        except OSError as exc:
            raise InspectorError(f"cannot read {directory}: {describe_os_error(exc)}") from None
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:
            raise InspectorError(f"{directory}: not a dense-inspector JSON report ({exc})") from None
    json_path = directory / JSON_NAME
    if not json_path.is_file():
        raise InspectorError(f"{directory}: not an analysis folder (no {JSON_NAME}); run `inspector analyze` first")
    # A concurrent --force may commit a new analysis.json and delete the arrays we were about to read.
    for attempt in range(3):
        try:
            doc = json.loads(json_path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise InspectorError(f"cannot read {json_path}: {describe_os_error(exc)}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InspectorError(f"{json_path}: corrupt analysis file ({exc}); re-run `inspector analyze`") from None
        arrays_name = _arrays_name_of(doc)
        if arrays_name is None:
            raise InspectorError(f"{json_path}: not a dense-inspector analysis file; re-run `inspector analyze`")
        npz_path = directory / arrays_name
        try:
            with np.load(npz_path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files if k != MARKER}
            break
        except FileNotFoundError:
            if attempt == 2:
                raise InspectorError(
                    f"{directory}: {arrays_name}, named by {JSON_NAME}, is missing; re-run `inspector analyze`"
                ) from None
        except OSError as exc:
            raise InspectorError(f"cannot read {npz_path}: {describe_os_error(exc)}") from None
        except (ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise InspectorError(f"{npz_path}: corrupt analysis arrays ({exc}); re-run `inspector analyze`") from None
    try:
        return from_json_and_arrays(doc, arrays)
    except (KeyError, TypeError) as exc:
        raise InspectorError(f"{directory}: analysis files don't match ({exc}); re-run `inspector analyze`") from None


def results_equal(a: Any, b: Any) -> bool:
    """Deep equality for result trees: arrays by value and dtype, NaN equal to NaN."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
        )
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        return type(a) is type(b) and all(
            results_equal(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a)
        )
    if isinstance(a, (tuple, list)):
        return isinstance(b, (tuple, list)) and len(a) == len(b) and all(map(results_equal, a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(results_equal(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b) and type(a) is type(b)
