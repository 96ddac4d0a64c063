"""Findings say what their numbers are: the right set, the right plural, no invented split names."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from inspector.analysis import AnalysisOptions, analyze
from inspector.analysis.activations import DeathTimeline
from inspector.analysis.findings import count, describe_samples
from inspector.analysis.methods import lead_method
from inspector.analysis.parameters import count_parameters
from inspector.analysis.pruning import PruningCurve, PruningReport
from inspector.analysis.sections.activations import activation_findings
from inspector.analysis.sections.deaths import death_findings
from inspector.analysis.sections.parameters import parameter_findings
from inspector.analysis.sections.pruning import pruning_findings
from inspector.analysis.sections.weights import weight_findings
from inspector.analysis.weights import layer_weights
from inspector.evaluation import EvalData
from inspector.models import MLPConfig, build_mlp


def test_parameter_total_and_linear_share_are_not_conflated():
    model = build_mlp(MLPConfig(12, (7, 5), 4, batch_norm=True))
    linear = 7 * 13 + 5 * 8 + 4 * 6  # 155
    total = linear + 2 * (7 + 5)  # batch norm's scale and shift: 179
    (finding,) = parameter_findings(count_parameters(model))
    assert finding.text.startswith(f"{total} parameters, {linear} of them in 3 linear layers; ")
    assert finding.numbers["linear_parameters"] == linear and finding.numbers["total_parameters"] == total
    assert f"holds {100 * 7 * 13 / total:.1f}% of all parameters" in finding.text


def test_one_linear_layer_is_singular():
    (finding,) = parameter_findings(count_parameters(nn.Sequential(nn.Linear(2, 5))))
    assert finding.text.startswith("15 parameters in 1 linear layer; ")


def test_a_tied_weight_is_named_and_counted_once():
    enc, dec = nn.Linear(6, 6), nn.Linear(6, 6)
    dec.weight = enc.weight
    found = parameter_findings(count_parameters(nn.Sequential(enc, nn.ReLU(), dec)))
    assert found[0].text.startswith("48 parameters in 2 linear layers")
    assert found[1].text == "layer 2 shares its weight with layer 0; the 36 shared weights are counted once, under 0"


def _census(split_name):
    torch.manual_seed(0)
    model = build_mlp(MLPConfig(10, (16,), 3))
    with torch.no_grad():
        model.fc1.bias[[2]] = -50.0  # one planted dead neuron
    X = np.random.default_rng(0).standard_normal((600, 10)).astype(np.float32)
    data = EvalData.from_arrays(X, np.arange(600) % 3)
    if split_name != "all":
        data = EvalData("data", split_name, data.X, data.y, data.feature_names, data.class_names)
    return analyze(model, data, options=AnalysisOptions(sections=("activations",))).findings


def test_rows_of_a_file_are_not_called_an_all_split():
    texts = [f.text for f in _census("all")]
    assert "layer fc1: 1 of 16 neurons never fires on the 600 samples" in texts
    assert not any("all samples" in t for t in texts)


def test_a_named_split_is_kept():
    assert "layer fc1: 1 of 16 neurons never fires on the 600 test samples" in [f.text for f in _census("test")]


def test_census_findings_count_positions_and_never_call_a_smooth_unit_dead():
    from inspector.analysis.activations import activation_census
    from tests.models import plant_dead

    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 3), nn.GELU())
    with torch.no_grad():  # every unplanted neuron fires: positive bias, inputs of magnitude < 1
        model[0].bias.fill_(5.0)
        model[2].bias.fill_(5.0)
    plant_dead(model[0], 1)
    plant_dead(model[2], 0)
    X = torch.rand(10, 7, 4) - 0.5  # 10 samples of 7 positions each: rows are positions
    texts = [f.text for f in activation_findings(activation_census(model, X), "test")]
    assert texts[0] == "layer 0: 1 of 3 neurons never fires on the 70 positions of the 10 test samples"
    assert texts[1].startswith(
        "layer 2 (gelu): outputs are near zero on 33.3% of the 70 positions of the 10 test "
        "samples on average; units fire (pre-activation > 0) on 66.7%; 1 of 3 neurons is "
        "never positive"
    )
    assert not any("dead" in t for t in texts[1:])


def test_counts_agree_with_their_nouns():
    assert count(1, "neuron") == "1 neuron" and count(2_034, "parameter") == "2,034 parameters"
    assert describe_samples(1, "test", "digits") == "1 digits test sample"
    timeline = DeathTimeline(
        epochs=np.array([2, 4]), layers=("fc1",), dead_counts=np.array([[0, 1]]), death_epoch=(np.array([-1, 4, -1]),)
    )
    (finding,) = death_findings(timeline)
    assert finding.text.startswith("layer fc1: 1 neuron is dead at the last snapshot (epoch 4)")


def _pruning(sparsity, accuracy, left, total=100, dead_removed=None):
    curve = PruningCurve(
        scope="layer",
        sparsity=np.asarray(sparsity, float),
        metric=np.asarray(accuracy, float),
        loss=np.zeros(len(sparsity)),
        parameters_left=np.asarray(left, np.int64),
    )
    return PruningReport(
        (curve,),
        baseline_metric=accuracy[0],
        baseline_loss=0.1,
        total_parameters=total,
        n_samples=100,
        dead_removed_metric=None if dead_removed is None else accuracy[0],
        dead_removed_count=dead_removed or 0,
    )


def test_no_pruning_claim_when_no_pruned_level_was_tried():
    # only the unpruned model was evaluated: "every level tried costs more than 1 point" would be false
    assert pruning_findings(_pruning([0.0], [0.9], [100])) == []


def test_pruning_claims_name_the_set_their_numbers_count():
    (finding,) = pruning_findings(_pruning([0.0, 0.5], [0.9, 0.895], [100, 55], total=100))
    assert finding.text == (
        "pruning 50.0% of each layer's weights costs 0.5 points of accuracy (90.0% -> 89.5%), "
        "leaving 55 of the 100 parameters in linear layers"
    )
    (costly,) = pruning_findings(_pruning([0.0, 0.1, 0.5], [0.9, 0.85, 0.5], [100, 90, 50]))
    assert costly.text == (
        "layer pruning: each of the 2 levels tried costs more than 1 point of accuracy "
        "(pruning 10.0% of each layer's weights costs 5.0 points)"
    )
    texts = [f.text for f in pruning_findings(_pruning([0.0], [0.9], [100], dead_removed=1))]
    assert texts == ["removing the 1 dead neuron changes accuracy by +0.0 points"]


def test_hugging_face_conv1d_layers_are_counted_as_dense_layers():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(vocab_size=40, n_positions=16, n_embd=16, n_layer=2, n_head=2)
    model = transformers.GPT2Model(cfg)
    report = count_parameters(model)
    assert len(report.layers) == 8  # c_attn, c_proj, mlp.c_fc, mlp.c_proj x 2
    assert not [f for f in parameter_findings(report) if "not analysed" in f.text]
    assert not [o for o in report.other if o.kind == "Conv1D"]


def test_the_lead_method_is_integrated_gradients_where_it_ran_else_the_first():
    assert lead_method(["saliency", "integrated_gradients", "deeplift"]) == "integrated_gradients"
    assert lead_method(["saliency", "deeplift"]) == "saliency"
    assert lead_method([]) is None
    records = [SimpleNamespace(method="deeplift"), SimpleNamespace(method="integrated_gradients")]
    assert lead_method(records) is records[1]  # records with a ``method`` field: the record itself


def _with_outlier(w: np.ndarray, at: tuple[int, int]) -> np.ndarray:
    planted = w.copy()
    planted[at] = 1000.0
    return planted


def test_one_outlier_weight_leaves_the_near_zero_share_as_it_was():
    # the near-zero scale is the 99.9th percentile of |w|: of 600,000 N(0, 1) weights it sits between the 599,400th
    # and the 599,401st smallest, so one weight of 1000 planted where the largest was moves no order statistic it uses
    w = np.random.default_rng(0).standard_normal((600, 1000)).astype(np.float32)
    clean = layer_weights("fc", torch.from_numpy(w))
    top = np.unravel_index(np.argmax(np.abs(w)), w.shape)
    spiked = layer_weights("fc", torch.from_numpy(_with_outlier(w, top)))
    threshold = 0.01 * np.quantile(np.abs(w).astype(np.float64), 0.999)
    assert clean.near_zero_threshold == spiked.near_zero_threshold == pytest.approx(threshold, rel=1e-12)
    assert clean.near_zero_fraction == spiked.near_zero_fraction == np.mean(np.abs(w) < threshold)
    # closed form: P(|Z| < 0.01 z) with z the 99.95th percentile of N(0, 1), 2 Phi(0.01 z) - 1, within 5 binomial errors
    z = 3.2905267314918945  # Phi^-1(0.9995)
    expected = math.erf(0.01 * z / math.sqrt(2))
    assert abs(clean.near_zero_fraction - expected) < 5 * math.sqrt(expected * (1 - expected) / w.size)
    # planted where the smallest weight was: every order statistic above it moves down one rank, so the scale moves
    # to within one rank's gap (here 7e-7 of it) and the share loses that one weight, as numpy recounts it
    small = np.unravel_index(np.argmin(np.abs(w)), w.shape)
    planted = _with_outlier(w, small)
    moved = layer_weights("fc", torch.from_numpy(planted))
    moved_threshold = 0.01 * np.quantile(np.abs(planted).astype(np.float64), 0.999)
    assert moved.near_zero_threshold == pytest.approx(moved_threshold, rel=1e-12)
    assert moved.near_zero_threshold == pytest.approx(threshold, rel=1e-5)
    assert moved.near_zero_fraction == np.mean(np.abs(planted) < moved_threshold)
    assert moved.near_zero_fraction == pytest.approx(clean.near_zero_fraction - 1 / w.size, rel=1e-12)


def test_the_pruning_finding_names_its_robust_scale_and_ignores_an_outlier():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((200, 300)).astype(np.float32)
    w[:140] *= 1e-4  # 70% of the weights far below 1% of the rest's scale
    share = np.mean(np.abs(w) < 0.01 * np.quantile(np.abs(w).astype(np.float64), 0.999))
    texts = []
    for weight in (w, _with_outlier(w, np.unravel_index(np.argmax(np.abs(w)), w.shape))):
        (finding,) = [
            f for f in weight_findings((layer_weights("fc1", torch.from_numpy(weight)),)) if "pruning" in f.text
        ]
        assert finding.numbers == {"near_zero_fraction": share}
        texts.append(finding.text)
    assert (
        texts[0]
        == texts[1]
        == (
            f"layer fc1: {100 * share:.1f}% of weights are below 1% of the 99.9th percentile of its |w|; "
            "it is a good candidate for pruning"
        )
    )
