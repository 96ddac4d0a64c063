"""The HTML report: sections of text blocks and figures, one self-contained page.

plotly.js is inlined, so the file makes no network request; a table of contents and a
print stylesheet. Figures come from :mod:`inspector.figures`, the builders the dashboard uses.
"""

from __future__ import annotations

import datetime as _dt
import html
from dataclasses import dataclass, field

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from inspector import figures as F
from inspector._version import __version__
from inspector.analysis import Analysis
from inspector.analysis.findings import SANITY_FAIL, Finding, describe_samples, score_texts
from inspector.analysis.importance import MethodImportance
from inspector.analysis.methods import METHOD_LABELS
from inspector.analysis.whatif import importance_ranking, ranked_rows
from inspector.core.adapters import adapter_for
from inspector.figures.panels import report_panels
from inspector.render.rows import census_rows, importance_rows, pruning_rows, top_token_rows, whatif_table, whatif_text

# What marks an HTML report as ours, so that --force replaces it and never a user's file of the same name.
HTML_MARKER = b'<meta name="generator" content="dense-inspector">'


@dataclass
class Section:
    """A titled part of a report: text blocks (HTML) and figures, in order."""

    id: str
    title: str
    blocks: list[str | go.Figure] = field(default_factory=list)


def escape(text: object) -> str:
    return html.escape(str(text))


def html_table(rows: list[dict[str, object]], numeric: set[str] | None = None) -> str:
    if not rows:
        return ""
    numeric = numeric or set()
    head = "".join(f"<th>{escape(k)}</th>" for k in rows[0])
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="{"num" if k in numeric else ""}">'
            f"{escape(f'{v:,}' if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else v)}</td>"
            for k, v in r.items()
        )
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def findings_html(findings: tuple[Finding, ...] | list[Finding]) -> str:
    items = "".join(
        f'<li class="{f.severity}">{escape(f.text)}</li>'
        for f in sorted(findings, key=lambda f: f.severity != "warning")
    )
    return f'<ul class="findings">{items}</ul>'


def token_blocks(analysis: Analysis, method: MethodImportance) -> list[str]:
    """A token analysis's HTML for ``method``: the top-token table and the stored examples'
    tokens highlighted by attribution (escaped; the value on hover)."""
    report = analysis.importance
    assert report is not None
    blocks = ["<h4>Tokens with the largest mean |attribution|</h4>", html_table(top_token_rows(analysis, method))]
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
                    f" (label {escape(names[c] if 0 <= c < len(names) else c)})"
                    if analysis.model.task == "classification"
                    else f" (true {float(value):.4g})"
                )
            blocks.append(
                f'<div class="example"><b>Sample {i}</b>{label}'
                + F.tokens_html(F.highlighted_tokens(tokens, scores, mask))
                + "</div>"
            )
    return blocks


WHATIF_FIGURES = 3  # the report draws the curves of this many features, the most important first


def whatif_blocks(analysis: Analysis) -> list[str | go.Figure]:
    """The what-if section: the text, the table and the curves of the most important features."""
    pd = analysis.whatif
    assert pd is not None
    rows = ranked_rows(pd, importance_ranking(analysis.importance))
    blocks: list[str | go.Figure] = [f"<p>{escape(whatif_text(analysis))}</p>", html_table(whatif_table(analysis))]
    blocks += [F.partial_dependence_figure(pd, int(pd.features[r])) for r in rows[:WHATIF_FIGURES]]
    return blocks


def analysis_sections(analysis: Analysis) -> list[Section]:
    """Every section of a report, in reading order."""
    a = analysis
    sections = []
    summary = Section("summary", "Summary and findings")
    data = (
        f"Evaluated on {escape(describe_samples(a.data.n_samples, a.data.split, a.data.name))}: "
        f"{escape(score_texts(a.data)[0])} <b>{escape(score_texts(a.data)[1])}</b>{escape(score_texts(a.data)[2])}."
        if a.data
        else "No evaluation data was available: only the weight sections are filled."
    )
    summary.blocks += [
        f"<p>{escape(a.model.architecture)} from <code>{escape(a.model.source)}</code>. {data} "
        f"{a.parameters.total_parameters:,} parameters.</p>",
        findings_html(a.findings),
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
        html_table(
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
            html_table(F.spectrum_rows(a.weights), {"tail eigenvalues"}),
        ]
        for layer in a.weights:
            weights.blocks += [
                f"<h3>{escape(layer.layer)}</h3>",
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
            html_table(census_rows(a), {"neurons", "dead"}),
            F.dead_summary_figure(a.activations, threshold),
        ]
        dead.blocks += [F.firing_strip_figure(layer, threshold) for layer in a.activations]
        if a.deaths is not None:
            dead.blocks.append(F.deaths_figure(a.deaths))
        sections.append(dead)

    if a.importance is not None:
        imp = Section("importance", "Feature importance")
        imp.blocks += [
            f"<p>Attributions explain {escape(a.model.target)} from {escape(a.importance.baseline)}, "
            f"over {a.importance.n_samples} samples. The sanity check (Adebayo et "
            f"al. 2018) reruns each method on a copy with re-initialised weights: a rank correlation "
            f"above {SANITY_FAIL} means the map shows the input more than the model.</p>",
            html_table(importance_rows(a)),
            F.sanity_figure(a.importance),
        ]
        for m in a.importance.methods:
            if m.error is not None:
                continue
            imp.blocks += [
                f"<h3>{escape(METHOD_LABELS[m.method])} (sanity {m.sanity_correlation:.2f})</h3>",
                F.importance_bar_figure(m, a.model.feature_names, report=a.importance),
            ]
            shape = F.map_shape(a.importance, a.model.image_shape)
            if shape is not None:
                imp.blocks.append(
                    F.importance_map_figure(m.global_importance, shape, f"{METHOD_LABELS[m.method]} on the input grid")
                )
            if adapter_for(a.importance.input_kind).display == "tokens":
                imp.blocks += token_blocks(a, m)
        sections.append(imp)

    if a.whatif is not None:
        sections.append(Section("whatif", "What-if (partial dependence)", whatif_blocks(a)))

    if a.pruning is not None:
        sections.append(Section("pruning", "Pruning", [F.pruning_figure(a.pruning), html_table(pruning_rows(a))]))
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
    for panel in report_panels():  # the sections figure modules add (inspector/figures/panels.py)
        blocks = panel.build(a)
        if blocks is not None:
            sections.append(Section(panel.name, panel.title, blocks))
    return sections


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
    toc = "".join(f'<li><a href="#{s.id}">{escape(s.title)}</a></li>' for s in sections)
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
        parts.append(f'<section id="{s.id}"><h2>{escape(s.title)}</h2>{"".join(body)}</section>')
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="generator" content="dense-inspector">'
        f"<title>{escape(title)}</title>"
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style>'
        f'<script type="text/javascript">{get_plotlyjs()}</script></head><body>'
        f'<h1>{escape(title)}</h1><p class="meta">dense-inspector {__version__}, {stamp}</p>'
        f'<nav class="toc"><b>Contents</b><ol>{toc}</ol></nav>{"".join(parts)}</body></html>'
    )


def to_html(analysis: Analysis) -> str:
    return render_html(f"dense-inspector report: {analysis.model.architecture}", analysis_sections(analysis))
