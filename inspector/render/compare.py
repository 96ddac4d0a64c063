"""The report of a comparison of two analyses (two epochs, or before and after pruning), HTML and Markdown."""

from __future__ import annotations

from inspector import figures as F
from inspector.analysis.compare import Comparison
from inspector.analysis.methods import METHOD_LABELS
from inspector.render.html import Section, escape, findings_html, html_table, render_html
from inspector.render.markdown import MD_MARKER, md_code, md_escape, md_findings, md_table


def comparison_sections(c: Comparison) -> list[Section]:
    summary = Section("summary", "Summary")
    acc = (
        f" Accuracy {c.accuracy_a:.2%} → {c.accuracy_b:.2%}."
        if c.accuracy_a is not None and c.accuracy_b is not None
        else ""
    )
    summary.blocks += [
        f"<p>a: {escape(c.architecture_a)} from <code>{escape(c.source_a)}</code><br>b: "
        f"{escape(c.architecture_b)} from <code>{escape(c.source_b)}</code><br>Parameters "
        f"{c.parameters_a:,} → {c.parameters_b:,}.{acc}</p>",
        findings_html(c.findings),
    ]
    layers = Section("layers", "Per-layer differences", [html_table(comparison_rows(c))])
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
        sections.append(Section("importance", "Feature-importance ranks", [html_table(shift_rows(c))]))
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

    def name(i: int) -> str:  # x<i> for a feature without a name
        return names[i] if i < len(names) else f"x{i}"

    return [
        {
            "method": METHOD_LABELS[s.method],
            "rank correlation": f"{s.rank_correlation:.2f}",
            "top in a": ", ".join(map(name, s.top_a)),
            "top in b": ", ".join(map(name, s.top_b)),
        }
        for s in c.importance
    ]


def comparison_html(c: Comparison) -> str:
    return render_html("dense-inspector comparison", comparison_sections(c))


def comparison_markdown(c: Comparison) -> str:
    out = [
        MD_MARKER,
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
        md_findings(c.findings),
        "",
        "## Per-layer differences",
        "",
        md_table(comparison_rows(c)),
    ]
    if c.importance:
        out += ["", "## Feature-importance ranks", "", md_table(shift_rows(c))]
    return "\n".join(out) + "\n"
