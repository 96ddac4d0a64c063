from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from inspector.errors import InspectorError
from inspector.inventory import iter_tensors, read_inventory, scan_nonfinite
from inspector.render.tables import format_inventory, human_bytes
from tests.test_parameters import BERT_EMBEDDINGS, BERT_LINEAR, BERT_NORMS, _bert_config


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
    layers = {layer.layer: layer for layer in inv.linear_layers}
    assert layers["blocks.0.mlp.up"].parameters == 64 * (16 + 1)
    assert layers["blocks.0.mlp.down"].parameters == 16 * 64  # no bias
    assert layers["blocks.0.mlp.down"].biases == 0
    assert {t.name for t in inv.other_tensors} == {"blocks.0.ln.weight", "blocks.1.ln.weight"}
    assert "embed" not in layers  # an embedding table, not a dense layer
    assert [(e.layer, e.num_embeddings, e.embedding_dim, e.parameters) for e in inv.embeddings] == [
        ("embed", 50, 16, 50 * 16)
    ]
    assert inv.totals()["parameters"] == 2 * (64 * 17 + 16 * 64)
    assert inv.totals()["embedding_parameters"] == 50 * 16
    assert inv.totals()["total_parameters"] == 50 * 16 + 2 * (64 * 17 + 16 * 64) + 2 * 16


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
    assert [(layer.layer, layer.parameters) for layer in inv.linear_layers] == [("0", 5050), ("2", 510)]
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
    by_name = {w.layer: w for w in analysis.weights}
    assert set(by_name) == {"blocks.0.mlp.up", "blocks.0.mlp.down", "blocks.1.mlp.up", "blocks.1.mlp.down"}
    assert [(e.layer, e.parameters) for e in analysis.parameters.embeddings] == [("embed", 50 * 16)]
    assert analysis.parameters.trainable_parameters is None  # a file does not record requires_grad
    expected = layer_weights("blocks.1.mlp.up", tensors["blocks.1.mlp.up.weight"], tensors["blocks.1.mlp.up.bias"])
    np.testing.assert_array_equal(by_name["blocks.1.mlp.up"].neuron_norm, expected.neuron_norm)
    assert by_name["blocks.1.mlp.up"].stable_rank == pytest.approx(expected.stable_rank)
    assert analysis.parameters.total_parameters == sum(t.numel() for t in tensors.values())
    assert analysis.data is None and analysis.activations is None
    analysis.save(tmp_path / "a")
    assert results_equal(Analysis.load(tmp_path / "a"), analysis)


def test_weight_only_analysis_drops_each_tensor_before_reading_the_next(tmp_path, monkeypatch):
    import gc
    import weakref

    import inspector.analysis.weights_file
    import inspector.inventory
    from inspector.analysis import analyze_weights_file

    save_file(_transformer_like(), str(tmp_path / "t.safetensors"))
    real = inspector.inventory.iter_tensors
    alive_at_weight: list[int] = []  # per weight read: how many tensors read before it are still alive

    def watched(*args, **kwargs):
        earlier: list[weakref.ref] = []
        for name, tensor in real(*args, **kwargs):
            gc.collect()
            if name.endswith(".weight"):
                alive_at_weight.append(sum(ref() is not None for ref in earlier))
            earlier.append(weakref.ref(tensor))
            yield name, tensor
            del tensor

    monkeypatch.setattr(inspector.analysis.weights_file, "iter_tensors", watched)  # where the analysis calls it
    analysis = analyze_weights_file(tmp_path / "t.safetensors")
    assert len(alive_at_weight) == len(analysis.weights) == 4
    assert alive_at_weight == [0, 0, 0, 0]  # a layer's weight and bias are dropped before the next weight is read


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
    from inspector.render import to_html, to_markdown

    save_file(_transformer_like(), str(tmp_path / "t.safetensors"))
    analysis = analyze_weights_file(tmp_path / "t.safetensors")
    assert create_app(analysis).layout is not None
    assert "blocks.0.mlp.down" in to_markdown(analysis)
    assert '<section id="weights">' in to_html(analysis)


def test_weight_only_analysis_reads_a_pt_file_once(tmp_path, monkeypatch):
    import inspector.sources.torch_file as checkpoints_module
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
    assert not loads  # the inventory reads the header only, then each weight from its place in the file
    assert len(analysis.weights) == 4 and analysis.model.nonfinite == ("blocks.0.mlp.up.weight",)
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

    save_file(
        _transformer_like(), str(tmp_path / "t.safetensors"), metadata={"config": '{"hidden": 1}', "metrics": '"high"'}
    )
    assert main(["info", str(tmp_path / "t.safetensors")]) == 0
    assert "MLP" not in capsys.readouterr().out.splitlines()[1]


def test_nonfinite_scan_counts_in_bounded_chunks():
    from inspector.formats import count_nonfinite

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
    tied = {layer.layer: layer.tied_to for layer in inv.linear_layers}
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
    assert [(layer.layer, layer.parameters) for layer in inv.linear_layers] == [("w", 15)]
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
    assert human_bytes(3 * 1024**3) == "3.0 GiB"


# --- embeddings are not dense layers; buffers are not parameters (issue 9) ----------------------


def _bert_file(tmp_path, *, masked_lm: bool = False, fmt: str = "safetensors"):
    """A locally built BERT saved as a file, with the ``position_ids`` buffer older checkpoints store."""
    transformers, config = _bert_config()
    torch.manual_seed(0)
    model = (transformers.BertForMaskedLM if masked_lm else transformers.BertModel)(config)
    prefix = "bert." if masked_lm else ""
    path = tmp_path / f"bert.{'safetensors' if fmt == 'safetensors' else 'pt'}"
    if fmt == "safetensors":
        from safetensors.torch import save_model

        save_model(model, str(path))  # writes a tied tensor once, under one of its names
        if not masked_lm:
            state = {k: v.contiguous() for k, v in model.state_dict().items()}
            state[f"{prefix}embeddings.position_ids"] = torch.arange(64).unsqueeze(0)  # (1, 64) int64
            save_file(state, str(path))
    else:
        state = model.state_dict()
        state[f"{prefix}embeddings.position_ids"] = torch.arange(64).unsqueeze(0)
        torch.save(state, path)  # tied tensors stay one storage
    return model, path


def test_bert_file_lists_embeddings_apart_and_counts_what_the_module_counts(tmp_path):
    model, path = _bert_file(tmp_path)
    inv = read_inventory(path)
    assert sorted((e.layer, e.num_embeddings, e.embedding_dim, e.parameters) for e in inv.embeddings) == sorted(
        (name, rows, dim, rows * dim) for name, rows, dim in BERT_EMBEDDINGS
    )
    expected = [*BERT_LINEAR, ("pooler.dense", 32, 32)]
    assert sorted(
        (layer.layer, layer.in_features, layer.out_features, layer.parameters) for layer in inv.linear_layers
    ) == sorted((name, n, m, m * (n + 1)) for name, n, m in expected)
    assert [t.name for t in inv.integer_tensors] == ["embeddings.position_ids"]
    totals = inv.totals()
    assert totals["embedding_parameters"] == 5280 and totals["other_parameters"] == BERT_NORMS
    assert totals["parameters"] == sum(m * (n + 1) for _, n, m in expected)
    assert totals["total_parameters"] == sum(p.numel() for p in model.parameters()) == 19978


@pytest.mark.parametrize("fmt", ["safetensors", "pt"])
def test_bert_masked_lm_file_counts_its_tied_decoder_once(tmp_path, fmt):
    model, path = _bert_file(tmp_path, masked_lm=True, fmt=fmt)
    inv = read_inventory(path)
    assert inv.totals()["total_parameters"] == sum(p.numel() for p in model.parameters()) == 20141
    assert {e.layer for e in inv.embeddings} == {f"bert.{name}" for name, _, _ in BERT_EMBEDDINGS}
    assert all(e.tied_to is None for e in inv.embeddings)
    decoder = [layer for layer in inv.linear_layers if layer.layer == "cls.predictions.decoder"]
    if fmt == "pt":  # one storage under two names: the decoder row says where its weight is counted
        assert [(d.tied_to, d.weights, d.parameters) for d in decoder] == [("bert.embeddings.word_embeddings", 0, 0)]
    else:  # safetensors keeps one name of a tied tensor (here the embedding's)
        assert decoder == []


def test_info_lists_embeddings_and_claims_nothing_about_trainable(tmp_path, capsys):
    from inspector.cli import main

    _, path = _bert_file(tmp_path)
    assert main(["info", str(path)]) == 0
    text = capsys.readouterr().out
    word = next(line for line in text.splitlines() if line.startswith("embeddings.word_embeddings "))
    assert word.split() == ["embeddings.word_embeddings", "99", "32", "99*32", "=", "3,168", "float32", "12.4", "KiB"]
    assert not any("embeddings" in line and "->" in line for line in text.splitlines())
    assert "total parameters: 19,978" in text and "position_ids" in text and "not parameters" in text
    assert "trainable" not in text.lower()
    assert main(["info", "--json", str(path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert "trainable" not in json.dumps(doc)
    assert {row["layer"] for row in doc["embeddings"]} == {name for name, _, _ in BERT_EMBEDDINGS}
    assert all("layer" in row and "name" not in row for row in doc["layers"])
    assert "embeddings.word_embeddings" not in {row["layer"] for row in doc["layers"]}
    assert [row["tensor"] for row in doc["integer_tensors"]] == ["embeddings.position_ids"]
    assert doc["totals"]["total_parameters"] == 19978


@pytest.mark.parametrize(
    "name",
    [
        "bert.embeddings.word_embeddings.weight",
        "embeddings.position_embeddings.weight",
        "embeddings.token_type_embeddings.weight",
        "transformer.wte.weight",
        "transformer.wpe.weight",
        "model.embed_tokens.weight",
        "model.decoder.embed_positions.weight",
        "gpt_neox.embed_in.weight",
        "shared.weight",
        "tok_embeddings.weight",
        "embed.weight",
        "embedding.weight",
        "pos_emb.weight",
        "embed.W_E",
        "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
    ],
)
def test_usual_embedding_names_are_tables(name):
    from inspector.inventory import is_embedding_name

    assert is_embedding_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "lm_head.weight",
        "cls.predictions.decoder.weight",
        "embed_out.weight",
        "unembed.W_U",
        "electra.embeddings_project.weight",
        "albert.encoder.embedding_hidden_mapping_in.weight",
        "embeddings.projection.weight",
        "blocks.0.mlp.up.weight",
        "w",
    ],
)
def test_dense_layers_near_embeddings_are_not_tables(name):
    from inspector.inventory import is_embedding_name

    assert not is_embedding_name(name)


def test_integer_tensors_are_buffers_not_layers_or_parameters(tmp_path):
    path = tmp_path / "m.pt"
    torch.save(
        {
            "fc.weight": torch.zeros(3, 5),
            "fc.bias": torch.zeros(3),
            "position_ids": torch.arange(7)[None],
            "bn.num_batches_tracked": torch.tensor(4),
        },
        path,
    )
    inv = read_inventory(path)
    assert [(layer.layer, layer.parameters) for layer in inv.linear_layers] == [("fc", 18)]
    assert {t.name for t in inv.integer_tensors} == {"position_ids", "bn.num_batches_tracked"}
    assert inv.other_tensors == () and inv.totals()["total_parameters"] == 18


def test_info_on_a_file_without_dense_layers_answers_the_same_with_and_without_json(tmp_path, capsys):
    """One behaviour (issue 20): a file with no 2-D weight is read and said to hold nothing dense, exit 0,
    in text as in JSON ("layers": [])."""
    import json

    from inspector.cli import main

    torch.save({"conv.weight": torch.zeros(4, 3, 3, 3), "norm.bias": torch.zeros(4)}, tmp_path / "conv.pt")
    assert main(["info", str(tmp_path / "conv.pt")]) == 0
    out = capsys.readouterr().out
    assert "no 2-D weight tensors: nothing dense in this file (2 other tensors)" in out
    assert main(["info", str(tmp_path / "conv.pt"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["layers"] == [] and len(doc["other_tensors"]) == 2 and doc["notices"] == []


def test_info_says_what_the_reader_noticed(tmp_path, capsys):
    from inspector.cli import main

    folder = tmp_path / "m"
    folder.mkdir()
    save_file(
        {"fc1.weight": torch.ones(2, 3), "fc1.bias": torch.zeros(2)}, str(folder / "model-00001-of-00001.safetensors")
    )
    (folder / "model.safetensors.index.json").write_text(
        '{"weight_map": {"fc1.weight": "model-00001-of-00001.safetensors"}}'
    )
    assert main(["info", str(folder)]) == 0
    captured = capsys.readouterr()
    assert "inspector: note: 1 tensor in the shards is not in the index ('fc1.bias')" in captured.err
    assert "fc1" in captured.out


def _tied_file(path, tied: dict, format_: str = "dense-inspector-state-dict") -> None:
    tensors = {"emb.weight": torch.ones(10, 4), "head.weight": torch.ones(10, 4), "fc.weight": torch.ones(3, 4)}
    save_file(tensors, str(path), metadata={"format": json.dumps(format_), "tied": json.dumps(tied)})


def test_a_state_dict_this_tool_wrote_counts_its_declared_tied_copies_once(tmp_path):
    _tied_file(tmp_path / "a.safetensors", {"head.weight": "emb.weight"})
    inv = read_inventory(tmp_path / "a.safetensors")
    head = {layer.layer: layer for layer in inv.linear_layers}["head"]
    assert head.tied_to == "emb" and head.parameters == 0 and head.bytes == 0
    assert inv.totals()["total_parameters"] == 10 * 4 + 3 * 4


@pytest.mark.parametrize(
    "tied, format_",
    [
        ({"head.weight": "emb.weight"}, "someone-else"),  # not this tool's file: its metadata is not trusted
        ({"head.weight": "fc.weight"}, "dense-inspector-state-dict"),  # another shape
        ({"head.weight": "nowhere.weight"}, "dense-inspector-state-dict"),
        ({"head.weight": "head.weight"}, "dense-inspector-state-dict"),
        ({"head.weight": "emb.weight", "emb.weight": "fc.weight"}, "dense-inspector-state-dict"),  # a chain
        (["head.weight"], "dense-inspector-state-dict"),
    ],
)
def test_a_tie_that_does_not_fit_the_tensors_is_not_believed(tmp_path, tied, format_):
    _tied_file(tmp_path / "b.safetensors", tied, format_)
    inv = read_inventory(tmp_path / "b.safetensors")
    assert inv.totals()["total_parameters"] == 2 * 10 * 4 + 3 * 4
