"""Builders for malformed checkpoint files, shared by the checkpoint tests and the fuzz suite."""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from inspector.checkpoints import Checkpoint, DatasetInfo, save_checkpoint
from inspector.models import MLPConfig, build_mlp
from inspector.training import History, TrainConfig


def argmax_checkpoint(
    class_names: tuple[str, ...] | None, feature_names: tuple[str, ...], source: str = "m.pt"
) -> Checkpoint:
    """3 -> 3 -> 3 ReLU MLP with identity weights and no standardiser: on x >= 0 it predicts argmax(x).

    With ``class_names`` None the checkpoint stores no dataset (classes are then "0".."2").
    """
    config = MLPConfig(3, (3,), 3)
    model = build_mlp(config)
    with torch.no_grad():
        for layer in (model.fc1, model.fc2):
            layer.weight.copy_(torch.eye(3))
            layer.bias.zero_()
    dataset = DatasetInfo("train", feature_names, class_names) if class_names is not None else None
    return Checkpoint(model=model.eval(), config=config, source=source, kind="dense-inspector", dataset=dataset)


def safetensors_bytes(header: dict[str, Any], data: bytes) -> bytes:
    """A safetensors file from a header dict (written as given, however wrong) and a data section."""
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def split_safetensors(blob: bytes) -> tuple[dict[str, Any], bytes]:
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8 : 8 + n]), blob[8 + n :]


def foreign_safetensors() -> bytes:
    """Two float32 tensors: a (3, 2) weight and a (3,) bias, 36 bytes of data."""
    header = {
        "fc.weight": {"dtype": "F32", "shape": [3, 2], "data_offsets": [0, 24]},
        "fc.bias": {"dtype": "F32", "shape": [3], "data_offsets": [24, 36]},
    }
    return safetensors_bytes(header, torch.arange(9, dtype=torch.float32).numpy().tobytes())


def own_checkpoint(activation: str = "tanh", snapshots: bool = True) -> Checkpoint:
    torch.manual_seed(0)
    config = MLPConfig(4, (3,), 2, activation=activation)
    model = build_mlp(config).eval()
    history = History(*(torch.linspace(1, 0, 2).double().numpy() for _ in range(4)), best_epoch=2, stopped_early=False)
    snaps = {1: {k: v.clone() for k, v in model.state_dict().items()}} if snapshots else {}
    return Checkpoint(
        model=model,
        config=config,
        source="<test>",
        kind="dense-inspector",
        history=history,
        train_config=TrainConfig(epochs=2),
        metrics={"test_accuracy": 0.5},
        snapshots=snaps,
    )


def own_file(folder: Path, suffix: str, **kwargs: Any) -> Path:
    return save_checkpoint(own_checkpoint(**kwargs), folder / f"own{suffix}")


def edit_own_safetensors(blob: bytes, key: str, value: Any) -> bytes:
    """Replace (or, with ``value`` ``...``, delete) one dense-inspector metadata entry."""
    header, data = split_safetensors(blob)
    if value is ...:
        header["__metadata__"].pop(key, None)
    else:
        header["__metadata__"][key] = value if key == "__raw__" else json.dumps(value)
    return safetensors_bytes(header, data)


def foreign_pt(path: Path, **save_kwargs: Any) -> Path:
    torch.manual_seed(0)
    torch.save(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).state_dict(), path, **save_kwargs)
    return path


def rezip(src: Path, dst: Path, edit_pickle: Any) -> Path:
    """Copy a zip ``.pt`` with its data.pkl passed through ``edit_pickle(bytes) -> bytes``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            zout.writestr(info.filename, edit_pickle(data) if info.filename.endswith("/data.pkl") else data)
    return dst


def member_data_span(path: Path, suffix: str) -> tuple[int, int]:
    """``(offset, size)`` of the bytes of the zip member whose name ends with ``suffix``, as stored in the file."""
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith(suffix))
    with path.open("rb") as fh:
        fh.seek(info.header_offset)
        local = fh.read(30)
    name_length, extra_length = struct.unpack("<HH", local[26:30])
    return info.header_offset + 30 + name_length + extra_length, info.compress_size


def flip_member_bytes(src: Path, dst: Path, suffix: str, count: int = 200, skip: int = 0) -> Path:
    """A copy of the zip ``src`` with ``count`` bytes inverted inside member ``*suffix``'s stored bytes
    (from ``skip`` bytes in): the zip directory still holds the member's original CRC-32."""
    begin, size = member_data_span(src, suffix)
    blob = bytearray(src.read_bytes())
    for k in range(min(count, size - skip)):
        blob[begin + skip + k] ^= 0xFF
    dst.write_bytes(bytes(blob))
    return dst


def zero_size_safetensors(shape: list[int], dtype: str = "F32", *, beside: bool = False) -> bytes:
    """A safetensors file declaring ``fc1.weight`` of ``shape`` with no bytes (a zero-size tensor has none),
    and with ``beside`` a real 3 x 2 layer ``fc2`` after it."""
    header: dict[str, Any] = {"fc1.weight": {"dtype": dtype, "shape": shape, "data_offsets": [0, 0]}}
    data = b""
    if beside:
        header["fc2.weight"] = {"dtype": "F32", "shape": [3, 2], "data_offsets": [0, 24]}
        header["fc2.bias"] = {"dtype": "F32", "shape": [3], "data_offsets": [24, 36]}
        data = torch.arange(9, dtype=torch.float32).numpy().tobytes()
    return safetensors_bytes(header, data)


def pickle_bomb(dst: Path, opcodes: int, opcode: bytes = b"N") -> Path:
    """A ``torch.save`` zip whose deflated ``data.pkl`` is ``PROTO 2``, ``opcodes`` times ``opcode`` (each
    pushes one object: ``N`` None, ``]`` an empty list, ``)`` an empty tuple), then ``STOP``: a few hundred
    kilobytes on disk that a naive reader inflates and walks for minutes."""
    source = dst.with_suffix(".base.pt")
    torch.save({"fc1.weight": torch.zeros(2, 2)}, source)
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.endswith("/data.pkl"):
                zout.writestr(
                    info.filename, b"\x80\x02" + opcode * opcodes + b".", zipfile.ZIP_DEFLATED, compresslevel=9
                )
            else:
                zout.writestr(info.filename, data, zipfile.ZIP_STORED)
    source.unlink()
    return dst
