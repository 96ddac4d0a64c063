"""The registry of analysis sections: a :class:`SectionSpec` per section, in the order they run.

A section is one file under :mod:`inspector.analysis.sections`: a ``run(ctx, done)`` that calls the
section's computation on the :class:`~inspector.analysis.context.AnalysisContext` and returns
``(result, findings)``, and a spec registered with :func:`register` saying when it runs. The registry
order is the run order and a dependency order: a spec may name in ``after`` only sections registered
before it, and its ``run`` reads their results from ``done``. See docs/sections.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from inspector.analysis.context import AnalysisContext
from inspector.analysis.findings import Finding
from inspector.analysis.options import SECTIONS
from inspector.analysis.result import Analysis

SectionRun = Callable[[AnalysisContext, Mapping[str, Any]], tuple[Any, list[Finding]]]

NEEDS = ("data", "task", "labels", "history", "snapshots")
# the fields of Analysis that the runner fills itself, not a section
_RUNNER_FIELDS = ("model", "findings", "timings", "package_version")


@dataclass(frozen=True)
class SectionSpec:
    """One section: what it is called, when it runs, where its result goes.

    ``name``: unique; the key of its result in :class:`SectionResults` and in ``done``. ``run``:
    ``run(ctx, done) -> (result, findings)``, ``done`` holding the results of the sections that ran before
    it. ``field``: the :class:`~inspector.analysis.result.Analysis` field its result fills (``None``: the
    result stays in :attr:`SectionResults.results`, its findings still join the analysis's). ``option``:
    the name in ``AnalysisOptions.sections`` that turns it on (``None``: it runs whenever its needs are met).
    ``needs``: what the analysis must have for it to run: ``data`` (evaluation data), ``task`` (a
    task: labels or a target), ``labels`` (labels in the data), ``history`` (a training history with at
    least one epoch), ``snapshots`` (weight snapshots). ``after``: the sections whose results it reads
    (registered before it). ``applies``: a last condition on the context (e.g. tabular inputs only).
    """

    name: str
    run: SectionRun
    field: str | None = None
    option: str | None = None
    needs: frozenset[str] = frozenset()
    after: tuple[str, ...] = ()
    applies: Callable[[AnalysisContext], bool] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "needs", frozenset(self.needs))
        unknown = self.needs - set(NEEDS)
        if unknown:
            raise ValueError(f"section {self.name!r}: unknown needs {sorted(unknown)}; choose from {', '.join(NEEDS)}")
        if self.option is not None and self.option not in SECTIONS:
            raise ValueError(f"section {self.name!r}: option {self.option!r} is not one of {', '.join(SECTIONS)}")
        fields = {f.name for f in dataclasses.fields(Analysis)} - set(_RUNNER_FIELDS)
        if self.field is not None and self.field not in fields:
            raise ValueError(
                f"section {self.name!r}: Analysis has no field {self.field!r}; choose from {sorted(fields)}"
            )

    def wanted(self, ctx: AnalysisContext) -> bool:
        """Whether this section runs in the analysis of ``ctx``: asked for, what it needs there, and it applies."""
        if self.option is not None and not ctx.wants(self.option):
            return False
        if not all(_has(ctx, need) for need in self.needs):
            return False
        return self.applies is None or self.applies(ctx)


def _has(ctx: AnalysisContext, need: str) -> bool:
    if need == "data":
        return ctx.source is not None and ctx.adapter is not None
    if need == "task":
        return ctx.task is not None
    if need == "labels":
        return ctx.first is not None and ctx.first.labels is not None
    if need == "history":
        return ctx.history is not None and bool(ctx.history.epochs_run)
    return bool(ctx.snapshots)  # "snapshots"


_REGISTRY: list[SectionSpec] = []


def register(spec: SectionSpec) -> SectionSpec:
    """Add ``spec`` at the end of the registry (it runs after every section registered so far); returns it.

    ``ValueError`` for a name already registered, an ``after`` naming a section not registered before it,
    or a field another section fills."""
    names = [s.name for s in _REGISTRY]
    if spec.name in names:
        raise ValueError(f"a section named {spec.name!r} is already registered")
    missing = [name for name in spec.after if name not in names]
    if missing:
        raise ValueError(f"section {spec.name!r} runs after {missing}, which are not registered before it")
    if spec.field is not None and any(s.field == spec.field for s in _REGISTRY):
        raise ValueError(f"section {spec.name!r}: another section already fills Analysis.{spec.field}")
    _REGISTRY.append(spec)
    return spec


def unregister(name: str) -> None:
    """Remove the section ``name`` (a section registered for a while, e.g. by a test); ``ValueError`` if a
    registered section runs after it or none is called so."""
    dependents = [s.name for s in _REGISTRY if name in s.after]
    if dependents:
        raise ValueError(f"sections {dependents} run after {name!r}; unregister them first")
    spec = next((s for s in _REGISTRY if s.name == name), None)
    if spec is None:
        raise ValueError(f"no section named {name!r} is registered")
    _REGISTRY.remove(spec)


@contextmanager
def registered(spec: SectionSpec) -> Iterator[SectionSpec]:
    """``spec`` registered for the ``with`` body, removed after it."""
    register(spec)
    try:
        yield spec
    finally:
        unregister(spec.name)


def sections() -> tuple[SectionSpec, ...]:
    """Every registered section, in run order."""
    return tuple(_REGISTRY)


def section(name: str) -> SectionSpec:
    """The section registered as ``name``; ``KeyError`` naming the choices otherwise."""
    for spec in _REGISTRY:
        if spec.name == name:
            return spec
    raise KeyError(f"no section named {name!r}; registered: {', '.join(s.name for s in _REGISTRY)}")


@dataclass(frozen=True)
class SectionResults:
    """What running the sections gave: ``results`` and ``findings`` by section name, in run order,
    for the sections that ran."""

    results: Mapping[str, Any]
    findings: Mapping[str, tuple[Finding, ...]]

    def all_findings(self) -> tuple[Finding, ...]:
        """Every section's findings, in run order."""
        return tuple(f for found in self.findings.values() for f in found)


def run_sections(ctx: AnalysisContext, specs: tuple[SectionSpec, ...] | None = None) -> SectionResults:
    """Run each of ``specs`` (default: the registry) that is wanted in ``ctx``, in order."""
    results: dict[str, Any] = {}
    findings: dict[str, tuple[Finding, ...]] = {}
    for spec in sections() if specs is None else specs:
        if spec.wanted(ctx):
            results[spec.name], found = spec.run(ctx, dict(results))
            findings[spec.name] = tuple(found)
    return SectionResults(results, findings)
