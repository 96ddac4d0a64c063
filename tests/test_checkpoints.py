from __future__ import annotations

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
    result = train(MLPConfig(6, (10, 8), 3, batch_norm=True, dropout=0.1), splits,
                   TrainConfig(epochs=6, snapshot_every=3, patience=None), device="cpu", progress=False)
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
    save_checkpoint(ckpt, path, force=True)
    assert load(path).config == ckpt.config


def test_failed_write_leaves_no_partial_file(tmp_path, trained, monkeypatch):
    _, ckpt = trained

    def explode(obj, f, *a, **k):
        Path(f).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", explode)
    with pytest.raises(OSError):
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
    assert torch.isnan(back.model.fc1.weight[0, 0])


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


@pytest.mark.parametrize("content,match", [
    (None, "no such file"),
    (b"", "the file is empty"),
    (b"just some text\n", "unknown checkpoint format"),
])
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
    torch.save({"a.weight": torch.zeros(8, 4), "a.bias": torch.zeros(8),
                "b.weight": torch.zeros(2, 5), "b.bias": torch.zeros(2)}, tmp_path / "u.pt")
    with pytest.raises(InspectorError, match="u.pt: the linear layers' shapes don't chain"):
        load(tmp_path / "u.pt")
