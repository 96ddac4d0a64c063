"""What each neuron fires on: one neuron's top examples (firing token highlighted in its context), and
the most and least selective neurons of each layer, for the dashboard's Neurons view and the report.

Reads :class:`~inspector.analysis.top_examples.TopExamples` only; nothing is recomputed. The report
panel registers itself (:func:`~inspector.figures.panels.report_panel`).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import TYPE_CHECKING

from inspector.analysis.top_examples import CONTEXT, TopExamples
from inspector.figures.panels import Blocks, report_panel

if TYPE_CHECKING:
    from inspector.analysis import Analysis

FIRING = "rgba(255, 193, 7, 0.85)"  # amber: the token the neuron fires on
SHOWN = 3  # neurons per layer and end (most / least selective) in the report
EXAMPLES_SHOWN = 3  # examples of each of those neurons in the HTML report


@dataclass(frozen=True)
class ExampleLine:
    """One example as a view shows it: ``rank`` (0 = strongest), ``value``, ``sample``, ``position``
    (``-1``: the whole sample) and its ``tokens`` (context texts, padding left out) with ``firing``
    the index of the firing token among them (``-1``: none)."""

    rank: int
    value: float
    sample: int
    position: int
    tokens: tuple[str, ...]
    firing: int


def example_lines(top: TopExamples, neuron: int) -> list[ExampleLine]:
    """``neuron``'s examples, strongest first, with the context tokens that exist (no ``-1`` slots)."""
    lines = []
    for rank, example in enumerate(top.examples(neuron)):
        kept = [(t, text) for t, text in enumerate(example.tokens) if text != ""]
        firing = next((i for i, (t, _) in enumerate(kept) if t == CONTEXT), -1)
        lines.append(
            ExampleLine(rank, example.value, example.sample, example.position, tuple(x for _, x in kept), firing)
        )
    return lines


def example_heading(line: ExampleLine) -> str:
    where = f"sample {line.sample}" + (f", position {line.position}" if line.position >= 0 else "")
    return f"{line.rank + 1}. {line.value:.4g} ({where})"


def examples_html(top: TopExamples, neuron: int, limit: int | None = None) -> str:
    """``neuron``'s examples as HTML lines, the firing token highlighted; every text is escaped."""
    parts = []
    for line in example_lines(top, neuron)[:limit]:
        tokens = " ".join(
            f'<span class="firing" style="background:{FIRING};padding:1px 3px;border-radius:3px;font-weight:600">'
            f"{html.escape(text)}</span>"
            if i == line.firing
            else html.escape(text)
            for i, text in enumerate(line.tokens)
        )
        parts.append(f'<div class="example"><b>{html.escape(example_heading(line))}</b> {tokens}</div>')
    return "".join(parts)


def selective_rows(analysis: Analysis, shown: int = SHOWN) -> list[dict[str, object]]:
    """Per layer with top examples, its ``shown`` most and ``shown`` least selective neurons:
    layer, which end, neuron, selectivity, what it fires on."""
    rows: list[dict[str, object]] = []
    for census in analysis.activations or ():
        top = census.top_examples
        if top is None or top.width == 0:
            continue
        most = [int(j) for j in top.most_selective(shown)]
        least = [int(j) for j in top.least_selective(shown) if int(j) not in most]
        for end, neurons in (("most selective", most), ("least selective", least)):
            for j in neurons:
                rows.append(
                    {
                        "layer": top.layer,
                        "which": end,
                        "neuron": j,
                        "selectivity": f"{float(top.selectivity[j]):.2f}",
                        "fires on": top.summary[j],
                    }
                )
    return rows


def _table(rows: list[dict[str, object]]) -> str:
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r.values()) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


SELECTIVITY_TEXT = (
    "Each neuron's top-{k} activating examples were kept over all the data. Selectivity: for tokens, the "
    "share of the top examples whose firing token is the neuron's most frequent one (1: a single token); "
    "for samples, how far the strongest example stands above the k-th, relative to the neuron's mean "
    "activation. The dashboard's Neurons view shows every neuron's examples."
)


@report_panel("top-examples", "What neurons fire on", order=35)
def top_examples_panel(analysis: Analysis) -> Blocks | None:
    """The most and least selective neurons of each layer, and the most selective ones' top examples."""
    rows = selective_rows(analysis)
    if not rows:
        return None
    k = next(c.top_examples.k for c in analysis.activations or () if c.top_examples is not None)
    blocks: Blocks = [f"<p>{html.escape(SELECTIVITY_TEXT.format(k=k))}</p>", _table(rows)]
    for census in analysis.activations or ():
        top = census.top_examples
        if top is None or top.context is None or top.width == 0:
            continue
        j = int(top.most_selective(1)[0])
        blocks.append(
            f"<h4>{html.escape(top.layer)}, neuron {j} ({html.escape(top.summary[j])})</h4>"
            + examples_html(top, j, EXAMPLES_SHOWN)
        )
    return blocks
