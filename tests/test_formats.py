from __future__ import annotations

import json
import struct

import pytest
import torch

from inspector.checks import printable
from inspector.errors import InspectorError
from inspector.formats import (
    NeedsTrust,
    check_tensor,
    read_safetensors_header,
    read_torch_header,
)
from inspector.sources import open_source
from tests.checkpoint_files import foreign_pt, safetensors_bytes


def _padded_header_file(tmp_path, length: int):
    """A valid safetensors file whose JSON header is exactly ``length`` bytes (padded in the metadata)."""
    data = torch.arange(6, dtype=torch.float32)
    header = {"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}, "__metadata__": {"pad": ""}}
    pad = length - len(json.dumps(header).encode())
    header["__metadata__"]["pad"] = "x" * pad
    blob = safetensors_bytes(header, data.numpy().tobytes())
    assert struct.unpack("<Q", blob[:8])[0] == length
    path = tmp_path / f"h{length}.safetensors"
    path.write_bytes(blob)
    return path, data


@pytest.mark.parametrize("length", [100, 127, *range(128, 1024, 37), 640, 1023, 1024, 33000, 65535, 65536 + 128])
def test_safetensors_is_recognised_whatever_its_header_length_starts_with(tmp_path, length):
    # a header of 128..255 bytes (or 640 = 0x280) starts with the byte 0x80, a pickle's first byte
    path, data = _padded_header_file(tmp_path, length)
    assert open_source(path).format == "safetensors"
    header = read_safetensors_header(path)
    assert header.tensors["w"].shape == (2, 3) and header.data_start == 8 + length


def test_tanh_model_whose_header_length_starts_with_0x80_keeps_activation_history_and_metrics(tmp_path):
    from inspector.checkpoints import load, save_checkpoint
    from tests.checkpoint_files import own_checkpoint

    ckpt = own_checkpoint("tanh")
    for pad in range(0, 300):  # 256 consecutive lengths: one of them is 128 mod 256
        ckpt = ckpt.__class__(**{**ckpt.__dict__, "metrics": {"test_accuracy": 0.5, "p" * pad: 1.0}})
        path = save_checkpoint(ckpt, tmp_path / f"m{pad}.safetensors")
        if path.read_bytes()[:1] == b"\x80":  # what the old detector took for a pickle
            break
        path.unlink()
    else:
        pytest.fail("no padding gave a header length starting with 0x80")
    back = load(path)
    assert back.config.activation == "tanh" and back.history is not None
    assert back.metrics["test_accuracy"] == 0.5 and sorted(back.snapshots) == [1]


def test_legacy_pickle_is_still_recognised_as_torch(tmp_path):
    path = foreign_pt(tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    assert path.read_bytes()[:2] == b"\x80\x02"
    assert open_source(path).format == "torch"
    state = read_torch_header(path)
    assert {k: tuple(v.shape) for k, v in state.items()} == {
        "0.weight": (3, 4),
        "0.bias": (3,),
        "2.weight": (2, 3),
        "2.bias": (2,),
    }


@pytest.mark.parametrize("legacy", [False, True])
def test_torch_header_reads_no_tensor_data(tmp_path, legacy):
    path = foreign_pt(tmp_path / "m.pt", _use_new_zipfile_serialization=not legacy)
    state = read_torch_header(path)
    assert all(t.device.type == "meta" for t in state.values())
    assert check_tensor(path, "0.weight", state["0.weight"]) == 3 * 4 * 4


def test_view_of_a_larger_storage_is_accepted_and_counts_its_own_bytes(tmp_path):
    base = torch.arange(10.0)
    torch.save({"part": base[2:5], "whole": base}, tmp_path / "v.pt")
    state = read_torch_header(tmp_path / "v.pt")
    assert check_tensor(tmp_path / "v.pt", "part", state["part"]) == 12


def test_expanded_view_is_refused_before_anything_is_allocated(tmp_path):
    torch.save({"w": torch.zeros(1).expand(100000, 100000)}, tmp_path / "x.pt")
    state = read_torch_header(tmp_path / "x.pt")
    with pytest.raises(InspectorError, match=r"'w' declares shape \(100000, 100000\).*holds 4 bytes"):
        check_tensor(tmp_path / "x.pt", "w", state["w"])


def test_pickled_module_needs_trust(tmp_path):
    torch.save(torch.nn.Linear(2, 2), tmp_path / "m.pt")
    with pytest.raises(NeedsTrust, match="--trust-pickle"):
        read_torch_header(tmp_path / "m.pt")


def test_safetensors_tiling_accepts_any_order_and_zero_size_tensors(tmp_path):
    header = {
        "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]},
        "empty": {"dtype": "F16", "shape": [0, 5], "data_offsets": [8, 8]},
        "a": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]},
    }
    (tmp_path / "t.safetensors").write_bytes(safetensors_bytes(header, bytes(16)))
    got = read_safetensors_header(tmp_path / "t.safetensors").tensors
    assert [(k, got[k].nbytes) for k in got] == [("b", 8), ("empty", 0), ("a", 8)]


@pytest.mark.parametrize(
    "entries,match",
    [
        (
            {
                "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
            },
            "overlaps",
        ),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, "leaves a gap"),
        ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, "needs 12 bytes"),
        ({"a": {"dtype": "F32", "shape": [True, 2], "data_offsets": [0, 8]}}, "non-negative integers"),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8.0]}}, "two integers"),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8, 9]}}, "two integers"),
    ],
)
def test_safetensors_entries_are_checked_against_the_data(tmp_path, entries, match):
    (tmp_path / "t.safetensors").write_bytes(safetensors_bytes(entries, bytes(12)))
    with pytest.raises(InspectorError, match=match):
        read_safetensors_header(tmp_path / "t.safetensors")


def test_duplicate_tensor_names_are_refused(tmp_path):
    raw = b'{"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}, "a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}'
    (tmp_path / "d.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0")
    with pytest.raises(InspectorError, match="duplicate key 'a'"):
        read_safetensors_header(tmp_path / "d.safetensors")


def test_sharded_index_is_recognised_by_its_bytes(tmp_path):
    index = {"metadata": {"total_size": 8}, "weight_map": {"a.weight": "model-00001-of-00002.safetensors"}}
    (tmp_path / "weights.json").write_text(json.dumps(index))
    assert open_source(tmp_path / "weights.json").format == "safetensors-sharded"


def test_printable_escapes_control_characters_only():
    assert printable("fc1.weight µ") == "fc1.weight µ"
    assert printable("\x1b[2Jx\ny\x07") == "\\x1b[2Jx\\ny\\x07"


@pytest.mark.parametrize("command", ["info", "analyze"])
def test_cli_names_a_missing_shard_and_says_what_a_json_should_be(tmp_path, capsys, command):
    from inspector.cli import main

    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": {"a.weight": "model-00001-of-00002.safetensors"}}))
    extra = ["--out", str(tmp_path / "out")] if command == "analyze" else []
    assert main([command, str(index), *extra]) == 1
    assert "shard 'model-00001-of-00002.safetensors' named in the index is missing" in capsys.readouterr().err
    other = tmp_path / "config.json"
    other.write_text(json.dumps({"hidden_size": 8}))
    assert main([command, str(other), *extra]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(other) in err
    if command == "analyze":
        assert "expected the file `inspector report --format json` writes" in err


def test_a_corrupt_length_prefix_in_a_legacy_file_allocates_nothing_near_what_it_declares(tmp_path):
    """A pickle string whose 4-byte length says 2 GiB, in a file of a few hundred bytes: the header
    reader must find the file short without first allocating the declared size."""
    import tracemalloc

    import torch

    from inspector.errors import InspectorError
    from inspector.formats import read_torch_header

    path = tmp_path / "legacy.pt"
    torch.save({"w": torch.ones(2)}, path, _use_new_zipfile_serialization=False)
    blob = bytearray(path.read_bytes())
    at = blob.index(b"X", 2)  # BINUNICODE: 'X', a little-endian uint32 length, the UTF-8 bytes
    blob[at + 1 : at + 5] = (2**31 - 1).to_bytes(4, "little")
    path.write_bytes(bytes(blob))
    tracemalloc.start()
    try:
        with pytest.raises(InspectorError):
            read_torch_header(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20, peak
