"""Reports: one self-contained file a person can read offline.

* HTML: every section with interactive figures; plotly.js is inlined, so the file
  makes no network request. A table of contents and a print stylesheet.
* Markdown: the tables and findings, for pull requests and CI logs.
* JSON: the analysis schema in one file (arrays inline).
* PDF: the HTML report printed by headless Chrome/Chromium; PNG: every figure
  as an image, through kaleido (which drives the same browser).

Figures come from :mod:`inspector.figures`, the builders the dashboard uses.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import html
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

from inspector import figures as F
from inspector._version import __version__
from inspector.analysis import Analysis
from inspector.analysis.compare import Comparison
from inspector.analysis.findings import SANITY_FAIL, Finding, describe_samples, score_texts
from inspector.analysis.importance import MethodImportance
from inspector.analysis.methods import METHOD_LABELS
from inspector.analysis.whatif import importance_ranking, ranked_rows
from inspector.errors import InspectorError
from inspector.fileio import (
    atomic_path,
    check_output_folder,
    describe_os_error,
    fsync_file,
    make_output_folder,
    read_prefix,
    refuse_inputs,
    temporary_name,
    write_text_atomic,
)
from inspector.live.store import RunHistory
from inspector.results import to_json_document

FORMATS = ("html", "md", "json", "pdf", "png")
# The report's section ids. PNG figures are named `NN-<id>.png`; a figure of an earlier report
# that the new one lacks is removed only when its id is one of these (and it is a PNG).
SECTION_IDS = (
    "run",
    "summary",
    "architecture",
    "training",
    "weights",
    "dead",
    "importance",
    "whatif",
    "pruning",
    "activations",
    "layers",
)
_FIGURE_NAME = re.compile(rf"^\d{{2,}}-(?:{'|'.join(SECTION_IDS)})\.png$")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# What marks a report as ours, so that --force replaces it and never a user's file of the same name.
_HTML_MARKER = b'<meta name="generator" content="dense-inspector">'
_MD_MARKER = "<!-- generator: dense-inspector -->"
_EXTENSIONS = {".html": "html", ".htm": "html", ".md": "md", ".json": "json", ".pdf": "pdf", ".png": "png"}


@dataclass
class Section:
    """A titled part of a report: text blocks (HTML) and figures, in order."""

    id: str
    title: str
    blocks: list[str | go.Figure] = field(default_factory=list)


def format_for(path: Path, requested: str | None) -> str:
    fmt = requested or _EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        raise InspectorError(
            f"{path}: cannot tell the report format from the extension; pass --format ({', '.join(FORMATS)})"
        )
    if fmt not in FORMATS:
        raise InspectorError(f"unknown report format {fmt!r}; choose from {', '.join(FORMATS)}")
    return fmt


# --------------------------------------------------------------------------- building blocks


def _e(text: object) -> str:
    return html.escape(str(text))


def _table(rows: list[dict[str, object]], numeric: set[str] | None = None) -> str:
    if not rows:
        return ""
    numeric = numeric or set()
    head = "".join(f"<th>{_e(k)}</th>" for k in rows[0])
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="{"num" if k in numeric else ""}">'
            f"{_e(f'{v:,}' if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else v)}</td>"
            for k, v in r.items()
        )
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _findings_html(findings: tuple[Finding, ...] | list[Finding]) -> str:
    items = "".join(
        f'<li class="{f.severity}">{_e(f.text)}</li>' for f in sorted(findings, key=lambda f: f.severity != "warning")
    )
    return f'<ul class="findings">{items}</ul>'


def census_rows(analysis: Analysis) -> list[dict[str, object]]:
    """One row per census site, the same columns for every kind of unit.

    Rectifiers with a dead mask fill the dead columns; smooth units (GELU, SiLU)
    report their firing and near-zero rates; squashers their saturation; a site
    whose activation is unknown says so.
    """
    rows = []
    for a in analysis.activations or ():
        threshold = f"nearly dead (< {100 * a.nearly_dead_threshold:g}%)"
        rates = []
        if a.fire_rate is not None:
            rates.append(f"fires {100 * float(a.fire_rate.mean()):.1f}%")
        if a.zero_rate is not None:
            rates.append(f"near zero {100 * float(a.zero_rate.mean()):.1f}%")
        if a.saturation_rate is not None:
            rates.append(f"saturated {100 * float(a.saturation_rate.mean()):.1f}%")
        has_dead = a.dead_mask is not None
        rows.append(
            {
                "layer": a.layer,
                "activation": a.activation,
                "found by": a.found_by,
                "neurons": a.width,
                "dead": a.dead_count if has_dead else "-",
                threshold: a.nearly_dead_count() if has_dead else "-",
                "dead fraction": f"{100 * a.dead_fraction:.1f}%" if has_dead else "-",
                "mean rate": ", ".join(rates) or "-",
            }
        )
    return rows


def importance_rows(analysis: Analysis, k: int = 5) -> list[dict[str, object]]:
    names = analysis.model.feature_names
    report = analysis.importance
    if report is None:
        return []
    rows: list[dict[str, object]] = []
    for m in report.methods:
        if m.error is not None:
            rows.append(
                {
                    "method": METHOD_LABELS[m.method],
                    "top inputs": f"could not run: {m.error}",
                    "sanity (rank corr.)": "-",
                    "verdict": "-",
                    "delta": "-",
                }
            )
            continue
        sanity = m.sanity_correlation  # set whenever the method ran (no error)
        rows.append(
            {
                "method": METHOD_LABELS[m.method],
                "top inputs": ", ".join(report.feature_label(i, names) for i in m.ranking[:k]),
                "sanity (rank corr.)": f"{sanity:.2f}" if sanity is not None else "-",
                "verdict": "-" if sanity is None else "passes" if sanity <= SANITY_FAIL else "fails",
                "delta": f"{m.convergence_delta:.2g}" if m.convergence_delta is not None else "-",
            }
        )
    return rows


def top_token_rows(analysis: Analysis, method: MethodImportance, k: int = 15) -> list[dict[str, object]]:
    """The ``k`` tokens with the largest mean |attribution| by ``method`` (token analyses)."""
    report = analysis.importance
    if report is None or report.input_kind != "tokens" or method.error is not None:
        return []
    return [
        {"rank": r + 1, "token": text, "mean |attribution|": f"{mean_abs:.4g}", "mean attribution": f"{mean:+.4g}"}
        for r, (text, mean_abs, mean) in enumerate(F.top_tokens(report, method, k))
    ]


def token_blocks(analysis: Analysis, method: MethodImportance) -> list[str]:
    """A token analysis's HTML for ``method``: the top-token table and the stored examples'
    tokens highlighted by attribution (escaped; the value on hover)."""
    report = analysis.importance
    assert report is not None
    blocks = ["<h4>Tokens with the largest mean |attribution|</h4>", _table(top_token_rows(analysis, method))]
    n = min(len(report.example_inputs), len(method.examples))
    if n:
        blocks.append(
            f"<h4>The first {n} explained samples, tokens highlighted by attribution</h4>"
            "<p>Red raises the explained target, blue lowers it; stronger colour, larger |attribution| "
            "relative to the sample's largest. Hover a token for its value; padding is not shown.</p>"
        )
        names = analysis.model.class_names
        for i in range(n):
            tokens, scores, mask = F.stored_example(report, method, i)
            label = ""
            if report.example_labels is not None:
                value = report.example_labels[i]
                c = int(value)
                label = (
                    f" (label {_e(names[c] if 0 <= c < len(names) else c)})"
                    if analysis.model.task == "classification"
                    else f" (true {float(value):.4g})"
                )
            blocks.append(
                f'<div class="example"><b>Sample {i}</b>{label}'
                + F.tokens_html(F.highlighted_tokens(tokens, scores, mask))
                + "</div>"
            )
    return blocks


def pruning_rows(analysis: Analysis) -> list[dict[str, object]]:
    report = analysis.pruning
    rows: list[dict[str, object]] = []
    if report is None:
        return rows
    for i, s in enumerate(report.curves[0].sparsity):
        row: dict[str, object] = {"sparsity": f"{s:.0%}"}
        for curve in report.curves:
            row[f"{curve.scope} {report.metric_name}"] = F.format_metric(report.metric_name, float(curve.metric[i]))
            row[f"{curve.scope} params"] = int(curve.parameters_left[i])
        rows.append(row)
    return rows


WHATIF_FIGURES = 3  # the report draws the curves of this many features, the most important first


def whatif_text(analysis: Analysis) -> str:
    """What the what-if section shows, in one paragraph of plain text."""
    pd = analysis.whatif
    assert pd is not None
    return (
        f"Partial dependence (Friedman 2001): {pd.target} averaged over {pd.n_samples} samples while one "
        f"feature sweeps its observed range, the others kept; the thin lines are individual samples (ICE). "
        f"On the unedited samples the target has mean {pd.target_mean:.4g} and standard deviation "
        f"{pd.target_std:.4g}. Slope: the least-squares slope of the mean curve; effect: its maximum minus "
        f"its minimum."
    )


def whatif_table(analysis: Analysis, k: int = 10) -> list[dict[str, object]]:
    """The what-if table: the ``k`` most important features' curves (by importance, else by effect)."""
    pd = analysis.whatif
    assert pd is not None
    return F.whatif_rows(pd, ranked_rows(pd, importance_ranking(analysis.importance)), k)


def whatif_blocks(analysis: Analysis) -> list[str | go.Figure]:
    """The what-if section: the text, the table and the curves of the most important features."""
    pd = analysis.whatif
    assert pd is not None
    rows = ranked_rows(pd, importance_ranking(analysis.importance))
    blocks: list[str | go.Figure] = [f"<p>{_e(whatif_text(analysis))}</p>", _table(whatif_table(analysis))]
    blocks += [F.partial_dependence_figure(pd, int(pd.features[r])) for r in rows[:WHATIF_FIGURES]]
    return blocks


def analysis_sections(analysis: Analysis) -> list[Section]:
    """Every section of a report, in reading order."""
    a = analysis
    sections = []
    summary = Section("summary", "Summary and findings")
    data = (
        f"Evaluated on {_e(describe_samples(a.data.n_samples, a.data.split, a.data.name))}: "
        f"{_e(score_texts(a.data)[0])} <b>{_e(score_texts(a.data)[1])}</b>{_e(score_texts(a.data)[2])}."
        if a.data
        else "No evaluation data was available: only the weight sections are filled."
    )
    summary.blocks += [
        f"<p>{_e(a.model.architecture)} from <code>{_e(a.model.source)}</code>. {data} "
        f"{a.parameters.total_parameters:,} parameters.</p>",
        _findings_html(a.findings),
    ]
    sections.append(summary)

    arch = Section("architecture", "Architecture and parameters")
    arch.blocks += [
        # the chain diagram reads best for an MLP; the module tree (dense share of parameters) fits any model
        *([F.architecture_figure(a.model)] if F.reads_as_chain(a.model, a.parameters) else []),
        F.module_tree_figure(a.model, a.parameters),
        "<p>A linear layer with n inputs and m neurons has an m × n weight and m biases: "
        "m × (n + 1) parameters (m × n without a bias; a weight shared by several layers is "
        "counted once, in the first).</p>",
        _table(
            F.parameter_rows(a.parameters), {"inputs n", "outputs m", "weights", "biases", "parameters", "MACs/sample"}
        ),
    ]
    sections.append(arch)

    if a.training is not None:
        sections.append(Section("training", "Training curves", [F.training_figure(a.training)]))

    if a.weights:
        weights = Section("weights", "Weight maps")
        weights.blocks += [
            "<p>Spectra are exact (every singular value to 1e-4 relative). alpha is the exponent of a power law "
            "fitted to the tail of each layer's eigenvalues s² (maximum likelihood, the tail's start chosen by the "
            "smallest Kolmogorov-Smirnov distance; Martin &amp; Mahoney 2021, as WeightWatcher reports it): "
            "about 2 to 6 in well-trained layers, above 6 close to random, below 2 very heavy tailed.</p>",
            _table(F.spectrum_rows(a.weights), {"tail eigenvalues"}),
        ]
        for layer in a.weights:
            weights.blocks += [
                f"<h3>{_e(layer.layer)}</h3>",
                F.weight_heatmap_figure(layer),
                F.weight_histogram_figure(layer),
            ]
            if layer.neuron_images is not None:
                weights.blocks.append(F.neuron_images_figure(layer))
        sections.append(weights)

    if a.activations:
        dead = Section("dead", "Dead ReLUs and saturation")
        threshold = a.activations[0].nearly_dead_threshold
        dead.blocks += [
            "<p>A neuron is dead when it fires (pre-activation &gt; 0) on none of the evaluation "
            "samples: it passes no signal and receives no gradient. Remedies: a lower learning rate, "
            "LeakyReLU or GELU, He initialisation, batch norm; or prune it.</p>",
            _table(census_rows(a), {"neurons", "dead"}),
            F.dead_summary_figure(a.activations, threshold),
        ]
        dead.blocks += [F.firing_strip_figure(layer, threshold) for layer in a.activations]
        if a.deaths is not None:
            dead.blocks.append(F.deaths_figure(a.deaths))
        sections.append(dead)

    if a.importance is not None:
        imp = Section("importance", "Feature importance")
        imp.blocks += [
            f"<p>Attributions explain {_e(a.model.target)} from {_e(a.importance.baseline)}, "
            f"over {a.importance.n_samples} samples. The sanity check (Adebayo et "
            f"al. 2018) reruns each method on a copy with re-initialised weights: a rank correlation "
            f"above {SANITY_FAIL} means the map shows the input more than the model.</p>",
            _table(importance_rows(a)),
            F.sanity_figure(a.importance),
        ]
        for m in a.importance.methods:
            if m.error is not None:
                continue
            imp.blocks += [
                f"<h3>{_e(METHOD_LABELS[m.method])} (sanity {m.sanity_correlation:.2f})</h3>",
                F.importance_bar_figure(m, a.model.feature_names, report=a.importance),
            ]
            shape = F.map_shape(a.importance, a.model.image_shape)
            if shape is not None:
                imp.blocks.append(
                    F.importance_map_figure(m.global_importance, shape, f"{METHOD_LABELS[m.method]} on the input grid")
                )
            if a.importance.input_kind == "tokens":
                imp.blocks += token_blocks(a, m)
        sections.append(imp)

    if a.whatif is not None:
        sections.append(Section("whatif", "What-if (partial dependence)", whatif_blocks(a)))

    if a.pruning is not None:
        sections.append(Section("pruning", "Pruning", [F.pruning_figure(a.pruning), _table(pruning_rows(a))]))
    if a.activations:
        sections.append(
            Section(
                "activations",
                "Activations by class" if a.model.task == "classification" else "Activations",
                [
                    F.projection_figure(
                        layer,
                        a.model.class_names,
                        uncoloured="" if a.model.task == "classification" else "no classes to colour by",
                    )
                    for layer in a.activations
                ],
            )
        )
    return sections


def comparison_sections(c: Comparison) -> list[Section]:
    summary = Section("summary", "Summary")
    acc = (
        f" Accuracy {c.accuracy_a:.2%} → {c.accuracy_b:.2%}."
        if c.accuracy_a is not None and c.accuracy_b is not None
        else ""
    )
    summary.blocks += [
        f"<p>a: {_e(c.architecture_a)} from <code>{_e(c.source_a)}</code><br>b: "
        f"{_e(c.architecture_b)} from <code>{_e(c.source_b)}</code><br>Parameters "
        f"{c.parameters_a:,} → {c.parameters_b:,}.{acc}</p>",
        _findings_html(c.findings),
    ]
    layers = Section("layers", "Per-layer differences", [_table(comparison_rows(c))])
    for layer in c.layers:
        if layer.change is not None and layer.relative_change is not None:  # both set when the shapes match
            layers.blocks.append(
                F.magnitude_map_figure(
                    layer.change,
                    f"{layer.layer}: |W_b − W_a| (relative change {100 * layer.relative_change:.1f}%)",
                    "|Δw|",
                )
            )
    sections = [summary, layers]
    if c.importance:
        sections.append(Section("importance", "Feature-importance ranks", [_table(shift_rows(c))]))
    return sections


def comparison_rows(c: Comparison) -> list[dict[str, object]]:
    return [
        {
            "layer": layer.layer,
            "shape a": "×".join(map(str, layer.shape_a)) if layer.shape_a else "-",
            "shape b": "×".join(map(str, layer.shape_b)) if layer.shape_b else "-",
            "params a": layer.parameters_a,
            "params b": layer.parameters_b,
            "zero weights a → b": (
                f"{layer.zero_weights_a:,} → {layer.zero_weights_b:,}"
                if layer.zero_weights_a is not None and layer.zero_weights_b is not None
                else "-"
            ),
            "weight change": f"{100 * layer.relative_change:.1f}%" if layer.relative_change is not None else "-",
            "dead a → b": f"{layer.dead_a} → {layer.dead_b}"
            if layer.dead_a is not None and layer.dead_b is not None
            else "-",
            "died": ", ".join(map(str, layer.died[:12])) + ("…" if len(layer.died) > 12 else ""),
            "revived": ", ".join(map(str, layer.revived[:12])) + ("…" if len(layer.revived) > 12 else ""),
        }
        for layer in c.layers
    ]


def shift_rows(c: Comparison) -> list[dict[str, object]]:
    names = c.feature_names
    return [
        {
            "method": METHOD_LABELS[s.method],
            "rank correlation": f"{s.rank_correlation:.2f}",
            "top in a": ", ".join(names[i] for i in s.top_a),
            "top in b": ", ".join(names[i] for i in s.top_b),
        }
        for s in c.importance
    ]


# --------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1200px;margin:0 auto;padding:0 20px;color:#222}
h1{margin-bottom:4px} .meta{color:#666;margin-top:0}
nav.toc{background:#f6f8fa;border:1px solid #ddd;padding:8px 16px;border-radius:6px}
table{border-collapse:collapse;margin:10px 0;font-size:14px} th,td{border:1px solid #ccc;padding:4px 8px;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums} thead th{background:#f0f0f0}
ul.findings li.warning{color:#b30000} section{margin-top:28px} .figure{margin:8px 0}
@media print{nav.toc,.modebar{display:none} section{break-before:page} section:first-of-type{break-before:auto}
 .figure,table{break-inside:avoid}
 body{max-width:none;padding:0} a{color:inherit;text-decoration:none}}
"""


def render_html(title: str, sections: list[Section]) -> str:
    toc = "".join(f'<li><a href="#{s.id}">{_e(s.title)}</a></li>' for s in sections)
    parts = []
    counter = 0
    for s in sections:
        body = []
        for block in s.blocks:
            if isinstance(block, go.Figure):
                counter += 1
                body.append(
                    '<div class="figure">'
                    + pio.to_html(
                        block,
                        full_html=False,
                        include_plotlyjs=False,
                        div_id=f"fig-{counter}",
                        config={"displaylogo": False, "responsive": True},
                    )
                    + "</div>"
                )
            else:
                body.append(block)
        parts.append(f'<section id="{s.id}"><h2>{_e(s.title)}</h2>{"".join(body)}</section>')
    from plotly.offline import get_plotlyjs

    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="generator" content="dense-inspector">'
        f"<title>{_e(title)}</title>"
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style>'
        f'<script type="text/javascript">{get_plotlyjs()}</script></head><body>'
        f'<h1>{_e(title)}</h1><p class="meta">dense-inspector {__version__}, {stamp}</p>'
        f'<nav class="toc"><b>Contents</b><ol>{toc}</ol></nav>{"".join(parts)}</body></html>'
    )


def to_html(analysis: Analysis) -> str:
    return render_html(f"dense-inspector report: {analysis.model.architecture}", analysis_sections(analysis))


def comparison_html(c: Comparison) -> str:
    return render_html("dense-inspector comparison", comparison_sections(c))


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
        f"<p>Recorded by {_e(', '.join(sorted({str(r.meta.get('source', 'a run writer')) for r in runs})))}.</p>",
        _table(rows, {"last step", "records", "layers", "snapshots", "warnings"}),
        *[F.live_curves_figure(runs, name) for name in ACTIVATION_STATISTICS if _recorded(runs, name)],
        F.live_curves_figure(runs, "grad_norm"),
        F.loss_lr_figure(runs),
    ]
    warnings = F.warning_rows(runs)
    section.blocks.append("<h3>Warnings, newest first</h3>")
    section.blocks.append(_table(warnings) if warnings else "<p>No warnings were raised.</p>")
    first = runs[0]
    section.blocks.append(
        f"<p>The sections below analyse the weights of {_e(first.name)} at step {first.latest_snapshot.step} "
        "(its newest snapshot; weights only: a snapshot holds no data).</p>"
        if first.latest_snapshot is not None
        else f"<p>{_e(first.name)} has no weight snapshot, so the report has no weight analysis "
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


# --------------------------------------------------------------------------- Markdown


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


def _md_table(rows: list[dict[str, object]]) -> str:
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


def _md_findings(findings: tuple[Finding, ...] | list[Finding]) -> str:
    return "\n".join(
        f"- {'**warning:** ' if f.severity == 'warning' else ''}{md_escape(f.text)}"
        for f in sorted(findings, key=lambda f: f.severity != "warning")
    )


def to_markdown(analysis: Analysis) -> str:
    a = analysis
    out = [
        _MD_MARKER,
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
        _md_findings(a.findings),
        "",
        "## Parameters",
        "",
        "A layer with n inputs and m neurons has m × (n + 1) parameters (m × n without a bias; a weight "
        "shared by several layers is counted once, in the first).",
        "",
        _md_table(F.parameter_rows(a.parameters)),
    ]
    if a.activations:
        out += ["", "## Dead ReLUs and saturation", "", _md_table(census_rows(a))]
    if a.importance:
        out += ["", "## Feature importance", "", _md_table(importance_rows(a))]
        if a.importance.input_kind == "tokens":
            for m in a.importance.methods:
                if m.error is not None:
                    continue
                out += ["", f"### {METHOD_LABELS[m.method]}: top tokens", "", _md_table(top_token_rows(a, m))]
                for i in range(min(len(a.importance.example_inputs), len(m.examples), 4)):
                    spans = F.highlighted_tokens(*F.stored_example(a.importance, m, i))
                    text = " ".join(f"{md_code(t)}&nbsp;{score:+.3g}" for t, score, _ in spans)
                    out += ["", f"Sample {i}: {text}"]
    if a.whatif is not None:
        out += ["", "## What-if (partial dependence)", "", md_escape(whatif_text(a)), "", _md_table(whatif_table(a))]
    if a.pruning:
        out += ["", "## Pruning", "", _md_table(pruning_rows(a))]
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
    return "\n".join(out) + "\n"


def comparison_markdown(c: Comparison) -> str:
    out = [
        _MD_MARKER,
        "# dense-inspector comparison",
        "",
        f"- a: {md_escape(c.architecture_a, line_start=False)} ({md_code(c.source_a)})",
        f"- b: {md_escape(c.architecture_b, line_start=False)} ({md_code(c.source_b)})",
        f"- parameters: {c.parameters_a:,} → {c.parameters_b:,}",
    ]
    if c.accuracy_a is not None and c.accuracy_b is not None:
        out.append(f"- accuracy: {c.accuracy_a:.2%} → {c.accuracy_b:.2%}")
    out += [
        "",
        "## Findings",
        "",
        _md_findings(c.findings),
        "",
        "## Per-layer differences",
        "",
        _md_table(comparison_rows(c)),
    ]
    if c.importance:
        out += ["", "## Feature-importance ranks", "", _md_table(shift_rows(c))]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- static output


def find_browser() -> str:
    """A Chrome or Chromium executable, for PDF and PNG output."""
    candidates = [os.environ.get("BROWSER_PATH", "")] + [
        shutil.which(n) or ""
        for n in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
    ]
    for c in candidates:
        if c and os.path.exists(c):
            return c
    raise InspectorError(
        "PDF and PNG reports need Chrome or Chromium (Debian: apt-get install chromium; "
        "or set BROWSER_PATH); HTML, md and json reports work without one"
    )


def write_pdf(html_text: str, path: Path, *, force: bool = False) -> Path:
    """Print the HTML report to PDF with headless Chromium, after its figures have drawn."""
    browser = find_browser()
    with (
        tempfile.TemporaryDirectory() as tmp,
        atomic_path(path, force=force, ours=functools.partial(is_own_report, fmt="pdf")) as out,
    ):
        page = Path(tmp) / "report.html"
        page.write_text(html_text, encoding="utf-8")
        cmd = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp}/profile",
            "--no-pdf-header-footer",
            "--virtual-time-budget=20000",
            f"--print-to-pdf={out}",
            page.as_uri(),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0 or not out.exists() or out.stat().st_size == 0:
            raise InspectorError(
                f"{browser} could not print the report to PDF: "
                f"{(proc.stderr.strip().splitlines() or ['no output'])[-1][:200]}"
            )
    return path


def _figure_files(directory: Path, names: Iterable[str] = ()) -> list[Path]:
    """The files in ``directory`` named like a report's figures, or named in ``names``."""
    if not directory.is_dir():
        return []
    names = set(names)
    return sorted(p for p in directory.iterdir() if _FIGURE_NAME.match(p.name) or p.name in names)


def _is_png(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(len(_PNG_SIGNATURE)) == _PNG_SIGNATURE
    except OSError:
        return False


def check_png_folder(
    directory: str | os.PathLike[str],
    *,
    force: bool = False,
    inputs: Iterable[str | os.PathLike[str]] = (),
    names: Iterable[str] = (),
) -> Path:
    """Raise unless :func:`write_pngs` could write ``names`` into ``directory``; creates nothing.

    The folder may hold other files: only figure files (``NN-section.png``, PNG images)
    are replaced, and only with ``force``.
    """
    directory = Path(directory)
    check_output_folder(directory)
    figures = _figure_files(directory, names)
    for figure in figures:
        refuse_inputs(figure, inputs)
    if figures and not force:
        raise InspectorError(
            f"{directory} already holds report figures ({figures[0].name}); pass --force to overwrite them"
        )
    foreign = [f for f in figures if f.is_symlink() or not f.is_file() or not _is_png(f)]
    if foreign:
        raise InspectorError(
            f"{foreign[0]} is not a figure dense-inspector wrote; move it away or choose another --out"
        )
    return directory


def write_pngs(sections: list[Section], directory: Path, *, force: bool = False) -> list[Path]:
    """Every figure as ``NN-section.png`` in ``directory``, through kaleido.

    Each image is rendered to a temporary and renamed into place, so every figure file is
    whole; with ``force``, figure files of an earlier report that this one does not have
    are removed. Other files in the folder are never touched.
    """
    find_browser()
    figures = [(s.id, b) for s in sections for b in s.blocks if isinstance(b, go.Figure)]
    names = [f"{i:02d}-{sid}.png" for i, (sid, _) in enumerate(figures, start=1)]
    directory = check_png_folder(directory, force=force, names=names)
    old = _figure_files(directory)
    make_output_folder(directory)
    temps = [directory / temporary_name() for _ in figures]
    try:
        try:
            pio.write_images([fig for _, fig in figures], temps, format="png", width=1100, scale=1)
        except OSError:
            raise
        except Exception as exc:  # kaleido reports browser problems in its own types
            raise InspectorError(f"kaleido could not render the figures: {str(exc).splitlines()[0][:200]}") from None
        for tmp, name in zip(temps, names):
            fsync_file(tmp)
            os.replace(tmp, directory / name)
    except OSError as exc:
        raise InspectorError(f"could not write the figures into {directory}: {describe_os_error(exc)}") from None
    finally:
        for tmp in temps:
            with contextlib.suppress(OSError):
                tmp.unlink()
    for stale in old:
        if stale.name not in names:
            with contextlib.suppress(OSError):
                stale.unlink()
    return [directory / name for name in names]


def is_own_report(path: Path, fmt: str) -> bool:
    """Whether ``path`` is a ``fmt`` report this module wrote, from its first bytes only.

    HTML carries a generator meta, Markdown a leading comment, JSON starts with its schema key.
    Chromium's PDF keeps no marker we can read back cheaply, so any PDF counts as ours.
    """
    head = read_prefix(path)
    if fmt == "html":
        return _HTML_MARKER in head
    if fmt == "md":
        return head.startswith(_MD_MARKER.encode())
    if fmt == "json":
        return head.startswith(b'{"schema_version": ')
    if fmt == "pdf":
        return head.startswith(b"%PDF-")
    return False


def render_text(analysis: Analysis | Comparison, fmt: str) -> str:
    """The report as text, for the text formats (html, md, json)."""
    if fmt == "json":
        return to_json_document(analysis)
    if fmt == "md":
        return comparison_markdown(analysis) if isinstance(analysis, Comparison) else to_markdown(analysis)
    if fmt == "html":
        return comparison_html(analysis) if isinstance(analysis, Comparison) else to_html(analysis)
    raise InspectorError(f"{fmt} reports are binary; give a file name to --out, not '-'")


def write_report(
    analysis: Analysis | Comparison, path: str | os.PathLike[str], fmt: str | None = None, *, force: bool = False
) -> Path:
    """Write ``analysis`` (or a comparison) as ``fmt`` (default: from the extension), atomically."""
    path = Path(path)
    fmt = format_for(path, fmt)
    if fmt == "png":
        sections = comparison_sections(analysis) if isinstance(analysis, Comparison) else analysis_sections(analysis)
        write_pngs(sections, path, force=force)
        return path
    ours = functools.partial(is_own_report, fmt=fmt)
    if fmt == "pdf":
        text = comparison_html(analysis) if isinstance(analysis, Comparison) else to_html(analysis)
        return write_pdf(text, path, force=force)
    return write_text_atomic(path, render_text(analysis, fmt), force=force, ours=ours)
