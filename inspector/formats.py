"""Recognise checkpoint files by their bytes, and read safetensors headers without the data."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inspector.errors import InspectorError

_ZIP_MAGIC = b"PK\x03\x04"
_MAX_HEADER = 100 * 1024 * 1024  # the safetensors spec's own limit


def check_file(path: Path) -> int:
    """The size of ``path``, after checking it is an existing, non-empty regular file."""
    if not path.exists():
        raise InspectorError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise InspectorError(f"{path} is a directory; give the checkpoint file inside it")
    size = path.stat().st_size
    if size == 0:
        raise InspectorError(f"{path}: the file is empty; re-export or re-download it")
    return size


def detect_format(path: Path) -> str:
    """``"torch"`` (zip or legacy pickle from ``torch.save``) or ``"safetensors"``."""
    size = check_file(path)
    with path.open("rb") as fh:
        head = fh.read(16)
    if head.startswith(_ZIP_MAGIC):
        return "torch"
    if head[:1] == b"\x80" and size > 2:  # pickle protocol >= 2: torch.save's legacy format
        return "torch"
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if 0 < n <= _MAX_HEADER and head[8:9] == b"{":
            return "safetensors"
    raise InspectorError(
        f"{path}: unknown checkpoint format (neither a PyTorch file nor safetensors); "
        "save with torch.save(model.state_dict(), ...) or safetensors"
    )


@dataclass(frozen=True)
class SafetensorsHeader:
    """The JSON header: ``tensors`` maps a name to ``{"dtype", "shape", "data_offsets"}``."""

    tensors: dict[str, dict[str, Any]]
    metadata: dict[str, str]
    data_start: int


def read_safetensors_header(path: Path) -> SafetensorsHeader:
    """Parse the header only, and check the file is long enough for the data it declares."""
    size = check_file(path)
    with path.open("rb") as fh:
        prefix = fh.read(8)
        if len(prefix) < 8:
            raise InspectorError(f"{path}: truncated safetensors file (no header); re-export it")
        (n,) = struct.unpack("<Q", prefix)
        if n > _MAX_HEADER or 8 + n > size:
            raise InspectorError(f"{path}: truncated or corrupt safetensors header; re-export the file")
        raw = fh.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InspectorError(f"{path}: corrupt safetensors header (not JSON); re-export the file") from None
    if not isinstance(header, dict):
        raise InspectorError(f"{path}: corrupt safetensors header; re-export the file")
    metadata = header.pop("__metadata__", None) or {}
    end = 0
    for name, info in header.items():
        try:
            begin_, end_ = info["data_offsets"]
            info["dtype"], list(info["shape"])
        except (KeyError, TypeError, ValueError):
            raise InspectorError(f"{path}: corrupt safetensors entry {name!r}; re-export the file") from None
        end = max(end, int(end_))
    if 8 + n + end > size:
        raise InspectorError(
            f"{path}: truncated safetensors file ({size} bytes, header declares {8 + n + end}); "
            "re-export or re-download it"
        )
    return SafetensorsHeader(tensors=header, metadata=dict(metadata), data_start=8 + n)
