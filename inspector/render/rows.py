"""Table rows of an analysis's sections, as the HTML and Markdown reports show them.

Each function reads a result and formats it (percentages, labels, the lead entries);
none computes an analysis number.
"""

from __future__ import annotations

from inspector import figures as F
from inspector.analysis import Analysis
from inspector.analysis.findings import SANITY_FAIL
from inspector.analysis.importance import MethodImportance
from inspector.analysis.methods import METHOD_LABELS
from inspector.analysis.whatif import importance_ranking, ranked_rows
from inspector.core.adapters import adapter_for


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
    if report is None or adapter_for(report.input_kind).display != "tokens" or method.error is not None:
        return []
    return [
        {"rank": r + 1, "token": text, "mean |attribution|": f"{mean_abs:.4g}", "mean attribution": f"{mean:+.4g}"}
        for r, (text, mean_abs, mean) in enumerate(F.top_tokens(report, method, k))
    ]


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
