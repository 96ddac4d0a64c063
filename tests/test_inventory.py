from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from inspector.errors import InspectorError
from inspector.inventory import format_inventory, human_bytes, iter_tensors, read_inventory, scan_nonfinite


def _transformer_like() -> dict[str, torch.Tensor]:
    """Two MLP blocks of a transformer plus the non-dense tensors around them."""
    g = torch.Generator().manual_seed(0)
    tensors = {"embed.weight": torch.randn(50, 16, generator=g)}
    for b in range(2):
        tensors[f"blocks.{b}.ln.weight"] = torch.ones(16)
        tensors[f"blocks.{b}.mlp.up.weight"] = torch.randn(64, 16, generator=g)
        tensors[f"blocks.{b}.mlp.up.bias"] = torch.zeros(64)
        tensors[f"blocks.{b}.mlp.down.weight"] = torch.randn(16, 64, generator=g)
    return tensors


def test_safetensors_inventory_comes_from_the_header(tmp_path, monkeypatch):
    path = tmp_path / "t.safetensors"
    save_file(_transformer_like(), str(path))
    import safetensors.torch

    def no_full_load(*a, **k):
        raise AssertionError("read_inventory must not load the tensors")

    monkeypatch.setattr(safetensors.torch, "load_file", no_full_load)
    inv = read_inventory(path)
    layers = {layer.name: layer for layer in inv.linear_layers}
    assert layers["blocks.0.mlp.up"].parameters == 64 * (16 + 1)
    assert layers["blocks.0.mlp.down"].parameters == 16 * 64  # no bias
    assert layers["blocks.0.mlp.down"].biases == 0
    assert {t.name for t in inv.other_tensors} == {"blocks.0.ln.weight", "blocks.1.ln.weight"}
    assert inv.totals()["parameters"] == 50 * 16 + 2 * (64 * 17 + 16 * 64)


def test_iter_tensors_yields_one_at_a_time_and_matches(tmp_path):
    tensors = _transformer_like()
    path = tmp_path / "t.safetensors"
    save_file(tensors, str(path))
    names = ["blocks.1.mlp.up.weight", "embed.weight"]
    got = dict(iter_tensors(path, names))
    assert list(got) == names
    for name in names:
        assert torch.equal(got[name], tensors[name])


def test_torch_inventory_matches_the_model(tmp_path):
    model = nn.Sequential(nn.Linear(100, 50), nn.ReLU(), nn.Linear(50, 10))
    torch.save(model.state_dict(), tmp_path / "m.pt")
    inv = read_inventory(tmp_path / "m.pt")
    assert [(layer.name, layer.parameters) for layer in inv.linear_layers] == [("0", 5050), ("2", 510)]
    assert inv.totals()["parameters"] == sum(p.numel() for p in model.parameters())


def test_scan_nonfinite_counts_bad_values(tmp_path):
    tensors = _transformer_like()
    tensors["blocks.1.mlp.down.weight"][0, :3] = float("inf")
    save_file(tensors, str(tmp_path / "t.safetensors"))
    assert scan_nonfinite(tmp_path / "t.safetensors") == {"blocks.1.mlp.down.weight": 3}


def test_table_shows_arithmetic_and_totals(tmp_path):
    torch.save(nn.Sequential(nn.Linear(1000, 500)).state_dict(), tmp_path / "m.pt")
    text = format_inventory(read_inventory(tmp_path / "m.pt"))
    row = next(line for line in text.splitlines() if line.startswith("0 "))
    assert row.split()[:8] == ["0", "1,000", "500", "500,000", "500", "500*(1,000+1)", "=", "500,500"]


def test_inventory_json_serialises(tmp_path):
    torch.save(nn.Sequential(nn.Linear(3, 2)).state_dict(), tmp_path / "m.pt")
    payload = json.loads(json.dumps(read_inventory(tmp_path / "m.pt").to_dict()))
    assert payload["totals"]["parameters"] == 8


def test_pickled_file_inventory_is_refused_without_trust(tmp_path):
    torch.save(nn.Sequential(nn.Linear(3, 2)), tmp_path / "whole.pt")
    with pytest.raises(InspectorError, match="trust-pickle"):
        read_inventory(tmp_path / "whole.pt")
    assert read_inventory(tmp_path / "whole.pt", trust_pickle=True).totals()["parameters"] == 8


def test_weight_only_analysis_of_transformer_blocks_reads_one_tensor_at_a_time(tmp_path, monkeypatch):
    import numpy as np
    import safetensors.torch

    from inspector.analysis import Analysis, analyze_weights_file
    from inspector.analysis.weights import layer_weights
    from inspector.results import results_equal

    tensors = _transformer_like()
    path = tmp_path / "t.safetensors"
    save_file(tensors, str(path))

    def no_full_load(*a, **k):
        raise AssertionError("weight-only analysis must not load the whole file")

    monkeypatch.setattr(safetensors.torch, "load_file", no_full_load)
    analysis = analyze_weights_file(path)
    by_name = {w.name: w for w in analysis.weights}
    assert set(by_name) == {"embed", "blocks.0.mlp.up", "blocks.0.mlp.down", "blocks.1.mlp.up", "blocks.1.mlp.down"}
    expected = layer_weights("blocks.1.mlp.up", tensors["blocks.1.mlp.up.weight"], tensors["blocks.1.mlp.up.bias"])
    np.testing.assert_array_equal(by_name["blocks.1.mlp.up"].neuron_norm, expected.neuron_norm)
    assert by_name["blocks.1.mlp.up"].stable_rank == pytest.approx(expected.stable_rank)
    assert analysis.parameters.total_parameters == sum(t.numel() for t in tensors.values())
    assert analysis.data is None and analysis.activations is None
    analysis.save(tmp_path / "a")
    assert results_equal(Analysis.load(tmp_path / "a"), analysis)


def test_cli_analyze_falls_back_to_weights_only(tmp_path, capsys):
    from inspector.cli import main

    save_file(_transformer_like(), str(tmp_path / "t.safetensors"))
    assert main(["analyze", str(tmp_path / "t.safetensors"), "--out", str(tmp_path / "a")]) == 0
    captured = capsys.readouterr()
    assert "analysing its weights only" in captured.err and "weight-only" in captured.out
    assert "blocks.0.mlp.up" in captured.out and "1,088" in captured.out  # 64 x (16 + 1)
    # asking for data on such a file is an error, not a silent fallback
    assert main(["analyze", str(tmp_path / "t.safetensors"), "--data", "synthetic", "--out", str(tmp_path / "b")]) == 1
    assert "can't be rebuilt as an MLP" in capsys.readouterr().err


def test_dashboard_and_report_handle_a_weight_only_analysis(tmp_path):
    from dashboards.app import create_app
    from inspector.analysis import analyze_weights_file
    from inspector.report import to_html, to_markdown

    save_file(_transformer_like(), str(tmp_path / "t.safetensors"))
    analysis = analyze_weights_file(tmp_path / "t.safetensors")
    assert create_app(analysis).layout is not None
    assert "blocks.0.mlp.down" in to_markdown(analysis)
    assert '<section id="weights">' in to_html(analysis)


def test_weight_only_analysis_reads_a_pt_file_once(tmp_path, monkeypatch):
    import inspector.checkpoints as checkpoints_module
    from inspector.analysis import analyze_weights_file

    tensors = _transformer_like()
    tensors["blocks.0.mlp.up.weight"][0, 0] = float("nan")
    torch.save(tensors, tmp_path / "t.pt")
    loads = []
    real = checkpoints_module.torch_load_safely

    def counting(*a, **k):
        loads.append(1)
        return real(*a, **k)

    monkeypatch.setattr(checkpoints_module, "torch_load_safely", counting)
    analysis = analyze_weights_file(tmp_path / "t.pt")
    assert len(loads) == 1  # the inventory reads the header only, then one streaming pass over every weight
    assert len(analysis.weights) == 5 and analysis.model.nonfinite == ("blocks.0.mlp.up.weight",)
    assert any("blocks.0.mlp.up.weight holds NaN" in f.text for f in analysis.findings)


def test_info_reads_no_tensor_data(tmp_path, capsys, monkeypatch):
    import safetensors

    from inspector.cli import main
    from tests.checkpoint_files import own_file

    pt = own_file(tmp_path, ".pt")
    st = own_file(tmp_path, ".safetensors")

    def no_data(*a, **k):
        raise AssertionError("info must not read tensor data")

    monkeypatch.setattr(torch, "load", no_data)
    monkeypatch.setattr(safetensors, "safe_open", no_data)
    monkeypatch.setattr(safetensors.torch, "load_file", no_data)
    for path in (pt, st):
        assert main(["info", str(path)]) == 0
        out = capsys.readouterr().out
        assert "MLP 4-3-2 (tanh)" in out and "test accuracy 50.00%" in out
        assert main(["info", "--json", str(path)]) == 0
        assert json.loads(capsys.readouterr().out)["metadata"]["config"]["hidden_sizes"] == [3]


def test_tensor_names_are_escaped_in_the_table_and_the_weight_only_summary(tmp_path, capsys):
    from inspector.cli import main

    save_file({"\x1b[2J.weight": torch.ones(3, 2), "x\ny.weight": torch.ones(5, 4)}, str(tmp_path / "e.safetensors"))
    assert main(["info", str(tmp_path / "e.safetensors")]) == 0
    table = capsys.readouterr().out
    assert "\x1b" not in table and "\\x1b[2J" in table and "x\\ny" in table
    assert main(["analyze", str(tmp_path / "e.safetensors"), "--out", str(tmp_path / "a")]) == 0
    captured = capsys.readouterr()
    assert "\x1b" not in captured.out + captured.err and "\\x1b[2J" in captured.out
    assert all(line.startswith("inspector: note:") for line in captured.err.splitlines())


def test_foreign_metadata_named_config_is_not_taken_for_ours(tmp_path, capsys):
    from inspector.cli import main

    save_file(_transformer_like(), str(tmp_path / "t.safetensors"), metadata={"config": '{"hidden": 1}',
                                                                              "metrics": '"high"'})
    assert main(["info", str(tmp_path / "t.safetensors")]) == 0
    assert "MLP" not in capsys.readouterr().out.splitlines()[1]


def test_nonfinite_scan_counts_in_bounded_chunks():
    from inspector.inventory import count_nonfinite

    t = torch.zeros(7, 5)
    t[0, 0], t[3, 4], t[6, 2] = float("nan"), float("inf"), -float("inf")
    for chunk in (1, 2, 3, 5, 11, 35, 1000):
        assert count_nonfinite(t, chunk) == 3
        assert count_nonfinite(t.t(), chunk) == 3  # a non-contiguous view
        assert count_nonfinite(t.reshape(-1), chunk) == 3
    assert count_nonfinite(torch.tensor(float("nan"))) == 1
    assert count_nonfinite(torch.arange(4)) == 0


# --- tied weights and header-only counts (issue 8) ---------------------------------------------


class _Tied(nn.Module):
    """20 -> 32 -> 32 -> 32 -> 3 with ``b.weight is a.weight``: 32*21 + 32*33 + 0 + 3*32 = 1,824 parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(20, 32)
        self.a = nn.Linear(32, 32)
        self.b = nn.Linear(32, 32, bias=False)
        self.b.weight = self.a.weight
        self.out = nn.Linear(32, 3, bias=False)


def test_tied_weights_in_a_state_dict_count_once(tmp_path):
    model = _Tied()
    path = tmp_path / "tied.pt"
    torch.save(model.state_dict(), path)
    inv = read_inventory(path)
    expected = 32 * (20 + 1) + 32 * (32 + 1) + 3 * 32
    assert expected == sum(p.numel() for p in model.parameters()) == 1824
    assert inv.totals()["parameters"] == expected
    assert inv.totals()["bytes"] == expected * 4
    tied = {layer.name: layer.tied_to for layer in inv.linear_layers}
    assert tied == {"inp": None, "a": None, "b": "a", "out": None}
    assert "b (tied to a)" in format_inventory(inv)


def test_transposed_tie_counts_once(tmp_path):
    enc = nn.Linear(20, 8, bias=False)
    state = {"enc.weight": enc.weight.detach(), "dec.weight": enc.weight.detach().t()}
    path = tmp_path / "ae.pt"
    torch.save(state, path)
    inv = read_inventory(path)
    assert inv.totals()["parameters"] == 8 * 20
    assert [layer.tied_to for layer in inv.linear_layers] == [None, "enc"]


def test_a_bare_2d_tensor_is_listed_as_a_layer(tmp_path):
    path = tmp_path / "w.pt"
    torch.save({"w": torch.zeros(3, 5)}, path)
    inv = read_inventory(path)
    assert [(layer.name, layer.parameters) for layer in inv.linear_layers] == [("w", 15)]
    assert inv.other_tensors == ()


def test_info_table_shows_each_rows_arithmetic(tmp_path):
    path = tmp_path / "nobias.pt"
    torch.save({"fc.weight": torch.zeros(32, 64)}, path)
    table = format_inventory(read_inventory(path))
    assert "m*(n+1)" not in table
    assert "32*64 = 2,048" in table


def test_human_bytes_picks_a_readable_unit():
    assert human_bytes(384) == "384 B"
    assert human_bytes(12900.8 * 1024) == "12.6 MiB"
    assert human_bytes(3 * 1024 ** 3) == "3.0 GiB"
