"""Crafted files that cost more than their bytes, and corrupt payloads, each through the real CLI.

Every case runs ``python -m inspector`` in a subprocess whose address space is capped at 1.5 GB
(``RLIMIT_AS``) and whose wall time is capped at 60 s, so a regression fails here instead of eating
the machine: the answer must be one ``inspector: error:`` line (notes aside), a non-zero exit and no
traceback. The files are the outside attack's own repros (issue 20, defects 10 and 11): a zero-size
dimension beside a huge one, a 200 MiB pickle of ``None`` deflated into 200 KB, a zero-row ``.npz``
with 10^12 columns, bytes flipped inside a tensor's stored data while the zip keeps its CRC-32.
"""

from __future__ import annotations

import io
import os
import pickle
import resource
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from inspector.checkpoints import iter_header_tensors, load, read_header
from inspector.errors import InspectorError
from inspector.formats import check_shape
from tests.checkpoint_files import flip_member_bytes, pickle_bomb, zero_size_safetensors

ROOT = Path(__file__).resolve().parents[1]
ADDRESS_SPACE = 1536 * 2**20  # torch and the CLI need about 1 GB of address space; the attacks asked for terabytes
WALL = 60  # seconds: a backstop that turns a hang into a failure, not a timing assertion


def _cap() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "inspector", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=WALL,
        env=env,
        preexec_fn=_cap,
        cwd=ROOT,
    )


def refused(run: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """The one error line of a run that must fail, after checking that it is the only line but notes."""
    assert "Traceback" not in run.stderr, run.stderr
    errors = [line for line in run.stderr.splitlines() if not line.startswith("inspector: note: ")]
    errors = [line for line in errors if not line.startswith("inspector: loading ")]  # dashboard's progress line
    assert run.returncode == 1, (run.returncode, run.stderr)
    assert len(errors) == 1 and errors[0].startswith("inspector: error: "), run.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


# --------------------------------------------------------------------------- #
# defect 10: a zero-size dimension beside a huge one
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("shape", "commands"),
    [
        ([0, 10**12], ("info", "analyze")),  # analyze tried to allocate 4 TB (input_norm)
        ([10**12, 0], ("info", "analyze")),  # analyze divided by zero (pool_magnitude)
        ([2**64, 0], ("info",)),  # info overflowed int64 building the header
    ],
)
def test_zero_size_beside_a_huge_dimension_in_safetensors_is_one_line(tmp_path, shape, commands):
    path = tmp_path / "crafted.safetensors"
    path.write_bytes(zero_size_safetensors(shape))
    for command in commands:
        extra = ("--out", tmp_path / "out") if command == "analyze" else ()
        refused(cli(command, path, *extra), "crafted.safetensors", "fc1.weight", "every dimension", "2^31")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crafted.safetensors"]


def test_zero_size_tensor_from_torch_save_is_one_line_in_info_analyze_and_dashboard(tmp_path):
    path = tmp_path / "crafted.pt"
    torch.save({"fc1.weight": torch.zeros(0, 10**12)}, path)
    refused(cli("info", path), "fc1.weight", "[0, 1000000000000]")
    refused(cli("analyze", path, "--out", tmp_path / "out"), "fc1.weight")
    refused(cli("dashboard", path, "--port", "1"), "fc1.weight")  # refused before any server starts


def test_zero_size_tensor_within_bounds_is_an_empty_layer_left_out_with_a_notice(tmp_path):
    """``[0, 300000000]`` in an 89-byte file: no 1.4 GB of per-input arrays, and no layer to analyse."""
    alone = tmp_path / "alone.safetensors"
    alone.write_bytes(zero_size_safetensors([0, 300_000_000]))
    assert alone.stat().st_size == 89
    line = refused(cli("analyze", alone, "--out", tmp_path / "out"), "holds no tensors", "zero-size")
    assert "(0, 300000000)" in line

    beside = tmp_path / "beside.safetensors"
    beside.write_bytes(zero_size_safetensors([0, 300_000_000], beside=True))
    run = cli("info", "--json", beside)
    assert run.returncode == 0, run.stderr
    assert "left out 1 zero-size tensor (fc1.weight (0, 300000000))" in run.stderr
    header = read_header(beside)
    assert [t.name for t in header.tensors] == ["fc2.weight", "fc2.bias"]  # the real layer, read as it is
    tensors = dict(iter_header_tensors(header, ["fc2.weight"]))
    assert torch.equal(tensors["fc2.weight"], torch.arange(6, dtype=torch.float32).reshape(3, 2))


def test_every_dimension_is_checked_against_2_to_the_31():
    assert check_shape(Path("f"), "w", (0, 2**31)) == (0, 2**31)
    assert check_shape(Path("f"), "w", (0, 2**28, 2**28)) == (0, 2**28, 2**28)  # 2^56 elements, were it not empty
    for shape in ((0, 2**31 + 1), (2**64, 0), (-1, 3), (1.5, 2), (True, 3), (0, 2**31, 2**31), (2**20,) * 3, (1,) * 65):
        with pytest.raises(InspectorError, match="every dimension"):
            check_shape(Path("f"), "w", shape)


def test_zero_row_npz_with_a_trillion_columns_is_one_line_for_train(tmp_path):
    """It reached 7.2 GB in 37 s naming 10^12 features, then died of a MemoryError."""
    path = tmp_path / "wide.npz"
    np.savez(path, X=np.zeros((0, 10**12), dtype=np.float32), y=np.zeros((0,), dtype=np.int64))
    refused(cli("train", "--dataset", path, "--out", tmp_path / "m.pt", "--epochs", "1"), "'X'", "(0, 1000000000000)")
    path = tmp_path / "empty.npz"
    np.savez(path, X=np.zeros((0, 5), dtype=np.float32), y=np.zeros((0,), dtype=np.int64))
    refused(cli("train", "--dataset", path, "--out", tmp_path / "m.pt", "--epochs", "1"), "no element")


# --------------------------------------------------------------------------- #
# defect 10: a deflated pickle that inflates into minutes of unpickling
# --------------------------------------------------------------------------- #


def test_pickle_bomb_in_a_small_pt_is_one_line(tmp_path):
    """A 200 KB ``.pt`` whose ``data.pkl`` inflates to 200 MiB of ``None``: info grew 200 MB every 10 s."""
    path = pickle_bomb(tmp_path / "bomb.pt", 200 * 2**20)
    assert path.stat().st_size < 512 * 1024
    refused(cli("info", path), "data.pkl", "209,715,203 bytes", "crafted or corrupt")


@pytest.mark.parametrize("opcode", [b"N", b"]", b")"])
def test_pickle_just_over_its_bound_is_refused_before_it_is_unpickled(tmp_path, opcode):
    """1 MiB plus 1 KiB per storage: one byte more than a file with one storage may hold."""
    path = pickle_bomb(tmp_path / "bomb.pt", 2**20 + 1024, opcode)
    with pytest.raises(InspectorError, match="at most 1,049,600"):
        read_header(path)


def test_legacy_pickle_past_its_bound_is_refused(tmp_path):
    """The legacy (pre-1.6) format has no zip directory to read a size from: the bound is where the reader is."""
    path = tmp_path / "legacy.pt"
    torch.save({"w": torch.zeros(2)}, path, _use_new_zipfile_serialization=False)
    blob = path.read_bytes()
    # the legacy stream starts with three small pickles (magic, protocol, sys info); a fourth of 2 MiB of None
    path.write_bytes(_legacy_bomb(blob))
    with pytest.raises(InspectorError, match="runs past"):
        read_header(path)


def _legacy_bomb(blob: bytes) -> bytes:
    fh = io.BytesIO(blob)
    for _ in range(3):
        pickle.load(fh)  # noqa: S301 - our own file: magic number, protocol, sys info
    return blob[: fh.tell()] + b"\x80\x02" + b"N" * (2 * 2**20) + b"."


# --------------------------------------------------------------------------- #
# defect 11: bytes flipped inside a tensor's data, the zip's CRC-32 unchanged
# --------------------------------------------------------------------------- #

CRC_LINE = "fails its CRC check: the file is corrupt; re-download or re-save it"


def _mlp_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10)).state_dict()


def test_flipped_tensor_bytes_in_a_torch_file_fail_load_and_analyze(tmp_path):
    good = tmp_path / "digits.pt"
    torch.save(_mlp_state(), good)
    bad = flip_member_bytes(good, tmp_path / "flipped.pt", "/data/0", count=200)
    with zipfile.ZipFile(bad) as archive:
        member = next(n for n in archive.namelist() if n.endswith("/data/0"))
    refused(cli("analyze", bad, "--out", tmp_path / "out"), f"member {member} {CRC_LINE}")
    with pytest.raises(InspectorError, match="fails its CRC check"):
        load(bad)  # the MLP path: torch.load, after every member's CRC is checked
    header = read_header(bad)  # names and shapes only: data.pkl, whose CRC is fine
    with pytest.raises(InspectorError, match="fails its CRC check"):
        dict(iter_header_tensors(header, ["0.weight"]))  # the one-tensor-at-a-time path
    assert dict(iter_header_tensors(header, ["2.weight"]))["2.weight"].shape == (64, 128)  # other members are fine
    load(good)


def test_flipped_bytes_in_a_storage_read_through_a_view_are_found(tmp_path):
    """A tensor that views part of its storage: the storage is checked in chunks, not through the view."""
    base = torch.arange(40, dtype=torch.float32).reshape(8, 5)
    good = tmp_path / "views.pt"
    torch.save({"a.weight": base[:4], "b.weight": base[4:]}, good)
    bad = flip_member_bytes(good, tmp_path / "flipped.pt", "/data/0", count=4, skip=150)  # inside b's rows only
    header = read_header(bad)
    with pytest.raises(InspectorError, match="fails its CRC check"):
        dict(iter_header_tensors(header, ["a.weight"]))
    assert torch.equal(dict(iter_header_tensors(read_header(good), ["b.weight"]))["b.weight"], base[4:])


def test_flipped_bytes_in_an_npz_fail_train(tmp_path):
    rng = np.random.default_rng(0)
    good = tmp_path / "d.npz"
    np.savez(good, X=rng.normal(size=(60, 4)).astype(np.float32), y=rng.integers(0, 2, 60))
    bad = flip_member_bytes(good, tmp_path / "flipped.npz", "X.npy", count=200, skip=128)
    refused(cli("train", "--dataset", bad, "--out", tmp_path / "m.pt", "--epochs", "1"), f"member X.npy {CRC_LINE}")


def test_flipped_bytes_in_a_keras_file_are_one_line(tmp_path):
    os.environ.setdefault("KERAS_BACKEND", "torch")
    pytest.importorskip("h5py")
    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(64, name="hidden"), keras.layers.Dense(3)])
    good = tmp_path / "m.keras"
    model.save(good)
    bad = flip_member_bytes(good, tmp_path / "flipped.keras", "model.weights.h5", count=64, skip=4096)
    with pytest.raises(InspectorError, match=f"member model.weights.h5 {CRC_LINE}"):
        read_header(bad)
