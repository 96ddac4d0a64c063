"""Token attributions as text: highlighted spans (dashboard Text view and HTML report) and the top tokens.

A token's colour says the sign of its attribution (red: pushes the explained target up,
blue: down) and its opacity the size, relative to the largest |attribution| among the
sample's real tokens. Padding is never shown.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from inspector.analysis.importance import ImportanceReport, MethodImportance
from inspector.analysis.methods import METHOD_LABELS
from inspector.core.adapters import adapter_for
from inspector.figures.common import _base, empty_figure

POSITIVE = (214, 39, 40)  # red
NEGATIVE = (33, 102, 172)  # blue

Span = tuple[str, float, str]


def highlighted_tokens(tokens: Sequence[str], scores: np.ndarray, mask: np.ndarray | None = None) -> list[Span]:
    """``(text, score, css colour)`` for each real token of one sample, in order.

    ``tokens`` ``(T,)`` texts, ``scores`` ``(T,)`` attributions, ``mask`` ``(T,)`` bool (True at
    real tokens; ``None``: all real). The colour is ``rgba(red|blue, |score| / max |score|)``,
    the maximum taken over the real tokens (transparent when every score is zero).
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(tokens) != scores.size:
        raise ValueError(f"{len(tokens)} tokens but {scores.size} scores")
    real = np.ones(scores.size, bool) if mask is None else np.asarray(mask, bool).reshape(-1)
    shown = np.flatnonzero(real)
    finite = np.nan_to_num(scores[shown], nan=0.0, posinf=0.0, neginf=0.0)
    limit = float(np.abs(finite).max()) if finite.size else 0.0
    spans: list[Span] = []
    for i, value in zip(shown, finite):
        alpha = abs(value) / limit if limit > 0 else 0.0
        r, g, b = POSITIVE if value >= 0 else NEGATIVE
        spans.append((str(tokens[int(i)]), float(scores[i]), f"rgba({r}, {g}, {b}, {alpha:.3f})"))
    return spans


def score_title(score: float) -> str:
    """The hover text of a token: its attribution, to six significant digits."""
    return f"{score:.6g}"


def tokens_html(spans: Sequence[Span]) -> str:
    """The spans as HTML ``<span>`` elements; the token text and title are escaped."""
    parts = [
        f'<span class="token" title="{html.escape(score_title(score))}" '
        f'style="background:{colour};padding:1px 2px;margin:1px;border-radius:3px">{html.escape(text)}</span>'
        for text, score, colour in spans
    ]
    return '<p class="tokens" style="line-height:1.9">' + " ".join(parts) + "</p>"


def stored_example(
    report: ImportanceReport, method: MethodImportance, i: int
) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """Stored example ``i`` of a token analysis: ``(token texts (T,), scores (T,), mask (T,))``.

    The texts come from the report's ``token_ids``/``feature_names`` (every real token of an
    explained sample is among them); a padding position's text is ``""`` and its mask False.
    """
    ids = np.asarray(report.example_inputs[i]).astype(np.int64).reshape(-1)
    mask = (
        np.ones(ids.size, bool) if report.example_mask is None else np.asarray(report.example_mask[i], bool).reshape(-1)
    )
    known = np.asarray(report.token_ids, dtype=np.int64)
    where = np.clip(np.searchsorted(known, ids), 0, max(len(known) - 1, 0))
    texts = tuple(
        (
            report.feature_names[where[t]]
            if len(known) and known[where[t]] == ids[t] and where[t] < len(report.feature_names)
            else f"#{ids[t]}"
        )
        if mask[t]
        else ""
        for t in range(ids.size)
    )
    return texts, np.asarray(method.examples[i], dtype=np.float64).reshape(-1), mask


def top_tokens(report: ImportanceReport, method: MethodImportance, k: int = 20) -> list[tuple[str, float, float]]:
    """The ``k`` tokens with the largest mean |attribution| over the data: ``(text, mean |a|, mean a)``."""
    order = method.ranking[:k]
    return [
        (report.feature_label(int(i)), float(method.global_importance[i]), float(method.mean_attribution[i]))
        for i in order
    ]


def top_tokens_figure(report: ImportanceReport, method: str, k: int = 20) -> go.Figure:
    """Horizontal bars of the ``k`` tokens with the largest mean |attribution| (from ``global_importance``
    over ``token_ids``), coloured by the sign of their mean attribution."""
    if adapter_for(report.input_kind).display != "tokens":
        return empty_figure("the top-token chart is for token inputs")
    m = report.method(method)
    if m.error is not None:
        return empty_figure(f"{METHOD_LABELS.get(method, method)} could not run: {m.error}")
    rows = top_tokens(report, m, k)
    if not rows:
        return empty_figure("no tokens were explained")
    labels = [html.escape(text, quote=False) for text, _, _ in rows][::-1]  # Plotly decodes entities
    values = np.array([v for _, v, _ in rows])[::-1]
    signed = np.array([s for _, _, s in rows])[::-1]
    fig = go.Figure(
        go.Bar(
            x=values,
            y=list(range(len(rows))),
            orientation="h",
            marker_color=np.where(signed >= 0, f"rgb{POSITIVE}", f"rgb{NEGATIVE}"),
            customdata=signed,
            hovertext=labels,
            hovertemplate="%{hovertext}: mean |attribution| %{x:.4g}<br>mean attribution %{customdata:.4g}<extra></extra>",
        )
    )
    fig.update_yaxes(tickmode="array", tickvals=list(range(len(rows))), ticktext=labels)
    fig.update_xaxes(title_text="mean |attribution| where the token occurs")
    return _base(
        fig,
        f"{METHOD_LABELS.get(method, method)}: top {len(rows)} tokens (red: raises the target on average, blue: lowers)",
        max(260, 22 * len(rows) + 90),
    )
