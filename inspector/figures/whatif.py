"""What-if figures: partial dependence with ICE curves, class probabilities along a feature, and the
live panel's edited-versus-original prediction."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from inspector.analysis.whatif import PartialDependence, ranked_rows
from inspector.errors import InspectorError
from inspector.figures.common import _base, empty_figure

PD_COLOR = "#d62728"
ICE_COLOR = "rgba(31, 119, 180, 0.35)"
ORIGINAL_COLOR = "#9e9e9e"
EDITED_COLOR = "#3182bd"


def partial_dependence_figure(pd: PartialDependence, feature: int | str, *, height: int = 420) -> go.Figure:
    """Feature ``feature``'s PD (bold) over its ICE curves (thin), with a histogram of the values the
    feature takes on the samples underneath (the PD is an average over those samples)."""
    try:
        r = pd.row(feature)
    except InspectorError as error:  # an unknown feature is a message, not a crash
        return empty_figure(str(error))
    n = int(pd.n_grid[r])
    x = pd.grid[r, :n]
    name = pd.feature_names[r]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.82, 0.18], vertical_spacing=0.04)
    for k, sample in enumerate(pd.ice_samples):
        fig.add_trace(
            go.Scatter(
                x=x,
                y=pd.ice[r, k, :n],
                mode="lines",
                line={"color": ICE_COLOR, "width": 1},
                name="ICE" if k == 0 else f"sample {int(sample)}",
                legendgroup="ice",
                showlegend=k == 0,
                hovertemplate=f"sample {int(sample)}: {name} = %{{x:.4g}} → %{{y:.4g}}<extra></extra>",
            ),
            row=1,
            col=1,
        )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=pd.average[r, :n],
            mode="lines+markers" if n > 1 else "markers",
            line={"color": PD_COLOR, "width": 4},
            marker={"size": 6},
            name="partial dependence",
            hovertemplate=f"mean: {name} = %{{x:.4g}} → %{{y:.4g}}<extra></extra>",
        ),
        row=1,
        col=1,
    )
    if pd.observed.ndim == 2 and pd.observed.shape[1] > r:
        fig.add_trace(
            go.Histogram(
                x=pd.observed[:, r],
                marker_color="#bdbdbd",
                name="observed",
                showlegend=False,
                hovertemplate=f"{name} %{{x}}: %{{y}} samples<extra></extra>",
            ),
            row=2,
            col=1,
        )
    fig.update_yaxes(title_text=pd.target, row=1, col=1)
    fig.update_yaxes(title_text="samples", row=2, col=1)
    fig.update_xaxes(title_text=name, row=2, col=1)
    fig.update_layout(legend={"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 1, "xanchor": "right"})
    note = "" if n > 1 else " (one observed value: nothing to sweep)"
    title = (
        f"What-if: {name}: mean over {pd.n_samples} samples (partial dependence) and "
        f"{len(pd.ice_samples)} individual curves (ICE){note}"
    )
    return _base(fig, title, height)


def class_probability_figure(
    pd: PartialDependence, feature: int | str, class_names: Sequence[str] = (), *, height: int = 360
) -> go.Figure:
    """A classifier's mean predicted probability of each class as feature ``feature`` sweeps its grid."""
    if pd.class_average is None:
        return empty_figure("class probabilities apply to classifiers only")
    try:
        r = pd.row(feature)
    except InspectorError as error:
        return empty_figure(str(error))
    n = int(pd.n_grid[r])
    x = pd.grid[r, :n]
    fig = go.Figure()
    for c in range(pd.class_average.shape[1]):
        label = class_names[c] if c < len(class_names) else str(c)
        fig.add_trace(
            go.Scatter(
                x=x,
                y=pd.class_average[r, c, :n],
                mode="lines+markers" if n > 1 else "markers",
                name=f"class {label}",
                hovertemplate=f"class {label}: %{{y:.3f}}<extra></extra>",
            )
        )
    fig.update_yaxes(title_text="mean predicted probability", range=[0, 1])
    fig.update_xaxes(title_text=pd.feature_names[r])
    fig.update_layout(hovermode="x unified")
    return _base(fig, f"Mean predicted probability of each class along {pd.feature_names[r]}", height)


def whatif_prediction_figure(
    original: np.ndarray, edited: np.ndarray, *, task: str, class_names: Sequence[str] = (), height: int = 320
) -> go.Figure:
    """The live panel: the model's prediction for the edited sample next to the original one: class
    probabilities ``(C,)`` for a classifier, the outputs ``(m,)`` otherwise."""
    original = np.asarray(original, dtype=np.float64).reshape(-1)
    edited = np.asarray(edited, dtype=np.float64).reshape(-1)
    classifier = task == "classification"
    if classifier:
        labels = [class_names[c] if c < len(class_names) else str(c) for c in range(edited.size)]
    else:
        labels = [f"output {k}" for k in range(edited.size)] if edited.size > 1 else ["output"]
    fig = go.Figure(
        [
            go.Bar(x=labels, y=original, name="original", marker_color=ORIGINAL_COLOR),
            go.Bar(x=labels, y=edited, name="edited", marker_color=EDITED_COLOR),
        ]
    )
    fig.update_xaxes(type="category")
    if classifier:
        fig.update_yaxes(title_text="probability", range=[0, 1])
        top = int(np.argmax(edited))
        title = f"Prediction: class {labels[top]} ({100 * edited[top]:.1f}%) after the edit"
    else:
        title = "Prediction: " + ", ".join(f"{v:.4g}" for v in edited[:4]) + (" ..." if edited.size > 4 else "")
    fig.update_layout(barmode="group", legend={"orientation": "h", "y": 1.0, "yanchor": "bottom"})
    return _base(fig, title, height)


def whatif_rows(pd: PartialDependence, order: Sequence[int] | None = None, k: int = 10) -> list[dict[str, object]]:
    """A table of the first ``k`` features (rows of ``pd`` in ``order``, default: largest PD effect first,
    see :func:`~inspector.analysis.whatif.ranked_rows`): the grid's range, the PD's least-squares slope and
    its effect (max minus min)."""
    rows = list(order) if order is not None else ranked_rows(pd)
    out: list[dict[str, object]] = []
    for r in rows[:k]:
        f = int(pd.features[r])
        n = int(pd.n_grid[r])
        out.append(
            {
                "feature": pd.feature_names[r],
                "range": f"{pd.grid[r, 0]:.4g} to {pd.grid[r, n - 1]:.4g}",
                "PD slope": f"{pd.slope(f):.4g}",
                "PD effect": f"{pd.effect(f):.4g}",
                "PD from → to": f"{pd.average[r, 0]:.4g} → {pd.average[r, n - 1]:.4g}",
            }
        )
    return out
