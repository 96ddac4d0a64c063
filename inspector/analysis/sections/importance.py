"""The importance section: which inputs the model's target depends on, by every attribution method
(:func:`~inspector.analysis.importance.importance_report`), with the randomisation sanity check."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from inspector.analysis.context import AnalysisContext
from inspector.analysis.findings import SANITY_FAIL, Finding, agree, count
from inspector.analysis.importance import ImportanceReport, importance_report
from inspector.analysis.methods import METHOD_LABELS, lead_method
from inspector.analysis.sections.registry import SectionSpec, register
from inspector.core.adapters import adapter_for


def run(ctx: AnalysisContext, done: Mapping[str, Any]) -> tuple[ImportanceReport, list[Finding]]:
    options = ctx.options
    # resolved per input kind by build_context (AnalysisOptions.for_inputs)
    assert options.methods is not None and options.n_steps is not None and options.max_importance_samples is not None
    assert options.conductance_samples is not None
    parts: dict[str, float] = {}  # importance/<method>, importance/<method>/sanity, importance/conductance
    with ctx.timed("importance"):
        report = importance_report(
            ctx.module,
            ctx.whole,
            ctx.task,
            ctx.adapter,
            methods=options.methods,
            n_steps=options.n_steps,
            max_samples=options.max_importance_samples,
            with_conductance=options.conductance,
            conductance_samples=options.conductance_samples,
            timings=parts,
            sites=ctx.sites,
            sharded=ctx.already_sharded,
        )
    ctx.timings.update(parts)  # after the step they are parts of
    return report, importance_findings(report, ctx.info.feature_names)


def importance_findings(report: ImportanceReport, feature_names: tuple[str, ...]) -> list[Finding]:
    out = []
    ok = [m for m in report.methods if m.error is None]
    for m in report.methods:
        if m.error is not None:
            out.append(Finding("importance", "warning", f"{METHOD_LABELS[m.method]} could not run: {m.error}", {}))
    if not ok:
        return out
    lead = lead_method(ok)
    assert lead is not None  # ok is not empty
    top = [report.feature_label(i, feature_names) for i in lead.ranking[:3]]
    what = "tokens" if adapter_for(report.input_kind).features_are_ids else "inputs"
    out.append(
        Finding(
            "importance",
            "info",
            f"most important {what} by {METHOD_LABELS[lead.method]}: {', '.join(top)}",
            {f"importance_{i}": float(lead.global_importance[j]) for i, j in enumerate(lead.ranking[:3])},
        )
    )
    if lead.method == "integrated_gradients" and lead.convergence_delta is not None:
        out.append(
            Finding(
                "importance",
                "info",
                f"Integrated Gradients convergence delta {lead.convergence_delta:.2g} "
                f"({count(report.n_steps, 'step')}): attributions sum to f(x) - f(baseline) within that",
                {"convergence_delta": lead.convergence_delta},
            )
        )
    # (method, its sanity correlation) where the check ran
    checked = [(m, c) for m in ok if (c := m.sanity_correlation) is not None]
    failing = [(m, c) for m, c in checked if c > SANITY_FAIL]
    if failing:
        listed = ", ".join(f"{METHOD_LABELS[m.method]} ({c:.2f})" for m, c in failing)
        out.append(
            Finding(
                "importance",
                "warning",
                f"on a weight-randomised copy these methods still rank features much as on the trained model: "
                f"{listed}; their maps reflect the input more than the model (Adebayo et al. 2018)",
                {m.method: float(c) for m, c in failing},
            )
        )
    passing = [(m, c) for m, c in checked if c <= SANITY_FAIL]
    if passing:
        best, best_correlation = min(passing, key=lambda pair: pair[1])
        out.append(
            Finding(
                "importance",
                "info",
                f"{len(passing)} of {count(len(ok), 'method')} {agree(len(passing), 'passes', 'pass')} the "
                "randomisation sanity check; "
                f"{METHOD_LABELS[best.method]} depends most on the weights (rank correlation {best_correlation:.2f})",
                {"passing": len(passing), "best_correlation": best_correlation},
            )
        )
    return out


SECTION = register(
    SectionSpec(
        "importance",
        run,
        field="importance",
        option="importance",
        needs=frozenset({"data"}),
    )
)
