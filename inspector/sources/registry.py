"""Which reader reads a file: each registered :class:`~inspector.sources.base.TensorSource` is asked,
in order, whether it recognises the file's first bytes (or the folder).

Adding a format is one line here (and the reader's file). Order matters only where two formats
share a container: the Keras and skops zips come before the generic ``torch.save`` zip, the
scikit-learn pickle before the ``torch.save`` legacy pickle.
"""

from __future__ import annotations

import os
from pathlib import Path

from inspector.errors import InspectorError
from inspector.formats import check_file
from inspector.sources.base import TensorSource
from inspector.sources.keras import KerasSource
from inspector.sources.onnx import OnnxSource
from inspector.sources.safetensors import FolderSource, SafetensorsSource, ShardedSource
from inspector.sources.sklearn import SklearnPickleSource, SkopsSource
from inspector.sources.torch_file import TorchSource

READERS: list[type[TensorSource]] = [
    ShardedSource,
    FolderSource,
    SafetensorsSource,
    KerasSource,
    SkopsSource,
    SklearnPickleSource,
    TorchSource,
    OnnxSource,
]

_HEAD = 4096  # bytes read to sniff: enough for a pickle's first class name and a zip's first entries


def register(reader: type[TensorSource], *, first: bool = False) -> type[TensorSource]:
    """Add ``reader`` to the registry (at the end, or ``first``); usable as a class decorator."""
    if reader not in READERS:
        READERS.insert(0, reader) if first else READERS.append(reader)
    return reader


def check_path(path: Path) -> bytes:
    """The first bytes of ``path`` (empty for a folder), after :func:`~inspector.formats.check_file`'s checks."""
    if path.is_dir():
        return b""
    check_file(path)
    with path.open("rb") as fh:
        return fh.read(_HEAD)


def open_source(path: str | os.PathLike[str], *, trust_pickle: bool = False) -> TensorSource:
    """The reader for ``path``, chosen by its bytes (and, for a folder, its files)."""
    path = Path(path)
    head = check_path(path)
    for reader in READERS:
        if reader.sniff(path, head):
            return reader(path, trust_pickle=trust_pickle)
    if path.is_dir():
        raise InspectorError(
            f"{path} is a directory without a model.safetensors.index.json or model.safetensors; "
            "give the checkpoint file inside it"
        )
    raise InspectorError(
        f"{path}: unknown checkpoint format (neither a PyTorch file nor safetensors); "
        "save with torch.save(model.state_dict(), ...) or safetensors"
    )
