"""The parameters section: every parameter counted, layer by layer (:func:`~inspector.analysis.parameters.count_parameters`),
and the model's non-finite tensors. Runs on every analysis."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from inspector.analysis.context import AnalysisContext
from inspector.analysis.findings import Finding, count, pct
from inspector.analysis.parameters import ParameterReport, count_parameters
from inspector.analysis.sections.registry import SectionSpec, register


def run(ctx: AnalysisContext, done: Mapping[str, Any]) -> tuple[ParameterReport, list[Finding]]:
    with ctx.timed("parameters"):
        parameters = count_parameters(ctx.module)
    return parameters, parameter_findings(parameters) + nonfinite_findings(ctx.info.nonfinite)


def nonfinite_findings(names: tuple[str, ...]) -> list[Finding]:
    """One warning per parameter or buffer holding NaN or Inf (``names``: their state-dict keys)."""
    return [
        Finding("weights", "warning", f"{name} holds NaN or Inf values; results that use it are unreliable", {})
        for name in names
    ]


def parameter_findings(p: ParameterReport) -> list[Finding]:
    if not p.layers:
        return [Finding("parameters", "warning", "the model has no dense (nn.Linear or Conv1D) layers", {})]
    biggest = max(p.layers, key=lambda layer: layer.parameters)
    share = biggest.parameters / max(p.total_parameters, 1)
    layers = count(len(p.layers), "linear layer")
    where = (
        f" in {layers}"
        if p.linear_parameters == p.total_parameters
        else f", {p.linear_parameters:,} of them in {layers}"
    )
    out = [
        Finding(
            "parameters",
            "info",
            f"{count(p.total_parameters, 'parameter')}{where}; layer {biggest.layer} "
            f"({biggest.in_features}->{biggest.out_features}) holds {pct(share)} of all parameters",
            {
                "total_parameters": p.total_parameters,
                "linear_parameters": p.linear_parameters,
                "largest_layer_share": share,
            },
        )
    ]
    for layer in p.layers:
        if layer.tied_to:
            out.append(
                Finding(
                    "parameters",
                    "info",
                    f"layer {layer.layer} shares its weight with layer {layer.tied_to}; the "
                    f"{layer.out_features * layer.in_features:,} shared weights are counted once, under "
                    f"{layer.tied_to}",
                    {"shared_weights": layer.out_features * layer.in_features},
                )
            )
    return out


SECTION = register(SectionSpec("parameters", run, field="parameters"))
