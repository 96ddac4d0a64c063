"""The registry of analysis sections: order, each section alone, and a section added from outside."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from inspector.analysis import AnalysisOptions, analyze
from inspector.analysis.context import AnalysisContext, build_context
from inspector.analysis.findings import Finding
from inspector.analysis.result import Analysis
from inspector.analysis.run import assemble
from inspector.analysis.sections import (
    SectionSpec,
    register,
    registered,
    run_sections,
    section,
    sections,
    unregister,
)
from inspector.checkpoints import checkpoint_from_training, load, save_checkpoint
from inspector.data import SplitSpec, load_digits, split_dataset
from inspector.evaluation import eval_data_for
from inspector.models import MLPConfig
from inspector.results import to_json_and_arrays
from inspector.training import TrainConfig, train

FAST = AnalysisOptions(n_steps=8, max_importance_samples=60, sparsities=(0.0, 0.5), batch_size=128)
BUILT_IN = (
    "parameters",
    "weights",
    "evaluation",
    "activations",
    "deaths",
    "importance",
    "whatif",
    "pruning",
    "training",
)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """A digits MLP trained 4 epochs with a snapshot every 2, and its test split: every section runs."""
    dataset = load_digits()
    spec = SplitSpec(seed=0)
    splits = split_dataset(dataset, spec)
    trained = train(
        MLPConfig(64, (16, 12), 10),
        splits,
        TrainConfig(epochs=4, snapshot_every=2, patience=None),
        device="cpu",
        progress=False,
    )
    path = tmp_path_factory.mktemp("ckpt") / "digits.pt"
    save_checkpoint(checkpoint_from_training(trained, dataset, splits.standardizer, spec), path)
    ckpt = load(path)
    return ckpt, eval_data_for(ckpt)


def _measured_out(tree: Any) -> Any:
    """The tree less the ``timings`` and every ``seconds`` field (measurements, not results)."""
    if isinstance(tree, dict):
        return {k: _measured_out(v) for k, v in tree.items() if k not in ("seconds", "timings")}
    if isinstance(tree, list):
        return [_measured_out(v) for v in tree]
    return tree


def _same(a: Any, b: Any) -> bool:
    """Two results hold the same numbers, texts and arrays (exactly), how long they took aside."""
    (doc_a, arrays_a), (doc_b, arrays_b) = to_json_and_arrays(a), to_json_and_arrays(b)
    return (
        _measured_out(doc_a) == _measured_out(doc_b)
        and sorted(arrays_a) == sorted(arrays_b)
        and all(np.array_equal(arrays_a[k], arrays_b[k], equal_nan=True) for k in arrays_a)
    )


def test_the_built_in_sections_run_in_dependency_order_and_fill_every_section_field():
    specs = sections()
    assert tuple(s.name for s in specs) == BUILT_IN
    for k, spec in enumerate(specs):
        earlier = {s.name for s in specs[:k]}
        assert set(spec.after) <= earlier, f"{spec.name} runs after {spec.after}, not all registered before it"
    assert section("pruning").after == ("activations",) and section("whatif").after == ("importance",)
    runner_fields = {"model", "findings", "timings", "package_version"}
    assert {s.field for s in specs} == {f.name for f in dataclasses.fields(Analysis)} - runner_fields


def test_every_section_is_wanted_on_a_trained_checkpoint_with_data(digits):
    ckpt, data = digits
    ctx = build_context(ckpt, data, options=FAST)
    assert [s.name for s in sections() if s.wanted(ctx)] == list(BUILT_IN)
    bare = build_context(ckpt.model, options=FAST)  # no data, no history: the weight-only sections
    assert [s.name for s in sections() if s.wanted(bare)] == ["parameters", "weights"]


def test_each_section_alone_gives_what_it_gives_in_the_full_analysis(digits):
    ckpt, data = digits
    full = analyze(ckpt, data, options=FAST)
    ran = run_sections(build_context(ckpt, data, options=FAST))
    assert _same(assemble(build_context(ckpt, data, options=FAST), ran), full)
    assert ran.all_findings() == full.findings
    for spec in sections():
        ctx = build_context(ckpt, data, options=FAST)  # a fresh context: nothing carried over from another section
        done = {name: ran.results[name] for name in spec.after}  # only what it declares it reads
        result, found = spec.run(ctx, done)
        assert _same(result, getattr(full, spec.field)), spec.name
        assert tuple(found) == ran.findings[spec.name], spec.name
    # a section turned on alone by the options gives the same result as in the full analysis
    alone = analyze(ckpt, data, options=dataclasses.replace(FAST, sections=("importance",)))
    assert _same(alone.importance, full.importance) and alone.activations is None


def test_timed_records_each_step_once(digits):
    ckpt, data = digits
    analysis = analyze(ckpt, data, options=FAST)
    assert [step for step in analysis.timings if "/" not in step] == [  # "importance/<method>": parts of a step
        "sites",
        "parameters",
        "weights",
        "evaluation",
        "activations",
        "deaths",
        "importance",
        "whatif",
        "pruning",
    ]
    assert all(seconds >= 0 for seconds in analysis.timings.values())


class _ColumnMeans:
    """A toy statistic section: the mean of each input column over every sample of the data."""

    @staticmethod
    def run(ctx: AnalysisContext, done: Mapping[str, Any]) -> tuple[np.ndarray, list[Finding]]:
        assert ctx.source is not None and ctx.first is not None  # needs data
        total, n = torch.zeros(ctx.first.inputs.shape[1], dtype=torch.float64), 0
        with ctx.timed("column means"):
            for batch in ctx.source:
                total += batch.inputs.double().sum(0)
                n += batch.inputs.shape[0]
        means = (total / n).numpy()
        text = f"input column {int(means.argmax())} has the largest mean, {float(means.max()):.3f}"
        return means, [Finding("column means", "info", text, {"largest_mean": float(means.max())})]


def _planted() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """Column j of X is j + noise with mean exactly 0 over the 200 samples: the column means are 0, 1, 2, 3."""
    torch.manual_seed(0)
    noise = torch.randn(200, 4, dtype=torch.float64)
    X = (torch.arange(4.0, dtype=torch.float64) + noise - noise.mean(0)).float()
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2)), X, torch.randint(0, 2, (200,))


def test_a_section_registered_from_outside_runs_and_its_findings_join_the_analysis():
    model, X, y = _planted()
    options = AnalysisOptions(sections=("parameters", "activations"), batch_size=64)
    spec = SectionSpec("column means", _ColumnMeans.run, needs=frozenset({"data"}), after=("activations",))
    with registered(spec):
        assert sections()[-1] is spec
        ran = run_sections(build_context(model, (X, y), options=options))
        np.testing.assert_allclose(ran.results["column means"], [0.0, 1.0, 2.0, 3.0], atol=1e-6)
        analysis = analyze(model, (X, y), options=options)
        assert analysis.findings[-1].text == "input column 3 has the largest mean, 3.000"
        assert "column means" in analysis.timings
        weight_only = analyze(model, options=options)  # needs data: it does not run without
        assert all(f.section != "column means" for f in weight_only.findings)
    assert tuple(s.name for s in sections()) == BUILT_IN
    assert all(f.section != "column means" for f in analyze(model, (X, y), options=options).findings)


def test_a_section_that_needs_labels_runs_only_on_labelled_data():
    model, X, y = _planted()
    options = AnalysisOptions(sections=("parameters",), batch_size=64)
    spec = SectionSpec("labelled", lambda ctx, done: (1, []), needs=frozenset({"labels"}))
    with registered(spec):
        assert "labelled" in run_sections(build_context(model, (X, y), options=options)).results
        assert "labelled" not in run_sections(build_context(model, X, options=options)).results


def test_the_registry_refuses_an_order_it_cannot_run():
    def run(ctx: AnalysisContext, done: Mapping[str, Any]) -> tuple[None, list[Finding]]:
        return None, []

    with pytest.raises(ValueError, match="not registered before it"):
        register(SectionSpec("early", run, after=("later",)))
    with pytest.raises(ValueError, match="already registered"):
        register(SectionSpec("weights", run))
    with pytest.raises(ValueError, match="already fills Analysis.pruning"):
        register(SectionSpec("another pruning", run, field="pruning"))
    with pytest.raises(ValueError, match="Analysis has no field"):
        SectionSpec("x", run, field="extras")
    with pytest.raises(ValueError, match="unknown needs"):
        SectionSpec("x", run, needs=frozenset({"gpu"}))
    with pytest.raises(ValueError, match="run after 'activations'"):
        with registered(SectionSpec("reads the census", run, after=("activations",))):
            unregister("activations")
    assert tuple(s.name for s in sections()) == BUILT_IN
