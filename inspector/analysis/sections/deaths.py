"""The deaths section: when each unit died across the training snapshots
(:func:`~inspector.analysis.activations.death_timeline`); part of ``--sections activations``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from inspector.analysis.activations import DeathTimeline, death_timeline
from inspector.analysis.context import AnalysisContext
from inspector.analysis.findings import Finding, agree, count
from inspector.analysis.sections.registry import SectionSpec, register


def run(ctx: AnalysisContext, done: Mapping[str, Any]) -> tuple[DeathTimeline | None, list[Finding]]:
    assert ctx.runner is not None and ctx.run_source is not None and ctx.snapshots  # needs data and snapshots
    with ctx.timed("deaths"):
        deaths = death_timeline(ctx.runner, ctx.snapshots, ctx.run_source, sites=ctx.sites)
    return deaths, death_findings(deaths)


def death_findings(timeline: DeathTimeline | None) -> list[Finding]:
    if timeline is None:
        return []
    out = []
    for k, name in enumerate(timeline.layers):
        died = timeline.death_epoch[k]
        dead = int((died >= 0).sum())
        if dead:
            out.append(
                Finding(
                    "activations",
                    "info",
                    f"layer {name}: {count(dead, 'neuron')} {agree(dead, 'is', 'are')} dead at the last snapshot "
                    f"(epoch {int(timeline.epochs[-1])}); the first died by epoch {int(died[died >= 0].min())}",
                    {"dead_at_end": dead, "first_death_epoch": int(died[died >= 0].min())},
                )
            )
    return out


SECTION = register(
    SectionSpec(
        "deaths",
        run,
        field="deaths",
        option="activations",
        needs=frozenset({"data", "snapshots"}),
    )
)
