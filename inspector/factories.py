"""The user's own model and data, named on the command line as factories.

A factory is a callable in the user's code that takes no arguments and returns the
``nn.Module`` (``--model``) or the data (``--data``: anything
:func:`~inspector.analysis.inputs.as_source` accepts). It is named as

* ``pkg.module:name``: imported like any module (the current folder and ``PYTHONPATH``
  are searched, as for ``python -m``);
* ``path/to/file.py:name``: loaded from that file. Its folder is on ``sys.path`` only
  while the file is imported and while the factory runs (so the file can import the
  modules beside it), and is removed afterwards; the file's module stays in
  ``sys.modules`` under a private name, as its classes need it.

``name`` may be a dotted attribute path (``file.py:Models.small``). Importing the user's
code runs it: that is the user's explicit choice. Whatever goes wrong in it (a syntax
error, an import error, a missing name, the factory raising, a wrong return type) is an
:class:`~inspector.errors.InspectorError` of one line naming the factory and the exception.

Weights for a factory's model (``--weights FILE``) load with the same safe loader as
checkpoints (safetensors, or ``.pt`` through ``weights_only``) and must match the model's
keys exactly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import importlib.util
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from inspector._version import __version__
from inspector.analysis import analyze
from inspector.analysis.inputs import as_source
from inspector.analysis.sites import KINDS
from inspector.checkpoints import (
    STATE_DICT_FORMAT,
    TIED_KEY,
    Checkpoint,
    checkpoint_suffix,
    is_own_checkpoint,
    load,
    read_header,
    read_parts,
)
from inspector.checks import printable
from inspector.core.dense import dense_layers
from inspector.data import BUILTIN_DATASETS
from inspector.errors import InspectorError
from inspector.evaluation import eval_data_for
from inspector.fileio import atomic_path, read_prefix
from inspector.formats import read_safetensors_header, read_torch_header, safetensors_magic, shared_storage

WHATS = ("model", "data", "target")

_IDENTIFIER = r"[A-Za-z_]\w*"
_ATTRIBUTE = rf"{_IDENTIFIER}(?:\.{_IDENTIFIER})*"
_SPEC = re.compile(rf"^(?P<source>{_ATTRIBUTE}|.+\.py):(?P<name>{_ATTRIBUTE})$", re.DOTALL)


def is_factory_spec(text: str) -> bool:
    """Whether ``text`` reads as a factory: ``dotted.module:name`` or ``path.py:name``."""
    return bool(_SPEC.match(text))


def _flag(spec: str, what: str) -> str:
    return f"--{what} {spec}"


def _exception_line(exc: BaseException) -> str:
    """``ValueError: bad width``: the type and the first line of the message."""
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return printable(text)[:300]


def factory_file(spec: str) -> Path | None:
    """The file a ``path.py:name`` factory reads (None for a module factory): a command's input."""
    match = _SPEC.match(spec)
    if match is None or not match["source"].endswith(".py"):
        return None
    return Path(match["source"])


@contextlib.contextmanager
def _on_sys_path(folder: Path | None) -> Iterator[None]:
    """``folder`` first on ``sys.path`` inside the block, and gone after it (unless it was there already)."""
    entry = str(folder) if folder is not None else None
    if entry is None or entry in sys.path:
        yield
        return
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)


def _module_name(path: Path) -> str:
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
    stem = re.sub(r"\W", "_", path.stem)
    return f"_inspector_factory_{stem}_{digest}"


def _import_file(spec: str, what: str, path: Path) -> Any:
    if not path.is_file():
        reason = "is a folder" if path.is_dir() else "does not exist"
        raise InspectorError(f"{_flag(spec, what)}: {path} {reason}; give an existing Python file")
    resolved = path.resolve()
    name = _module_name(resolved)
    if name in sys.modules:  # the same file named twice in one process (--model and --data)
        return sys.modules[name]
    loader_spec = importlib.util.spec_from_file_location(name, resolved)
    if loader_spec is None or loader_spec.loader is None:  # pragma: no cover - a .py path always has a loader
        raise InspectorError(f"{_flag(spec, what)}: cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = module  # dataclasses and pickling look classes up here while the file runs
    try:
        with _on_sys_path(resolved.parent):
            loader_spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        del sys.modules[name]
        raise InspectorError(f"{_flag(spec, what)}: importing {path} raised {_exception_line(exc)}") from exc
    return module


def _import_module(spec: str, what: str, dotted: str) -> Any:
    try:
        return importlib.import_module(dotted)
    except (Exception, SystemExit) as exc:
        hint = ""
        if isinstance(exc, ModuleNotFoundError) and exc.name is not None and dotted.startswith(exc.name):
            hint = "; run from the folder that holds it, add it to PYTHONPATH, or name a file: path/to/file.py:name"
        raise InspectorError(f"{_flag(spec, what)}: importing {dotted} raised {_exception_line(exc)}{hint}") from exc


def load_factory(spec: str, what: str) -> Callable[[], Any]:
    """The callable ``spec`` names (``pkg.module:name`` or ``path/to/file.py:name``); ``what``: ``model`` or ``data``.

    Imports (runs) the user's module. Raises :class:`InspectorError` (one line naming
    ``spec``) for a malformed spec, a module that fails to import, a missing name or a
    value that is not callable.
    """
    if what not in WHATS:
        raise ValueError(f"what must be one of {WHATS}, got {what!r}")
    match = _SPEC.match(spec)
    if match is None:
        raise InspectorError(
            f"{_flag(spec, what)}: not a factory; write pkg.module:name or path/to/file.py:name "
            f"(a function that takes no arguments and returns the {what})"
        )
    source, attribute = match["source"], match["name"]
    if source.endswith(".py"):
        module = _import_file(spec, what, Path(source))
    else:
        module = _import_module(spec, what, source)
    value: Any = module
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            public = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))[:8]
            known = f"; it defines {', '.join(public)}" if public else ""
            raise InspectorError(f"{_flag(spec, what)}: {source} has no attribute {attribute!r}{known}") from None
        except Exception as exc:  # a module __getattr__ of the user's
            raise InspectorError(f"{_flag(spec, what)}: reading {attribute} raised {_exception_line(exc)}") from exc
    if not callable(value):
        raise InspectorError(
            f"{_flag(spec, what)}: {attribute} is a {type(value).__name__}, not a callable; "
            f"name a function that returns the {what}"
        )
    return value  # type: ignore[no-any-return]


def call_factory(spec: str, what: str) -> Any:
    """Load the factory ``spec`` names and call it with no arguments; the failure of either is one line."""
    factory = load_factory(spec, what)
    path = factory_file(spec)
    try:
        with _on_sys_path(path.resolve().parent if path is not None else None):
            return factory()
    except (Exception, SystemExit) as exc:
        raise InspectorError(f"{_flag(spec, what)}: the factory raised {_exception_line(exc)}") from exc


def model_from_factory(
    spec: str, weights: str | os.PathLike[str] | None = None, *, trust_pickle: bool = False
) -> nn.Module:
    """The ``nn.Module`` factory ``spec`` returns, in eval mode, with ``weights`` loaded when given.

    ``weights``: a ``.safetensors`` or ``.pt`` file read by the safe loader (``.pt`` through
    ``weights_only``; a pickled whole module only with ``trust_pickle``); its keys must match
    the model's exactly.
    """
    model = call_factory(spec, "model")
    if not isinstance(model, nn.Module):
        raise InspectorError(
            f"{_flag(spec, 'model')}: the factory returned a {type(model).__name__}, not an nn.Module; "
            "return the model itself (e.g. `return MyNet()`)"
        )
    if weights is not None:
        path = factory_file(spec)
        # a pickled module (--trust-pickle) names its classes by module: the factory file's folder
        # is on sys.path while it loads, as while the factory ran
        with _on_sys_path(path.resolve().parent if path is not None and trust_pickle else None):
            load_weights(model, Path(weights), trust_pickle=trust_pickle, label=_flag(spec, "model"))
    return model.eval()


def read_state_dict(path: Path, *, trust_pickle: bool = False) -> Mapping[str, torch.Tensor]:
    """The tensors of a weights file, through the checkpoints' safe loader (header validated first).

    Any of the files :func:`inspector.checkpoints.load` reads: safetensors, a ``.pt`` state dict
    (or one wrapped as ``{"state_dict": ...}``), a dense-inspector checkpoint, and a pickled
    whole module with ``trust_pickle``.
    """
    header = read_header(path, trust_pickle=trust_pickle)
    module = header.source.header().module
    if module is not None:
        return dict(module.state_dict())
    parts, _ = read_parts(path, header, trust_pickle=trust_pickle)
    return parts.state


def _preview(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return f"{shown} (+{len(names) - limit} more)" if len(names) > limit else shown


def load_weights(model: nn.Module, path: Path, *, trust_pickle: bool = False, label: str = "the model") -> None:
    """Load the weights file ``path`` into ``model`` in place; keys and shapes must match exactly."""
    state = read_state_dict(path, trust_pickle=trust_pickle)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {_preview(missing)}")
        if unexpected:
            parts.append(f"unexpected {_preview(unexpected)}")
        raise InspectorError(
            f"--weights {path}: its keys do not match {label}: {'; '.join(parts)}; "
            "save the weights of the model this factory builds (model.state_dict())"
        )
    wrong = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items() if state[k].shape != v.shape
    ]
    if wrong:
        raise InspectorError(f"--weights {path}: shapes do not match {label}: {_preview(wrong, 3)}")
    try:
        model.load_state_dict(dict(state), strict=True)
    except RuntimeError as exc:  # pragma: no cover - keys and shapes were checked above
        raise InspectorError(f"--weights {path}: {_exception_line(exc)}") from None


def data_from_factory(spec: str) -> Any:
    """The data factory ``spec`` returns, checked to be something the analysis can read more than once."""
    data = call_factory(spec, "data")
    if data is None or isinstance(data, (int, float, str, bytes, bool)):
        raise InspectorError(
            f"{_flag(spec, 'data')}: the factory returned a {type(data).__name__}; return (X, y) arrays, "
            "a torch Dataset, a DataLoader or a list of batches"
        )
    try:
        as_source(data)  # validates the kind only: nothing is iterated
    except InspectorError as exc:
        raise InspectorError(f"{_flag(spec, 'data')}: {exc}") from None
    return data


def load_tokenizer(folder: str | os.PathLike[str], label: str | None = None) -> Any:
    """A tokenizer saved in the local ``folder`` (``save_pretrained``), read with ``transformers``; never downloads.
    ``label`` starts its error messages (default ``--tokenizer FOLDER``)."""
    folder = Path(folder)
    label = label or f"--tokenizer {folder}"
    if not folder.is_dir():
        raise InspectorError(f"{label}: not a folder; give the folder tokenizer.save_pretrained() wrote")
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise InspectorError(
            f"{label}: reading a tokenizer needs the transformers package; "
            "pip install transformers, or leave --tokenizer out (tokens are then shown as ids)"
        ) from None
    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError... for a folder it cannot read
        raise InspectorError(
            f"{label}: not a tokenizer folder ({_exception_line(exc)}); "
            "give the folder tokenizer.save_pretrained() wrote"
        ) from None


def parse_activations(text: str) -> dict[str, str]:
    """``"fc1=relu,head.fc=gelu"`` as ``{"fc1": "relu", "head.fc": "gelu"}``, activation names checked."""
    declared: dict[str, str] = {}
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        layer, sep, kind = (s.strip() for s in item.partition("="))
        if not sep or not layer or not kind:
            raise InspectorError(f"--activations: expected LAYER=ACTIVATION items like fc1=relu, got {item!r}")
        if kind not in KINDS and kind != "none":
            raise InspectorError(
                f"--activations: unknown activation {kind!r} for {layer}; choose from {', '.join(KINDS)} or none"
            )
        declared[layer] = kind
    if not declared:
        raise InspectorError("--activations: give at least one LAYER=ACTIVATION, e.g. fc1=relu")
    return declared


def check_activations(model: nn.Module, declared: Mapping[str, str], label: str) -> None:
    """Refuse a declared layer that is not an ``nn.Linear`` of ``model``, listing a few that are."""
    linears = [name for name, _ in dense_layers(model)]
    unknown = [layer for layer in declared if layer not in linears]
    if unknown:
        raise InspectorError(
            f"--activations names {unknown[0]!r}, which is not an nn.Linear of {label}; "
            f"its linear layers are {_preview(linears, 6)}"
        )


def resolve_data(
    spec: str | None, model: nn.Module, *, label_column: str | None = None, source: str = "<model>"
) -> Any:
    """What ``--data`` names, for a model from a factory: a data factory's return, a built-in dataset's
    test split or a file's rows (as for checkpoints), or ``None`` (weight-only analysis).

    The rule: a built-in name (``digits``, ``synthetic``) or an existing file is data as before;
    otherwise a value shaped like a factory is a factory.
    """
    if spec is None:
        return None
    if not is_data_file_or_builtin(spec) and is_factory_spec(spec):
        return data_from_factory(spec)
    stub = Checkpoint(model=model, config=None, source=source, kind="factory")
    return eval_data_for(stub, spec, label_column=label_column)


def is_data_file_or_builtin(spec: str) -> bool:
    return spec in BUILTIN_DATASETS or Path(spec).exists()


def is_data_factory(spec: str | None) -> bool:
    """Whether ``--data spec`` names a factory (an existing file or a built-in name wins)."""
    return spec is not None and not is_data_file_or_builtin(spec) and is_factory_spec(spec)


@contextlib.contextmanager
def user_code(label: str) -> Iterator[None]:
    """Run the analysis of the user's model: every error becomes one line naming ``label``.

    The user's forward, dataset and loader run inside; whatever they raise is theirs.
    """
    try:
        yield
    except KeyboardInterrupt:
        raise
    except InspectorError as exc:
        raise InspectorError(f"{label}: {exc}") from exc
    except (Exception, SystemExit) as exc:
        raise InspectorError(f"{label}: the analysis stopped: the model or data raised {_exception_line(exc)}") from exc


@dataclass(frozen=True)
class FactoryRun:
    """A model from a factory, analysed: what the report and the dashboard need."""

    analysis: Any  # inspector.analysis.Analysis
    model: nn.Module
    data: Any
    task: str | None
    tokenizer: Any
    label: str
    target: Any = None  # the target= function the analysis explained, when one was given


def analyze_factory(
    model_spec: str | None,
    data_spec: str | None = None,
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    activation: str | None = None,
    weights: str | os.PathLike[str] | None = None,
    trust_pickle: bool = False,
    label_column: str | None = None,
    task: str | None = None,
    tokenizer: str | os.PathLike[str] | None = None,
    activations: Mapping[str, str] | None = None,
    options: Any = None,
    device: torch.device | str | None = None,
    notify: Callable[[str], None] | None = None,
) -> FactoryRun:
    """Build the model ``model_spec`` names (``weights`` loaded), read ``data_spec``, and analyse them.

    ``data_spec``: a data factory, a built-in dataset name, a ``.npz``/``.csv`` file or ``None``.
    ``checkpoint`` (instead of ``model_spec``): a checkpoint file, loaded as
    :func:`inspector.checkpoints.load` does (``activation`` for a foreign state dict), for a
    checkpoint analysed on a data factory's data. ``tokenizer``: a local tokenizer folder.
    Every failure is one line naming the factory.
    """
    if (model_spec is None) == (checkpoint is None):
        raise InspectorError("give a model factory or a checkpoint, not both or neither")
    loaded_tokenizer = load_tokenizer(tokenizer) if tokenizer is not None else None  # seconds, before user code
    subject: nn.Module | Checkpoint
    if model_spec is not None:
        label = _flag(model_spec, "model")
        model = subject = model_from_factory(model_spec, weights, trust_pickle=trust_pickle)
    else:
        label = str(checkpoint)
        subject = load(Path(str(checkpoint)), activation=activation, trust_pickle=trust_pickle)
        model = subject.model
        for notice in subject.notices:
            if notify is not None:
                notify(notice)
    if activations:
        check_activations(model, activations, label)
    if device is not None:
        with user_code(label):
            model.to(device)
    data = resolve_data(data_spec, model, label_column=label_column, source=label)
    if data_spec is not None:
        label = f"{label} with {_flag(data_spec, 'data')}"
    with user_code(label):
        analysis = analyze(
            subject, data, task=task, tokenizer=loaded_tokenizer, activations=activations, options=options
        )
    if model_spec is not None:  # say where the model came from: the factory (and its weights)
        source = model_spec + (f" with weights {weights}" if weights is not None else "")
        analysis = dataclasses.replace(analysis, model=dataclasses.replace(analysis.model, source=source))
    return FactoryRun(analysis, model, data, task, loaded_tokenizer, label)


def is_own_state_dict(path: Path) -> bool:
    """Whether ``path`` is a state dict :func:`save_state_dict` wrote (from its header alone)."""
    try:
        if safetensors_magic(read_prefix(path, 9)):
            return read_safetensors_header(path).metadata.get("format") == json.dumps(STATE_DICT_FORMAT)
        obj = read_torch_header(path)
        return isinstance(obj, Mapping) and obj.get("format") == STATE_DICT_FORMAT
    except Exception:  # unreadable or foreign: not ours
        return False


def save_state_dict(model: nn.Module, path: str | os.PathLike[str], *, force: bool = False) -> Path:
    """Write ``model.state_dict()`` to ``.safetensors`` or ``.pt`` (by extension), atomically.

    safetensors: the tensors as they are (``safetensors.torch.load_file`` gives the state dict);
    ``.pt``: ``{"format": ..., "state_dict": ...}`` (``torch.load(f)["state_dict"]``). An existing
    file is replaced only with ``force`` and only when dense-inspector wrote it.

    Tied weights (GPT-2's ``lm_head.weight``, the same tensor as ``transformer.wte.weight``) are stored
    under each name, so that every key loads; the file says which ones repeat (a ``.pt`` file stores them
    as one tensor, safetensors, which refuses shared storage, as copies and the ``tied`` metadata), and
    ``inspector info`` counts them once, as the model does.
    """
    path = Path(path)
    suffix = checkpoint_suffix(path)
    source = model.state_dict()
    ties = {  # later name -> first name, for exact ties (the same bytes, shape and strides)
        k: first
        for k, first in shared_storage(source).items()
        if source[k].shape == source[first].shape
        and source[k].stride() == source[first].stride()
        and source[k].storage_offset() == source[first].storage_offset()
    }
    state: dict[str, torch.Tensor] = {}
    for k, v in source.items():
        tied = ties.get(k)
        if tied is not None and suffix != ".safetensors":
            state[k] = state[tied]
        else:
            state[k] = v.detach().cpu().contiguous().clone()  # a clone: no storage shared with the model
    with atomic_path(path, force=force, ours=lambda p: is_own_state_dict(p) or is_own_checkpoint(p)) as tmp:
        if suffix == ".safetensors":
            from safetensors.torch import save_file

            mode = tmp.stat().st_mode & 0o777
            metadata = {"format": json.dumps(STATE_DICT_FORMAT), "package_version": json.dumps(__version__)}
            if ties:
                metadata[TIED_KEY] = json.dumps(ties)
            save_file(state, str(tmp), metadata=metadata)
            os.chmod(tmp, mode)  # safetensors replaces the file with a private (0600) one
        else:
            torch.save({"format": STATE_DICT_FORMAT, "package_version": __version__, "state_dict": state}, tmp)
    return path
