"""--dtype / AnalysisOptions.dtype: the census and evaluation forwards in bf16 / fp16 on a cast copy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from inspector.analysis import AnalysisOptions, analyze
from inspector.analysis.activations import activation_census
from inspector.analysis.reduced_dtype import CHECK_SAMPLES
from inspector.analysis.result import Analysis
from inspector.cli import main
from inspector.errors import InspectorError


def _planted_dead() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """8 -> 32 (ReLU) -> 3, neurons 0..4 of the hidden layer dead: zero weights and bias -10."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))
    with torch.no_grad():
        model[0].weight[:5] = 0
        model[0].bias[:5] = -10
    X = torch.randn(700, 8)
    return model, X, torch.randint(0, 3, (700,))


def _cancelling() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """Neuron 0's pre-activation is x0 - 1 with x0 in [1.0005, 1.003]: positive on every sample in float32,
    but bf16 keeps 8 significant bits (spacing 2**-7 at 1), so x0 rounds to 1.0 and the neuron reads 0.
    Neuron 1 is x1 ~ N(0, 1): it fires on about half the samples in any dtype."""
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        model[0].bias.copy_(torch.tensor([-1.0, 0.0]))
    g = torch.Generator().manual_seed(1)
    X = torch.stack([1.0005 + 0.0025 * torch.rand(600, generator=g), torch.randn(600, generator=g)], dim=1)
    return model, X, torch.randint(0, 2, (600,), generator=g)


def _dead_counts(analysis) -> dict[str, int]:
    return {c.layer: c.dead_count for c in analysis.activations}


def test_bf16_census_counts_the_planted_dead_neurons_as_fp32_does():
    model, X, y = _planted_dead()
    fp32 = analyze(model, (X, y), options=AnalysisOptions(sections=("activations",)))
    bf16 = analyze(model, (X, y), options=AnalysisOptions(sections=("activations",), dtype="bf16"))
    expected = np.arange(32) < 5
    for analysis in (fp32, bf16):
        np.testing.assert_array_equal(analysis.activations[0].dead_mask, expected)
    assert _dead_counts(bf16) == _dead_counts(fp32) == {"0": 5}
    assert not any("dead count" in f.text for f in bf16.findings)
    assert (bf16.model.dtype, fp32.model.dtype) == ("bf16", "fp32")


def test_bf16_rounding_that_kills_a_neuron_gets_a_note_and_fp32_has_the_true_count():
    model, X, y = _cancelling()
    # the truth, in float64 numpy: every sample's pre-activation of neuron 0 is at least 5e-4
    pre = X.double().numpy() @ model[0].weight.double().detach().numpy().T + model[0].bias.double().detach().numpy()
    true_dead = int((~(pre > 0).any(axis=0)).sum())
    assert true_dead == 0 and pre[:, 0].min() >= 5e-4
    fp32 = analyze(model, (X, y), options=AnalysisOptions(sections=("activations",)))
    bf16 = analyze(model, (X, y), options=AnalysisOptions(sections=("activations",), dtype="bf16"))
    assert _dead_counts(fp32) == {"0": true_dead}
    assert _dead_counts(bf16) == {"0": 1}  # the bf16 census sees neuron 0 as dead
    notes = [f for f in bf16.findings if "dead count" in f.text]
    assert len(notes) == 1
    assert notes[0].text == (
        f"0: the bf16 forward changes the dead count on the first {CHECK_SAMPLES} samples from 0 to 1; "
        "rerun with --dtype fp32 for exact counts"
    )
    assert notes[0].numbers == {"fp32_dead": 0.0, "reduced_dead": 1.0}
    # the fp32 rerun counts the same first 512 samples the note names: check it on its own
    head = activation_census(model, (X[:CHECK_SAMPLES], y[:CHECK_SAMPLES]))
    assert head[0].dead_count == 0 and head[0].n_samples == CHECK_SAMPLES
    assert not any("dead count" in f.text for f in fp32.findings)


def test_a_reduced_dtype_leaves_the_callers_model_in_float32():
    model, X, y = _cancelling()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    analyze(model, (X, y), options=AnalysisOptions(sections=("activations", "pruning"), dtype="fp16"))
    for key, value in model.state_dict().items():
        assert value.dtype == torch.float32
        assert torch.equal(value, before[key])


def test_unknown_dtype_is_one_line_error():
    with pytest.raises(InspectorError, match="unknown dtype 'fp64'; choose from fp32, bf16, fp16"):
        AnalysisOptions(dtype="fp64")


@pytest.fixture(scope="module")
def digits_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("digits") / "digits.pt"
    argv = ["train", "--dataset", "digits", "--hidden", "64", "--epochs", "15", "--out", str(path), "-q"]
    assert main(argv) == 0
    return path


def test_bf16_evaluation_accuracy_is_within_a_hundredth_of_fp32(digits_checkpoint):
    from inspector.checkpoints import load
    from inspector.evaluation import eval_data_for

    ckpt = load(digits_checkpoint)
    data = eval_data_for(ckpt)
    runs = {
        dtype: analyze(ckpt, data, options=AnalysisOptions(sections=("parameters",), dtype=dtype))
        for dtype in ("fp32", "bf16")
    }
    # fp32 against an independent recomputation: argmax of the logits in float64
    with torch.no_grad():
        logits = ckpt.model.double()(torch.from_numpy(data.X).double())
    ckpt.model.float()
    assert runs["fp32"].data.metric == pytest.approx(float((logits.argmax(1).numpy() == data.y).mean()), abs=1e-12)
    assert runs["fp32"].data.metric > 0.8
    assert abs(runs["bf16"].data.metric - runs["fp32"].data.metric) <= 1e-2
    assert runs["bf16"].data.n_samples == runs["fp32"].data.n_samples == len(data.y)


def test_dtype_round_trips_through_save_and_load(tmp_path):
    model, X, y = _planted_dead()
    analysis = analyze(model, (X, y), options=AnalysisOptions(sections=("activations",), dtype="bf16"))
    analysis.save(tmp_path / "an")
    loaded = Analysis.load(tmp_path / "an")
    assert loaded.model.dtype == "bf16"
    assert loaded.model == analysis.model


def test_cli_analyze_with_bf16_says_so(digits_checkpoint, tmp_path, capsys):
    out = tmp_path / "an"
    argv = ["analyze", str(digits_checkpoint), "--out", str(out), "--sections", "activations", "--dtype", "bf16"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "census, evaluation and pruning forwards in bf16 (a cast copy); importance in float32" in text
    assert Analysis.load(out).model.dtype == "bf16"


@pytest.mark.parametrize("command", ["analyze", "report", "dashboard", "prune"])
def test_cli_refuses_an_unknown_dtype_in_one_line(digits_checkpoint, tmp_path, capsys, command):
    with pytest.raises(SystemExit) as info:
        main([command, str(digits_checkpoint), "--out", str(tmp_path / "x"), "--dtype", "fp64"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "argument --dtype: invalid choice: 'fp64'" in err


def test_cli_prune_evaluates_in_the_asked_dtype(digits_checkpoint, tmp_path, capsys):
    out = tmp_path / "p.pt"
    argv = ["prune", str(digits_checkpoint), "--sparsity", "0.5", "--out", str(out), "--dtype", "bf16"]
    assert main(argv) == 0
    assert "(bf16 forward)" in capsys.readouterr().out
