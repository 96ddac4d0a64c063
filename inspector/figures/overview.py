"""Overview figures: parameter table rows, architecture, training curves, findings."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from inspector.analysis import Analysis, ModelInfo
from inspector.analysis.diagnostics import TrainingDiagnostics
from inspector.analysis.parameters import ParameterReport, trainable_text
from inspector.figures.common import COLORS, MODEBAR_ROOM, TITLE_ROOM, _base, empty_figure


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


CHAIN_MAX_LAYERS = 12


def reads_as_chain(model: ModelInfo, parameters: ParameterReport) -> bool:
    """Whether the chain diagram (:func:`architecture_figure`) fits the model: at most
    ``CHAIN_MAX_LAYERS`` dense layers, each feeding the next (its outputs are the next one's
    inputs), and no embedding. An MLP, or a CNN's dense head; not a transformer."""
    layers = parameters.layers
    if not model.layer_sizes or not layers or len(layers) > CHAIN_MAX_LAYERS or parameters.embeddings:
        return False
    return all(a.out_features == b.in_features for a, b in zip(layers, layers[1:]))


TREE_COLORS = {"dense": "#fd8d3c", "embedding": "#6baed6", "other": "#bdbdbd", "module": "#f2f2f2"}
TREE_KIND_TEXT = {"dense": "dense layer", "embedding": "embedding", "other": "other parameters", "module": "module"}


def module_tree_nodes(model: ModelInfo, parameters: ParameterReport) -> list[dict[str, object]]:
    """The model's module tree, one dict per module, parents before children.

    Keys: ``id`` (module path; ``""`` is the model itself), ``parent`` (``None`` for the root),
    ``label``, ``class`` (class name), ``kind`` ("dense", "embedding", "other" parameters or a plain
    "module"), ``own`` (parameters the parameter report counts in this module: ``m × (n + 1)`` for a
    dense layer, 0 for a tied copy) and ``total`` (``own`` plus every descendant's). The root's
    ``total`` is ``parameters.total_parameters``. Paths come from ``model.modules`` and, for an
    analysis without it (a weight file), from the parameter report's names and their ancestors.
    """
    own: dict[str, int] = {}
    kind: dict[str, str] = {}
    for layer in parameters.layers:
        own[layer.layer] = own.get(layer.layer, 0) + layer.parameters
        kind[layer.layer] = "dense"
    for emb in parameters.embeddings:
        own[emb.layer] = own.get(emb.layer, 0) + emb.parameters
        kind[emb.layer] = "embedding"
    for other in parameters.other:
        own[other.name] = own.get(other.name, 0) + other.parameters
        kind.setdefault(other.name, "other")
    for site in model.sites:
        kind[site.layer] = "dense"
    for name in model.embeddings:
        kind.setdefault(name, "embedding")
    classes = {path: cls for path, cls in model.modules}
    order = [path for path, _ in model.modules]
    known = set(order)
    for path in list(own):
        parts = path.split(".") if path else []
        for k in range(len(parts) + 1):
            ancestor = ".".join(parts[:k])
            if ancestor not in known:
                known.add(ancestor)
                order.append(ancestor)
    if "" not in known:
        order.insert(0, "")
    position = {path: k for k, path in enumerate(order)}
    order.sort(key=lambda path: (path.count(".") + bool(path), position[path]))  # parents first
    total = dict.fromkeys(order, 0)
    for path in sorted(order, key=lambda path: -(path.count(".") + bool(path))):
        total[path] += own.get(path, 0)
        if path:
            total[path.rpartition(".")[0]] += total[path]
    nodes: list[dict[str, object]] = []
    for path in order:
        nodes.append(
            {
                "id": path,
                "parent": None if not path else path.rpartition(".")[0],
                "label": path.rpartition(".")[2] if path else classes.get("", model.architecture),
                "class": classes.get(path, model.architecture if not path else ""),
                "kind": kind.get(path, "module"),
                "own": own.get(path, 0),
                "total": total[path],
            }
        )
    return nodes


def module_tree_figure(model: ModelInfo, parameters: ParameterReport) -> go.Figure:
    """The module tree as a treemap whose areas are parameter counts: dense layers orange, embeddings
    blue, other parameters (norms, biases of custom modules) grey; hover gives each module's share."""
    nodes = module_tree_nodes(model, parameters)
    grand = parameters.total_parameters
    if len(nodes) <= 1 or grand <= 0:
        return empty_figure(f"{model.architecture}: no module tree or no parameters to show")
    root = "\u200b"  # Plotly treemaps need a non-empty id for the root; the model's own path is ""
    ids = [str(n["id"]) or root for n in nodes]
    parents = ["" if n["parent"] is None else (str(n["parent"]) or root) for n in nodes]
    shares = [int(n["total"]) / grand for n in nodes]  # type: ignore[call-overload]
    text = [
        f"{100 * share:.1f}%" if n["kind"] != "module" or not n["parent"] else "" for n, share in zip(nodes, shares)
    ]
    customdata = [
        [n["id"] or "(the model)", n["class"] or "", TREE_KIND_TEXT[str(n["kind"])], f"{100 * share:.2f}%"]
        for n, share in zip(nodes, shares)
    ]
    fig = go.Figure(
        go.Treemap(
            ids=ids,
            labels=[str(n["label"]) for n in nodes],
            parents=parents,
            values=[int(n["total"]) for n in nodes],  # type: ignore[call-overload]
            branchvalues="total",
            text=text,
            textinfo="label+text",
            customdata=customdata,
            marker={"colors": [TREE_COLORS[str(n["kind"])] for n in nodes], "line": {"width": 1, "color": "#fff"}},
            hovertemplate="<b>%{customdata[0]}</b><br>%{customdata[1]} · %{customdata[2]}<br>"
            "%{value:,} parameters, %{customdata[3]} of the model<extra></extra>",
            pathbar={"visible": True},
        )
    )
    parts = [
        f"dense layers {100 * parameters.linear_parameters / grand:.1f}%",
        f"embeddings {100 * parameters.embedding_parameters / grand:.1f}%" if parameters.embeddings else "",
        f"other {100 * parameters.other_parameters / grand:.1f}%" if parameters.other else "",
    ]
    title = f"Module tree · {grand:,} parameters: " + ", ".join(p for p in parts if p)
    fig = _base(fig, title + " (orange: dense, blue: embeddings, grey: other; click to zoom)", 520)
    fig.update_layout(margin={"l": 10, "r": 10, "t": MODEBAR_ROOM + TITLE_ROOM + 4, "b": 10})  # no subplot titles
    return fig


def training_figure(training: TrainingDiagnostics | None) -> go.Figure:
    """Train and validation loss and the task's metric (``training.metric_name``: accuracy, R²; the
    history's ``*_accuracy`` arrays hold it) per epoch; the restored epoch marked."""
    if training is None:
        return empty_figure("no training history in this checkpoint")
    metric_name = training.metric_name
    epochs = np.arange(1, training.epochs_run + 1)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", metric_name))
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


def metric_name(analysis: Analysis) -> str:
    """The name of the analysis's score: the evaluation's metric, else the task's usual one."""
    if analysis.data is not None:
        return analysis.data.metric_name
    if analysis.pruning is not None:
        return analysis.pruning.metric_name
    return {"classification": "accuracy", "regression": "R²"}.get(analysis.model.task, "metric")


# --------------------------------------------------------------------------- weights


def findings_lines(analysis: Analysis) -> list[tuple[str, str]]:
    """``(severity, text)`` pairs, warnings first."""
    ordered = sorted(analysis.findings, key=lambda f: f.severity != "warning")
    return [(f.severity, f.text) for f in ordered]
