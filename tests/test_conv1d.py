"""GPT-2's ``transformers.pytorch_utils.Conv1D`` (weight stored ``(in, out)``, ``y = x @ W + b``) is a
dense layer in every section: each number below is checked against hooks written here, numpy on
``weight.T``, or the same network built from ``nn.Linear`` with the transposed weights."""

from __future__ import annotations

import copy
import json
import math
import re

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from inspector.analysis import analyze
from inspector.analysis.compare import compare
from inspector.analysis.options import AnalysisOptions
from inspector.analysis.parameters import count_parameters
from inspector.analysis.pruning import prune, pruning_sweep
from inspector.analysis.result import Analysis
from inspector.analysis.weights import weight_report
from inspector.cli import main
from inspector.core.dense import dense_layers, dense_weight, in_features, is_dense, out_features
from inspector.render.compare import comparison_markdown
from inspector.sources.base import CONV1D_NOTICE
from tests.models import padded_batches

transformers = pytest.importorskip("transformers")
Conv1D = transformers.pytorch_utils.Conv1D

SMALL = {"n_layer": 2, "n_embd": 32, "n_head": 2, "vocab_size": 100, "n_positions": 64}
NO_DROPOUT = {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}
MLP_LAYERS = ("mlp.c_fc", "mlp.c_proj", "attn.c_attn", "attn.c_proj")


def gpt2(cls: str = "GPT2LMHeadModel", seed: int = 0, **config: object) -> nn.Module:
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(**SMALL, **NO_DROPOUT, pad_token_id=0, **config)  # type: ignore[arg-type]
    model = getattr(transformers, cls)(cfg).eval()
    torch.random.set_rng_state(gen_state)
    return model


def token_batches(num_labels: int | None = None) -> list[dict[str, torch.Tensor]]:
    """Padded batches of ids in [1, 100) with attention masks (GPT-2 takes no token type ids)."""
    batches = padded_batches(3, 4, 10, vocab_size=100, num_labels=num_labels)
    return [{k: v for k, v in b.items() if k != "token_type_ids"} for b in batches]


# --------------------------------------------------------------------------- what a dense layer is


def test_every_conv1d_and_the_lm_head_are_dense_layers_read_as_out_by_in():
    model = gpt2()
    layers = dict(dense_layers(model))
    expected = [
        f"transformer.h.{i}.{part}"
        for i in range(2)
        for part in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
    ]
    assert list(layers) == [*expected, "lm_head"]
    c_fc = layers["transformer.h.0.mlp.c_fc"]
    assert (in_features(c_fc), out_features(c_fc)) == (32, 128)  # stored (32, 128) = (in, out)
    assert tuple(c_fc.weight.shape) == (32, 128)
    w = dense_weight(c_fc)
    assert torch.equal(w, c_fc.weight.T) and w.data_ptr() == c_fc.weight.data_ptr()  # a view, not a copy
    head = layers["lm_head"]
    assert dense_weight(head) is head.weight and (in_features(head), out_features(head)) == (32, 100)


def test_a_class_named_conv1d_without_nf_is_not_a_dense_layer():
    class Conv1D(nn.Module):  # noqa: N801 - the name is the point
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.zeros(3, 4))

    assert not is_dense(Conv1D())
    assert not is_dense(nn.Conv1d(3, 4, 1))  # torch's convolution is not a dense layer


# --------------------------------------------------------------------------- parameters


def test_parameter_rows_are_m_times_n_plus_one_and_totals_count_the_tied_head_once():
    model = gpt2()
    report = count_parameters(model)
    assert report.total_parameters == sum(p.numel() for p in model.parameters())
    rows = {row.layer: row for row in report.layers}
    for name, module in model.named_modules():
        if isinstance(module, Conv1D):
            n, m = module.weight.shape[0], module.nf
            assert (rows[name].in_features, rows[name].out_features) == (n, m)
            assert rows[name].parameters == m * (n + 1) and rows[name].macs_per_sample == m * n
    assert rows["lm_head"].parameters == 0 and rows["lm_head"].tied_to == "transformer.wte"
    assert not [o for o in report.other if o.kind == "Conv1D"]
    assert report.linear_parameters == sum(
        m.weight.numel() + m.bias.numel() for m in model.modules() if isinstance(m, Conv1D)
    )


# --------------------------------------------------------------------------- census


def test_census_rates_after_c_fc_gelu_equal_hooks_on_the_activation_module():
    model = gpt2()
    batches = token_batches()
    fired = {i: [] for i in range(2)}
    zero = {i: [] for i in range(2)}
    current: dict[str, torch.Tensor] = {}

    def hook(i: int):
        def record(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            real = current["mask"].reshape(-1).bool()
            pre = inputs[0].reshape(-1, inputs[0].shape[-1])[real]
            out = output.reshape(-1, output.shape[-1])[real]
            fired[i].append((pre > 0).double())
            zero[i].append((out.abs() < 0.01).double())

        return record

    handles = [model.transformer.h[i].mlp.act.register_forward_hook(hook(i)) for i in range(2)]
    with torch.no_grad():
        for batch in batches:
            current["mask"] = batch["attention_mask"]
            model(**batch)
    for h in handles:
        h.remove()

    result = analyze(model, batches, options=AnalysisOptions(sections=("activations",)))
    census = {a.layer: a for a in result.activations}
    sites = {s.layer: s for s in result.model.sites}
    for i in range(2):
        layer = f"transformer.h.{i}.mlp.c_fc"
        assert sites[layer].activation == "gelu" and sites[layer].found_by == "convention"  # NewGELUActivation
        assert sites[layer].module == f"transformer.h.{i}.mlp.act"
        np.testing.assert_allclose(census[layer].fire_rate, torch.cat(fired[i]).mean(0).numpy(), atol=1e-12)
        np.testing.assert_allclose(census[layer].zero_rate, torch.cat(zero[i]).mean(0).numpy(), atol=1e-12)
        assert census[layer].n_positions == sum(int(b["attention_mask"].sum()) for b in batches)
        assert census[layer].width == 128


# --------------------------------------------------------------------------- weights and spectra


def test_weight_maps_and_spectra_are_numpy_on_the_transposed_weight():
    model = gpt2()
    report = {w.layer: w for w in weight_report(model)}
    for name, module in model.named_modules():
        if not isinstance(module, Conv1D):
            continue
        w = module.weight.detach().numpy().T  # (out, in)
        got = report[name]
        np.testing.assert_array_equal(got.values, w)
        np.testing.assert_allclose(got.neuron_norm, np.linalg.norm(w, axis=1), rtol=1e-5)
        np.testing.assert_allclose(got.input_norm, np.linalg.norm(w, axis=0), rtol=1e-5)
        np.testing.assert_allclose(
            got.singular_values, np.linalg.svd(w.astype(np.float64), compute_uv=False), rtol=1e-6
        )


# --------------------------------------------------------------------------- pruning


def _accuracy_and_loss(model: nn.Module, batches: list[dict[str, torch.Tensor]]) -> tuple[float, float]:
    logits, labels = [], []
    with torch.no_grad():
        for batch in batches:
            logits.append(model(**{k: v for k, v in batch.items() if k != "labels"}).logits)
            labels.append(batch["labels"])
    z, y = torch.cat(logits).double(), torch.cat(labels)
    return float((z.argmax(1) == y).double().mean()), float(nn.functional.cross_entropy(z, y))


def test_magnitude_pruning_curves_equal_a_numpy_recomputation_on_the_transposed_weights():
    model = gpt2("GPT2ForSequenceClassification", num_labels=3)
    batches = token_batches(num_labels=3)
    sparsities = (0.0, 0.3, 0.6)
    report = pruning_sweep(model, batches, "classification", sparsities=sparsities, scopes=("global", "layer"))
    layers = dense_layers(model)
    weights = [
        (m.weight.detach().numpy().T if isinstance(m, Conv1D) else m.weight.detach().numpy()).astype(np.float64)
        for _, m in layers
    ]
    biases = sum(m.bias.numel() for _, m in layers if m.bias is not None)
    for scope in ("global", "layer"):
        curve = report.curve(scope)
        for k, s in enumerate(sparsities):
            if scope == "global":
                flat = np.concatenate([np.abs(w).ravel() for w in weights])
                keep = np.ones(flat.size, bool)
                keep[np.argsort(flat, kind="stable")[: math.floor(s * flat.size)]] = False
                masks = np.split(keep, np.cumsum([w.size for w in weights])[:-1])
                masks = [mk.reshape(w.shape) for mk, w in zip(masks, weights)]
            else:
                masks = []
                for w in weights:
                    mk = np.ones(w.size, bool)
                    mk[np.argsort(np.abs(w).ravel(), kind="stable")[: math.floor(s * w.size)]] = False
                    masks.append(mk.reshape(w.shape))
            pruned = copy.deepcopy(model)
            with torch.no_grad():
                for (name, _), mask in zip(layers, masks):
                    module = pruned.get_submodule(name)
                    m = torch.as_tensor(mask.T if isinstance(module, Conv1D) else mask)
                    module.weight.mul_(m)  # in the stored orientation
            accuracy, loss = _accuracy_and_loss(pruned, batches)
            assert curve.metric[k] == pytest.approx(accuracy, abs=1e-9)
            assert curve.loss[k] == pytest.approx(loss, rel=1e-5)
            assert curve.parameters_left[k] == sum(int((mk & (w != 0)).sum()) for mk, w in zip(masks, weights)) + biases
    # the caller's model is untouched
    assert all(
        torch.equal(dense_weight(m).detach(), torch.as_tensor(w, dtype=torch.float32))
        for (_, m), w in zip(layers, weights)
    )


def test_neuron_pruning_of_c_fc_zeroes_its_stored_columns_and_the_rows_c_proj_reads_them_from():
    model = gpt2()
    batches = token_batches()
    pruned = prune(model, 0.25, "neuron", data=batches)
    for i in range(2):
        c_fc, c_proj = model.transformer.h[i].mlp.c_fc, model.transformer.h[i].mlp.c_proj
        weakest = np.argsort(np.linalg.norm(c_fc.weight.detach().numpy().T, axis=1), kind="stable")[:32]  # 25% of 128
        kept = np.setdiff1d(np.arange(128), weakest)
        p_fc, p_proj = pruned.transformer.h[i].mlp.c_fc, pruned.transformer.h[i].mlp.c_proj
        assert not p_fc.weight[:, weakest].any() and not p_fc.bias[weakest].any()  # stored (in, out): columns
        assert not p_proj.weight[weakest, :].any()  # its consumer reads neuron j through stored row j
        assert torch.equal(p_fc.weight[:, kept], c_fc.weight[:, kept])
        assert torch.equal(p_proj.weight[kept, :], c_proj.weight[kept, :])
    # attention layers' outputs have no known activation: not hidden layers, untouched
    assert torch.equal(pruned.transformer.h[0].attn.c_attn.weight, model.transformer.h[0].attn.c_attn.weight)


# --------------------------------------------------------------------------- the same network as nn.Linear


class _Dense(nn.Module):
    def __init__(self, make: type[nn.Module]) -> None:
        super().__init__()
        self.fc1 = make(6, 12)
        self.act = nn.ReLU()
        self.fc2 = make(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def _twins() -> tuple[nn.Module, nn.Module]:
    """The same MLP twice: ``nn.Linear`` layers and ``Conv1D`` layers holding the transposed weights."""
    torch.manual_seed(3)
    linear = _Dense(lambda n, m: nn.Linear(n, m)).eval()
    conv = _Dense(lambda n, m: Conv1D(m, n)).eval()
    with torch.no_grad():
        for name in ("fc1", "fc2"):
            conv.get_submodule(name).weight.copy_(linear.get_submodule(name).weight.T)
            conv.get_submodule(name).bias.copy_(linear.get_submodule(name).bias)
    return linear, conv


def test_conv1d_mlp_gives_the_linear_mlps_analysis_number_for_number():
    linear, conv = _twins()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 6, generator=gen)
    y = torch.randint(0, 3, (64,), generator=gen)
    options = AnalysisOptions(
        methods=("saliency", "integrated_gradients"), n_steps=8, max_importance_samples=16, sparsities=(0.0, 0.5)
    )
    a, b = analyze(linear, (x, y), options=options), analyze(conv, (x, y), options=options)
    assert [(p.layer, p.in_features, p.out_features, p.parameters) for p in a.parameters.layers] == [
        (p.layer, p.in_features, p.out_features, p.parameters) for p in b.parameters.layers
    ]
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(wa.values, wb.values)
    for ca, cb in zip(a.activations, b.activations):
        np.testing.assert_array_equal(ca.fire_rate, cb.fire_rate)
    for ma, mb in zip(a.importance.methods, b.importance.methods):
        np.testing.assert_allclose(ma.global_importance, mb.global_importance, rtol=1e-4, atol=1e-7)
    assert [c.layer for c in b.importance.conductance] == ["fc1"]
    for ca, cb in zip(a.importance.conductance, b.importance.conductance):
        assert cb.error is None
        np.testing.assert_allclose(ca.mean_conductance, cb.mean_conductance, rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(ca.neuron_inputs, cb.neuron_inputs, rtol=1e-4, atol=1e-7)
    for pa, pb in zip(a.pruning.curves, b.pruning.curves):
        assert pa.scope == pb.scope
        np.testing.assert_allclose(pa.loss, pb.loss, rtol=1e-5)
        np.testing.assert_array_equal(pa.parameters_left, pb.parameters_left)


# --------------------------------------------------------------------------- comparison


def test_two_gpt2_models_compare_layer_by_layer_in_out_by_in_orientation():
    model_a, model_b = gpt2(seed=0), gpt2(seed=1)
    options = AnalysisOptions(sections=("parameters", "weights"))
    a, b = analyze(model_a, options=options), analyze(model_b, options=options)
    result = compare(a, b, model_a=model_a, model_b=model_b)
    rows = {row.layer: row for row in result.layers}
    wa = model_a.transformer.h[0].mlp.c_fc.weight.detach().numpy().T
    wb = model_b.transformer.h[0].mlp.c_fc.weight.detach().numpy().T
    row = rows["transformer.h.0.mlp.c_fc"]
    assert row.shape_a == row.shape_b == (128, 32)
    assert row.relative_change == pytest.approx(np.linalg.norm(wb - wa) / np.linalg.norm(wa), rel=1e-5)
    np.testing.assert_allclose(row.change.values, np.abs(wb - wa), rtol=1e-6)


def test_two_gpt2_analyses_on_text_compare_token_importance_by_token_id_and_render():
    """Token importance is per distinct token id of each analysis's own data: the comparison ranks the ids
    both saw (by id, not by index) and names them by their text; comparing two analyses on text once
    raised IndexError in the report (no feature names)."""
    model = gpt2(seed=0).eval()
    vocabulary = [f"w{i}" for i in range(100)]
    options = AnalysisOptions(sections=("importance",), methods=("saliency",), conductance=False)

    def analysis(ids: list[list[int]]) -> Analysis:
        batch = torch.tensor(ids)
        data = [{"input_ids": batch, "attention_mask": torch.ones_like(batch)}]
        return analyze(model, data, target=lambda out, b: out.logits[:, -1, 0], vocabulary=vocabulary, options=options)

    a = analysis([[1, 2, 3, 4], [5, 6, 7, 8]])
    b = analysis([[50, 5, 6, 7], [8, 60, 70, 80]])  # shares 5, 6, 7, 8 with a, at other indices
    result = compare(a, b, model_a=model, model_b=model)
    (shift,) = result.importance
    assert result.feature_names == ("w5", "w6", "w7", "w8")
    ia = {int(t): i for i, t in enumerate(a.importance.token_ids)}
    ib = {int(t): i for i, t in enumerate(b.importance.token_ids)}
    ga = a.importance.methods[0].global_importance[[ia[t] for t in (5, 6, 7, 8)]]
    gb = b.importance.methods[0].global_importance[[ib[t] for t in (5, 6, 7, 8)]]
    assert shift.top_a[0] == int(np.argmax(ga)) and shift.top_b[0] == int(np.argmax(gb))
    same = compare(a, a, model_a=model, model_b=model)
    assert same.importance[0].rank_correlation == pytest.approx(1.0)
    assert len(same.feature_names) == len(a.importance.token_ids)
    text = comparison_markdown(result)
    # each side's strongest shared token, named by its text
    assert result.feature_names[shift.top_a[0]] in text and result.feature_names[shift.top_b[0]] in text


# --------------------------------------------------------------------------- a saved GPT-2, weight only


@pytest.fixture
def saved(tmp_path):
    model = gpt2()
    model.save_pretrained(tmp_path / "gpt2")
    return model, tmp_path / "gpt2" / "model.safetensors"


def test_info_lists_the_conv1d_layers_out_by_in_and_says_they_were_transposed(saved, capsys):
    model, path = saved
    assert main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    layers = {row["layer"]: row for row in info["layers"]}
    for i in range(2):
        assert (
            layers[f"transformer.h.{i}.mlp.c_fc"]["out_features"],
            layers[f"transformer.h.{i}.mlp.c_fc"]["in_features"],
        ) == (128, 32)
        assert (
            layers[f"transformer.h.{i}.mlp.c_proj"]["out_features"],
            layers[f"transformer.h.{i}.mlp.c_proj"]["in_features"],
        ) == (32, 128)
        assert (
            layers[f"transformer.h.{i}.attn.c_attn"]["out_features"],
            layers[f"transformer.h.{i}.attn.c_attn"]["in_features"],
        ) == (96, 32)
    assert info["notices"].count(CONV1D_NOTICE) == 1
    assert info["totals"]["total_parameters"] == sum(p.numel() for p in model.parameters())  # lm_head tied: not saved
    assert main(["info", str(path)]) == 0
    captured = capsys.readouterr()
    assert re.search(r"^transformer\.h\.0\.mlp\.c_fc +32 +128 ", captured.out, re.M)  # in n, out m
    assert CONV1D_NOTICE in captured.err


def test_weight_only_analysis_of_a_gpt2_file_reads_each_weight_transposed(saved, tmp_path, capsys):
    model, path = saved
    out = tmp_path / "analysis"
    assert main(["analyze", str(path), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert CONV1D_NOTICE in captured.out + captured.err
    analysis = Analysis.load(out)
    weights = {w.layer: w for w in analysis.weights}
    for name, module in model.named_modules():
        if isinstance(module, Conv1D):
            np.testing.assert_array_equal(weights[name].values, module.weight.detach().numpy().T)
    rows = {row.layer: row for row in analysis.parameters.layers}
    assert (rows["transformer.h.1.mlp.c_proj"].out_features, rows["transformer.h.1.mlp.c_proj"].in_features) == (
        32,
        128,
    )
    assert analysis.parameters.total_parameters == sum(p.numel() for p in model.parameters())
    assert any(CONV1D_NOTICE in f.text for f in analysis.findings)


def test_a_linear_weight_of_the_same_name_but_out_by_in_shape_is_not_transposed(tmp_path, capsys):
    # a (out, in) weight whose bias has its first dimension's length is an nn.Linear's, whatever its name
    save_file(
        {"h.0.mlp.c_fc.weight": torch.zeros(8, 4), "h.0.mlp.c_fc.bias": torch.zeros(8)}, str(tmp_path / "w.safetensors")
    )
    assert main(["info", str(tmp_path / "w.safetensors"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    (row,) = info["layers"]
    assert (row["out_features"], row["in_features"]) == (8, 4) and CONV1D_NOTICE not in info["notices"]
