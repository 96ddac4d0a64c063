"""Sharded safetensors checkpoints (Hugging Face's ``model.safetensors.index.json``) read as one
file, and checkpoints read one tensor at a time (``inspector info``, weight-only analysis)."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from inspector.analysis import analyze_weights_file
from inspector.checkpoints import iter_header_tensors, load, read_header, save_checkpoint
from inspector.cli import main
from inspector.errors import InspectorError
from inspector.formats import INDEX_NAME, read_safetensors_header
from inspector.inventory import iter_tensors, read_inventory
from tests.checkpoint_files import argmax_checkpoint


def _transformer_block(seed: int = 0) -> dict[str, torch.Tensor]:
    """A transformer MLP block: up (16 x 8, bias), down (8 x 16, no bias), a norm; not a chain-with-biases MLP."""
    g = torch.Generator().manual_seed(seed)
    return {
        "blocks.0.mlp.up.weight": torch.randn(16, 8, generator=g),
        "blocks.0.mlp.up.bias": torch.randn(16, generator=g),
        "blocks.0.mlp.down.weight": torch.randn(8, 16, generator=g),
        "blocks.0.norm.weight": torch.ones(8),
    }


def write_sharded(
    folder: Path, tensors: dict[str, torch.Tensor], groups: list[list[str]], metadata: dict[str, str] | None = None
) -> Path:
    """``tensors`` split into ``len(groups)`` shards named as Hugging Face names them; the index's
    weight_map in name order, as ``save_pretrained`` writes it. Returns the index's path."""
    folder.mkdir(parents=True, exist_ok=True)
    weight_map = {}
    for k, names in enumerate(groups, start=1):
        shard = f"model-{k:05d}-of-{len(groups):05d}.safetensors"
        save_file({n: tensors[n].contiguous() for n in names}, str(folder / shard), metadata=metadata)
        weight_map.update(dict.fromkeys(names, shard))
    index = folder / INDEX_NAME
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    index.write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}))
    return index


@pytest.fixture
def block_files(tmp_path: Path) -> tuple[Path, Path]:
    """(the block as one safetensors file, the same block in 3 shards; the up layer's weight and
    bias in different shards)."""
    tensors = _transformer_block()
    whole = tmp_path / "whole.safetensors"
    save_file(tensors, str(whole), metadata={"format": "pt"})
    index = write_sharded(
        tmp_path / "sharded",
        tensors,
        [["blocks.0.mlp.up.weight"], ["blocks.0.mlp.up.bias", "blocks.0.norm.weight"], ["blocks.0.mlp.down.weight"]],
        metadata={"format": "pt"},
    )
    return whole, index


def test_a_sharded_checkpoint_has_the_layer_table_of_the_unsharded_file(block_files):
    whole, index = block_files
    one, sharded = read_inventory(whole).to_dict(), read_inventory(index.parent).to_dict()
    assert sharded.pop("format") == "safetensors-sharded" and one.pop("format") == "safetensors"
    assert sharded.pop("path") == str(index) and one.pop("path") == str(whole)
    assert sharded == one
    layers = {row["layer"]: row for row in one["layers"]}
    assert layers["blocks.0.mlp.up"]["parameters"] == 16 * (8 + 1)  # weight and bias from two shards
    assert layers["blocks.0.mlp.down"]["parameters"] == 8 * 16
    assert read_inventory(index).to_dict() == read_inventory(index.parent).to_dict()


def test_info_json_of_folder_index_and_file_agree(block_files, capsys):
    whole, index = block_files
    docs = []
    for path in (whole, index.parent, index):
        assert main(["info", "--json", str(path)]) == 0
        doc = json.loads(capsys.readouterr().out)
        doc.pop("path"), doc.pop("format")
        docs.append(doc)
    assert docs[0] == docs[1] == docs[2]
    assert main(["info", str(index.parent)]) == 0
    assert "blocks.0.mlp.up" in capsys.readouterr().out


def test_weight_only_analysis_of_shards_gives_the_numbers_of_the_unsharded_file(block_files):
    whole, index = block_files
    one, sharded = analyze_weights_file(whole), analyze_weights_file(index.parent)
    assert sharded.parameters == one.parameters
    assert sharded.parameters.total_parameters == 16 * 9 + 8 * 16 + 8
    assert [w.layer for w in sharded.weights] == [w.layer for w in one.weights]
    tensors = _transformer_block()
    for a, b in zip(sharded.weights, one.weights):
        for field in ("neuron_norm", "input_norm", "histogram_counts", "singular_values"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
        assert a.frobenius_norm == b.frobenius_norm
        weight = tensors[f"{a.layer}.weight"].double().numpy()
        np.testing.assert_allclose(a.neuron_norm, np.linalg.norm(weight, axis=1), rtol=1e-6)
        np.testing.assert_allclose(a.singular_values, np.linalg.svd(weight, compute_uv=False), rtol=1e-6)
    np.testing.assert_array_equal(sharded.weights[1].bias, tensors["blocks.0.mlp.up.bias"].numpy())


def test_analyze_and_report_take_a_sharded_folder_or_its_index(block_files, tmp_path, capsys):
    _, index = block_files
    assert main(["analyze", str(index.parent), "--out", str(tmp_path / "out")]) == 0
    assert "analysing its weights only" in capsys.readouterr().err
    assert main(["analyze", str(index), "--out", str(tmp_path / "out2")]) == 0
    saved = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert saved["result"]["parameters"]["total_parameters"] == 16 * 9 + 8 * 16 + 8
    capsys.readouterr()
    assert main(["report", str(index.parent), "--out", str(tmp_path / "r.md")]) == 0
    assert "blocks.0.mlp.up" in (tmp_path / "r.md").read_text()


def test_the_dashboard_opens_a_sharded_folder(block_files):
    from dashboards.launch import app_for_path

    _, index = block_files
    logged: list[str] = []
    assert app_for_path(index.parent, log=logged.append).layout is not None
    assert any("analysing its weights only" in line for line in logged)


def test_our_own_mlp_in_shards_loads_as_the_mlp(tmp_path):
    """A dense-inspector checkpoint split into shards (metadata in every shard) rebuilds the same MLP."""
    source = save_checkpoint(argmax_checkpoint(("a", "b", "c"), ("x", "y", "z")), tmp_path / "m.safetensors")
    tensors = load_file(str(source))
    metadata = read_safetensors_header(source).metadata
    names = sorted(tensors)
    index = write_sharded(tmp_path / "own", tensors, [names[:1], names[1:3], names[3:]], metadata=metadata)
    one, sharded = load(source), load(index.parent)
    assert sharded.kind == one.kind == "dense-inspector"
    assert sharded.config == one.config and sharded.dataset == one.dataset
    for (k, a), (_, b) in zip(sharded.model.state_dict().items(), one.model.state_dict().items()):
        assert torch.equal(a, b), k


def _bad_index(folder: Path, weight_map: object | None = None, raw: str | None = None) -> Path:
    folder.mkdir(exist_ok=True)
    save_file({"a.weight": torch.ones(2, 3)}, str(folder / "model-00001-of-00001.safetensors"))
    index = folder / INDEX_NAME
    index.write_text(raw if raw is not None else json.dumps({"metadata": {}, "weight_map": weight_map}))
    return index


@pytest.mark.parametrize(
    ("weight_map", "raw", "message"),
    [
        (
            {"a.weight": "model-00002-of-00002.safetensors"},
            None,
            "shard 'model-00002-of-00002.safetensors' named in the index is missing",
        ),
        ({"a.weight": "../outside.safetensors"}, None, "is not a file inside the index's folder"),
        ({"a.weight": "/etc/passwd"}, None, "is not a file inside the index's folder"),
        ({"b.weight": "model-00001-of-00001.safetensors"}, None, "tensor 'b.weight' is not in its shard"),
        (
            None,
            '{"weight_map": {"a.weight": "model-00001-of-00001.safetensors", "a.weight": "x"}}',
            "duplicate key 'a.weight'",
        ),
        (None, '{"weight_map": {"a.weight": ', "not valid JSON"),
        ({"a.weight": 3}, None, "not a file name"),
        ({"a.weight": "pytorch_model-00001-of-00002.bin"}, None, "is not a .safetensors file"),
        ({}, None, "the weight_map is empty"),
    ],
)
@pytest.mark.parametrize("command", ["info", "analyze"])
def test_a_bad_index_is_one_line_and_exit_1(tmp_path, capsys, weight_map, raw, message, command):
    index = _bad_index(tmp_path / "ckpt", weight_map, raw)
    with pytest.raises(InspectorError, match=message.replace("(", r"\(").replace(".", r"\.")):
        read_header(index)
    extra = ["--out", str(tmp_path / "out")] if command == "analyze" else []
    assert main([command, str(index), *extra]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_a_shard_linked_out_of_the_folder_is_refused(tmp_path):
    save_file({"a.weight": torch.ones(2, 3)}, str(tmp_path / "elsewhere.safetensors"))
    index = _bad_index(tmp_path / "ckpt", {"a.weight": "link.safetensors"})
    (index.parent / "link.safetensors").symlink_to(tmp_path / "elsewhere.safetensors")
    with pytest.raises(InspectorError, match="leads out of the index's folder"):
        read_header(index)


# --------------------------------------------------------------------------- #
# One tensor at a time
# --------------------------------------------------------------------------- #


def test_pt_tensors_are_read_one_at_a_time_with_views_ties_and_dtypes(tmp_path):
    """Each tensor read from its place in the zip equals what torch.load gives: a transposed view
    of a tied storage, a slice at an offset, bfloat16."""
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    state = {
        "a.weight": base,
        "b.weight": base.t(),  # tied, transposed: strides (1, 4)
        "c.weight": torch.arange(40, dtype=torch.float64).reshape(10, 4)[2:5],  # offset into its storage
        "d.weight": torch.randn(5, 6).to(torch.bfloat16),
    }
    torch.save(state, tmp_path / "s.pt")
    reference = torch.load(tmp_path / "s.pt", weights_only=True)
    got = dict(iter_tensors(tmp_path / "s.pt"))
    assert list(got) == list(reference)
    for name, tensor in got.items():
        assert tensor.dtype == reference[name].dtype and torch.equal(tensor, reference[name]), name


def test_a_legacy_pt_file_is_still_read(tmp_path):
    state = _transformer_block()
    torch.save(state, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    got = dict(iter_tensors(tmp_path / "legacy.pt"))
    assert all(torch.equal(got[k], v) for k, v in state.items())


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_a_file_that_is_no_mlp_is_never_loaded_whole(tmp_path, monkeypatch, suffix):
    """Whether a file rebuilds as an MLP is decided from its header; the weight-only analysis then
    reads tensor by tensor, so neither torch.load nor safetensors' load_file runs."""
    import inspector.sources.torch_file as torch_file
    from inspector.analysis import analyze_path

    path = tmp_path / f"block{suffix}"
    if suffix == ".pt":
        torch.save(_transformer_block(), path)
    else:
        save_file(_transformer_block(), str(path))

    def refuse(*args, **kwargs):
        raise AssertionError("the whole file was loaded")

    monkeypatch.setattr(torch_file, "torch_load_safely", refuse)
    monkeypatch.setattr("safetensors.torch.load_file", refuse)
    analysis, ckpt, _ = analyze_path(path)
    assert ckpt is None and {w.layer for w in analysis.weights} == {"blocks.0.mlp.up", "blocks.0.mlp.down"}


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_info_on_a_64_mb_file_allocates_a_small_fraction_of_it(tmp_path, capsys, suffix):
    """Header only: Python-side allocations (tracemalloc sees every bytes/bytearray read) stay far
    below the file; reading even one of its tensors would allocate 32 MB."""
    state = {"up.weight": torch.zeros(2048, 4096), "down.weight": torch.zeros(4096, 2048)}
    path = tmp_path / f"big{suffix}"
    if suffix == ".pt":
        torch.save(state, path)
    else:
        save_file(state, str(path))
    size = path.stat().st_size
    tracemalloc.start()
    try:
        assert main(["info", str(path)]) == 0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    capsys.readouterr()
    assert peak < size / 16, (peak, size)


def test_weight_only_reads_allocate_one_tensor_at_a_time(tmp_path):
    """Iterating a 64 MB file's tensors holds one 32 MB tensor at a time (plus its header)."""
    state = {"up.weight": torch.zeros(2048, 4096), "down.weight": torch.zeros(4096, 2048)}
    save_file(state, str(tmp_path / "big.safetensors"))
    torch.save(state, tmp_path / "big.pt")
    largest = 2048 * 4096 * 4
    for path in (tmp_path / "big.safetensors", tmp_path / "big.pt"):
        header = read_header(path)
        tracemalloc.start()
        try:
            for _, tensor in iter_header_tensors(header, ["up.weight", "down.weight"]):
                assert tensor.shape[0] * tensor.shape[1] * 4 == largest
                del tensor
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert largest <= peak < 1.25 * largest, (path, peak)


def test_a_tensor_in_a_shard_but_not_in_the_index_is_said_not_dropped_silently(tmp_path):
    """A shard holding fc2.bias that the index does not map: the checkpoint is what the index says, and
    the reader says in one line that the extra tensor was not read (info, the weight-only analysis, load)."""
    from inspector.inventory import read_inventory

    tensors = {"fc1.weight": torch.ones(4, 3), "fc1.bias": torch.zeros(4), "fc2.weight": torch.ones(2, 4)}
    index = write_sharded(tmp_path / "m", tensors, [["fc1.weight", "fc1.bias"], ["fc2.weight"]])
    shard = tmp_path / "m" / "model-00002-of-00002.safetensors"
    save_file({"fc2.weight": torch.ones(2, 4), "fc2.bias": torch.zeros(2)}, str(shard))
    inv = read_inventory(index.parent)
    assert [(layer.layer, layer.biases) for layer in inv.linear_layers] == [("fc1", 4), ("fc2", 0)]
    assert inv.notices == (
        "1 tensor in the shards is not in the index ('fc2.bias') and was not read; "
        "re-export the index if they belong to the model",
    )
    analysis = analyze_weights_file(index.parent)
    assert any("'fc2.bias') and was not read" in f.text for f in analysis.findings)
