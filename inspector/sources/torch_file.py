"""``torch.save`` files: the zip format (tensors read one at a time from their stored bytes), the
legacy (pre-1.6) pickle, and a whole pickled ``nn.Module`` (read only with ``trust_pickle``).

Every load is ``torch.load(..., weights_only=True)`` unless the user trusts the file; the header is
unpickled first onto the ``meta`` device (:func:`inspector.formats.read_torch_header`) so that
every declared size is checked against the bytes before anything is allocated.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TypeGuard

import torch
from torch import nn

from inspector.errors import InspectorError
from inspector.formats import (
    NeedsTrust,
    StoredMember,
    check_member_crc,
    check_tensor,
    check_zip_crcs,
    is_zip,
    pickle_magic,
    pickle_refused,
    read_tensor_at,
    read_torch_header,
    zip_magic,
)
from inspector.sources.base import Contents, TensorSource, first_line
from inspector.sources.safetensors import OWN_FORMAT, epoch_number

WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")


def torch_load_safely(path: Path, *, trust_pickle: bool, mmap: bool = False) -> Any:
    """``torch.load`` a file whose header has already been validated (weights only unless trusted)."""
    try:
        return _torch_load(path, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        if "weights_only" not in str(exc) and "Weights only" not in str(exc):
            raise InspectorError(f"{path}: corrupt pickle data ({first_line(exc)}); the file is damaged") from None
        if not trust_pickle:
            raise pickle_refused(path) from None
    except Exception as exc:  # the weights-only unpickler runs no code: any failure means a damaged file
        raise InspectorError(
            f"{path}: truncated or corrupt PyTorch file ({first_line(exc)}); re-export or re-download it"
        ) from None
    try:
        return _torch_load(path, weights_only=False, mmap=False)
    except Exception as exc:  # arbitrary unpickling can fail in arbitrary ways
        raise InspectorError(f"{path}: could not unpickle the file ({first_line(exc)})") from None


def _torch_load(path: Path, *, weights_only: bool, mmap: bool) -> Any:
    if mmap and not path.name.lower().endswith(".safetensors"):
        return torch.load(path, map_location="cpu", weights_only=weights_only, mmap=True)
    with path.open("rb") as fh:  # a file object: given a name ending .safetensors, torch.load hands it to safetensors
        return torch.load(fh, map_location="cpu", weights_only=weights_only)


def as_state_dict(obj: Any, path: Path, notices: list[str]) -> Mapping[str, torch.Tensor]:
    """The state dict inside what ``torch.load`` returned: the object itself, or one of the common
    training-checkpoint wrappers (``{"state_dict": ...}``, ``{"model_state_dict": ...}``, ``{"model": ...}``)."""

    def is_state(candidate: Any) -> TypeGuard[Mapping[str, torch.Tensor]]:
        return (
            isinstance(candidate, Mapping)
            and bool(candidate)
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in candidate.items())
        )

    if is_state(obj):
        return obj
    if isinstance(obj, Mapping):
        for key in WRAPPER_KEYS:
            inner = obj.get(key)
            if is_state(inner):
                notices.append(f"read the model weights from the checkpoint's {key!r} entry")
                return inner
    what = type(obj).__name__
    if isinstance(obj, torch.Tensor):
        what = f"a single tensor of shape {tuple(obj.shape)}"
    raise InspectorError(
        f"{path}: holds {what}, not a state dict; save model.state_dict() "
        "(a mapping from names like 'fc1.weight' to tensors)"
    )


def unpack(path: Path, obj: Any) -> Contents:
    """What ``torch.load`` (or :func:`read_torch_header`) returned, as :class:`Contents`."""
    notices: list[str] = []
    if isinstance(obj, nn.Module):
        state = obj.state_dict()
        for name, t in state.items():
            check_tensor(path, name, t)
        return Contents(
            dict(state), metadata={"kind": "pickled-module", "class": type(obj).__name__}, module=obj, notices=()
        )
    if isinstance(obj, Mapping) and isinstance(obj.get("format"), str) and obj.get("format") == OWN_FORMAT:
        if "state_dict" not in obj:
            raise InspectorError(f"{path}: dense-inspector checkpoint is missing 'state_dict'; the file is damaged")
        snapshots = obj.get("snapshots") or {}
        if not isinstance(snapshots, Mapping):
            raise InspectorError(
                f"{path}: the dense-inspector checkpoint's snapshots are not a mapping; the file is damaged"
            )
        preprocessing = obj.get("preprocessing")
        if preprocessing is not None and not isinstance(preprocessing, Mapping):
            raise InspectorError(f"{path}: the stored preprocessing is not a mapping; the file is damaged")
        return Contents(
            obj["state_dict"],
            extras=obj,
            preprocessing=preprocessing,
            snapshots={epoch_number(path, e): s for e, s in snapshots.items()},
        )
    return Contents(dict(as_state_dict(obj, path, notices)), notices=tuple(notices))


def check_contents(path: Path, contents: Contents) -> None:
    """Every tensor against its storage (:func:`inspector.formats.check_tensor`)."""
    groups = [contents.state, contents.preprocessing or {}, *contents.snapshots.values()]
    for tensors in groups:
        if isinstance(tensors, Mapping):
            for name, t in tensors.items():
                if isinstance(t, torch.Tensor):
                    check_tensor(path, name, t)


def _check_crcs(path: Path) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            check_zip_crcs(path, archive)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise InspectorError(
            f"{path}: truncated or corrupt PyTorch file ({first_line(exc)}); re-export or re-download it"
        ) from None


class TorchSource(TensorSource):
    """A ``torch.save`` file: zip or legacy pickle."""

    format = "torch"

    def __init__(self, path: Path, *, trust_pickle: bool = False) -> None:
        super().__init__(path, trust_pickle=trust_pickle)
        self._header: Contents | None = None
        self._crc_checked: set[str] = set()  # zip members whose CRC-32 was checked by this reader

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        return zip_magic(head) or pickle_magic(head)

    def _unpack(self, obj: Any) -> Contents:
        contents = unpack(self.path, obj)
        if contents.module is None:
            check_contents(self.path, contents)
        return contents

    def header(self) -> Contents:
        if self._header is None:
            try:
                obj = read_torch_header(self.path)
            except NeedsTrust:
                if not self.trust_pickle:
                    raise
                if is_zip(self.path):
                    _check_crcs(self.path)
                obj = torch_load_safely(self.path, trust_pickle=True)
            self._header = self._unpack(obj)
        return self._header

    def contents(self, mmap: bool = False) -> Contents:
        if is_zip(self.path):
            _check_crcs(self.path)  # torch.load does not: a flipped byte in a tensor would pass unseen
        obj = torch_load_safely(self.path, trust_pickle=self.trust_pickle, mmap=mmap and is_zip(self.path))
        return self._unpack(obj)

    def read(self, names: list[str]) -> Iterator[tuple[str, torch.Tensor]]:
        if not is_zip(self.path) or self.header().module is not None:
            # a legacy file has no random access, and a module is unpickled whole: loaded once
            state = self.contents().state
            for name in names:
                yield name, state[name]
            return
        members: dict[int, StoredMember] = {}
        state = unpack(self.path, read_torch_header(self.path, members)).state
        for name in names:
            t = state[name]  # a meta tensor: shape, dtype and strides; its storage's place in the file
            member = members[t.untyped_storage()._cdata]
            begin = member.offset + int(t.storage_offset()) * t.element_size()
            tensor = read_tensor_at(self.path, begin, t.dtype, tuple(t.shape), tuple(t.stride()), member)
            if member.name not in self._crc_checked and (begin != member.offset or t.nbytes != member.size):
                check_member_crc(self.path, member)  # a view of part of its storage: the storage read in chunks
            self._crc_checked.add(member.name)
            yield name, tensor
            del tensor  # not held by this frame while the next one is read: one tensor in memory at a time
