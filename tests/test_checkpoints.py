from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from inspector.checkpoints import checkpoint_from_training, load, save_checkpoint
from inspector.data import SplitSpec
from inspector.errors import InspectorError
from inspector.models import MLPConfig
from inspector.training import TrainConfig, train
from tests.helpers import tiny_splits


@pytest.fixture(scope="module")
def trained():
    splits = tiny_splits()
    result = train(
        MLPConfig(6, (10, 8), 3, batch_norm=True, dropout=0.1),
        splits,
        TrainConfig(epochs=6, snapshot_every=3, patience=None),
        device="cpu",
        progress=False,
    )
    return splits, checkpoint_from_training(result, splits.dataset, splits.standardizer, SplitSpec())


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_round_trip_restores_weights_predictions_and_extras(tmp_path, trained, suffix):
    splits, ckpt = trained
    path = save_checkpoint(ckpt, tmp_path / f"m{suffix}")
    back = load(path)
    assert back.kind == "dense-inspector" and back.config == ckpt.config
    for key, value in ckpt.model.state_dict().items():
        assert torch.equal(value, back.model.state_dict()[key]), key
    x = torch.from_numpy(splits.X_test)
    ckpt.model.eval()
    assert torch.equal(ckpt.model(x), back.model(x))
    np.testing.assert_array_equal(back.history.val_loss, ckpt.history.val_loss)
    assert back.history.best_epoch == ckpt.history.best_epoch
    np.testing.assert_array_equal(back.standardizer.mean, ckpt.standardizer.mean)
    np.testing.assert_array_equal(back.standardizer.scale, ckpt.standardizer.scale)
    assert back.dataset == ckpt.dataset and back.train_config == ckpt.train_config
    assert sorted(back.snapshots) == [3, 6]
    assert torch.equal(back.snapshot_model(3).fc1.weight, ckpt.snapshots[3]["fc1.weight"])
    assert back.metrics["test_accuracy"] == pytest.approx(ckpt.metrics["test_accuracy"])
    assert back.nonfinite == ()


def test_existing_file_is_not_overwritten_without_force(tmp_path, trained):
    _, ckpt = trained
    path = tmp_path / "m.pt"
    path.write_bytes(b"precious")
    with pytest.raises(InspectorError, match="already exists; pass --force"):
        save_checkpoint(ckpt, path)
    assert path.read_bytes() == b"precious"
    with pytest.raises(InspectorError, match="not written by dense-inspector"):  # --force spares a user's file
        save_checkpoint(ckpt, path, force=True)
    assert path.read_bytes() == b"precious"
    path.unlink()
    save_checkpoint(ckpt, path)
    save_checkpoint(ckpt, path, force=True)  # our own checkpoint is replaced
    assert load(path).config == ckpt.config


def test_failed_write_leaves_no_partial_file(tmp_path, trained, monkeypatch):
    _, ckpt = trained

    def explode(obj, f, *a, **k):
        Path(f).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", explode)
    with pytest.raises((OSError, InspectorError), match="disk full"):
        save_checkpoint(ckpt, tmp_path / "m.pt")
    assert os.listdir(tmp_path) == []


class _Malicious:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"fc.weight": torch.zeros(2, 2), "payload": _Malicious(marker)}, path)
    assert not marker.exists()
    with pytest.raises(InspectorError, match="pickled Python objects.*--trust-pickle"):
        load(path)
    assert not marker.exists()
    # the payload is real: with the explicit opt-in it runs (which is why it is opt-in)
    with pytest.raises(InspectorError):
        load(path, trust_pickle=True)
    assert marker.exists()


def test_whole_module_needs_trust_pickle(tmp_path):
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    path = tmp_path / "whole.pt"
    torch.save(module, path)
    with pytest.raises(InspectorError, match="trust-pickle"):
        load(path)
    back = load(path, trust_pickle=True)
    assert back.kind == "pickled-module"
    x = torch.randn(5, 3)
    assert torch.equal(back.model(x), module(x))


def test_bare_state_dict_assumes_relu_with_a_notice(tmp_path):
    torch.manual_seed(0)
    foreign = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    torch.save(foreign.state_dict(), tmp_path / "sd.pt")
    back = load(tmp_path / "sd.pt")
    assert back.kind == "state-dict" and back.config.activation == "relu"
    assert any("assuming relu" in n for n in back.notices)
    x = torch.randn(4, 64)
    assert torch.equal(back.model(x), foreign(x))
    assert load(tmp_path / "sd.pt", activation="tanh").config.activation == "tanh"


def test_wrapped_training_checkpoint_is_unwrapped(tmp_path):
    foreign = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    torch.save({"epoch": 3, "model_state_dict": foreign.state_dict(), "optimizer": {"lr": 0.1}}, tmp_path / "c.pt")
    back = load(tmp_path / "c.pt")
    assert back.config.layer_sizes == (4, 3, 2)
    assert any("model_state_dict" in n for n in back.notices)


def test_foreign_safetensors_state_dict(tmp_path):
    from safetensors.torch import save_file

    foreign = nn.Sequential(nn.Linear(5, 4), nn.GELU(), nn.Linear(4, 2))
    save_file(foreign.state_dict(), str(tmp_path / "f.safetensors"))
    back = load(tmp_path / "f.safetensors", activation="gelu")
    x = torch.randn(3, 5)
    assert torch.equal(back.model(x), foreign(x))


def test_nan_weights_are_loaded_but_flagged(tmp_path):
    foreign = nn.Sequential(nn.Linear(3, 2))
    with torch.no_grad():
        foreign[0].weight[0, 0] = float("nan")
        foreign[0].bias[1] = float("inf")
    torch.save(foreign.state_dict(), tmp_path / "nan.pt")
    back = load(tmp_path / "nan.pt")
    assert back.nonfinite == ("0.weight", "0.bias")
    assert torch.isnan(back.model.get_submodule("0").weight[0, 0])  # the file's name for the layer


def test_truncated_pt_gives_clear_error(tmp_path, trained):
    _, ckpt = trained
    path = save_checkpoint(ckpt, tmp_path / "m.pt")
    data = path.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InspectorError, match=r"cut.pt: truncated or corrupt PyTorch file"):
        load(cut)


def test_truncated_safetensors_gives_clear_error(tmp_path, trained):
    _, ckpt = trained
    path = save_checkpoint(ckpt, tmp_path / "m.safetensors")
    data = path.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[:-10])
    with pytest.raises(InspectorError, match=r"cut.safetensors: truncated safetensors file"):
        load(cut)
    (tmp_path / "hdr.safetensors").write_bytes(struct.pack("<Q", 5000) + b"{" + b" " * 20)
    with pytest.raises(InspectorError, match="truncated or corrupt safetensors header"):
        load(tmp_path / "hdr.safetensors")


@pytest.mark.parametrize(
    "content,match",
    [
        (None, "no such file"),
        (b"", "the file is empty"),
        (b"just some text\n", "unknown checkpoint format"),
    ],
)
def test_bad_files_are_named(tmp_path, content, match):
    path = tmp_path / "bad.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InspectorError, match=match) as info:
        load(path)
    assert "bad.pt" in str(info.value)


def test_directory_is_refused(tmp_path):
    with pytest.raises(InspectorError, match="is a directory"):
        load(tmp_path)


def test_tensor_instead_of_state_dict(tmp_path):
    torch.save(torch.zeros(3), tmp_path / "t.pt")
    with pytest.raises(InspectorError, match="single tensor of shape \\(3,\\), not a state dict"):
        load(tmp_path / "t.pt")


def test_unchained_state_dict_is_a_clear_error(tmp_path):
    torch.save(
        {
            "a.weight": torch.zeros(8, 4),
            "a.bias": torch.zeros(8),
            "b.weight": torch.zeros(2, 5),
            "b.bias": torch.zeros(2),
        },
        tmp_path / "u.pt",
    )
    with pytest.raises(InspectorError, match="u.pt: the linear layers' shapes don't chain"):
        load(tmp_path / "u.pt")


# --------------------------------------------------------------------------- #
# Malformed files: the cases named in issue 8 (items 12 and 13), one line each
# --------------------------------------------------------------------------- #

from tests.checkpoint_files import (  # noqa: E402
    edit_own_safetensors,
    foreign_pt,
    foreign_safetensors,
    own_file,
    rezip,
    safetensors_bytes,
    split_safetensors,
)


def _entry_edit(field: str, value):
    def build(folder: Path) -> bytes:
        header, data = split_safetensors(foreign_safetensors())
        header["fc.weight"][field] = value
        return safetensors_bytes(header, data)

    return build


def _own_st_edit(key: str, value):
    def build(folder: Path) -> bytes:
        return edit_own_safetensors(own_file(folder / "src", ".safetensors").read_bytes(), key, value)

    return build


def _own_config_edit(**changes):
    def build(folder: Path) -> bytes:
        blob = own_file(folder / "src", ".safetensors").read_bytes()
        header, _ = split_safetensors(blob)
        config = json.loads(header["__metadata__"]["config"])
        for key, value in changes.items():
            if value is ...:
                config.pop(key)
            else:
                config[key] = value
        return edit_own_safetensors(blob, "config", config)

    return build


def _own_pt_edit(edit):
    def build(folder: Path) -> bytes:
        src = own_file(folder / "src", ".pt")
        payload = torch.load(src, weights_only=True)
        edit(payload)
        torch.save(payload, folder / "src" / "edited.pt")
        return (folder / "src" / "edited.pt").read_bytes()

    return build


def _expanded(side: int, **save_kwargs):
    def build(folder: Path) -> bytes:
        torch.save({"w": torch.zeros(1).expand(side, side)}, folder / "src" / "x.pt", **save_kwargs)
        return (folder / "src" / "x.pt").read_bytes()

    return build


def _storage_larger_than_record(folder: Path) -> bytes:
    torch.save({"w": torch.arange(4, dtype=torch.float32)}, folder / "src" / "ok.pt")
    # the pickle declares 2**26 elements for a storage whose zip record holds 4
    rezip(
        folder / "src" / "ok.pt",
        folder / "src" / "big.pt",
        lambda pkl: pkl.replace(b"K\x04tq", b"J" + struct.pack("<i", 1 << 26) + b"tq"),
    )
    return (folder / "src" / "big.pt").read_bytes()


def _giant_layer_config(folder: Path) -> bytes:
    """Issue 8 item 12: 1.4 KB of own-format checkpoint declaring a 60000 x 60000 layer."""
    blob = own_file(folder / "src", ".safetensors", snapshots=False).read_bytes()
    header, _ = split_safetensors(blob)
    config = json.loads(header["__metadata__"]["config"])
    config["hidden_sizes"] = [60000]
    config["input_size"] = 60000
    return edit_own_safetensors(blob, "config", config)


MALFORMED = {
    "pt renamed to .safetensors, cut in half": lambda f: foreign_pt(f / "src" / "a.pt").read_bytes()[:400],
    "overlapping offsets": _entry_edit("data_offsets", [12, 36]),
    "reversed offsets": _entry_edit("data_offsets", [24, 0]),
    "unknown dtype": _entry_edit("dtype", "F31"),
    "overflowing shape": _entry_edit("shape", [2**64, 2**64]),
    "negative shape": _entry_edit("shape", [-3, -2]),
    "string offsets": _entry_edit("data_offsets", ["0", "24"]),
    "string shape": _entry_edit("shape", ["3", "2"]),
    "null end offset": _entry_edit("data_offsets", [0, None]),
    "entry not an object": _entry_edit("shape", {"a": 1}),
    "metadata not a dict": lambda f: safetensors_bytes(
        {**split_safetensors(foreign_safetensors())[0], "__metadata__": ["x"]},
        split_safetensors(foreign_safetensors())[1],
    ),
    "header length past the end": lambda f: struct.pack("<Q", 5000) + b"{" + b" " * 20,
    "header not JSON": lambda f: struct.pack("<Q", 4) + b"{x:1" + b"\0" * 8,
    "deeply nested header": lambda f: struct.pack("<Q", 200001) + b"{" + b"[" * 100000 + b"]" * 100000,
    "bytes after the last tensor": lambda f: foreign_safetensors() + b"\0" * 8,
    "own metadata without config": _own_st_edit("config", ...),
    "own config without activation": _own_config_edit(activation=...),
    "own config input_size as a string": _own_config_edit(input_size="64"),
    "own config hidden_sizes of strings": _own_config_edit(hidden_sizes=["3"]),
    "own config unknown activation": _own_config_edit(activation="swish"),
    "own config with a 60000 x 60000 layer": _giant_layer_config,
    "own unknown train_config keys": _own_st_edit("train_config", {"epochs": 2, "warp_drive": True}),
    "own train_config epochs as a string": _own_st_edit("train_config", {"epochs": "2"}),
    "own history with uneven curves": _own_st_edit(
        "history",
        {
            "train_loss": [1.0],
            "val_loss": [],
            "train_accuracy": [],
            "val_accuracy": [],
            "best_epoch": 1,
            "stopped_early": False,
        },
    ),
    "own metrics not numbers": _own_st_edit("metrics", {"test_accuracy": "high"}),
    "own metadata not JSON": _own_st_edit("__raw__", "{not json"),
    "own format version from the future": _own_st_edit("format_version", 99),
    "own dataset with a wrong image shape": _own_st_edit(
        "dataset", {"name": "d", "feature_names": [], "class_names": [], "image_shape": [5, 5], "split": {}}
    ),
    "own safetensors snapshot epoch 'x'": lambda f: _rename_snapshot(f, "x"),
    "own .pt snapshot epoch 'x'": _own_pt_edit(lambda p: p.update(snapshots={"x": p["snapshots"][1]})),
    "own .pt without config": _own_pt_edit(lambda p: p.pop("config")),
    "own .pt input_size '64'": _own_pt_edit(lambda p: p["config"].update(input_size="64")),
    "own .pt state shapes not matching the config": _own_pt_edit(
        lambda p: p["state_dict"].update({"fc1.weight": torch.zeros(3, 5)})
    ),
    "own .pt snapshot missing a layer": _own_pt_edit(lambda p: p["snapshots"][1].pop("fc2.bias")),
    "own .pt preprocessing of the wrong size": _own_pt_edit(
        lambda p: p.update(preprocessing={"mean": torch.zeros(9), "scale": torch.ones(9)})
    ),
    "zip .pt, 30000 x 30000 expanded view": _expanded(30000),
    "zip .pt, 100000 x 100000 expanded view": _expanded(100000),
    "legacy .pt, 30000 x 30000 expanded view": _expanded(30000, _use_new_zipfile_serialization=False),
    "zip .pt whose storage declares more than its record": _storage_larger_than_record,
    "zip .pt cut short": lambda f: foreign_pt(f / "src" / "a.pt").read_bytes()[:-30],
    "legacy .pt cut short": lambda f: foreign_pt(f / "src" / "a.pt", _use_new_zipfile_serialization=False).read_bytes()[
        :-5
    ],
}


def _rename_snapshot(folder: Path, epoch: str) -> bytes:
    header, data = split_safetensors(own_file(folder / "src", ".safetensors").read_bytes())
    header = {k.replace("_inspector.snapshot.1.", f"_inspector.snapshot.{epoch}."): v for k, v in header.items()}
    return safetensors_bytes(header, data)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_checkpoint_is_one_error_line_in_every_command(tmp_path, capsys, case, suffix):
    from inspector.cli import main

    (tmp_path / "src").mkdir()
    blob = MALFORMED[case](tmp_path)
    folder = tmp_path / "run"
    folder.mkdir()
    path = folder / f"bad{suffix}"
    path.write_bytes(blob)
    for argv in (
        ["info", str(path)],
        ["info", "--json", str(path)],
        ["analyze", str(path), "--out", str(folder / "out")],
    ):
        assert main(argv) == 1, argv
        captured = capsys.readouterr()
        lines = captured.err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("inspector: error: "), (argv, captured.err)
        assert str(path) in lines[0] and "Traceback" not in captured.err
        assert sorted(os.listdir(folder)) == [path.name]  # no output folder, no temporary left behind


def test_safetensors_checkpoint_honours_the_umask_like_a_pt(tmp_path):
    from tests.checkpoint_files import own_checkpoint

    old = os.umask(0o022)
    try:
        for suffix in (".pt", ".safetensors"):
            path = save_checkpoint(own_checkpoint(), tmp_path / f"m{suffix}")
            assert path.stat().st_mode & 0o777 == 0o644, suffix
    finally:
        os.umask(old)


def test_own_config_is_checked_against_the_tensors_before_building(tmp_path, monkeypatch):
    import inspector.checkpoints as checkpoints_module

    (tmp_path / "src").mkdir()
    path = tmp_path / "giant.safetensors"
    path.write_bytes(_giant_layer_config(tmp_path))
    assert path.stat().st_size < 4096

    def no_build(config):
        raise AssertionError("build_mlp ran before the sizes were checked")

    monkeypatch.setattr(checkpoints_module, "build_mlp", no_build)
    with pytest.raises(InspectorError, match=r"weights don't match the stored config 60000-60000-2"):
        load(path)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_content_decides_the_format_not_the_extension(tmp_path, suffix):
    from tests.checkpoint_files import own_file

    other = ".safetensors" if suffix == ".pt" else ".pt"
    (tmp_path / "src").mkdir()
    renamed = tmp_path / f"renamed{other}"
    renamed.write_bytes(own_file(tmp_path / "src", suffix).read_bytes())
    back = load(renamed)
    assert back.config.activation == "tanh" and sorted(back.snapshots) == [1]


def _edited_pt(tmp_path, ckpt, edit):
    path = save_checkpoint(ckpt, tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)
    edit(payload)
    torch.save(payload, path)
    return path


@pytest.mark.parametrize("seed", [2**70, -1, 2**32])
def test_stored_split_seed_outside_the_splitters_range_is_refused(tmp_path, trained, seed):
    path = _edited_pt(tmp_path, trained[1], lambda p: p["dataset"]["split"].update(seed=seed))
    with pytest.raises(InspectorError, match=r"m\.pt: dataset split: seed must be an integer from 0 to"):
        load(path)


def test_stored_zero_test_fraction_is_refused_at_load(tmp_path, trained):
    path = _edited_pt(tmp_path, trained[1], lambda p: p["dataset"]["split"].update(test_fraction=0.0))
    with pytest.raises(InspectorError, match=r"m\.pt: dataset split: .*fractions must be in \(0, 1\)"):
        load(path)


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("mean", float("nan"), "standardizer mean must be finite"),
        ("scale", 0.0, "standardizer scale must be finite and > 0"),
        ("scale", -1.0, "standardizer scale must be finite and > 0"),
        ("scale", float("nan"), "standardizer scale must be finite and > 0"),
    ],
)
def test_corrupt_stored_standardizer_is_refused_naming_file_and_field(tmp_path, trained, field, value, message):
    def edit(payload):
        payload["preprocessing"][field][2] = value

    path = _edited_pt(tmp_path, trained[1], edit)
    with pytest.raises(InspectorError, match=rf"m\.pt: {message}; re-export the checkpoint") as exc:
        load(path)
    assert "\n" not in str(exc.value)
