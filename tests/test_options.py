"""Analysis options resolved per input kind (issue 19, part 4): token ids run the cheap attribution
methods on a bounded number of samples unless asked otherwise; feature columns and arrays keep the
global defaults; a value the caller sets always wins."""

from __future__ import annotations

import torch
from torch import nn

from inspector import AnalysisOptions, analyze
from inspector.analysis.methods import METHODS
from inspector.analysis.options import PER_INPUT_DEFAULTS
from inspector.core.adapters import ArrayAdapter, FeaturesAdapter, TokensAdapter
from inspector.core.adapters.tokens import TOKEN_ANALYSIS_DEFAULTS
from tests.models import padded_batches, tiny_bert


def test_token_ids_take_their_own_defaults_and_other_inputs_the_global_ones():
    tokens = AnalysisOptions().for_inputs(TokensAdapter)
    assert tokens.methods == ("integrated_gradients", "input_x_gradient", "saliency")
    assert (tokens.n_steps, tokens.max_importance_samples, tokens.conductance_samples) == (16, 32, 16)
    assert tokens.max_pruning_samples == 64
    for adapter in (FeaturesAdapter, ArrayAdapter, None):
        options = AnalysisOptions().for_inputs(adapter)
        assert options.methods == METHODS and options.n_steps == 50 and options.max_importance_samples == 1000
        assert options.conductance_samples == 128 and options.max_pruning_samples is None
    assert set(TOKEN_ANALYSIS_DEFAULTS) <= set(PER_INPUT_DEFAULTS)


def test_what_the_caller_sets_wins_over_the_token_defaults():
    chosen = AnalysisOptions(methods=METHODS, n_steps=50, max_importance_samples=100, max_pruning_samples=500)
    options = chosen.for_inputs(TokensAdapter)
    assert options.methods == METHODS and options.n_steps == 50 and options.max_importance_samples == 100
    assert options.max_pruning_samples == 500 and options.conductance_samples == 16


def test_a_default_token_analysis_explains_and_prunes_bounded_samples():
    model = tiny_bert(num_labels=3, num_hidden_layers=1)
    batches = padded_batches(10, 8, 10, num_labels=3)  # 80 samples
    analysis = analyze(model, batches)
    report = analysis.importance
    assert [m.method for m in report.methods] == ["integrated_gradients", "input_x_gradient", "saliency"]
    assert report.n_samples == 32 and report.n_steps == 16
    assert all(c.n_samples == 16 for c in report.conductance)
    assert analysis.pruning.n_samples == 64
    said = [f for f in analysis.findings if f.numbers.get("pruning_samples") == 64]
    assert len(said) == 1 and "first 64 samples" in said[0].text  # the bound is said, not hidden
    assert analysis.activations is not None and analysis.data.n_samples == 80  # the census reads everything
    for method in ("integrated_gradients", "input_x_gradient", "saliency"):
        assert analysis.timings[f"importance/{method}"] == report.method(method).seconds
        assert 0 < analysis.timings[f"importance/{method}/sanity"] <= report.method(method).seconds
    assert analysis.timings["importance/conductance"] > 0
    parts = sum(v for k, v in analysis.timings.items() if k.startswith("importance/") and k.count("/") == 1)
    assert parts <= analysis.timings["importance"]


def test_a_default_tabular_analysis_keeps_every_method_and_sample():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    X, y = torch.randn(70, 4), torch.randint(0, 3, (70,))
    analysis = analyze(model, (X, y), options=AnalysisOptions(sections=("importance", "pruning")))
    assert [m.method for m in analysis.importance.methods] == list(METHODS)
    assert not any("pruning_samples" in f.numbers for f in analysis.findings)  # every sample: nothing to say
    assert analysis.importance.n_samples == 70 and analysis.importance.n_steps == 50
    assert analysis.pruning.n_samples == 70
