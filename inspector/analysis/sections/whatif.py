"""The what-if section: partial dependence and ICE curves of the most important features
(:func:`~inspector.analysis.whatif.partial_dependence`), for tabular (feature-column) inputs only."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from inspector.analysis.context import AnalysisContext
from inspector.analysis.findings import Finding
from inspector.analysis.sections.registry import SectionSpec, register
from inspector.analysis.whatif import PartialDependence, importance_ranking, partial_dependence, whatif_findings


def run(ctx: AnalysisContext, done: Mapping[str, Any]) -> tuple[PartialDependence, list[Finding]]:
    assert ctx.adapter is not None and ctx.task is not None  # needs data and a task
    assert ctx.options.max_importance_samples is not None  # resolved per input kind (AnalysisOptions.for_inputs)
    ranking = importance_ranking(done.get("importance"))
    with ctx.timed("whatif"):
        curves = partial_dependence(
            ctx.module,
            ctx.whole,
            task=ctx.task,
            feature_names=ctx.adapter.feature_names,
            max_samples=ctx.options.max_importance_samples,
            batch_size=ctx.options.batch_size,
            ranking=ranking,
        )
    return curves, whatif_findings(curves)


def _tabular(ctx: AnalysisContext) -> bool:
    return ctx.adapter is not None and ctx.adapter.whatif


SECTION = register(
    SectionSpec(
        "whatif",
        run,
        field="whatif",
        option="whatif",
        needs=frozenset({"data", "task"}),
        after=("importance",),  # ranks its features by the importance section's lead method
        applies=_tabular,
    )
)
