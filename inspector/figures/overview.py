"""Overview figures: parameter table rows, architecture, training curves, findings."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from inspector.analysis import Analysis, ModelInfo
from inspector.analysis.diagnostics import TrainingDiagnostics
from inspector.analysis.parameters import ParameterReport, trainable_text
from inspector.figures.common import COLORS, _base, empty_figure


def parameter_rows(report: ParameterReport) -> list[dict[str, object]]:
    """Table rows with the m x (n + 1) arithmetic spelled out, embeddings (rows x dim), plus a totals row."""
    rows: list[dict[str, object]] = []
    for layer in report.layers:
        rows.append(
            {
                "layer": layer.layer + (f" (tied to {layer.tied_to})" if layer.tied_to else ""),
                "inputs n": layer.in_features,
                "outputs m": layer.out_features,
                "weights": layer.weights,
                "biases": layer.biases,
                "formula": layer.formula(),
                "parameters": layer.parameters,
                "MACs/sample": layer.macs_per_sample,
                "trainable": trainable_text(layer.trainable),
            }
        )
    for emb in report.embeddings:
        rows.append(
            {
                "layer": f"{emb.layer} (Embedding {emb.num_embeddings:,} × {emb.embedding_dim:,})"
                + (f" (tied to {emb.tied_to})" if emb.tied_to else ""),
                "inputs n": "",
                "outputs m": "",
                "weights": "",
                "biases": "",
                "formula": emb.formula(),
                "parameters": emb.parameters,
                "MACs/sample": "",
                "trainable": trainable_text(emb.trainable),
            }
        )
    for other in report.other:
        rows.append(
            {
                "layer": f"{other.name} ({other.kind})",
                "inputs n": "",
                "outputs m": "",
                "weights": "",
                "biases": "",
                "formula": "",
                "parameters": other.parameters,
                "MACs/sample": "",
                "trainable": trainable_text(other.trainable),
            }
        )
    rows.append(
        {
            "layer": "total",
            "inputs n": "",
            "outputs m": "",
            "weights": sum(layer.weights for layer in report.layers),
            "biases": sum(layer.biases for layer in report.layers),
            "formula": "",
            "parameters": report.total_parameters,
            "MACs/sample": report.macs_per_sample,
            "trainable": "",
        }
    )
    return rows


def architecture_figure(model: ModelInfo) -> go.Figure:
    """Layers as boxes whose height grows with their width (log scale), left to right."""
    sizes = model.layer_sizes
    if not sizes:
        return empty_figure(f"{model.architecture}: the layers do not form one chain, so there is no diagram")
    labels = ["input"] + [name for name, _ in model.blocks]
    acts = [""] + [act if act != "none" else "" for _, act in model.blocks]
    top = np.log2(max(sizes) + 1)
    fig = go.Figure()
    for k, (size, label, act) in enumerate(zip(sizes, labels, acts)):
        h = 0.15 + 0.85 * np.log2(size + 1) / top
        color = "#9ecae1" if k == 0 else ("#fdae6b" if k == len(sizes) - 1 else "#a1d99b")
        fig.add_shape(type="rect", x0=k - 0.3, x1=k + 0.3, y0=-h / 2, y1=h / 2, fillcolor=color, line={"color": "#555"})
        text = f"<b>{label}</b><br>{size:,}" + (f"<br>{act}" if act else "")
        fig.add_annotation(x=k, y=0, text=text, showarrow=False, font={"size": 12})
        if k:
            fig.add_annotation(
                x=k - 0.3,
                y=0,
                ax=k - 0.7,
                ay=0,
                xref="x",
                yref="y",
                axref="x",
                ayref="y",
                showarrow=True,
                arrowhead=2,
                arrowcolor="#777",
                text="",
            )
    extras = [
        x
        for x in (
            model.activation,
            "batch norm" if model.batch_norm else "",
            f"dropout {model.dropout:g}" if model.dropout else "",
        )
        if x
    ]
    fig.update_xaxes(visible=False, range=[-0.6, len(sizes) - 0.4])
    fig.update_yaxes(visible=False, range=[-0.6, 0.6])
    return _base(fig, f"{model.architecture}" + (f" · {', '.join(extras[1:])}" if len(extras) > 1 else ""), 260)


def training_figure(training: TrainingDiagnostics | None) -> go.Figure:
    """Train and validation loss and accuracy per epoch; the restored epoch marked."""
    if training is None:
        return empty_figure("no training history in this checkpoint")
    epochs = np.arange(1, training.epochs_run + 1)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy"))
    for col, (train, val) in enumerate(
        ((training.train_loss, training.val_loss), (training.train_accuracy, training.val_accuracy)), start=1
    ):
        fig.add_trace(
            go.Scatter(
                x=epochs,
                y=train,
                name="train",
                legendgroup="train",
                showlegend=col == 1,
                line={"color": COLORS["train"]},
            ),
            row=1,
            col=col,
        )
        fig.add_trace(
            go.Scatter(
                x=epochs,
                y=val,
                name="validation",
                legendgroup="val",
                showlegend=col == 1,
                line={"color": COLORS["val"]},
            ),
            row=1,
            col=col,
        )
        fig.add_vline(x=training.best_epoch, line_dash="dash", line_color="#444", row=1, col=col)
        if training.overfitting_epoch is not None:
            fig.add_vline(x=training.overfitting_epoch, line_dash="dot", line_color=COLORS["dead"], row=1, col=col)
    note = f"best epoch {training.best_epoch}" + (" (early stop)" if training.stopped_early else "")
    if training.overfitting_epoch is not None:
        note += f", overfitting from epoch {training.overfitting_epoch}"
    fig.update_xaxes(title_text="epoch")
    return _base(fig, f"Training curves · {note}", 360)


# --------------------------------------------------------------------------- weights


def findings_lines(analysis: Analysis) -> list[tuple[str, str]]:
    """``(severity, text)`` pairs, warnings first."""
    ordered = sorted(analysis.findings, key=lambda f: f.severity != "warning")
    return [(f.severity, f.text) for f in ordered]
