"""Save and load checkpoints safely.

Checkpoints are data, not code. Every ``.pt`` load goes through
``torch.load(..., weights_only=True)``; a pickled whole ``nn.Module`` is only
unpickled with an explicit ``trust_pickle=True``. Safetensors files never
involve pickle at all.

Formats read:

* dense-inspector's own ``.pt`` / ``.safetensors`` (config, history, preprocessing, snapshots);
* a bare state dict of someone else's MLP (``nn.Sequential`` keys ``0.weight``,
  or ``fc1.weight``...): the chain of linear layers is inferred from shapes;
* common training-checkpoint dicts that wrap one (``{"state_dict": ...}``,
  ``{"model_state_dict": ...}``, ``{"model": ...}``).
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from inspector._version import __version__
from inspector.data import Dataset, SplitSpec, Standardizer
from inspector.errors import InspectorError
from inspector.fileio import atomic_path
from inspector.formats import detect_format, read_safetensors_header
from inspector.models import MLP, MLPConfig, build_mlp, mlp_from_state_dict
from inspector.training import History, TrainConfig, TrainResult

FORMAT_NAME = "dense-inspector"
FORMAT_VERSION = 1
_PREFIX = "_inspector."  # safetensors keys that carry extras, not model weights
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")


@dataclass(frozen=True)
class DatasetInfo:
    """What a model was trained on, enough to recreate its evaluation split."""

    name: str
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...]
    image_shape: tuple[int, int] | None = None
    split: SplitSpec = field(default_factory=SplitSpec)

    @classmethod
    def from_dataset(cls, dataset: Dataset, split: SplitSpec) -> DatasetInfo:
        return cls(dataset.name, dataset.feature_names, dataset.class_names, dataset.image_shape, split)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "feature_names": list(self.feature_names),
            "class_names": list(self.class_names),
            "image_shape": list(self.image_shape) if self.image_shape else None,
            "split": dict(self.split.__dict__),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DatasetInfo:
        shape = d.get("image_shape")
        return cls(
            name=str(d["name"]),
            feature_names=tuple(d.get("feature_names", ())),
            class_names=tuple(d.get("class_names", ())),
            image_shape=(int(shape[0]), int(shape[1])) if shape else None,
            split=SplitSpec(**d.get("split", {})),
        )


@dataclass(frozen=True)
class Checkpoint:
    """A loaded model with everything that travelled with it.

    ``kind`` is ``"dense-inspector"`` (our own file), ``"state-dict"`` (a foreign
    state dict rebuilt as an MLP) or ``"pickled-module"`` (a whole module,
    loaded with ``trust_pickle=True``). ``nonfinite`` names tensors holding NaN
    or Inf: they are loaded, but flagged. ``notices`` are things the user should
    know about how the file was read.
    """

    model: nn.Module
    config: MLPConfig | None
    source: str
    kind: str
    history: History | None = None
    train_config: TrainConfig | None = None
    standardizer: Standardizer | None = None
    dataset: DatasetInfo | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    snapshots: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict, repr=False)
    nonfinite: tuple[str, ...] = ()
    notices: tuple[str, ...] = ()
    package_version: str | None = None

    def at_epoch(self, epoch: int) -> Checkpoint:
        """This run as it was at the end of ``epoch`` (from its weight snapshots)."""
        import dataclasses

        return dataclasses.replace(self, model=self.snapshot_model(epoch), source=f"{self.source}@{epoch}",
                                   snapshots={}, metrics={})

    def snapshot_model(self, epoch: int) -> nn.Module:
        """The model with the weights it had at the end of ``epoch`` (needs snapshots)."""
        if epoch not in self.snapshots:
            have = ", ".join(map(str, sorted(self.snapshots))) or "none"
            raise InspectorError(f"{self.source}: no snapshot for epoch {epoch} (have: {have})")
        if self.config is None:
            raise InspectorError(f"{self.source}: snapshots need a model config")
        model = build_mlp(self.config)
        model.load_state_dict(self.snapshots[epoch])
        return model.eval()


def checkpoint_from_training(result: TrainResult, dataset: Dataset, standardizer: Standardizer,
                             split: SplitSpec) -> Checkpoint:
    """Bundle a :class:`~inspector.training.TrainResult` for saving."""
    return Checkpoint(
        model=result.model,
        config=result.model.config,
        source="<training>",
        kind=FORMAT_NAME,
        history=result.history,
        train_config=result.train_config,
        standardizer=standardizer,
        dataset=DatasetInfo.from_dataset(dataset, split),
        metrics={"test_accuracy": result.test_accuracy, "test_loss": result.test_loss,
                 "wall_time_s": result.wall_time_s},
        snapshots=result.snapshots,
        package_version=__version__,
    )


# --------------------------------------------------------------------------- #
# Saving
# --------------------------------------------------------------------------- #


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}


def _extras(ckpt: Checkpoint) -> dict[str, Any]:
    if ckpt.config is None:
        raise InspectorError("only models with an MLP config can be saved as a dense-inspector checkpoint")
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "config": ckpt.config.to_dict(),
        "history": ckpt.history.to_dict() if ckpt.history else None,
        "train_config": ckpt.train_config.to_dict() if ckpt.train_config else None,
        "dataset": ckpt.dataset.to_dict() if ckpt.dataset else None,
        "metrics": dict(ckpt.metrics),
    }


def checkpoint_suffix(path: Path) -> str:
    """``.pt``, ``.pth`` or ``.safetensors``: the formats :func:`save_checkpoint` writes."""
    suffix = path.suffix.lower()
    if suffix not in (".pt", ".pth", ".safetensors"):
        raise InspectorError(f"{path}: unknown checkpoint extension {suffix!r}; use .pt or .safetensors")
    return suffix


def save_checkpoint(ckpt: Checkpoint, path: str | os.PathLike[str], *, force: bool = False) -> Path:
    """Write ``ckpt`` to ``.pt`` or ``.safetensors`` (chosen by extension), atomically.

    An existing file is only replaced with ``force=True``.
    """
    path = Path(path)
    suffix = checkpoint_suffix(path)
    extras = _extras(ckpt)
    preprocessing = (
        {"mean": torch.from_numpy(ckpt.standardizer.mean), "scale": torch.from_numpy(ckpt.standardizer.scale)}
        if ckpt.standardizer else None
    )
    with atomic_path(path, force=force) as tmp:
        if suffix == ".safetensors":
            from safetensors.torch import save_file

            tensors = _state(ckpt.model)
            if preprocessing:
                tensors.update({f"{_PREFIX}preprocessing.{k}": v.clone() for k, v in preprocessing.items()})
            for epoch, state in ckpt.snapshots.items():
                tensors.update({f"{_PREFIX}snapshot.{epoch}.{k}": v.contiguous().clone() for k, v in state.items()})
            metadata = {k: json.dumps(v) for k, v in extras.items()}
            save_file(tensors, str(tmp), metadata=metadata)
        else:
            payload = dict(extras)
            payload["state_dict"] = _state(ckpt.model)
            payload["preprocessing"] = preprocessing
            payload["snapshots"] = {int(e): s for e, s in ckpt.snapshots.items()}
            torch.save(payload, tmp)
    return path


# --------------------------------------------------------------------------- #
# Loading
# --------------------------------------------------------------------------- #


def torch_load_safely(path: Path, *, trust_pickle: bool, mmap: bool = False) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        if "weights_only" not in str(exc) and "Weights only" not in str(exc):
            raise InspectorError(f"{path}: corrupt pickle data ({_first_line(exc)}); the file is damaged") from None
        if not trust_pickle:
            raise InspectorError(
                f"{path}: holds pickled Python objects (e.g. a whole nn.Module), which can run code "
                "when loaded; save model.state_dict() instead, or pass --trust-pickle "
                "(trust_pickle=True) only if you trust where the file came from"
            ) from None
    except (RuntimeError, EOFError, ValueError, OSError, AttributeError, KeyError) as exc:
        raise InspectorError(
            f"{path}: truncated or corrupt PyTorch file ({_first_line(exc)}); re-export or re-download it"
        ) from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # arbitrary unpickling can fail in arbitrary ways
        raise InspectorError(f"{path}: could not unpickle the file ({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    if not lines:
        return type(exc).__name__
    first = lines[0]
    # torch's messages run on for several sentences; the first one says what broke
    cut = first.find(". ")
    return (first[:cut] if cut > 0 else first)[:200]


def _nonfinite(tensors: Mapping[str, torch.Tensor]) -> tuple[str, ...]:
    return tuple(
        name for name, t in tensors.items()
        if t.is_floating_point() and not bool(torch.isfinite(t).all())
    )


def _own_checkpoint(path: Path, extras: Mapping[str, Any], state: Mapping[str, torch.Tensor],
                    preprocessing: Mapping[str, torch.Tensor] | None,
                    snapshots: dict[int, dict[str, torch.Tensor]], activation: str | None) -> Checkpoint:
    version = int(extras.get("format_version", 0))
    if version > FORMAT_VERSION:
        raise InspectorError(
            f"{path}: written in checkpoint format {version}, newer than this dense-inspector "
            f"reads ({FORMAT_VERSION}); upgrade dense-inspector"
        )
    config = MLPConfig.from_dict(extras["config"])
    notices: list[str] = []
    if activation is not None and activation != config.activation:
        notices.append(f"the checkpoint stores activation {config.activation!r}; ignoring --activation {activation}")
    model = build_mlp(config)
    try:
        model.load_state_dict(dict(state))
    except RuntimeError as exc:
        raise InspectorError(f"{path}: weights don't match the stored config ({_first_line(exc)})") from None
    model.eval()
    history = extras.get("history")
    train_config = extras.get("train_config")
    dataset = extras.get("dataset")
    return Checkpoint(
        model=model,
        config=config,
        source=str(path),
        kind=FORMAT_NAME,
        history=History.from_dict(history) if history else None,
        train_config=TrainConfig(**train_config) if train_config else None,
        standardizer=(
            Standardizer(preprocessing["mean"].numpy().astype(np.float32),
                         preprocessing["scale"].numpy().astype(np.float32))
            if preprocessing else None
        ),
        dataset=DatasetInfo.from_dict(dataset) if dataset else None,
        metrics={k: float(v) for k, v in (extras.get("metrics") or {}).items()},
        snapshots=snapshots,
        nonfinite=_nonfinite(state),
        notices=tuple(notices),
        package_version=extras.get("package_version"),
    )


def _foreign_checkpoint(path: Path, state: Mapping[str, torch.Tensor], activation: str | None,
                        notices: list[str]) -> Checkpoint:
    if activation is None:
        activation = "relu"
        notices.append("the file stores no activation; assuming relu (pass --activation to change it)")
    model = mlp_from_state_dict(state, activation, source=str(path))
    model.eval()
    return Checkpoint(
        model=model,
        config=model.config,
        source=str(path),
        kind="state-dict",
        nonfinite=_nonfinite(state),
        notices=tuple(notices),
    )


def as_state_dict(obj: Any, path: Path, notices: list[str]) -> Mapping[str, torch.Tensor]:
    if isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                notices.append(f"read the model weights from the checkpoint's {key!r} entry")
                return inner
    what = type(obj).__name__
    if isinstance(obj, torch.Tensor):
        what = f"a single tensor of shape {tuple(obj.shape)}"
    raise InspectorError(
        f"{path}: holds {what}, not a state dict; save model.state_dict() "
        "(a mapping from names like 'fc1.weight' to tensors)"
    )


def load(
    path: str | os.PathLike[str],
    *,
    activation: str | None = None,
    trust_pickle: bool = False,
) -> Checkpoint:
    """Load a dense model from ``path`` (``.pt``/``.pth`` or ``.safetensors``, detected by content).

    Args:
        path: the checkpoint file.
        activation: for foreign state dicts, which carry no activation; default ``relu``
            (with a notice). Ignored, with a notice, for dense-inspector checkpoints.
        trust_pickle: allow unpickling arbitrary Python objects (a whole ``nn.Module``).
            Unpickling runs code from the file: only for files you trust.

    Raises:
        InspectorError: for a missing, corrupt, unsafe or non-MLP file, naming the file.
    """
    path = Path(path)
    fmt = detect_format(path)
    notices: list[str] = []
    if fmt == "safetensors":
        return _load_safetensors(path, activation, notices)
    obj = torch_load_safely(path, trust_pickle=trust_pickle)
    if isinstance(obj, nn.Module):
        return _pickled_module(obj, path, activation)
    if isinstance(obj, Mapping) and obj.get("format") == FORMAT_NAME:
        try:
            return _own_checkpoint(
                path, obj, obj["state_dict"], obj.get("preprocessing"),
                {int(e): s for e, s in (obj.get("snapshots") or {}).items()}, activation,
            )
        except KeyError as exc:
            raise InspectorError(f"{path}: dense-inspector checkpoint is missing {exc}; the file is damaged") from None
    return _foreign_checkpoint(path, as_state_dict(obj, path, notices), activation, notices)


def _pickled_module(module: nn.Module, path: Path, activation: str | None) -> Checkpoint:
    module.eval()
    config = module.config if isinstance(module, MLP) else None
    state = module.state_dict()
    notices = ["unpickled a whole nn.Module (trust_pickle)"]
    if not any(isinstance(m, nn.Linear) for m in module.modules()):
        raise InspectorError(f"{path}: the pickled {type(module).__name__} has no nn.Linear layers")
    return Checkpoint(model=module, config=config, source=str(path), kind="pickled-module",
                      nonfinite=_nonfinite(state), notices=tuple(notices))


def _load_safetensors(path: Path, activation: str | None, notices: list[str]) -> Checkpoint:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    header = read_safetensors_header(path)
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise InspectorError(f"{path}: corrupt safetensors file ({_first_line(exc)})") from None
    metadata = header.metadata
    state = {k: v for k, v in tensors.items() if not k.startswith(_PREFIX)}
    if metadata.get("format") == json.dumps(FORMAT_NAME):
        try:
            extras = {k: json.loads(v) for k, v in metadata.items()}
        except json.JSONDecodeError as exc:
            raise InspectorError(f"{path}: unreadable dense-inspector metadata ({exc})") from None
        pre = f"{_PREFIX}preprocessing."
        preprocessing = {k[len(pre):]: v for k, v in tensors.items() if k.startswith(pre)} or None
        snapshots: dict[int, dict[str, torch.Tensor]] = {}
        snap = f"{_PREFIX}snapshot."
        for key, value in tensors.items():
            if key.startswith(snap):
                epoch, _, name = key[len(snap):].partition(".")
                snapshots.setdefault(int(epoch), {})[name] = value
        return _own_checkpoint(path, extras, state, preprocessing, dict(sorted(snapshots.items())), activation)
    if not state:
        raise InspectorError(f"{path}: the safetensors file holds no tensors")
    return _foreign_checkpoint(path, state, activation, notices)
