"""The evaluation section: the model's loss and metric on the data (:func:`~inspector.analysis.task.evaluate_task`,
on the reduced-dtype copy where ``--dtype`` asks for one), as the analysis's :class:`~inspector.analysis.result.DataInfo`.

It runs whenever there is data and a task, even when ``--sections`` leaves out every data section: one pass,
and the summary can then say the data was there and the sections were not asked for. One finding, when
the metric is not a number (a causal LM on texts of a single token has no next token to score)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from inspector.analysis.context import AnalysisContext
from inspector.analysis.findings import Finding
from inspector.analysis.guard import inspecting
from inspector.analysis.result import DataInfo
from inspector.analysis.sections.registry import SectionSpec, register
from inspector.analysis.task import evaluate_task


def run(ctx: AnalysisContext, done: Mapping[str, Any]) -> tuple[DataInfo, list[Finding]]:
    runner, source, task = ctx.runner, ctx.source, ctx.task
    assert runner is not None and ctx.run_source is not None and source is not None and task is not None
    with inspecting(runner), ctx.timed("evaluation"):
        loss, score, n = evaluate_task(runner, ctx.run_source, task)
    found = []
    if not math.isfinite(score):
        why = (
            "no text has a next token to predict (each is a single token: give texts of two or more tokens), "
            "or the model's outputs are not finite"
            if task.metric_name == "perplexity"
            else "the model's outputs, or the metric's values, are not finite on them"
        )
        found.append(
            Finding("evaluation", "warning", f"the {task.metric_name} is not a number on these samples: {why}", {})
        )
    info = DataInfo(source.name, source.split, int(n), score, loss, task.kind, task.metric_name, task.loss_name)
    return info, found


SECTION = register(SectionSpec("evaluation", run, field="data", needs=frozenset({"data", "task"})))
