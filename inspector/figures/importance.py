"""Feature importance figures: rankings, maps on the input grid, the sanity check, one sample."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from inspector.analysis.importance import ImportanceReport, MethodImportance
from inspector.analysis.methods import METHOD_LABELS
from inspector.figures.common import COLORS, _base, empty_figure
from inspector.figures.neurons import _feature_bar


def importance_bar_figure(
    method: MethodImportance,
    feature_names: tuple[str, ...],
    class_index: int | None = None,
    class_names: tuple[str, ...] = (),
    k: int = 15,
) -> go.Figure:
    if method.error is not None:
        return empty_figure(f"{METHOD_LABELS[method.method]} could not run: {method.error}")
    if method.per_class is None:  # not a classification: one importance over all samples
        class_index = None
    values = (
        method.global_importance
        if class_index is None or method.per_class is None
        else np.nan_to_num(method.per_class[class_index])
    )
    which = (
        "all classes" if class_index is None else f"class {class_names[class_index] if class_names else class_index}"
    )
    return _feature_bar(
        values,
        feature_names,
        k,
        f"{METHOD_LABELS[method.method]}: top {k} inputs ({which}, mean |attribution|)",
        "#3182bd",
    )


def importance_map_figure(
    values: np.ndarray, image_shape: tuple[int, int] | None, title: str, signed: bool = False
) -> go.Figure:
    if image_shape is None or values.size != image_shape[0] * image_shape[1]:
        return empty_figure("inputs are not images")
    z = values.reshape(image_shape)
    kwargs: dict[str, object] = {"colorscale": "Viridis"}
    if signed:
        limit = float(np.abs(z).max()) or 1.0
        kwargs = {"colorscale": "RdBu_r", "zmin": -limit, "zmax": limit}
    fig = go.Figure(go.Heatmap(z=z, hovertemplate="row %{y}, col %{x}: %{z:.3g}<extra></extra>", **kwargs))
    fig.update_yaxes(autorange="reversed", scaleanchor="x")
    return _base(fig, title, 340)


def sanity_figure(report: ImportanceReport, fail_above: float = 0.5) -> go.Figure:
    methods = [m for m in report.methods if m.sanity_correlation is not None]
    if not methods:
        return empty_figure("no sanity-check scores")
    values = np.array([m.sanity_correlation for m in methods])
    fig = go.Figure(
        go.Bar(
            x=[METHOD_LABELS[m.method] for m in methods],
            y=values,
            marker_color=np.where(values > fail_above, COLORS["dead"], COLORS["alive"]),
            hovertemplate="%{x}: rank correlation %{y:.2f}<extra></extra>",
        )
    )
    fig.add_hline(y=fail_above, line_dash="dot", line_color="#444")
    fig.update_yaxes(title_text="rank correlation with randomised model", range=[-0.2, 1.05])
    return _base(fig, "Sanity check (Adebayo et al. 2018): lower means the method looks at the weights", 320)


def sample_figure(
    x: np.ndarray,
    attribution: np.ndarray,
    probabilities: np.ndarray,
    *,
    label: int,
    image_shape: tuple[int, int] | None,
    feature_names: tuple[str, ...],
    class_names: tuple[str, ...],
    method: str,
) -> go.Figure:
    """One sample: its input, the attribution overlay and the predicted class probabilities."""
    predicted = int(np.argmax(probabilities))
    titles = ("input", f"{METHOD_LABELS.get(method, method)} attribution", "prediction")
    fig = make_subplots(rows=1, cols=3, subplot_titles=titles, column_widths=[0.3, 0.3, 0.4])
    limit = float(np.abs(attribution).max()) or 1.0
    if image_shape is not None and x.size == image_shape[0] * image_shape[1]:
        fig.add_trace(go.Heatmap(z=x.reshape(image_shape), colorscale="Greys", showscale=False), row=1, col=1)
        fig.add_trace(
            go.Heatmap(z=x.reshape(image_shape), colorscale="Greys", showscale=False, opacity=0.35), row=1, col=2
        )
        fig.add_trace(
            go.Heatmap(
                z=attribution.reshape(image_shape),
                colorscale="RdBu_r",
                zmin=-limit,
                zmax=limit,
                opacity=0.75,
                colorbar={"x": 0.58, "len": 0.8},
            ),
            row=1,
            col=2,
        )
        for col in (1, 2):
            fig.update_yaxes(autorange="reversed", row=1, col=col)
    else:
        idx = np.argsort(-np.abs(attribution))[:12][::-1]
        names = [feature_names[i] for i in idx]
        fig.add_trace(go.Bar(x=x[idx], y=names, orientation="h", marker_color="#bdbdbd"), row=1, col=1)
        fig.add_trace(
            go.Bar(
                x=attribution[idx],
                y=names,
                orientation="h",
                marker_color=np.where(attribution[idx] >= 0, "#31a354", "#de2d26"),
            ),
            row=1,
            col=2,
        )
    colors = [
        "#3182bd" if c != predicted else ("#31a354" if c == label else "#de2d26") for c in range(len(probabilities))
    ]
    fig.add_trace(go.Bar(x=list(class_names[: len(probabilities)]), y=probabilities, marker_color=colors), row=1, col=3)
    fig.update_xaxes(type="category", row=1, col=3)
    fig.update_layout(showlegend=False)
    verdict = "correct" if predicted == label else "wrong"
    return _base(
        fig,
        f"label {class_names[label]}, predicted {class_names[predicted]} "
        f"({100 * probabilities[predicted]:.1f}%, {verdict})",
        360,
    )


# --------------------------------------------------------------------------- pruning and activations
