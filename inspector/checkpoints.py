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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from inspector._version import __version__
from inspector.checks import check_fields, is_int, printable
from inspector.data import Dataset, SplitSpec, Standardizer
from inspector.errors import InspectorError, NotAnMLPError
from inspector.fileio import atomic_path
from inspector.formats import TensorInfo, count_nonfinite, shared_storage
from inspector.models import MLP, MLPConfig, build_mlp, infer_mlp_layout, mlp_from_state_dict
from inspector.records import History, TrainConfig
from inspector.sources import Contents, TensorSource, open_source
from inspector.sources.base import conv1d_weights, first_line, transposed, without_empty
from inspector.sources.safetensors import PREFIX as _PREFIX

if TYPE_CHECKING:  # a training result is only read here; training sits above checkpoints
    from inspector.training import TrainResult

FORMAT_NAME = "dense-inspector"
# Version 2 adds regression (a "task" entry, target names, an R² history). A classification
# checkpoint is still written as version 1, so older dense-inspectors keep reading it; a
# regression one is version 2, so they refuse it rather than analyse it as a classifier.
FORMAT_VERSION = 2
TASKS = ("classification", "regression")
STATE_DICT_FORMAT = "dense-inspector-state-dict"  # marks a state dict this tool wrote (what --force may replace)
TIED_KEY = "tied"  # its safetensors metadata: {"later name": "first name"} of tied weights stored as copies


@dataclass(frozen=True)
class DatasetInfo:
    """What a model was trained on, enough to recreate its evaluation split.

    ``class_names`` name a classifier's outputs; ``target_names`` a regression model's.
    """

    name: str
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...]
    image_shape: tuple[int, int] | None = None
    split: SplitSpec = field(default_factory=SplitSpec)
    target_names: tuple[str, ...] = ()

    @classmethod
    def from_dataset(cls, dataset: Dataset, split: SplitSpec) -> DatasetInfo:
        return cls(
            dataset.name, dataset.feature_names, dataset.class_names, dataset.image_shape, split, dataset.target_names
        )

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "feature_names": list(self.feature_names),
            "class_names": list(self.class_names),
            "image_shape": list(self.image_shape) if self.image_shape else None,
            "split": dict(self.split.__dict__),
        }
        if self.target_names:  # only regression has them; older readers refuse unknown fields
            d["target_names"] = list(self.target_names)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DatasetInfo:
        shape = d.get("image_shape")
        return cls(
            name=str(d["name"]),
            feature_names=tuple(d.get("feature_names", ())),
            class_names=tuple(d.get("class_names", ())),
            image_shape=(int(shape[0]), int(shape[1])) if shape else None,
            split=SplitSpec(**d.get("split", {})),
            target_names=tuple(d.get("target_names", ())),
        )


@dataclass(frozen=True)
class Checkpoint:
    """A loaded model with everything that travelled with it.

    ``kind`` is ``"dense-inspector"`` (our own file), ``"state-dict"`` (a foreign
    state dict rebuilt as an MLP) or ``"pickled-module"`` (a whole module,
    loaded with ``trust_pickle=True``). ``task`` is what the model was trained for,
    ``"classification"`` or ``"regression"`` (recorded in our own files; other files, and
    ours from before regression, are classifiers). ``nonfinite`` names tensors holding NaN
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
    task: str = "classification"

    def at_epoch(self, epoch: int) -> Checkpoint:
        """This run as it was at the end of ``epoch`` (from its weight snapshots)."""
        import dataclasses

        return dataclasses.replace(
            self, model=self.snapshot_model(epoch), source=f"{self.source}@{epoch}", snapshots={}, metrics={}
        )

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


def checkpoint_from_training(
    result: TrainResult, dataset: Dataset, standardizer: Standardizer, split: SplitSpec
) -> Checkpoint:
    """Bundle a :class:`~inspector.training.TrainResult` for saving."""
    if result.task == "regression":
        metrics = {"test_r2": result.test_r2, "test_mse": result.test_loss, "wall_time_s": result.wall_time_s}
    else:
        metrics = {
            "test_accuracy": result.test_accuracy,
            "test_loss": result.test_loss,
            "wall_time_s": result.wall_time_s,
        }
    return Checkpoint(
        model=result.model,
        config=result.model.config,
        source="<training>",
        kind=FORMAT_NAME,
        history=result.history,
        train_config=result.train_config,
        standardizer=standardizer,
        dataset=DatasetInfo.from_dataset(dataset, split),
        metrics=metrics,
        snapshots=result.snapshots,
        package_version=__version__,
        task=result.task,
    )


# --------------------------------------------------------------------------- #
# Saving
# --------------------------------------------------------------------------- #


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}


def _extras(ckpt: Checkpoint) -> dict[str, Any]:
    if ckpt.config is None:
        raise InspectorError("only models with an MLP config can be saved as a dense-inspector checkpoint")
    if ckpt.task not in TASKS:
        raise InspectorError(f"unknown task {ckpt.task!r}; a checkpoint is for classification or regression")
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION if ckpt.task == "regression" else 1,
        "package_version": __version__,
        "task": ckpt.task,
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
        if ckpt.standardizer
        else None
    )
    with atomic_path(path, force=force, ours=is_own_checkpoint) as tmp:
        if suffix == ".safetensors":
            from safetensors.torch import save_file

            tensors = _state(ckpt.model)
            if preprocessing:
                tensors.update({f"{_PREFIX}preprocessing.{k}": v.clone() for k, v in preprocessing.items()})
            for epoch, state in ckpt.snapshots.items():
                tensors.update({f"{_PREFIX}snapshot.{epoch}.{k}": v.contiguous().clone() for k, v in state.items()})
            metadata = {k: json.dumps(v) for k, v in extras.items()}
            mode = tmp.stat().st_mode & 0o777  # an ordinary new file's mode: 0o666 less the umask
            save_file(tensors, str(tmp), metadata=metadata)
            os.chmod(tmp, mode)  # safetensors replaces the file with a private (0600) one
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


def _nonfinite(tensors: Mapping[str, torch.Tensor]) -> tuple[str, ...]:
    return tuple(name for name, t in tensors.items() if count_nonfinite(t))


# --------------------------------------------------------------------------- #
# One validation of every file's structure and metadata, shared by every command
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class OwnMetadata:
    """A dense-inspector checkpoint's metadata, every field type-checked."""

    format_version: int
    package_version: str | None
    config: MLPConfig
    history: History | None
    train_config: TrainConfig | None
    dataset: DatasetInfo | None
    metrics: dict[str, float]
    task: str = "classification"

    def to_dict(self) -> dict[str, Any]:
        """What ``inspector info`` shows: everything but the history and the training settings."""
        return {
            "format": FORMAT_NAME,
            "format_version": self.format_version,
            "package_version": self.package_version,
            "task": self.task,
            "config": self.config.to_dict(),
            "dataset": self.dataset.to_dict() if self.dataset else None,
            "metrics": dict(self.metrics),
        }


def own_metadata(extras: Mapping[str, Any]) -> OwnMetadata:
    """Validate a dense-inspector checkpoint's metadata (decoded from JSON for safetensors).

    Raises:
        InspectorError: naming the first bad field (the caller adds the path).
    """
    version = extras.get("format_version", 0)
    if not is_int(version) or version < 0:
        raise InspectorError(f"format_version must be a non-negative integer, got {printable(repr(version))[:40]}")
    if version > FORMAT_VERSION:
        raise InspectorError(
            f"written in checkpoint format {version}, newer than this dense-inspector "
            f"reads ({FORMAT_VERSION}); upgrade dense-inspector"
        )
    package_version = extras.get("package_version")
    if package_version is not None and not isinstance(package_version, str):
        raise InspectorError("package_version must be a string")
    config = extras.get("config")
    if not isinstance(config, Mapping):
        raise InspectorError("the dense-inspector metadata has no model config")
    if "activation" not in config:  # never defaulted: a tanh model must not come back as relu
        raise InspectorError("the model config has no activation")
    mlp_config = MLPConfig.from_dict(config)
    task = extras.get("task", "classification")  # files from before regression are classifiers
    if not isinstance(task, str) or task not in TASKS:
        raise InspectorError(f"task must be one of {', '.join(TASKS)}, got {printable(repr(task))[:40]}")
    history = extras.get("history")
    train_config = extras.get("train_config")
    dataset = extras.get("dataset")
    metrics = extras.get("metrics") or {}
    if not isinstance(metrics, Mapping) or not all(
        isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) for k, v in metrics.items()
    ):
        raise InspectorError("metrics must map names to numbers")
    return OwnMetadata(
        format_version=version,
        package_version=package_version,
        config=mlp_config,
        history=_history(history) if history is not None else None,
        train_config=TrainConfig(**check_fields(TrainConfig, train_config, "training config"))
        if train_config is not None
        else None,
        dataset=_dataset(dataset, mlp_config, task) if dataset is not None else None,
        metrics={k: float(v) for k, v in metrics.items()},
        task=task,
    )


def _history(d: Any) -> History:
    check_fields(History, d, "training history")
    curves = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")
    for key in curves:
        values = d[key]
        if not isinstance(values, (list, tuple)) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
        ):
            raise InspectorError(f"training history: {key} must be a list of numbers")
    epochs = len(d["train_loss"])
    if any(len(d[key]) != epochs for key in curves):
        raise InspectorError("training history: the curves have different lengths")
    if not is_int(d["best_epoch"]) or not 0 <= d["best_epoch"] <= epochs:
        raise InspectorError(f"training history: best_epoch must be an epoch between 0 and {epochs}")
    if d.get("metric_name", "accuracy") not in ("accuracy", "R²"):
        raise InspectorError("training history: metric_name must be 'accuracy' or 'R²'")
    return History.from_dict(d)


def _dataset(d: Any, config: MLPConfig, task: str = "classification") -> DatasetInfo:
    check_fields(DatasetInfo, d, "dataset info")
    split = SplitSpec(**check_fields(SplitSpec, d.get("split", {}), "dataset split"))
    try:
        split.check()
    except InspectorError as exc:
        raise InspectorError(f"dataset split: {exc}") from None
    info = DatasetInfo.from_dict(d)
    if info.feature_names and len(info.feature_names) != config.input_size:
        raise InspectorError(
            f"dataset info names {len(info.feature_names)} features for a model with {config.input_size} inputs"
        )
    if info.class_names and len(info.class_names) != config.output_size:
        raise InspectorError(
            f"dataset info names {len(info.class_names)} classes for a model with {config.output_size} outputs"
        )
    if info.target_names and len(info.target_names) != config.output_size:
        raise InspectorError(
            f"dataset info names {len(info.target_names)} targets for a model with {config.output_size} outputs"
        )
    if task == "regression" and info.class_names or task == "classification" and info.target_names:
        raise InspectorError(f"dataset info of a {task} model names {'classes' if info.class_names else 'targets'}")
    if info.image_shape and info.image_shape[0] * info.image_shape[1] != config.input_size:
        raise InspectorError(f"dataset image shape {info.image_shape} does not hold {config.input_size} inputs")
    return info


@dataclass(frozen=True)
class _Parts:
    """A checkpoint taken apart: the model's state and the extras, as meta or real tensors."""

    kind: str
    state: dict[str, torch.Tensor]
    own: OwnMetadata | None = None
    preprocessing: dict[str, torch.Tensor] | None = None
    snapshots: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)


def _check_against_config(path: Path, config: MLPConfig, state: Mapping[str, torch.Tensor], what: str) -> None:
    """Compare shapes with the config before anything is built: a 1 KB file declaring a
    60000 x 60000 layer must fail here, not after allocating 14 GB in ``build_mlp``."""
    if 2 * (len(config.layer_sizes) - 1) > len(state):  # before listing shapes for a million declared layers
        raise InspectorError(
            f"{path}: {what} don't match the stored config ({len(config.layer_sizes) - 1} "
            f"layers declared, {len(state)} tensors stored)"
        )
    expected = config.state_shapes()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k}: {tuple(state[k].shape)} vs {expected[k]}"
        for k in expected
        if k in state and tuple(state[k].shape) != expected[k]
    ]
    floats = [
        k for k in expected if k in state and not k.endswith("num_batches_tracked") and not state[k].is_floating_point()
    ]
    if missing or unexpected or wrong or floats:
        detail = (
            f"missing {missing[:3]}"
            if missing
            else f"unexpected {unexpected[:3]}"
            if unexpected
            else f"shape {wrong[0]}"
            if wrong
            else f"{floats[0]} is not floating point"
        )
        raise InspectorError(
            f"{path}: {what} don't match the stored config "
            f"{'-'.join(map(str, config.layer_sizes))} ({printable(detail)})"
        )


def _check_preprocessing(path: Path, config: MLPConfig, pre: Mapping[str, torch.Tensor] | None) -> None:
    if pre is None:
        return
    if set(pre) != {"mean", "scale"} or any(
        not isinstance(t, torch.Tensor) or tuple(t.shape) != (config.input_size,) or not t.is_floating_point()
        for t in pre.values()
    ):
        raise InspectorError(
            f"{path}: the stored preprocessing is not a mean and a scale of "
            f"{config.input_size} floats; the file is damaged"
        )
    if pre["mean"].device.type == "meta":
        return  # values are checked when the tensors are read (read_parts)
    if not bool(torch.isfinite(pre["mean"]).all()):
        raise InspectorError(f"{path}: standardizer mean must be finite; re-export the checkpoint")
    if not bool((torch.isfinite(pre["scale"]) & (pre["scale"] > 0)).all()):
        raise InspectorError(f"{path}: standardizer scale must be finite and > 0; re-export the checkpoint")


def _own_parts(
    path: Path,
    extras: Mapping[str, Any],
    state: Any,
    preprocessing: Any,
    snapshots: dict[int, Any],
    metadata: dict[str, Any] | None = None,
) -> _Parts:
    try:
        own = own_metadata(extras)
    except InspectorError as exc:
        raise InspectorError(f"{path}: {exc}") from None
    state = _tensor_mapping(path, state, "state_dict")
    _check_against_config(path, own.config, state, "weights")
    _check_preprocessing(path, own.config, preprocessing)
    for epoch, snapshot in snapshots.items():
        _check_against_config(
            path,
            own.config,
            _tensor_mapping(path, snapshot, f"snapshot {epoch}"),
            f"the epoch-{epoch} snapshot's weights",
        )
    return _Parts(
        FORMAT_NAME,
        dict(state),
        own,
        dict(preprocessing) if preprocessing else None,
        dict(sorted(snapshots.items())),
        metadata if metadata is not None else own.to_dict(),
    )


def _tensor_mapping(path: Path, obj: Any, what: str) -> Mapping[str, torch.Tensor]:
    if not isinstance(obj, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise InspectorError(
            f"{path}: the dense-inspector checkpoint's {what} is not a mapping from names "
            "to tensors; the file is damaged"
        )
    return obj


def _parts(path: Path, contents: Contents) -> _Parts:
    """A reader's :class:`~inspector.sources.Contents` as this module's parts: a dense-inspector
    checkpoint (its extras validated against its config), a pickled module, or a foreign state dict."""
    if contents.module is not None:
        return _Parts("pickled-module", dict(contents.state), metadata=dict(contents.metadata))
    if contents.extras is not None:
        return _own_parts(path, contents.extras, contents.state, contents.preprocessing, contents.snapshots)
    return _Parts("state-dict", dict(contents.state), metadata=dict(contents.metadata))


def declared_ties(metadata: Mapping[str, Any], state: Mapping[str, torch.Tensor]) -> dict[str, str]:
    """``{later name: first name}`` that a safetensors state dict this tool wrote declares tied (its copies
    of one model tensor, :data:`TIED_KEY`): each pair of the same shape and dtype, the first not itself a
    copy; ``{}`` for any other file or a declaration that does not fit its tensors."""
    # the header's metadata, each value decoded from its JSON where it is JSON
    if metadata.get("format") != STATE_DICT_FORMAT or not isinstance(metadata.get(TIED_KEY), dict):
        return {}
    declared = metadata[TIED_KEY]
    out = {}
    for name, first in declared.items():
        a, b = state.get(name), state.get(first) if isinstance(first, str) else None
        if a is not None and b is not None and name != first and first not in declared:
            if tuple(a.shape) == tuple(b.shape) and a.dtype == b.dtype:
                out[name] = first
    return out


@dataclass(frozen=True)
class FileHeader:
    """What a checkpoint declares, validated against its bytes; no tensor data was read.

    ``tensors`` are the model's weights in file order (dense-inspector's extras left
    out); ``metadata`` is what ``inspector info`` shows; ``own`` is set for
    dense-inspector checkpoints; ``source`` is the reader that reads the tensors. A sharded checkpoint
    (``format`` ``"safetensors-sharded"``, ``path`` its index) has ``shards``: every tensor's shard
    file, extras included, in the index's order.
    """

    path: Path
    format: str
    kind: str
    tensors: tuple[TensorInfo, ...]
    own: OwnMetadata | None
    metadata: dict[str, Any]
    notices: tuple[str, ...]
    source: TensorSource = field(repr=False, compare=False)
    shards: dict[str, Path] | None = None
    transposed: frozenset[str] = frozenset()  # GPT-2 Conv1D weights, stored (in, out), read as (out, in)


def read_header(path: str | os.PathLike[str], *, trust_pickle: bool = False) -> FileHeader:
    """Validate a checkpoint's structure and metadata without reading its tensors.

    Every command goes through here first (``info`` stops here). The file's reader is chosen by
    :func:`inspector.sources.open_source`; a pickled whole module can't be read without running
    it: with ``trust_pickle`` it is loaded whole.
    """
    source = open_source(path, trust_pickle=trust_pickle)
    contents = without_empty(source.path, source.header())
    conv1d = conv1d_weights(contents.state) if contents.extras is None and contents.module is None else frozenset()
    contents = transposed(contents, conv1d)
    parts = _parts(source.path, contents)
    tied = shared_storage(parts.state) | declared_ties(parts.metadata, parts.state)
    tensors = tuple(
        TensorInfo(
            name, tuple(t.shape), str(t.dtype).removeprefix("torch."), t.numel() * t.element_size(), tied.get(name)
        )
        for name, t in parts.state.items()
    )
    return FileHeader(
        source.path,
        source.format,
        parts.kind,
        tensors,
        parts.own,
        parts.metadata,
        contents.notices,
        source,
        source.shards,
        conv1d,
    )


def iter_header_tensors(header: FileHeader, names: list[str]) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield ``(name, tensor)`` for ``names`` of a file :func:`read_header` validated, one at a time.

    Each reader reads one tensor at a time where its format allows (a safetensors file or shard, a
    ``torch.save`` zip's uncompressed storage), so memory holds one tensor, not the file. A legacy
    (pre-1.6) ``torch.save`` file, which has no random access, and a pickled module are loaded whole.
    """
    if not header.transposed:
        yield from header.source.read(names)  # this frame holds no tensor: one in memory at a time
        return
    for name, tensor in header.source.read(names):
        if name in header.transposed:
            tensor = tensor.t().contiguous()
        yield name, tensor
        del tensor  # not held here while the reader makes the next one


def is_own_checkpoint(path: Path) -> bool:
    """Whether ``path`` is a dense-inspector checkpoint, from its header alone (what ``--force`` may replace)."""
    try:
        return read_header(path).own is not None
    except Exception:  # any unreadable or foreign file, including one that needs --trust-pickle
        return False


def read_parts(path: Path, header: FileHeader, *, trust_pickle: bool, mmap: bool = False) -> tuple[_Parts, list[str]]:
    """The tensors themselves, for a file :func:`read_header` validated."""
    contents = transposed(without_empty(header.path, header.source.contents()), header.transposed)
    return _parts(header.path, contents), list(contents.notices)


def _own_checkpoint(path: Path, parts: _Parts, activation: str | None) -> Checkpoint:
    own = parts.own
    assert own is not None
    notices: list[str] = []
    if activation is not None and activation != own.config.activation:
        notices.append(
            f"the checkpoint stores activation {own.config.activation!r}; ignoring --activation {activation}"
        )
    model = build_mlp(own.config)  # sizes already checked against the tensors in the file
    try:
        model.load_state_dict(parts.state)
    except RuntimeError as exc:  # pragma: no cover - _check_against_config guarantees a full match
        raise InspectorError(f"{path}: weights don't match the stored config ({first_line(exc)})") from None
    model.eval()
    pre = parts.preprocessing
    return Checkpoint(
        model=model,
        config=own.config,
        source=str(path),
        kind=FORMAT_NAME,
        history=own.history,
        train_config=own.train_config,
        standardizer=(
            Standardizer(pre["mean"].numpy().astype(np.float32), pre["scale"].numpy().astype(np.float32))
            if pre
            else None
        ),
        dataset=own.dataset,
        metrics=dict(own.metrics),
        snapshots=parts.snapshots,
        nonfinite=_nonfinite(parts.state),
        notices=tuple(notices),
        package_version=own.package_version,
        task=own.task,
    )


def _foreign_checkpoint(
    path: Path, state: Mapping[str, torch.Tensor], activation: str | None, notices: list[str]
) -> Checkpoint:
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


def load(
    path: str | os.PathLike[str],
    *,
    activation: str | None = None,
    trust_pickle: bool = False,
) -> Checkpoint:
    """Load a dense model from ``path`` (``.pt``/``.pth`` or ``.safetensors``, detected by content).

    The header and metadata are validated first (:func:`read_header`): no tensor is
    read and nothing is built until every declared size has been checked against the
    bytes in the file.

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
    header = read_header(path, trust_pickle=trust_pickle)
    if not header.tensors:
        said = f" ({'; '.join(header.notices)})" if header.notices else ""
        raise InspectorError(f"{path}: the {header.format} file holds no tensors{said}")
    path = header.path  # a sharded checkpoint's index, a folder's file
    if header.kind == "pickled-module":
        module = header.source.header().module
        assert module is not None
        return _pickled_module(module, path, activation)
    if header.kind == "state-dict":
        rebuilt = header.source.model(activation)
        if rebuilt is not None:  # the format records the computation: its own module, not an inferred MLP
            return _rebuilt_checkpoint(path, header, rebuilt)
        if not header.source.infers_mlp:
            raise NotAnMLPError(
                f"{path}: this {header.format} model is not a chain of dense layers and activations, so it can't "
                "be rebuilt (use `inspector info` for weight-only inspection)"
            )
        # from the shapes alone, before any tensor is read: a file that is no MLP goes to the
        # weight-only analysis, which reads one tensor at a time, instead of being loaded whole first
        infer_mlp_layout(header_state(header), activation or "relu", source=str(header.path))
    parts, notices = read_parts(path, header, trust_pickle=trust_pickle)
    if parts.kind == FORMAT_NAME:
        return _own_checkpoint(path, parts, activation)
    return _foreign_checkpoint(path, parts.state, activation, notices)


def _rebuilt_checkpoint(path: Path, header: FileHeader, module: nn.Module) -> Checkpoint:
    """A checkpoint around the module a reader rebuilt from its file (scikit-learn, Keras)."""
    for name, layer in module.named_modules():
        if isinstance(layer, nn.Linear) and layer.weight.numel() == 0:
            raise InspectorError(
                f"{path}: layer {printable(name)[:80]!r} has a zero-size weight {tuple(layer.weight.shape)}: an "
                "empty layer, through which nothing is computed; the file is crafted or corrupt"
            )
    return Checkpoint(
        model=module,
        config=None,
        source=str(path),
        kind=header.format,
        nonfinite=_nonfinite(module.state_dict()),
        notices=(*header.notices, f"rebuilt the {header.format} model as a torch {type(module).__name__}"),
    )


def header_state(header: FileHeader) -> dict[str, torch.Tensor]:
    """The file's tensors as ``meta`` tensors (shapes and dtypes, no data), in file order."""
    return {t.name: torch.empty(t.shape, dtype=getattr(torch, t.dtype), device="meta") for t in header.tensors}


def _pickled_module(module: nn.Module, path: Path, activation: str | None) -> Checkpoint:
    module.eval()
    config = module.config if isinstance(module, MLP) else None
    state = module.state_dict()
    notices = ["unpickled a whole nn.Module (trust_pickle)"]
    if not any(isinstance(m, nn.Linear) for m in module.modules()):
        raise InspectorError(f"{path}: the pickled {type(module).__name__} has no nn.Linear layers")
    return Checkpoint(
        model=module,
        config=config,
        source=str(path),
        kind="pickled-module",
        nonfinite=_nonfinite(state),
        notices=tuple(notices),
    )
