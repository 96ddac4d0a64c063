"""Attributions of one Captum method on one batch: :func:`attribute`.

Every attribution explains the task's target (:class:`~inspector.analysis.task.Task`):
the true class's logit for classification, the output for regression, a user
``target(output, batch)`` otherwise. Captum sees ``task.explained(model, batch)``
with ``target=0`` and the batch's other tensors (attention mask, labels) as
``additional_forward_args``.

What a feature is depends on the input (:class:`~inspector.core.adapters.InputAdapter`, whose
``through_embedding`` picks the route and whose ``baseline`` gives the reference):

* float inputs (``"features"`` ``(n, d)``, ``"array"`` e.g. images ``(n, C, H, W)``):
  attributions keep the input's shape, from an all-zero baseline (after
  dense-inspector's standardisation, zero is the training mean).
* integer token ids ``(n, T)``: the gradient methods run through the model's input
  embedding (Captum's layer variants, see :mod:`inspector.analysis.methods`) and
  are summed over the embedding dimension to one score per token, exactly zero
  at padded positions. The reference input is the pad token at every real
  position (the input itself at padded ones).

The methods, one Captum class each, are the registry in :mod:`inspector.analysis.methods`.
Also here: the wrapper Captum is handed at the input (the tokens route's ``EmbeddingForward``
lives with its adapter, :mod:`inspector.core.adapters.tokens`), the one-backward-pass :func:`summed_gradients`, seeding Captum's random draws (:func:`seeded`), how many samples
one pass may hold, and what Captum's errors mean (:func:`method_error`).
"""

from __future__ import annotations

import contextlib
import functools
import math
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from inspector.analysis.inputs import Batch, InputAdapter, make_adapter
from inspector.analysis.methods import CallContext, MethodSpec, method_spec
from inspector.analysis.task import Task, forward_args, make_task
from inspector.core.adapters import EmbeddingForward
from inspector.core.dense import dense_layers, out_features

CHUNK_ROWS = 256  # samples per attribution call
# Input elements (or embedding outputs, for tokens) one forward pass may hold: bounds
# Captum's internal batches and perturbations so a large input does not exhaust memory.
ELEMENTS_PER_PASS = 1 << 22
# On a CPU, a pass of Integrated Gradients' steps whose activations fit a core's cache (2 MB of
# float32 here) beats one pass that streams activations of all 50 steps through memory: at width 256,
# batch 256, 8 steps per pass run 1.1x the time of 50 separate forward+backward passes, all 50
# in one pass 1.6x (benchmarks/bench_analysis.py).
CPU_PASS_ELEMENTS = 1 << 19
# What Captum raises when a method or layer does not apply to a model (caught and reported in one line).
CAPTUM_ERRORS = (RuntimeError, AssertionError, ValueError, TypeError, IndexError, NotImplementedError)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch's and numpy's global RNGs (Captum draws from both) and put the caller's state back."""
    state = torch.random.get_rng_state()
    np_state = np.random.get_state()
    torch.manual_seed(seed)
    np.random.seed(seed)
    try:
        yield
    finally:
        torch.random.set_rng_state(state)
        np.random.set_state(np_state)


def summed_gradients(
    forward_fn: Callable[..., torch.Tensor],
    inputs: tuple[torch.Tensor, ...],
    target_ind: int | torch.Tensor | list[int] | None = None,
    additional_forward_args: object | None = None,
) -> tuple[torch.Tensor, ...]:
    """Drop-in for Captum's ``gradient_func``: one backward pass of the summed target logits.

    Captum's default hands autograd a tuple of one scalar per row, and autograd
    then builds a ``ones_like`` for each of them: a per-sample Python loop that
    costs more than the network itself for a small MLP. In eval mode the rows
    of a batch do not interact, so the gradient of the sum is each row's own
    gradient, with one backward pass (checked against Captum's default in the tests).
    """
    extra = (
        ()
        if additional_forward_args is None
        else (additional_forward_args if isinstance(additional_forward_args, tuple) else (additional_forward_args,))
    )
    with torch.autograd.set_grad_enabled(True):
        out = forward_fn(*inputs, *extra)
        if target_ind is not None:
            if isinstance(target_ind, int):
                out = out[:, target_ind]
            else:
                index = torch.as_tensor(target_ind, device=out.device).reshape(-1)
                out = out.gather(1, index.expand(out.shape[0])[:, None] if index.numel() == 1 else index[:, None])
        return torch.autograd.grad(out.sum(), inputs)


def _explainer_class(name: str) -> Any:
    """The Captum class ``name``; Integrated Gradients as :func:`_step_summed_integrated_gradients`."""
    from captum import attr

    if name == "IntegratedGradients":
        return _step_summed_integrated_gradients()
    return getattr(attr, name)


@functools.cache
def _step_summed_integrated_gradients() -> type:
    """Captum's ``IntegratedGradients`` with a leaner inner pass (its batching over steps, baselines,
    target and delta unchanged): the scaled inputs of all the pass's steps are one broadcast
    ``baseline + alphas * (x - baseline)`` instead of one tensor per step and a concatenation, and
    the sum over steps is one product of the Riemann weights with the gradients ``(steps, n x d)``
    instead of a scaled copy and a sum. Float16/bfloat16 inputs go through Captum's own pass."""
    from captum._utils.common import _expand_additional_forward_args, _expand_target, _format_additional_forward_args
    from captum.attr import IntegratedGradients
    from captum.attr._utils.approximation_methods import approximation_parameters

    class StepSummedIntegratedGradients(IntegratedGradients):  # type: ignore[misc]
        def _attribute(
            self,
            inputs: tuple[torch.Tensor, ...],
            baselines: tuple[torch.Tensor | int | float, ...],
            target: Any = None,
            additional_forward_args: Any = None,
            n_steps: int = 50,
            method: str = "gausslegendre",
            step_sizes_and_alphas: tuple[list[float], list[float]] | None = None,
        ) -> tuple[torch.Tensor, ...]:
            if any(x.dtype not in (torch.float32, torch.float64) for x in inputs):
                return super()._attribute(
                    inputs, baselines, target, additional_forward_args, n_steps, method, step_sizes_and_alphas
                )
            if step_sizes_and_alphas is None:
                sizes_of, alphas_of = approximation_parameters(method)
                step_sizes, alphas = sizes_of(n_steps), alphas_of(n_steps)
            else:
                step_sizes, alphas = step_sizes_and_alphas
            differences = tuple(x - b for x, b in zip(inputs, baselines, strict=True))
            scaled = tuple(
                (b + torch.tensor(alphas, dtype=x.dtype, device=x.device).view(-1, *([1] * x.dim())) * d)
                .reshape(-1, *x.shape[1:])
                .requires_grad_()
                for x, b, d in zip(inputs, baselines, differences, strict=True)
            )
            extra = _format_additional_forward_args(additional_forward_args)
            grads = self.gradient_func(
                forward_fn=self.forward_func,
                inputs=scaled,
                target_ind=_expand_target(target, n_steps),
                additional_forward_args=_expand_additional_forward_args(extra, n_steps) if extra is not None else None,
            )
            # Captum's weights are float32 whatever the input; the same here, in the gradient's dtype
            weights = torch.tensor(step_sizes).float()
            totals = tuple(
                (weights.to(g.device, g.dtype)[None] @ g.reshape(n_steps, -1)).reshape(x.shape)
                for g, x in zip(grads, inputs, strict=True)
            )
            if not self.multiplies_by_inputs:
                return totals
            return tuple(t * d for t, d in zip(totals, differences, strict=True))

    return StepSummedIntegratedGradients


class _Explained(nn.Module):
    """``forward(inputs, *args)`` = the task's target ``(n, 1)``, as an ``nn.Module``: DeepLift
    hooks the nonlinearities of the model it is given, so it needs a module, not a function."""

    def __init__(self, model: nn.Module, forward: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.model = model
        self._forward = forward

    def forward(self, inputs: torch.Tensor, *args: Any) -> torch.Tensor:
        return self._forward(inputs, *args)


def per_sample_elements(adapter: InputAdapter, model: nn.Module) -> int:
    """Elements one sample puts through a forward pass at the attributed input (the adapter's
    :meth:`~inspector.core.adapters.InputAdapter.per_sample_elements`)."""
    return adapter.per_sample_elements(model)


def captum_batch_size(rows: int, n_steps: int, per_sample: int, *, cpu_width: int | None = None) -> int:
    """Captum's ``internal_batch_size`` for ``rows`` samples: all steps of a chunk in one pass
    when that fits :data:`ELEMENTS_PER_PASS`, never fewer than the rows themselves.

    ``cpu_width``: on a CPU, the widest activation per sample (elements); the steps of one pass
    are then also bounded so that such an activation fits :data:`CPU_PASS_ELEMENTS`.
    """
    internal = min(CHUNK_ROWS * min(n_steps, 64), ELEMENTS_PER_PASS // per_sample)
    if cpu_width is not None:
        steps = CPU_PASS_ELEMENTS // max(1, rows * max(per_sample, cpu_width))
        internal = min(internal, rows * max(1, steps))
    return max(rows, internal)


def chunk_rows(per_sample: int) -> int:
    """Samples per attribution call: :data:`CHUNK_ROWS`, fewer when one sample puts ``per_sample``
    elements through a pass and :data:`CHUNK_ROWS` of them would exceed :data:`ELEMENTS_PER_PASS`."""
    return max(1, min(CHUNK_ROWS, ELEMENTS_PER_PASS // per_sample))


def _perturbations(rows: int, n_features: int, per_sample: int) -> int:
    # one forward pass evaluates up to 32 perturbed copies of the batch: fewer Python round trips
    return max(1, min(32, n_features, ELEMENTS_PER_PASS // max(1, rows * per_sample)))


@contextlib.contextmanager
def frozen_parameters(model: nn.Module) -> Iterator[None]:
    """``requires_grad`` off on every parameter of ``model`` that has it, and back on afterwards (even on
    an error): gradients with respect to the inputs then neither save each layer's input for a weight
    gradient nor build graph nodes for the weights."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    for p in trainable:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in trainable:
            p.requires_grad_(True)


def _run(
    explainer: Any, inputs: torch.Tensor, spec: MethodSpec, settings: dict[str, Any], args: tuple[Any, ...], seed: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    with seeded(seed), warnings.catch_warnings():
        # DeepLift announces the temporary hooks it puts on activations; they are its own and it removes them
        warnings.filterwarnings("ignore", message="Setting forward, backward hooks", category=UserWarning)
        kwargs = {"target": 0, "additional_forward_args": args or None, **settings}
        if spec.has_delta:
            out, delta = explainer.attribute(inputs, return_convergence_delta=True, **kwargs)
            return out, delta
        return explainer.attribute(inputs, **kwargs), None


def attribute(
    model: nn.Module,
    method: str,
    batch: Batch,
    task: Task | None = None,
    adapter: InputAdapter | None = None,
    *,
    n_steps: int = 50,
    background: torch.Tensor | None = None,
    internal_batch_size: int | None = None,
    perturbations: int | None = None,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Attributions of ``method`` for ``batch`` and the convergence delta ``(n,)`` (``None`` for
    methods without one).

    Float inputs: the input's shape ``(n, ...)``, from an all-zero baseline. Token ids:
    ``(n, T)``, one score per token (the embedding dimension summed), exactly zero at
    padded positions (``T = 1`` for one id per sample, ids ``(n,)``). ``task``/``adapter``: inferred from ``batch`` and ``model`` when
    ``None``. ``background`` ``(k, ...)``: GradientShap's baselines for float inputs
    (default: the zero baseline). ``model`` must already be in eval mode. Batched by
    Captum (``internal_batch_size`` / ``perturbations_per_eval``), never per sample.
    """
    from captum import attr

    task = task if task is not None else make_task(None, batch)
    adapter = adapter if adapter is not None else make_adapter(model, batch)
    spec = method_spec(method)
    forward = task.explained(model, batch)
    args = forward_args(batch)
    per_sample = per_sample_elements(adapter, model)
    rows = len(batch)
    if internal_batch_size is None:
        on_cpu = batch.inputs.device.type == "cpu"
        widest = max((out_features(m) for _, m in dense_layers(model)), default=0)
        internal_batch_size = captum_batch_size(rows, n_steps, per_sample, cpu_width=widest if on_cpu else None)
    internal = internal_batch_size
    if not adapter.through_embedding:
        X = batch.inputs.detach().clone().requires_grad_(spec.needs_gradient)
        explainer = _explainer_class(spec.captum_class)(_Explained(model, forward) if spec.needs_module else forward)
        if spec.summed_gradients:
            explainer.gradient_func = summed_gradients
        n_features = int(math.prod(X.shape[1:]))
        ctx = CallContext(
            X,
            adapter.baseline(X).detach(),
            background,
            n_steps,
            internal,
            perturbations or _perturbations(rows, n_features, per_sample),
        )
        with frozen_parameters(model) if spec.needs_gradient else contextlib.nullcontext():
            out, delta = _run(explainer, X, spec, spec.settings(ctx), args, seed)
        if batch.mask is not None and tuple(batch.mask.shape) == tuple(out.shape[:2]):
            # a padded sequence of float vectors: nothing is attributed to padding
            out = out * batch.mask.reshape(*batch.mask.shape, *([1] * (out.dim() - 2))).to(out.dtype)
        return out, delta

    ids = batch.inputs
    real = batch.mask if batch.mask is not None else torch.ones_like(ids, dtype=torch.bool)
    reference = adapter.baseline(ids, real)
    embedding = adapter.embedding_module(model)
    n_positions = max(1, int(math.prod(ids.shape[1:])))
    perturb = perturbations or _perturbations(rows, n_positions, per_sample)
    if spec.tokens == "layer":
        assert spec.layer_class is not None
        explainer = getattr(attr, spec.layer_class)(
            _Explained(model, forward) if spec.needs_module else forward, embedding, **spec.layer_options
        )
        ctx = CallContext(ids, reference, None, n_steps, internal, perturb)
        out, delta = _run(explainer, ids, spec, spec.token_settings(ctx), args, seed)
    elif spec.tokens == "embedding":
        with torch.no_grad():
            embedded, reference_embedded = embedding(ids), embedding(reference)
            pad_embedded = embedding(torch.full_like(ids[:1], adapter.pad_id))
        explainer = _explainer_class(spec.captum_class)(EmbeddingForward(forward, embedding))
        X = embedded.detach().clone().requires_grad_(True)
        ctx = CallContext(X, reference_embedded, pad_embedded, n_steps, internal, perturb)
        out, delta = _run(explainer, X, spec, spec.token_settings(ctx), (ids, *args), seed)
    else:
        explainer = _explainer_class(spec.captum_class)(forward)
        ctx = CallContext(ids, reference, None, n_steps, internal, perturb)
        out, delta = _run(explainer, ids, spec, spec.token_settings(ctx), args, seed)
    if out.shape != ids.shape:  # per embedding dimension: one score per token
        out = (out.abs() if spec.absolute else out).reshape(*ids.shape, -1).sum(dim=-1)
    return (out * real.to(out.dtype)).reshape(rows, -1), delta


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:300]


# Internal messages of torch/Captum and what they mean for the user's model and data.
_EXPLAINED_ERRORS = (
    ("boolean index did not match", "the attributions do not have the shape of the inputs"),
    ("must have the same dtype", "the inputs' dtype is not the model's"),
    ("Tensors must have same number of dimensions", "the model fails on inputs of the shape attributed"),
    ("shapes cannot be multiplied", "the model fails on inputs of the shape attributed"),
    ("must match the size of tensor", "the model fails on inputs of the shape attributed"),
    (
        "does not require grad and does not have a grad_fn",
        "the target does not depend on the inputs (a causal LM's texts of a single token have no next token to "
        "explain: give texts of two or more tokens)",
    ),
)


def method_error(exc: BaseException) -> str:
    """One line saying why a method or a layer failed: what it means where the message is known, then
    the message itself."""
    line = _one_line(exc)
    meaning = next((what for known, what in _EXPLAINED_ERRORS if known in line), None)
    return (f"{meaning} ({line})" if meaning else line)[:300]
