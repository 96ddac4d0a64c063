"""The activations section: the census of every dense layer's units over the data
(:func:`~inspector.analysis.activations.activation_census`: dead, nearly dead, saturated, never positive),
and, when the forwards ran in a reduced dtype, the check of its dead counts against float32."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from inspector.analysis.activations import LayerActivations, activation_census
from inspector.analysis.context import AnalysisContext
from inspector.analysis.findings import Finding, agree, count, describe_samples, pct
from inspector.analysis.reduced_dtype import CHECK_SAMPLES, torch_dtype
from inspector.analysis.sections.registry import SectionSpec, register
from inspector.analysis.top_examples import with_token_text


def run(ctx: AnalysisContext, done: Mapping[str, Any]) -> tuple[tuple[LayerActivations, ...], list[Finding]]:
    assert ctx.runner is not None and ctx.run_source is not None and ctx.source is not None  # needs data
    with ctx.timed("activations"):
        census = activation_census(
            ctx.runner,
            ctx.run_source,
            ctx.sites,
            nearly_dead_threshold=ctx.options.nearly_dead_threshold,
            top_k=ctx.options.top_k,
        )
    if ctx.adapter is not None and ctx.adapter.vocabulary is not None:  # the examples' tokens as text
        census = with_token_text(census, ctx.adapter.token_text)
    found = activation_findings(census, ctx.source.split)
    if ctx.reduced and ctx.whole is not None:
        with ctx.timed("dtype check"):
            found += dtype_check(ctx)
    return census, found


def dtype_check(ctx: AnalysisContext) -> list[Finding]:
    """Findings where the reduced-dtype forward changes a dead count: the cast copy (``ctx.runner``) and
    the model (float32) counted on the same first :data:`CHECK_SAMPLES` samples, like for like."""
    assert ctx.whole is not None and ctx.runner is not None
    head = ctx.whole.limited(CHECK_SAMPLES)
    threshold = ctx.options.nearly_dead_threshold
    reduced = activation_census(
        ctx.runner,
        head.on(head.device, torch_dtype(ctx.options.dtype)),
        ctx.sites,
        nearly_dead_threshold=threshold,
        keep_samples=0,
    )
    exact = activation_census(ctx.module, head, ctx.sites, nearly_dead_threshold=threshold, keep_samples=0)
    n = reduced[0].n_samples if reduced else 0
    return dtype_findings(ctx.options.dtype, reduced, exact, n)


def dtype_findings(
    name: str, reduced: tuple[LayerActivations, ...], exact: tuple[LayerActivations, ...], n_samples: int
) -> list[Finding]:
    """One finding per layer whose dead count differs between the ``reduced``-dtype census and the float32
    one (``exact``), both taken on the same first ``n_samples`` samples."""
    exact_by_layer = {c.layer: c for c in exact}
    found = []
    for census in reduced:
        fp32 = exact_by_layer.get(census.layer)
        if fp32 is None or census.dead_mask is None or fp32.dead_mask is None:
            continue
        if census.dead_count != fp32.dead_count:
            found.append(
                Finding(
                    "activations",
                    "warning",
                    f"{census.layer}: the {name} forward changes the dead count on the first {n_samples:,} samples "
                    f"from {fp32.dead_count:,} to {census.dead_count:,}; rerun with --dtype fp32 for exact counts",
                    {"fp32_dead": float(fp32.dead_count), "reduced_dead": float(census.dead_count)},
                )
            )
    return found


def _census_rows(layer: LayerActivations, split: str) -> str:
    """What a census rate is a fraction of: ``600 test samples``, or ``4,120 positions of 600 test samples``
    when the layer's output has a row per position (or per call)."""
    samples = describe_samples(layer.n_samples, split)
    if layer.n_positions and layer.n_positions != layer.n_samples:
        return f"{count(layer.n_positions, 'position')} of the {samples}"
    return samples


def _unknown_finding(layers: list[LayerActivations], split: str) -> Finding:
    """One finding for every layer whose activation is unknown (a transformer has several per block)."""
    fires = float(sum(float(a.fire_rate.mean()) for a in layers if a.fire_rate is not None) / len(layers))
    never = sum(a.never_positive_count for a in layers)
    width = sum(a.width for a in layers)
    if len(layers) == 1:
        head = (
            f"layer {layers[0].layer}: activation unknown, counted on its pre-activation (declare it with "
            f"activations= in Python, --activations LAYER=ACT on the command line); its neurons are positive on {pct(fires)} of the "
            f"{_census_rows(layers[0], split)} on average"
        )
    else:
        names = ", ".join(a.layer for a in layers[:4]) + (f" and {len(layers) - 4} more" if len(layers) > 4 else "")
        head = (
            f"{len(layers)} layers ({names}): activation unknown, each counted on its pre-activation "
            f"(declare them with activations= in Python, --activations LAYER=ACT on the command line); their neurons are positive on {pct(fires)} of rows on average"
        )
    tail = f"; {never} of {count(width, 'neuron')} {agree(never, 'is', 'are')} never positive" if never else ""
    return Finding(
        "activations",
        "info",
        head + tail,
        {"layers": len(layers), "width": width, "mean_fire_rate": fires, "never_positive": never},
    )


def activation_findings(census: tuple[LayerActivations, ...], split: str) -> list[Finding]:
    out = []
    unknown = [layer for layer in census if layer.activation == "unknown"]
    if unknown:
        out.append(_unknown_finding(unknown, split))
    for layer in census:
        where = _census_rows(layer, split)
        if layer.activation == "unknown":
            continue
        if layer.fire_rate is not None and layer.dead_mask is None:
            # smooth units (GELU, SiLU) are never exactly "dead": a negative input still passes a
            # gradient; report how often they output ~0, and the units that are never positive
            mean = float(layer.zero_rate.mean()) if layer.zero_rate is not None else 0.0
            never = layer.never_positive_count
            out.append(
                Finding(
                    "activations",
                    "info",
                    f"layer {layer.layer} ({layer.activation}): outputs are near zero on {pct(mean)} of "
                    f"the {where} on average; units fire (pre-activation > 0) on "
                    f"{pct(float(layer.fire_rate.mean()))}"
                    + (
                        f"; {never} of {count(layer.width, 'neuron')} {agree(never, 'is', 'are')} never positive"
                        if never
                        else ""
                    ),
                    {
                        "mean_zero_rate": mean,
                        "mean_fire_rate": float(layer.fire_rate.mean()),
                        "never_positive": never,
                        "width": layer.width,
                    },
                )
            )
        elif layer.fire_rate is not None:
            dead, nearly = layer.dead_count, layer.nearly_dead_count()
            if dead:
                out.append(
                    Finding(
                        "activations",
                        "warning",
                        f"layer {layer.layer}: {dead} of {count(layer.width, 'neuron')} never "
                        f"{agree(dead, 'fires', 'fire')} on the {where}",
                        {"dead": dead, "width": layer.width, "samples": layer.n_samples},
                    )
                )
            if nearly:
                out.append(
                    Finding(
                        "activations",
                        "info",
                        f"layer {layer.layer}: {nearly} more {agree(nearly, 'neuron', 'neurons')} "
                        f"{agree(nearly, 'fires', 'fire')} on fewer than {pct(layer.nearly_dead_threshold)} of samples",
                        {"nearly_dead": nearly, "threshold": layer.nearly_dead_threshold},
                    )
                )
            if not dead and not nearly:
                out.append(
                    Finding(
                        "activations",
                        "info",
                        f"layer {layer.layer}: "
                        + (f"all {layer.width} neurons fire" if layer.width != 1 else "its one neuron fires")
                        + f" on at least {pct(layer.nearly_dead_threshold)} of the {where}",
                        {"width": layer.width},
                    )
                )
        elif layer.saturation_rate is not None:
            mean = float(layer.saturation_rate.mean())
            mostly = int((layer.saturation_rate > 0.9).sum())
            severity = "warning" if mean > 0.5 else "info"
            text = (
                f"layer {layer.layer} ({layer.activation}): units are saturated on {pct(mean)} of samples "
                f"on average; {mostly} of {layer.width} {agree(mostly, 'is', 'are')} saturated on more than 90%"
            )
            if severity == "warning":
                text += " (vanishing-gradient risk: rescale inputs or weights, or use a rectifier)"
            out.append(
                Finding(
                    "activations",
                    severity,
                    text,
                    {"mean_saturation": mean, "mostly_saturated": mostly, "width": layer.width},
                )
            )
    return out


SECTION = register(
    SectionSpec("activations", run, field="activations", option="activations", needs=frozenset({"data"}))
)
