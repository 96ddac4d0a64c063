"""The Markdown report: the tables and findings, for pull requests and CI logs."""

from __future__ import annotations

import re

import numpy as np

from inspector import figures as F
from inspector.analysis import Analysis
from inspector.analysis.findings import Finding, describe_samples, score_texts
from inspector.analysis.methods import METHOD_LABELS
from inspector.core.adapters import adapter_for
from inspector.figures.panels import report_panels
from inspector.figures.top_examples import selective_rows
from inspector.render.rows import census_rows, importance_rows, pruning_rows, top_token_rows, whatif_table, whatif_text

# What marks a Markdown report as ours (its first line), so that --force replaces only our own.
MD_MARKER = "<!-- generator: dense-inspector -->"
# Inline Markdown (CommonMark and GitHub's extensions) that a name could start: emphasis, code, links,
# tables, strikethrough, math, and raw HTML or entities (only `<` before a tag or autolink, `&` before an entity).
_MD_INLINE = re.compile(r"[\\`*_\[\]|~$]|<(?=[A-Za-z/!?])|&(?=[A-Za-z#])")
# What makes a line a heading, quote, list item, setext underline or thematic break.
_MD_LINE_START = re.compile(r"^(\s*)([#>+=-]|\d+(?=[.)]))")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")


def md_escape(text: object, *, line_start: bool = True) -> str:
    """``text`` as literal Markdown text: no markup, no HTML, one line.

    ``line_start=False`` for text that cannot open a block (a table cell, the middle of a line).
    """
    escaped = _MD_INLINE.sub(lambda m: "\\" + m.group(0), _CONTROL.sub(" ", str(text)))
    return _escape_line_start(escaped) if line_start else escaped


def _escape_line_start(text: str) -> str:
    match = _MD_LINE_START.match(text)
    if match is None:
        return text
    start, marker = match.group(1), match.group(2)
    if marker[0].isdigit():  # "1. x" is a list item: escape the dot or parenthesis after the number
        end = match.end()
        return text[:end] + "\\" + text[end:]
    return start + "\\" + text[len(start) :]


def md_code(text: object) -> str:
    """``text`` as a Markdown code span, fenced by more backticks than it contains."""
    flat = _CONTROL.sub(" ", str(text))
    fence = "`" * (max((len(run) for run in re.findall(r"`+", flat)), default=0) + 1)
    pad = " " if flat.startswith(("`", " ")) or flat.endswith(("`", " ")) else ""
    return f"{fence}{pad}{flat}{pad}{fence}"


def md_table(rows: list[dict[str, object]]) -> str:
    if not rows:
        return ""
    cells = [[md_escape(k, line_start=False) for k in rows[0]]] + [
        [
            f"{v:,}" if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else md_escape(v, line_start=False)
            for v in r.values()
        ]
        for r in rows
    ]
    lines = ["| " + " | ".join(row) + " |" for row in cells]
    lines.insert(1, "|" + "|".join(" --- " for _ in cells[0]) + "|")
    return "\n".join(lines)


def md_findings(findings: tuple[Finding, ...] | list[Finding]) -> str:
    return "\n".join(
        f"- {'**warning:** ' if f.severity == 'warning' else ''}{md_escape(f.text)}"
        for f in sorted(findings, key=lambda f: f.severity != "warning")
    )


def to_markdown(analysis: Analysis) -> str:
    a = analysis
    out = [
        MD_MARKER,
        f"# dense-inspector report: {md_escape(a.model.architecture, line_start=False)}",
        "",
        f"Source: {md_code(a.model.source)}; {a.parameters.total_parameters:,} parameters.",
    ]
    if a.data:
        samples = describe_samples(a.data.n_samples, a.data.split, a.data.name)
        out.append(
            f"Evaluated on {md_escape(samples, line_start=False)}: {md_escape(score_texts(a.data)[0], line_start=False)} "
            f"**{score_texts(a.data)[1]}**{md_escape(score_texts(a.data)[2], line_start=False)}."
        )
    out += [
        "",
        "## Findings",
        "",
        md_findings(a.findings),
        "",
        "## Parameters",
        "",
        "A layer with n inputs and m neurons has m × (n + 1) parameters (m × n without a bias; a weight "
        "shared by several layers is counted once, in the first).",
        "",
        md_table(F.parameter_rows(a.parameters)),
    ]
    if a.activations:
        out += ["", "## Dead ReLUs and saturation", "", md_table(census_rows(a))]
    if a.importance:
        out += ["", "## Feature importance", "", md_table(importance_rows(a))]
        if adapter_for(a.importance.input_kind).display == "tokens":
            for m in a.importance.methods:
                if m.error is not None:
                    continue
                out += ["", f"### {METHOD_LABELS[m.method]}: top tokens", "", md_table(top_token_rows(a, m))]
                for i in range(min(len(a.importance.example_inputs), len(m.examples), 4)):
                    spans = F.highlighted_tokens(*F.stored_example(a.importance, m, i))
                    text = " ".join(f"{md_code(t)}&nbsp;{score:+.3g}" for t, score, _ in spans)
                    out += ["", f"Sample {i}: {text}"]
    if a.whatif is not None:
        out += ["", "## What-if (partial dependence)", "", md_escape(whatif_text(a)), "", md_table(whatif_table(a))]
    if a.pruning:
        out += ["", "## Pruning", "", md_table(pruning_rows(a))]
    if a.training:
        t = a.training
        out += [
            "",
            "## Training",
            "",
            f"{t.epochs_run} epochs, best epoch {t.best_epoch}"
            + (" (early stopping)" if t.stopped_early else "")
            + (f", overfitting from epoch {t.overfitting_epoch}" if t.overfitting_epoch else "")
            + (
                f"; train/validation accuracy gap {100 * t.accuracy_gap:.1f} points."
                if F.metric_name(a) == "accuracy"
                else f"; train/validation {F.metric_name(a)} gap {t.accuracy_gap:.4g}."
            ),
        ]
    selective = selective_rows(a)  # the "What neurons fire on" panel's table (its HTML is the panel's own)
    if selective:
        out += ["", "## What neurons fire on", "", md_table(selective)]
    for panel in report_panels():  # the sections figure modules add (inspector/figures/panels.py)
        body = panel.markdown(a) if panel.markdown is not None else None
        if body is not None:
            out += ["", f"## {md_escape(panel.title)}", "", body]
    return "\n".join(out) + "\n"
