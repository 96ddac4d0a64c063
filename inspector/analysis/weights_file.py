"""Weight-only analysis of a file whose weights do not rebuild as a model, one tensor at a time."""

from __future__ import annotations

import os
import time

from inspector._version import __version__
from inspector.analysis.findings import Finding
from inspector.analysis.parameters import OtherParameters, ParameterReport, embedding_row, layer_row
from inspector.analysis.result import Analysis, ModelInfo
from inspector.analysis.sections.parameters import parameter_findings
from inspector.analysis.sections.weights import weight_findings
from inspector.analysis.weights import layer_weights
from inspector.checks import printable  # names in a file are data; they reach a terminal
from inspector.errors import InspectorError
from inspector.formats import count_nonfinite
from inspector.inventory import is_integer_dtype, iter_tensors, read_inventory


def analyze_weights_file(path: str | os.PathLike[str], *, trust_pickle: bool = False) -> Analysis:
    """Weight-only analysis of any file with 2-D weights (e.g. a transformer's MLP blocks).

    Nothing is rebuilt and nothing runs: parameter counts come from the header
    (:func:`inspector.inventory.read_inventory`) and each weight is read, summarised
    and dropped one tensor at a time, so a file larger than memory can be inspected.
    """

    started = time.perf_counter()
    inventory = read_inventory(path, trust_pickle=trust_pickle)
    if not inventory.linear_layers:
        raise InspectorError(f"{path}: no 2-D weight tensors found; nothing dense to analyse")
    # a file does not record requires_grad: trainable is unknown (None) throughout
    layers = tuple(layer_row(layer, printable) for layer in inventory.linear_layers)
    embeddings = tuple(embedding_row(e, printable) for e in inventory.embeddings)
    others = tuple(
        OtherParameters(name=printable(t.name), kind="tensor", parameters=t.numel, trainable=None)
        for t in inventory.other_tensors
        if t.tied_to is None
    )
    linear_total = sum(lp.parameters for lp in layers)
    embedding_total = sum(e.parameters for e in embeddings)
    other_total = sum(o.parameters for o in others)
    parameters = ParameterReport(
        layers=layers,
        other=others,
        linear_parameters=linear_total,
        other_parameters=other_total,
        total_parameters=linear_total + embedding_total + other_total,
        trainable_parameters=None,
        total_bytes=sum(t.bytes for t in inventory.tensors if t.tied_to is None and not is_integer_dtype(t.dtype)),
        macs_per_sample=sum(lp.macs_per_sample for lp in layers),
        embeddings=embeddings,
        embedding_parameters=embedding_total,
    )

    names = {t.name for t in inventory.tensors}
    # (layer, weight key, bias key): a bare 2-D tensor is its own weight key
    plan = [
        (
            layer,
            f"{layer.layer}.weight" if f"{layer.layer}.weight" in names else layer.layer,
            f"{layer.layer}.bias" if layer.biases else None,
        )
        for layer in inventory.linear_layers
    ]
    # one pass over the file, in plan order: each weight (and bias) is summarised and dropped before the next
    stream = iter_tensors(path, [k for _, w, b in plan for k in (w, b) if k], trust_pickle=trust_pickle)
    weights, nonfinite = [], []
    for layer, weight_key, bias_key in plan:
        weight = next(stream)[1]
        bias = next(stream)[1] if bias_key else None
        for key, t in ((weight_key, weight), (bias_key, bias)):
            if key is not None and t is not None and count_nonfinite(t):  # no bias key: no bias either
                nonfinite.append(printable(key))
        weights.append(layer_weights(printable(layer.layer), weight, bias))
        # dropped before the next read: held over, this tensor would double the peak (two largest tensors)
        del weight, bias, t
    info = ModelInfo(
        source=str(path),
        architecture=f"{len(layers)} dense layers (weight-only)",
        layer_sizes=(),
        activation=None,
        batch_norm=False,
        dropout=0.0,
        feature_names=(),
        class_names=(),
        image_shape=None,
        blocks=tuple((lp.layer, "none") for lp in layers),
        nonfinite=tuple(nonfinite),
    )
    found = parameter_findings(parameters) + weight_findings(tuple(weights))
    found += [Finding("weights", "warning", f"{name} holds NaN or Inf values", {}) for name in nonfinite]
    found += [Finding("parameters", "warning", notice, {}) for notice in inventory.notices]
    return Analysis(
        model=info,
        data=None,
        parameters=parameters,
        weights=tuple(weights),
        activations=None,
        deaths=None,
        importance=None,
        pruning=None,
        training=None,
        findings=tuple(found),
        timings={"weights": time.perf_counter() - started},
        package_version=__version__,
    )
