"""The report of training runs recorded by a Monitor: their curves and warnings, HTML or PDF."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from inspector import figures as F
from inspector.analysis import Analysis
from inspector.errors import InspectorError
from inspector.fileio import (
    write_text_atomic,
)
from inspector.live.store import RunHistory
from inspector.render.export import write_pdf
from inspector.render.html import Section, analysis_sections, escape, html_table, render_html
from inspector.render.write import format_for, is_own_report

# What the activations of a run's layers record, by kind of unit: dead fraction (ReLU-type),
# saturation (sigmoid/tanh), zero rate (GELU/SiLU); the report draws those some layer recorded.
ACTIVATION_STATISTICS = ("dead_fraction", "saturation", "zero_rate")


def _recorded(runs: list[RunHistory], name: str) -> bool:
    """Whether some layer of some run recorded ``name`` (a value that is not NaN)."""
    return any(s.name == name and not np.isnan(s.values).all() for r in runs for s in r.series if len(s.values))


def run_sections(runs: list[RunHistory]) -> list[Section]:
    """The training run section (one or several runs side by side): status, the curves of the
    statistics the runs recorded (dead fraction, saturation, zero rate; gradient norm, loss and
    learning rate), warnings."""
    section = Section("run", "Training run" if len(runs) == 1 else f"Training runs ({len(runs)})")
    rows: list[dict[str, object]] = [
        {
            "run": r.name,
            "status": r.status,
            "last step": "none yet" if r.last_step is None else r.last_step,
            "records": len(r.steps),
            "layers": len(r.layers),
            "snapshots": len(r.snapshots),
            "warnings": len(r.events),
        }
        for r in runs
    ]
    section.blocks += [
        f"<p>Recorded by {escape(', '.join(sorted({str(r.meta.get('source', 'a run writer')) for r in runs})))}.</p>",
        html_table(rows, {"last step", "records", "layers", "snapshots", "warnings"}),
        *[F.live_curves_figure(runs, name) for name in ACTIVATION_STATISTICS if _recorded(runs, name)],
        F.live_curves_figure(runs, "grad_norm"),
        F.loss_lr_figure(runs),
    ]
    warnings = F.warning_rows(runs)
    section.blocks.append("<h3>Warnings, newest first</h3>")
    section.blocks.append(html_table(warnings) if warnings else "<p>No warnings were raised.</p>")
    first = runs[0]
    section.blocks.append(
        f"<p>The sections below analyse the weights of {escape(first.name)} at step {first.latest_snapshot.step} "
        "(its newest snapshot; weights only: a snapshot holds no data).</p>"
        if first.latest_snapshot is not None
        else f"<p>{escape(first.name)} has no weight snapshot, so the report has no weight analysis "
        "(Monitor(snapshot_every=...) writes them).</p>"
    )
    return [section]


def run_html(runs: list[RunHistory], analysis: Analysis | None = None) -> str:
    """The report of training runs: their curves and warnings, then ``analysis`` (of a snapshot) if given."""
    sections = run_sections(runs) + (analysis_sections(analysis) if analysis is not None else [])
    names = ", ".join(r.name for r in runs)
    return render_html(f"dense-inspector run report: {names}", sections)


def write_run_report(
    runs: list[RunHistory],
    analysis: Analysis | None,
    path: str | os.PathLike[str],
    fmt: str | None = None,
    *,
    force: bool = False,
) -> Path:
    """Write the report of ``runs`` as HTML or PDF (default: from the extension), atomically."""
    path = Path(path)
    fmt = format_for(path, fmt)
    if fmt not in ("html", "pdf"):
        raise InspectorError(f"a run's report is HTML or PDF, not {fmt}; give --out report.html")
    text = run_html(runs, analysis)
    if fmt == "pdf":
        return write_pdf(text, path, force=force)
    return write_text_atomic(path, text, force=force, ours=functools.partial(is_own_report, fmt=fmt))
