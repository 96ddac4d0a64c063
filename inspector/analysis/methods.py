"""The attribution methods, as a registry of small specs: one Captum class each.

A spec says what the method is (label, paper), what it needs (gradients or only
forward passes), what it guarantees (a convergence delta for methods with a
completeness property) and the settings it is called with. :func:`method_spec`
looks one up; adding a method is adding one entry, not another branch.

===================== ======================================================
integrated_gradients  Sundararajan et al. 2017; completeness: attributions sum
                      to f(x) - f(baseline), off by the reported delta
saliency              |df/dx| (Simonyan et al. 2014)
input_x_gradient      x * df/dx (Shrikumar et al. 2016)
deeplift              Shrikumar et al. 2017 (rescale rule)
gradient_shap         Lundberg & Lee 2017, baselines drawn from the data
feature_ablation      f(x) - f(x with feature i set to the baseline)
feature_permutation   f(x) - f(x with feature i shuffled across the batch)
===================== ======================================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class CallContext:
    """What one call of a method gets: ``inputs`` ``(n, d)``, an all-zero ``baseline`` ``(1, d)``,
    an optional ``background`` sample ``(k, d)`` (GradientShap's baselines) and the step settings."""

    inputs: torch.Tensor
    baseline: torch.Tensor
    background: torch.Tensor | None
    n_steps: int
    internal_batch_size: int | None


@dataclass(frozen=True)
class MethodSpec:
    """One attribution method.

    ``captum_class`` names the class in ``captum.attr``; ``needs_gradient``: the inputs
    must require grad (false for perturbation methods); ``has_delta``: the method has a
    completeness property and returns a convergence delta; ``summed_gradients``: the
    one-backward-pass gradient function applies (see
    :func:`inspector.analysis.importance.summed_gradients`); ``settings(ctx)``: the
    keyword arguments of its ``attribute`` call besides the inputs and the target.
    """

    name: str
    label: str
    captum_class: str
    citation: str
    needs_gradient: bool
    has_delta: bool
    summed_gradients: bool
    settings: Callable[[CallContext], dict[str, Any]]


def _perturbations(ctx: CallContext) -> int:
    # one forward pass evaluates up to 32 perturbed copies of the batch: fewer Python round trips
    return min(int(ctx.inputs.shape[1]), 32)


REGISTRY: tuple[MethodSpec, ...] = (
    MethodSpec("integrated_gradients", "Integrated Gradients", "IntegratedGradients", "Sundararajan et al. 2017",
               needs_gradient=True, has_delta=True, summed_gradients=True,
               settings=lambda ctx: {"baselines": ctx.baseline, "n_steps": ctx.n_steps,
                                     "internal_batch_size": ctx.internal_batch_size}),
    MethodSpec("saliency", "Saliency", "Saliency", "Simonyan et al. 2014",
               needs_gradient=True, has_delta=False, summed_gradients=True,
               settings=lambda ctx: {"abs": True}),
    MethodSpec("input_x_gradient", "Input x Gradient", "InputXGradient", "Shrikumar et al. 2016",
               needs_gradient=True, has_delta=False, summed_gradients=True,
               settings=lambda ctx: {}),
    MethodSpec("deeplift", "DeepLift", "DeepLift", "Shrikumar et al. 2017",
               needs_gradient=True, has_delta=True, summed_gradients=False,
               settings=lambda ctx: {"baselines": ctx.baseline.expand_as(ctx.inputs)}),
    MethodSpec("gradient_shap", "GradientShap", "GradientShap", "Lundberg & Lee 2017",
               needs_gradient=True, has_delta=True, summed_gradients=False,
               settings=lambda ctx: {"baselines": ctx.background if ctx.background is not None else ctx.baseline,
                                     "n_samples": 20, "stdevs": 0.0}),
    MethodSpec("feature_ablation", "Feature ablation", "FeatureAblation", "Zeiler & Fergus 2014",
               needs_gradient=False, has_delta=False, summed_gradients=False,
               settings=lambda ctx: {"baselines": 0.0, "perturbations_per_eval": _perturbations(ctx)}),
    MethodSpec("feature_permutation", "Feature permutation", "FeaturePermutation", "Breiman 2001",
               needs_gradient=False, has_delta=False, summed_gradients=False,
               settings=lambda ctx: {"perturbations_per_eval": _perturbations(ctx)}),
)

METHODS: tuple[str, ...] = tuple(spec.name for spec in REGISTRY)
METHOD_LABELS: dict[str, str] = {spec.name: spec.label for spec in REGISTRY}


def method_spec(name: str) -> MethodSpec:
    """The spec registered as ``name``; ``ValueError`` naming the choices otherwise."""
    for spec in REGISTRY:
        if spec.name == name:
            return spec
    raise ValueError(f"unknown attribution method {name!r}; choose from {', '.join(METHODS)}")
