"""Safetensors: one file, a sharded checkpoint (``model.safetensors.index.json`` and its shards), and a
model folder as ``save_pretrained`` writes it (``model.safetensors``, or the index).

No pickle is involved. The header is parsed and validated by :mod:`inspector.formats` before
anything is allocated; each tensor is read on its own with ``readinto`` from where the header says
it lies. dense-inspector's own checkpoints keep their extras as JSON metadata and ``_inspector.``
tensors (preprocessing, snapshots), taken apart here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from safetensors import SafetensorError

from inspector.checks import printable
from inspector.errors import InspectorError
from inspector.formats import (
    INDEX_NAME,
    SafetensorsHeader,
    is_sharded_index,
    read_safetensors_header,
    read_sharded_index,
    read_tensor_at,
    safetensors_magic,
)
from inspector.sources.base import Contents, TensorSource, first_line

OWN_FORMAT = "dense-inspector"
PREFIX = "_inspector."  # keys that carry dense-inspector's extras, not model weights
_PRE = f"{PREFIX}preprocessing."
_SNAP = f"{PREFIX}snapshot."
SINGLE_NAME = "model.safetensors"  # save_pretrained's name for an unsharded checkpoint


def epoch_number(path: Path, key: Any) -> int:
    """A snapshot's epoch from its key (an int, or digits); anything else means a damaged file."""
    if isinstance(key, int) and not isinstance(key, bool) and key >= 0:
        return key
    if isinstance(key, str) and key.isascii() and key.isdigit():
        return int(key)
    raise InspectorError(f"{path}: snapshot epoch {printable(repr(key))[:40]} is not a number; the file is damaged")


def unpack(path: Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> Contents:
    """A safetensors file's tensors (meta or real) and string metadata as :class:`Contents`."""
    state = {k: v for k, v in tensors.items() if not k.startswith(PREFIX)}
    if metadata.get("format") != json.dumps(OWN_FORMAT):
        shown: dict[str, Any] = {}
        for key, value in metadata.items():
            try:
                shown[key] = json.loads(value)
            except (ValueError, RecursionError):
                shown[key] = value
        shown.pop("history", None)
        shown.pop("train_config", None)
        return Contents(state, metadata=shown)
    try:
        extras = {k: json.loads(v) for k, v in metadata.items()}
    except (ValueError, RecursionError) as exc:
        raise InspectorError(f"{path}: unreadable dense-inspector metadata ({printable(str(exc))[:120]})") from None
    preprocessing = {k[len(_PRE) :]: v for k, v in tensors.items() if k.startswith(_PRE)} or None
    snapshots: dict[int, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        if key.startswith(_SNAP):
            epoch, _, name = key[len(_SNAP) :].partition(".")
            snapshots.setdefault(epoch_number(path, epoch), {})[name] = tensor
        elif key.startswith(PREFIX) and not key.startswith(_PRE):
            raise InspectorError(
                f"{path}: unknown dense-inspector tensor {key!r}; was it written by a newer dense-inspector?"
            )
    return Contents(state, extras=extras, preprocessing=preprocessing, snapshots=snapshots)


def _meta(header: SafetensorsHeader, names: Any = None) -> dict[str, torch.Tensor]:
    entries = header.tensors if names is None else {n: header.tensors[n] for n in names}
    return {name: torch.empty(e.shape, dtype=e.torch_dtype, device="meta") for name, e in entries.items()}


class SafetensorsSource(TensorSource):
    """One ``.safetensors`` file."""

    format = "safetensors"

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        return safetensors_magic(head)

    def _header(self) -> SafetensorsHeader:
        return read_safetensors_header(self.path)

    def header(self) -> Contents:
        header = self._header()
        return unpack(self.path, _meta(header), header.metadata)

    def read(self, names: list[str]) -> Iterator[tuple[str, torch.Tensor]]:
        header = self._header()
        for name in names:
            entry = header.tensors[name]
            yield name, read_tensor_at(self.path, header.data_start + entry.begin, entry.torch_dtype, entry.shape)

    def contents(self) -> Contents:
        try:
            tensors = safetensors.torch.load_file(str(self.path), device="cpu")
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise InspectorError(f"{self.path}: corrupt safetensors file ({first_line(exc)})") from None
        return unpack(self.path, tensors, self._header().metadata)


class ShardedSource(TensorSource):
    """A sharded safetensors checkpoint read as one file: its index (or the folder holding
    ``model.safetensors.index.json``), every shard's header validated, every tensor the index maps
    found in its shard, tensors in the index's order, the shards' metadata merged (first wins)."""

    format = "safetensors-sharded"

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        if path.is_dir():
            return (path / INDEX_NAME).is_file()
        if path.name.lower().endswith(".safetensors.index.json"):
            return True  # by its name, so that a damaged index is reported as one
        return head.lstrip()[:1] == b"{" and is_sharded_index(path)

    def __init__(self, path: Path, *, trust_pickle: bool = False) -> None:
        super().__init__(path / INDEX_NAME if path.is_dir() else path, trust_pickle=trust_pickle)
        self._headers: dict[Path, SafetensorsHeader] | None = None

    def _read(self) -> dict[Path, SafetensorsHeader]:
        if self._headers is None:
            sharded = read_sharded_index(self.path)
            self.shards = dict(sharded.weight_map)
            self._headers = {shard: read_safetensors_header(shard) for shard in sharded.shards}
        return self._headers

    def _metadata(self) -> dict[str, str]:
        metadata: dict[str, str] = {}
        for header in self._read().values():
            for key, value in header.metadata.items():
                metadata.setdefault(key, value)
        return metadata

    def header(self) -> Contents:
        headers = self._read()
        assert self.shards is not None
        meta: dict[str, torch.Tensor] = {}
        for name, shard in self.shards.items():
            entry = headers[shard].tensors.get(name)
            if entry is None:
                raise InspectorError(
                    f"{self.path}: tensor {printable(name)[:80]!r} is not in its shard {printable(shard.name)!r}; "
                    "the index and the shards do not match (re-download them together)"
                )
            meta[name] = torch.empty(entry.shape, dtype=entry.torch_dtype, device="meta")
        contents = unpack(self.path, meta, self._metadata())
        unlisted = [name for shard, header in headers.items() for name in header.tensors if name not in self.shards]
        if not unlisted:
            return contents
        # a tensor the index does not map is not part of the checkpoint it describes: said, not read
        shown = ", ".join(repr(printable(n)[:60]) for n in unlisted[:3]) + (", ..." if len(unlisted) > 3 else "")
        notice = (
            f"{len(unlisted)} tensor{'s' * (len(unlisted) > 1)} in the shards {'are' if len(unlisted) > 1 else 'is'} "
            f"not in the index ({shown}) and {'were' if len(unlisted) > 1 else 'was'} not read; "
            "re-export the index if they belong to the model"
        )
        return replace(contents, notices=(*contents.notices, notice))

    def read(self, names: list[str]) -> Iterator[tuple[str, torch.Tensor]]:
        headers = self._read()
        assert self.shards is not None
        for name in names:
            shard = self.shards[name]
            entry = headers[shard].tensors[name]
            yield (
                name,
                read_tensor_at(shard, headers[shard].data_start + entry.begin, entry.torch_dtype, entry.shape),
            )


class FolderSource(SafetensorsSource):
    """A model folder with a single ``model.safetensors``, as ``save_pretrained`` writes it."""

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        return path.is_dir() and (path / SINGLE_NAME).is_file()

    def __init__(self, path: Path, *, trust_pickle: bool = False) -> None:
        super().__init__(path / SINGLE_NAME, trust_pickle=trust_pickle)
