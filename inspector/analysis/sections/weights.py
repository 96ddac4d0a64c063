"""The weights section: each dense layer's weight statistics and spectrum
(:func:`~inspector.analysis.weights.weight_report`), and what stands out in them."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from inspector.analysis.context import AnalysisContext
from inspector.analysis.findings import Finding, count, pct
from inspector.analysis.sections.registry import SectionSpec, register
from inspector.analysis.spectra import SHORT_TAIL
from inspector.analysis.weights import LayerWeights, flattened_maps, weight_report

ALPHA_LOW, ALPHA_HIGH = 2.0, 6.0  # WeightWatcher's range of a well-trained layer's power-law exponent
ALPHA_SIGMAS = 2.0  # an alpha is named only when it lies this many standard errors outside [ALPHA_LOW, ALPHA_HIGH]


def run(ctx: AnalysisContext, done: Mapping[str, Any]) -> tuple[tuple[LayerWeights, ...], list[Finding]]:
    # the (C, H, W) map a CNN head's first dense layer reads, for its neuron images
    maps = flattened_maps(ctx.module, ctx.first) if ctx.first is not None else None
    with ctx.timed("weights"):
        weights = weight_report(ctx.module, ctx.info.image_shape, input_maps=maps)
    return weights, weight_findings(weights) if weights else []


def weight_findings(weights: tuple[LayerWeights, ...]) -> list[Finding]:
    out = []
    for w in weights:
        if w.near_zero_fraction >= 0.5:
            out.append(
                Finding(
                    "weights",
                    "info",
                    f"layer {w.layer}: {pct(w.near_zero_fraction)} of weights are below 1% of the 99.9th percentile "
                    "of its |w|; it is a good candidate for pruning",
                    {"near_zero_fraction": w.near_zero_fraction},
                )
            )
        low = min(w.out_features, w.in_features)
        if low >= 8 and w.stable_rank < 0.05 * low:
            out.append(
                Finding(
                    "weights",
                    "info",
                    f"layer {w.layer}: stable rank {w.stable_rank:.1f} of a possible {low}; the layer acts almost "
                    "like a low-rank map",
                    {"stable_rank": w.stable_rank, "max_rank": low},
                )
            )
        if w.alpha_short_tail:
            out.append(
                Finding(
                    "weights",
                    "info",
                    f"layer {w.layer}: alpha {w.alpha:.2f} from a tail of {count(w.alpha_tail_size, 'eigenvalue')}: "
                    f"too few to trust (fewer than {SHORT_TAIL}; standard error ± {(w.alpha - 1.0) / math.sqrt(w.alpha_tail_size):.2f}). "
                    "WeightWatcher reports the same fit",
                    {"alpha": w.alpha, "alpha_tail_size": w.alpha_tail_size},
                )
            )
            continue
        # an alpha fitted to n eigenvalues has a standard error of (alpha - 1) / sqrt(n): a short tail's alpha
        # is named only when it is clearly outside the range
        margin = ALPHA_SIGMAS * (w.alpha - 1.0) / math.sqrt(w.alpha_tail_size) if w.alpha_tail_size else math.inf
        if w.alpha + margin < ALPHA_LOW or w.alpha - margin > ALPHA_HIGH:
            shape = (
                "a very heavy tail; in Martin & Mahoney's studies such layers are often over-fitted or carry "
                "a few dominant directions"
                if w.alpha < ALPHA_LOW
                else "a light tail, close to a random matrix's; in Martin & Mahoney's studies such layers are "
                "often under-trained"
            )
            out.append(
                Finding(
                    "weights",
                    "info",
                    f"layer {w.layer}: power-law exponent alpha {w.alpha:.2f} of its eigenvalue spectrum "
                    f"(± {margin / ALPHA_SIGMAS:.2f}, fitted to the top {w.alpha_tail_size} eigenvalues), outside "
                    "the 2 to 6 of well-trained "
                    f"layers: {shape}. A hint to look closer, not a verdict",
                    {"alpha": w.alpha, "alpha_tail_size": w.alpha_tail_size},
                )
            )
    return out


SECTION = register(SectionSpec("weights", run, field="weights", option="weights"))
