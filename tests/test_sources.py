"""The reader registry: a new checkpoint format is one TensorSource subclass plus one registry line,
and every command that reads checkpoints then reads it (proved here with a toy format written in the test)."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from inspector.checkpoints import load, read_header
from inspector.inventory import read_inventory
from inspector.sources import READERS, Contents, TensorSource, open_source, register
from inspector.sources.keras import KerasSource
from inspector.sources.onnx import OnnxSource
from inspector.sources.safetensors import FolderSource, SafetensorsSource, ShardedSource
from inspector.sources.sklearn import SklearnPickleSource, SkopsSource
from inspector.sources.torch_file import TorchSource


class NpzSource(TensorSource):
    """A toy format: ``np.savez`` of ``<layer>_W`` (in, out) and ``<layer>_b`` arrays, as some code bases keep them."""

    format = "npz-weights"

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        return path.suffix == ".npz" and head.startswith(b"PK")

    def _arrays(self) -> dict[str, np.ndarray]:
        with np.load(self.path, allow_pickle=False) as npz:
            out: dict[str, np.ndarray] = {}
            for k in npz.files:
                layer, _, kind = k.rpartition("_")
                out[f"{layer}.weight" if kind == "W" else f"{layer}.bias"] = npz[k].T.copy() if kind == "W" else npz[k]
            return out

    def header(self) -> Contents:
        meta = {k: torch.empty(v.shape, dtype=torch.float32, device="meta") for k, v in self._arrays().items()}
        return Contents(meta, metadata={"arrays": len(meta)})

    def read(self, names: list[str]) -> Iterator[tuple[str, torch.Tensor]]:
        arrays = self._arrays()
        for name in names:
            yield name, torch.from_numpy(arrays[name].astype(np.float32))


@pytest.fixture
def npz_registered():
    register(NpzSource, first=True)
    yield
    READERS.remove(NpzSource)


def test_a_new_format_is_one_class_and_one_registry_line(tmp_path, npz_registered):
    rng = np.random.default_rng(0)
    w1, w2 = rng.standard_normal((5, 9)), rng.standard_normal((9, 2))  # (in, out)
    b1, b2 = rng.standard_normal(9), rng.standard_normal(2)
    np.savez(tmp_path / "toy.npz", enc_W=w1, enc_b=b1, head_W=w2, head_b=b2)
    header = read_header(tmp_path / "toy.npz")
    assert header.format == "npz-weights"
    inv = read_inventory(tmp_path / "toy.npz")
    assert [(layer.layer, layer.in_features, layer.out_features) for layer in inv.linear_layers] == [
        ("enc", 5, 9),
        ("head", 9, 2),
    ]
    assert inv.totals()["parameters"] == 9 * (5 + 1) + 2 * (9 + 1)  # m x (n + 1) each
    ckpt = load(tmp_path / "toy.npz")  # a chain of two layers: rebuilt as an MLP like any state dict,
    assert [n for n, m in ckpt.model.named_modules() if isinstance(m, torch.nn.Linear)] == ["enc", "head"]  # named so
    np.testing.assert_allclose(ckpt.model.state_dict()["enc.weight"].numpy(), w1.T.astype(np.float32))


def test_each_built_in_file_goes_to_its_reader(tmp_path):
    from safetensors.torch import save_file

    state = {"fc1.weight": torch.ones(3, 2), "fc1.bias": torch.zeros(3)}
    torch.save(state, tmp_path / "a.pt")
    save_file(state, str(tmp_path / "a.safetensors"))
    (tmp_path / "hf").mkdir()
    save_file(state, str(tmp_path / "hf" / "model.safetensors"))
    with zipfile.ZipFile(tmp_path / "k.keras", "w") as archive:
        archive.writestr("config.json", "{}")
        archive.writestr("model.weights.h5", b"")
    with zipfile.ZipFile(tmp_path / "s.skops", "w") as archive:
        archive.writestr("schema.json", "{}")
    (tmp_path / "s.pkl").write_bytes(b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x1dsklearn.neural_network")
    (tmp_path / "m.onnx").write_bytes(b"\x08\x07\x12\x07pytorch")
    expected = {
        "a.pt": TorchSource,
        "a.safetensors": SafetensorsSource,
        "hf": FolderSource,
        "k.keras": KerasSource,
        "s.skops": SkopsSource,
        "s.pkl": SklearnPickleSource,
        "m.onnx": OnnxSource,
    }
    for name, reader in expected.items():
        assert type(open_source(tmp_path / name)) is reader, name
    assert ShardedSource in READERS


def test_a_save_pretrained_folder_with_one_file_reads_like_the_file(tmp_path):
    from safetensors.torch import save_file

    (tmp_path / "m").mkdir()
    save_file(
        {"up.weight": torch.ones(4, 2), "down.weight": torch.ones(2, 4)}, str(tmp_path / "m" / "model.safetensors")
    )
    header = read_header(tmp_path / "m")
    assert header.path == tmp_path / "m" / "model.safetensors"
    assert sorted(t.name for t in header.tensors) == ["down.weight", "up.weight"]  # safetensors sorts its keys


def test_a_zip_whose_directory_no_longer_decodes_is_one_line_not_a_traceback(tmp_path):
    """Flipped bytes in a torch.save zip's central directory (found by the byte-flip fuzz test): the
    Keras and skops sniffs list the members and met a UnicodeDecodeError; a sniff must never raise."""
    import struct

    from inspector.errors import InspectorError
    from inspector.sources.base import zip_names

    torch.save({"fc1.weight": torch.ones(3, 2)}, tmp_path / "m.pt")
    blob = bytearray((tmp_path / "m.pt").read_bytes())
    entry = blob.index(b"PK\x01\x02")  # the first central-directory record
    (flags,) = struct.unpack_from("<H", blob, entry + 8)
    struct.pack_into("<H", blob, entry + 8, flags | 0x800)  # "names are UTF-8" ...
    blob[entry + 46] = 0xFF  # ... and a name that is not
    (tmp_path / "bad.pt").write_bytes(bytes(blob))
    with pytest.raises(UnicodeDecodeError):
        zipfile.ZipFile(tmp_path / "bad.pt")  # what the sniffs used to let through
    assert zip_names(tmp_path / "bad.pt") == frozenset()
    with pytest.raises(InspectorError, match="bad.pt"):
        read_header(tmp_path / "bad.pt")
