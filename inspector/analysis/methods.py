"""The attribution methods, as a registry of small specs: one Captum class each.

A spec says what the method is (label, paper), what it needs (gradients or only
forward passes), what it guarantees (a convergence delta for methods with a
completeness property), the settings it is called with, and how it reaches
integer token ids, which cannot be differentiated or interpolated:

``layer``
    Captum's layer variant (``layer_class``) on the model's input embedding:
    gradients and interpolation happen on the embedding's output.
``embedding``
    the method's own class on the embedding's output, fed back into the model
    through a hook (GradientShap: ``LayerGradientShap`` interpolates its baselines
    in the input space, which ids are not).
``ids``
    the method's own class on the ids themselves, one feature per position
    (perturbation methods: a position is replaced by the pad token or shuffled).

:func:`method_spec` looks one up; adding a method is adding one entry, not another branch.

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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch

TOKEN_ROUTES = ("layer", "embedding", "ids")


@dataclass(frozen=True)
class CallContext:
    """What one call of a method gets.

    ``inputs`` ``(n, ...)``: what Captum attributes (float inputs, token ids, or the
    embedding's output ``(n, T, E)``). ``baseline``: the reference, ``(1, ...)`` zeros for
    float inputs, ``(n, T)`` ids or ``(n, T, E)`` embeddings for tokens. ``background``
    ``(k, ...)``: GradientShap's baseline distribution (``None``: the baseline).
    ``n_steps``, ``internal_batch_size``: Captum's step settings; ``perturbations``: how
    many perturbed copies of the batch one forward pass evaluates.
    """

    inputs: torch.Tensor
    baseline: torch.Tensor
    background: torch.Tensor | None
    n_steps: int
    internal_batch_size: int | None
    perturbations: int = 1


@dataclass(frozen=True)
class MethodSpec:
    """One attribution method.

    ``captum_class`` names the class in ``captum.attr``; ``needs_gradient``: the inputs
    must require grad (false for perturbation methods); ``has_delta``: the method has a
    completeness property and returns a convergence delta; ``summed_gradients``: the
    one-backward-pass gradient function applies (see
    :func:`inspector.analysis.attribution.summed_gradients`); ``needs_module``: Captum
    wants an ``nn.Module``, not a function (DeepLift hooks the model's nonlinearities);
    ``settings(ctx)``: the keyword arguments of its ``attribute`` call besides the
    inputs, the target and the additional forward arguments.

    Token ids: ``tokens`` is the route (see the module docstring); for ``"layer"``,
    ``layer_class`` names Captum's layer variant, built with ``layer_options`` and
    called with ``layer_settings(ctx)``. ``absolute``: the attribution is a magnitude
    (saliency), taken per embedding dimension before the sum over the embedding.
    """

    name: str
    label: str
    captum_class: str
    citation: str
    needs_gradient: bool
    has_delta: bool
    summed_gradients: bool
    settings: Callable[[CallContext], dict[str, Any]]
    tokens: str = "layer"
    layer_class: str | None = None
    layer_options: Mapping[str, Any] = field(default_factory=dict)
    layer_settings: Callable[[CallContext], dict[str, Any]] | None = None
    needs_module: bool = False
    absolute: bool = False

    def __post_init__(self) -> None:
        if self.tokens not in TOKEN_ROUTES:
            raise ValueError(f"{self.name}: tokens route {self.tokens!r} is not one of {TOKEN_ROUTES}")
        if self.tokens == "layer" and self.layer_class is None:
            raise ValueError(f"{self.name}: the 'layer' route needs a layer_class")

    def token_settings(self, ctx: CallContext) -> dict[str, Any]:
        """The ``attribute`` keyword arguments on the token route."""
        if self.tokens == "layer" and self.layer_settings is not None:
            return self.layer_settings(ctx)
        return self.settings(ctx)


def _ig_settings(ctx: CallContext) -> dict[str, Any]:
    return {"baselines": ctx.baseline, "n_steps": ctx.n_steps, "internal_batch_size": ctx.internal_batch_size}


def _deeplift_settings(ctx: CallContext) -> dict[str, Any]:
    return {"baselines": ctx.baseline.expand_as(ctx.inputs)}


REGISTRY: tuple[MethodSpec, ...] = (
    MethodSpec(
        "integrated_gradients",
        "Integrated Gradients",
        "IntegratedGradients",
        "Sundararajan et al. 2017",
        needs_gradient=True,
        has_delta=True,
        summed_gradients=True,
        settings=_ig_settings,
        layer_class="LayerIntegratedGradients",
    ),
    MethodSpec(
        "saliency",
        "Saliency",
        "Saliency",
        "Simonyan et al. 2014",
        needs_gradient=True,
        has_delta=False,
        summed_gradients=True,
        settings=lambda ctx: {"abs": True},
        # the bare gradient at the embedding's output; |.| is taken per dimension afterwards
        layer_class="LayerGradientXActivation",
        layer_options={"multiply_by_inputs": False},
        layer_settings=lambda ctx: {},
        absolute=True,
    ),
    MethodSpec(
        "input_x_gradient",
        "Input x Gradient",
        "InputXGradient",
        "Shrikumar et al. 2016",
        needs_gradient=True,
        has_delta=False,
        summed_gradients=True,
        settings=lambda ctx: {},
        layer_class="LayerGradientXActivation",
    ),
    MethodSpec(
        "deeplift",
        "DeepLift",
        "DeepLift",
        "Shrikumar et al. 2017",
        needs_gradient=True,
        has_delta=True,
        summed_gradients=False,
        settings=_deeplift_settings,
        layer_class="LayerDeepLift",
        needs_module=True,
    ),
    MethodSpec(
        "gradient_shap",
        "GradientShap",
        "GradientShap",
        "Lundberg & Lee 2017",
        needs_gradient=True,
        has_delta=True,
        summed_gradients=False,
        settings=lambda ctx: {
            "baselines": ctx.background if ctx.background is not None else ctx.baseline,
            "n_samples": 20,
            "stdevs": 0.0,
        },
        tokens="embedding",
    ),
    MethodSpec(
        "feature_ablation",
        "Feature ablation",
        "FeatureAblation",
        "Zeiler & Fergus 2014",
        needs_gradient=False,
        has_delta=False,
        summed_gradients=False,
        settings=lambda ctx: {"baselines": ctx.baseline, "perturbations_per_eval": ctx.perturbations},
        tokens="ids",
    ),
    MethodSpec(
        "feature_permutation",
        "Feature permutation",
        "FeaturePermutation",
        "Breiman 2001",
        needs_gradient=False,
        has_delta=False,
        summed_gradients=False,
        settings=lambda ctx: {"perturbations_per_eval": ctx.perturbations},
        tokens="ids",
    ),
)

METHODS: tuple[str, ...] = tuple(spec.name for spec in REGISTRY)
METHOD_LABELS: dict[str, str] = {spec.name: spec.label for spec in REGISTRY}


def method_spec(name: str) -> MethodSpec:
    """The spec registered as ``name``; ``ValueError`` naming the choices otherwise."""
    for spec in REGISTRY:
        if spec.name == name:
            return spec
    raise ValueError(f"unknown attribution method {name!r}; choose from {', '.join(METHODS)}")


LEAD_METHOD = "integrated_gradients"  # complete (attributions sum to f(x) - f(baseline)) and sanity-checked

_Lead = TypeVar("_Lead")


def lead_method(items: Sequence[_Lead]) -> _Lead | None:
    """The one the tool leads with (ranks features by, names first, opens a view on): Integrated Gradients
    where it is among ``items``, else the first; ``None`` for none. ``items``: method names, or records
    with a ``method`` field (a :class:`~inspector.analysis.importance.MethodImportance`, an importance shift)."""
    return next((item for item in items if getattr(item, "method", item) == LEAD_METHOD), items[0] if items else None)
