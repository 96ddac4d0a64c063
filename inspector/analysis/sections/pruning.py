"""The pruning section: the metric at each sparsity, by global, per-layer and neuron magnitude pruning,
and with the dead neurons removed (:func:`~inspector.analysis.pruning.pruning_sweep`, on a copy)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from inspector.analysis import distributed
from inspector.analysis.context import AnalysisContext
from inspector.analysis.findings import Finding, agree, count, pct
from inspector.analysis.pruning import PruningReport, pruning_sweep
from inspector.analysis.sections.registry import SectionSpec, register
from inspector.analysis.task import LOWER_IS_BETTER

ACCURACY_BUDGET = 0.01  # "pruning is free" while accuracy stays within one point


def run(ctx: AnalysisContext, done: Mapping[str, Any]) -> tuple[PruningReport, list[Finding]]:
    options = ctx.options
    dead = {c.layer: c.dead_mask for c in done.get("activations") or () if c.dead_mask is not None}
    finetune = ctx.train_split if options.finetune_epochs else None
    # fine-tuning trains, and training a bf16 / fp16 copy loses small updates: it stays in float32
    model, source = (ctx.module, ctx.source) if finetune is not None else (ctx.runner, ctx.run_source)
    assert model is not None and source is not None  # needs data
    if options.max_pruning_samples is not None:  # bounded for token ids (AnalysisOptions.for_inputs); ~ over all ranks
        source = source.limited(-(-options.max_pruning_samples // distributed.world_size()))
    with ctx.timed("pruning"):
        report = pruning_sweep(
            model,
            source,
            ctx.task,
            sparsities=options.sparsities,
            scopes=options.pruning_scopes,
            dead_masks=dead or None,
            finetune=finetune,
            finetune_epochs=options.finetune_epochs,
            sites=ctx.sites,
        )
    findings = pruning_findings(report)
    bound = options.max_pruning_samples
    if findings and bound is not None and report.n_samples >= bound:
        findings.append(
            Finding(
                "pruning",
                "info",
                f"pruning was measured on the first {report.n_samples:,} samples (bounded for token inputs), so its "
                "baseline may differ from the evaluation's; AnalysisOptions(max_pruning_samples=None) measures all",
                {"pruning_samples": report.n_samples},
            )
        )
    return report, findings


def _metric_budget(report: PruningReport) -> float:
    """How far the metric may fall for pruning to count as free: one point of accuracy, 0.01 of R²,
    else 1% of the unpruned value (a user metric's scale is unknown)."""
    if report.metric_name in ("accuracy", "R²"):
        return ACCURACY_BUDGET
    return ACCURACY_BUDGET * abs(report.baseline_metric)


def pruning_findings(report: PruningReport) -> list[Finding]:
    if report.metric_name != "accuracy":
        return _metric_pruning_findings(report)
    out = []
    base = report.baseline_metric
    for curve in report.curves:
        tried = [i for i, s in enumerate(curve.sparsity) if s > 0]
        if not tried:
            continue  # only the unpruned model was evaluated: nothing to say about pruning
        within = [i for i in tried if base - curve.metric[i] <= ACCURACY_BUDGET]
        what = PRUNED_SET[curve.scope]
        if within:
            i = max(within)
            s = float(curve.sparsity[i])
            drop = 100 * (base - float(curve.metric[i]))
            cost = f"costs {drop:.1f} points of accuracy" if drop > 0 else "costs no accuracy"
            out.append(
                Finding(
                    "pruning",
                    "info",
                    f"pruning {pct(s)} {what} {cost} "
                    f"({pct(base)} -> {pct(float(curve.metric[i]))}), leaving {int(curve.parameters_left[i]):,} "
                    f"of the {count(report.total_parameters, 'parameter')} in linear layers",
                    {
                        "sparsity": s,
                        "accuracy_drop_points": drop,
                        "parameters_left": int(curve.parameters_left[i]),
                        "linear_parameters": report.total_parameters,
                    },
                )
            )
        else:
            mildest = min(tried, key=lambda i: curve.sparsity[i])
            drop = 100 * (base - float(curve.metric[mildest]))
            levels = "the one level" if len(tried) == 1 else f"each of the {len(tried)} levels"
            budget = 100 * ACCURACY_BUDGET
            out.append(
                Finding(
                    "pruning",
                    "info",
                    f"{curve.scope} pruning: {levels} tried costs more than {budget:g} "
                    f"{agree(int(budget), 'point', 'points')} of accuracy "
                    f"(pruning {pct(float(curve.sparsity[mildest]))} {what} costs {drop:.1f} points)",
                    {
                        "baseline_accuracy": base,
                        "mildest_sparsity": float(curve.sparsity[mildest]),
                        "accuracy_drop_points": drop,
                    },
                )
            )
    if report.dead_removed_metric is not None and report.dead_removed_count:
        change = 100 * (report.dead_removed_metric - base)
        n = report.dead_removed_count
        out.append(
            Finding(
                "pruning",
                "info",
                f"removing the {count(n, 'dead neuron')} changes accuracy by {change:+.1f} points",
                {"dead_removed": n, "accuracy_change_points": change},
            )
        )
    return out


PRUNED_SET = {
    "global": "of weights (global magnitude)",
    "layer": "of each layer's weights",
    "neuron": "of hidden neurons (weakest first)",
}


def _metric_pruning_findings(report: PruningReport) -> list[Finding]:
    """:func:`pruning_findings` for a metric other than accuracy (R², a user metric, the mean target):
    the same claims in the metric's own units. A mean target is not better when larger, so
    there the budget bounds the change either way."""
    out: list[Finding] = []
    base, name = report.baseline_metric, report.metric_name
    if not math.isfinite(base):
        return out  # an undefined baseline (R² of constant targets): no claim can be measured against it
    budget = _metric_budget(report)
    two_sided = name == "mean target"
    lower_better = name in LOWER_IS_BETTER  # perplexity: pruning costs by raising it
    worsens = "raises" if lower_better else "lowers"
    for curve in report.curves:
        tried = [i for i, s in enumerate(curve.sparsity) if s > 0 and math.isfinite(curve.metric[i])]
        if not tried:
            continue
        drops = {i: (float(curve.metric[i]) - base if lower_better else base - float(curve.metric[i])) for i in tried}
        within = [i for i in tried if (abs(drops[i]) if two_sided else drops[i]) <= budget]
        what = PRUNED_SET[curve.scope]
        if within:
            i = max(within)
            s = float(curve.sparsity[i])
            if two_sided:
                cost = f"changes the {name} by {-drops[i]:+.3g}"
            else:
                cost = f"{worsens} {name} by {drops[i]:.3g}" if drops[i] > 0 else f"does not {worsens[:-1]} {name}"
            out.append(
                Finding(
                    "pruning",
                    "info",
                    f"pruning {pct(s)} {what} {cost} ({base:.4g} -> {float(curve.metric[i]):.4g}), leaving "
                    f"{int(curve.parameters_left[i]):,} of the {count(report.total_parameters, 'parameter')} in "
                    "linear layers",
                    {
                        "sparsity": s,
                        "metric_drop": drops[i],
                        "parameters_left": int(curve.parameters_left[i]),
                        "linear_parameters": report.total_parameters,
                    },
                )
            )
        else:
            mildest = min(tried, key=lambda i: curve.sparsity[i])
            levels = "the one level" if len(tried) == 1 else f"each of the {len(tried)} levels"
            verb = "changes" if two_sided else worsens
            amount = f"{-drops[mildest]:+.3g}" if two_sided else f"{drops[mildest]:.3g}"
            out.append(
                Finding(
                    "pruning",
                    "info",
                    f"{curve.scope} pruning: {levels} tried {verb} {name} by more than {budget:.3g} "
                    f"(pruning {pct(float(curve.sparsity[mildest]))} {what} {verb} it by {amount})",
                    {
                        "baseline_metric": base,
                        "mildest_sparsity": float(curve.sparsity[mildest]),
                        "metric_drop": drops[mildest],
                    },
                )
            )
    if report.dead_removed_metric is not None and report.dead_removed_count:
        change = report.dead_removed_metric - base
        n = report.dead_removed_count
        out.append(
            Finding(
                "pruning",
                "info",
                f"removing the {count(n, 'dead neuron')} changes {name} by {change:+.3g} "
                f"({base:.4g} -> {report.dead_removed_metric:.4g})",
                {"dead_removed": n, "metric_change": change},
            )
        )
    return out


SECTION = register(
    SectionSpec(
        "pruning",
        run,
        field="pruning",
        option="pruning",
        needs=frozenset({"data"}),
        after=("activations",),  # removes the dead neurons the census found
    )
)
