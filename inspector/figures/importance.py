"""Feature importance figures: rankings, maps on the input grid, the sanity check, one sample."""

from __future__ import annotations

import html

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from inspector.analysis.importance import ImportanceReport, MethodImportance
from inspector.analysis.methods import METHOD_LABELS
from inspector.core.adapters import adapter_for
from inspector.figures.common import COLORS, _base, empty_figure
from inspector.figures.neurons import _feature_bar


def map_shape(report: ImportanceReport | None, image_shape: tuple[int, ...] | None) -> tuple[int, ...] | None:
    """The shape importance maps are drawn in: the analysed input's own shape for array inputs
    (``(1, 8, 8)``, ``(3, 32, 32)``, from the stored analysis), else ``image_shape`` (tabular
    images such as the digits' 64 columns as 8x8); ``None`` when the inputs are not images."""
    if report is not None:
        return adapter_for(report.input_kind).map_shape(tuple(report.input_shape), image_shape)
    return tuple(image_shape) if image_shape else None


def as_image(values: np.ndarray, shape: tuple[int, ...] | None) -> tuple[np.ndarray, str] | None:
    """``values`` (any layout with ``prod(shape)`` elements) as one ``(H, W)`` image and a note:
    ``(H, W)`` and ``(1, H, W)`` as they are, ``(C, H, W)`` summed over its C channels (the note
    says so). ``None`` for other shapes or a size mismatch."""
    if shape is None or len(shape) not in (2, 3) or values.size != int(np.prod(shape)):
        return None
    z = np.asarray(values, dtype=np.float64).reshape(shape)
    if len(shape) == 2:
        return z, ""
    if shape[0] == 1:
        return z[0], ""
    return z.sum(axis=0), f"summed over {shape[0]} channels"


def importance_bar_figure(
    method: MethodImportance,
    feature_names: tuple[str, ...],
    class_index: int | None = None,
    class_names: tuple[str, ...] = (),
    k: int = 15,
    report: ImportanceReport | None = None,
) -> go.Figure:
    """The ``k`` inputs with the largest mean |attribution|. With ``report`` they are named by
    :meth:`ImportanceReport.feature_label`: columns, token text, or ``(c, h, w)`` for arrays."""
    if method.error is not None:
        return empty_figure(f"{METHOD_LABELS[method.method]} could not run: {method.error}")
    if method.per_class is None:  # not a classification: one importance over all samples
        class_index = None
    values = (
        method.global_importance
        if class_index is None or method.per_class is None
        else np.nan_to_num(method.per_class[class_index])
    )
    if method.per_class is None:  # regression, a custom target: no classes to speak of
        which = "all samples"
    elif class_index is None:
        which = "all classes"
    else:
        which = f"class {class_names[class_index] if class_names else class_index}"
    names: tuple[str, ...] | list[str] = feature_names
    if report is not None:
        # only the shown bars need a name: an image has as many inputs as pixels
        top = np.argsort(-values, kind="stable")[:k]
        named = [""] * len(values)
        for i in top:
            named[int(i)] = _plotly_text(report.feature_label(int(i), feature_names))
        names = named
    return _feature_bar(
        values,
        tuple(names),
        k,
        f"{METHOD_LABELS[method.method]}: top {k} inputs ({which}, mean |attribution|)",
        "#3182bd",
    )


def _plotly_text(text: str) -> str:
    """Plotly reads ``<...>`` in labels as markup and drops unknown tags; escape them (it decodes entities)."""
    return html.escape(text, quote=False)


def importance_map_figure(
    values: np.ndarray, image_shape: tuple[int, ...] | None, title: str, signed: bool = False
) -> go.Figure:
    """``values`` on the input grid: ``image_shape`` ``(H, W)``, ``(1, H, W)`` or ``(C, H, W)``
    (then summed over channels, and the title says so); see :func:`map_shape`."""
    image = as_image(values, image_shape)
    if image is None:
        return empty_figure("inputs are not images")
    z, how = image
    kwargs: dict[str, object] = {"colorscale": "Viridis"}
    if signed:
        limit = float(np.abs(z).max()) or 1.0
        kwargs = {"colorscale": "RdBu_r", "zmin": -limit, "zmax": limit}
    fig = go.Figure(go.Heatmap(z=z, hovertemplate="row %{y}, col %{x}: %{z:.3g}<extra></extra>", **kwargs))
    fig.update_yaxes(autorange="reversed", scaleanchor="x")
    return _base(fig, f"{title} ({how})" if how else title, 340)


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


def _element_names(shape: tuple[int, ...], idx: np.ndarray, feature_names: tuple[str, ...]) -> list[str]:
    if len(shape) <= 1:
        return [feature_names[i] if i < len(feature_names) else f"x{i}" for i in idx]
    return ["(" + ", ".join(str(int(v)) for v in np.unravel_index(int(i), shape)) + ")" for i in idx]


def sample_figure(
    x: np.ndarray,
    attribution: np.ndarray,
    probabilities: np.ndarray,
    *,
    label: int | float | np.ndarray | None,
    image_shape: tuple[int, ...] | None,
    feature_names: tuple[str, ...],
    class_names: tuple[str, ...],
    method: str,
    task: str = "classification",
    output_names: tuple[str, ...] = (),
) -> go.Figure:
    """One sample: its input, its attribution and the model's prediction.

    ``x``, ``attribution``: the input and its attribution in the input's shape. Shown as an
    image when ``x`` is ``(H, W)``, ``(1, H, W)`` or ``(C, H, W)`` (the input's channel mean and
    the attribution summed over channels, as the panel titles say) or when ``image_shape``
    holds its size (tabular images); else as bars of the 12 elements with the largest
    |attribution| (named by ``feature_names``, or ``(c, h, w)`` for arrays).
    ``probabilities``: class probabilities (``task="classification"``), else the model's
    outputs ``(k,)``, drawn with the true value(s) ``label``.
    """
    x = np.asarray(x)
    attribution = np.asarray(attribution)
    shape = tuple(x.shape) if x.ndim >= 2 else (tuple(image_shape) if image_shape else None)
    image_in, image_at = as_image(x, shape), as_image(attribution, shape)
    how = image_at[1] if image_at is not None else ""
    titles = (
        "input" + (f" (mean over {shape[0]} channels)" if how and shape else ""),
        f"{METHOD_LABELS.get(method, method)} attribution" + (f" ({how})" if how else ""),
        "prediction" if task == "classification" else "output (bars) and true value (diamonds)",
    )
    fig = make_subplots(rows=1, cols=3, subplot_titles=titles, column_widths=[0.3, 0.3, 0.4])
    if image_in is not None and image_at is not None:
        grey = image_in[0] / shape[0] if how and shape else image_in[0]  # the channel mean
        z = image_at[0]
        limit = float(np.abs(z).max()) or 1.0
        fig.add_trace(go.Heatmap(z=grey, colorscale="Greys", showscale=False), row=1, col=1)
        fig.add_trace(go.Heatmap(z=grey, colorscale="Greys", showscale=False, opacity=0.35), row=1, col=2)
        fig.add_trace(
            go.Heatmap(
                z=z, colorscale="RdBu_r", zmin=-limit, zmax=limit, opacity=0.75, colorbar={"x": 0.58, "len": 0.8}
            ),
            row=1,
            col=2,
        )
        for col in (1, 2):
            fig.update_yaxes(autorange="reversed", scaleanchor="x" if col == 1 else "x2", row=1, col=col)
    else:
        flat_x, flat_a = x.reshape(-1), attribution.reshape(-1)
        idx = np.argsort(-np.abs(flat_a), kind="stable")[:12][::-1]
        names = [_plotly_text(n) for n in _element_names(tuple(x.shape), idx, feature_names)]
        fig.add_trace(go.Bar(x=flat_x[idx], y=names, orientation="h", marker_color="#bdbdbd"), row=1, col=1)
        fig.add_trace(
            go.Bar(
                x=flat_a[idx], y=names, orientation="h", marker_color=np.where(flat_a[idx] >= 0, "#31a354", "#de2d26")
            ),
            row=1,
            col=2,
        )
        for col in (1, 2):
            fig.update_yaxes(type="category", row=1, col=col)
    output = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    fig.update_layout(showlegend=False)
    if task == "classification":
        predicted = int(np.argmax(output))
        names = list(class_names[: len(output)]) or [str(c) for c in range(len(output))]
        names += [str(c) for c in range(len(names), len(output))]
        true = None if label is None else int(np.asarray(label).reshape(-1)[0])
        colors = ["#3182bd" if c != predicted else ("#31a354" if c == true else "#de2d26") for c in range(len(output))]
        fig.add_trace(go.Bar(x=names, y=output, marker_color=colors), row=1, col=3)
        fig.update_xaxes(type="category", row=1, col=3)
        verdict = "" if true is None else (", correct" if predicted == true else ", wrong")
        title = (
            f"label {names[true] if true is not None and 0 <= true < len(names) else 'unknown'}, "
            f"predicted {names[predicted]} ({100 * output[predicted]:.1f}%{verdict})"
        )
        return _base(fig, title, 360)
    names = list(output_names[: len(output)]) + [f"output {i}" for i in range(len(output_names), len(output))]
    fig.add_trace(go.Bar(x=names, y=output, marker_color="#3182bd"), row=1, col=3)
    true_values = None if label is None else np.asarray(label, dtype=np.float64).reshape(-1)
    if true_values is not None and true_values.size == output.size:
        fig.add_trace(
            go.Scatter(
                x=names, y=true_values, mode="markers", marker={"symbol": "diamond", "size": 12, "color": "#000"}
            ),
            row=1,
            col=3,
        )
    fig.update_xaxes(type="category", row=1, col=3)
    return _base(fig, prediction_text(output, label, task, class_names), 360)


def prediction_text(
    prediction: np.ndarray, label: int | float | np.ndarray | None, task: str, class_names: tuple[str, ...] = ()
) -> str:
    """One line: "predicted 3 (97.1%), true 3" for a classifier (``prediction``: probabilities),
    "predicted 2.91, true 3.2 (error -0.29)" otherwise (``prediction``: the outputs)."""
    output = np.asarray(prediction, dtype=np.float64).reshape(-1)
    if task == "classification":
        predicted = int(np.argmax(output))
        name = class_names[predicted] if predicted < len(class_names) else str(predicted)
        text = f"predicted {name} ({100 * output[predicted]:.1f}%)"
        if label is None:
            return text + ", no true label"
        true = int(np.asarray(label).reshape(-1)[0])
        true_name = class_names[true] if 0 <= true < len(class_names) else str(true)
        return text + f", true {true_name} ({'correct' if true == predicted else 'wrong'})"
    values = ", ".join(f"{v:.4g}" for v in output[:8]) + (" ..." if output.size > 8 else "")
    text = f"predicted {values}"
    if label is None:
        return text + ", no true value"
    true_values = np.asarray(label, dtype=np.float64).reshape(-1)
    text += ", true " + ", ".join(f"{v:.4g}" for v in true_values[:8]) + (" ..." if true_values.size > 8 else "")
    if true_values.size == output.size == 1:
        text += f" (error {output[0] - true_values[0]:+.3g})"
    return text


# --------------------------------------------------------------------------- pruning and activations
