"""Layer and neuron conductance (Dhamdhere et al. 2018, "How Important Is a Neuron?") of a
model's hidden dense layers: :func:`conductance` and its result, :class:`LayerConductanceResult`.

Layer conductance of every hidden layer comes from the same forward and backward passes
along the integrated-gradients path; NeuronConductance (which inputs drive each neuron)
is run where affordable. Token models are attributed through the embedding's output.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from inspector.analysis.attribution import (
    CAPTUM_ERRORS,
    captum_batch_size,
    method_error,
    per_sample_elements,
)
from inspector.analysis.guard import inspecting
from inspector.analysis.inputs import Batch, InputAdapter, take
from inspector.analysis.samples import class_labels, real_positions
from inspector.analysis.sites import Site, discover_sites
from inspector.analysis.task import Task, forward_args, output_tensor
from inspector.core.dense import is_dense, out_features
from inspector.core.evaluator import nested_tensors
from inspector.errors import InspectorError
from inspector.results import result

CONDUCTANCE_SAMPLES = 128
NEURON_SAMPLES = 32
# NeuronConductance costs one attribution per neuron: neurons x samples x steps forward and
# backward passes of the whole model. Above this many (passes x model parameters) it is skipped,
# and so it is for a layer of more than MAX_NEURONS neurons.
NEURON_CONDUCTANCE_BUDGET = 2e11  # well under a minute on a CPU
MAX_NEURONS = 512


@result
class LayerConductanceResult:
    """Conductance (Dhamdhere et al. 2018) of hidden layer ``layer`` (``m`` neurons).

    A neuron's conductance on a sample is summed over the sample's real positions when
    the layer's output is per position ``(n, T, m)``. ``mean_conductance`` ``(m,)``: its
    mean over the samples. ``by_class`` ``(C, m)``: the mean over the samples of class c
    (how much the neuron carries that class's logit); ``None`` for tasks other than
    classification. ``neuron_inputs`` ``(m, d)``: mean |NeuronConductance| of input
    element i through neuron j, for the predicted class (classification) or the target
    (which inputs drive neuron j); ``(0, 0)`` when skipped, and ``neuron_inputs_skipped``
    says why. ``completeness_gap``: mean over samples of
    ``|sum_j conductance_j - (f(x) - f(baseline))|``; conductance is a first-order path
    sum, so this shrinks like ``1 / n_steps`` for a layer every path crosses (a layer
    that a residual connection bypasses has a gap by construction). ``error`` says in one
    line why Captum could not attribute to this layer; its arrays are then empty.
    """

    layer: str
    by_class: np.ndarray | None
    neuron_inputs: np.ndarray
    n_samples: int
    n_steps: int
    completeness_gap: float
    mean_conductance: np.ndarray = field(default_factory=lambda: np.zeros(0))
    neuron_inputs_skipped: str | None = None
    error: str | None = None


def _linear_outputs(model: nn.Module, batch: Batch) -> tuple[dict[str, torch.Tensor], Any]:
    """``({linear layer path: its output}, the model's output)`` on the first sample of ``batch``."""
    produced: dict[str, torch.Tensor] = {}
    with inspecting(model) as guard, torch.no_grad():
        for name, module in model.named_modules():
            if is_dense(module):
                guard.hook(module.register_forward_hook(lambda m, i, o, name=name: produced.__setitem__(name, o)))
        output = batch.rows(slice(0, 1)).call(model)
    return produced, output


def output_layers(model: nn.Module, batch: Batch) -> list[str]:
    """The dense layers whose output the model returns as it is (:func:`~inspector.core.evaluator.nested_tensors`), in
    registration order: its output layer (a classifier head), and for a model returning several tensors
    (a tuple, a dict, a ``ModelOutput``) each layer producing one of them."""
    produced, output = _linear_outputs(model, batch)
    returned = list(nested_tensors(output))
    return [name for name, t in produced.items() if any(t is r for r in returned)]


def output_layer(model: nn.Module, batch: Batch) -> str | None:
    """The dense layer whose output is the model's output tensor (a classifier head), if any; for a
    model returning several tensors and no ``logits`` (a ``target=`` picks what is explained), the
    first of :func:`output_layers`."""
    produced, output = _linear_outputs(model, batch)
    try:
        main = [output_tensor(output)]
    except InspectorError:
        main = list(nested_tensors(output))
    return next((name for name, t in produced.items() if any(t is r for r in main)), None)


def hidden_layers(model: nn.Module, batch: Batch, sites: Sequence[Site] | None = None) -> list[tuple[str, nn.Linear]]:
    """The hidden dense layers: counted ``sites`` (default: :func:`~inspector.analysis.sites.discover_sites`)
    other than the model's output layers (:func:`output_layers`), in registration order."""
    if sites is None:
        sites = discover_sites(model, batch)
    last = set(output_layers(model, batch))
    modules = dict(model.named_modules())
    return [(s.layer, modules[s.layer]) for s in sites if s.counted and s.layer not in last]


def _reduce_positions(values: torch.Tensor, batch: Batch) -> torch.Tensor:
    """``(n, m)`` from a layer's per-sample values ``(n, ..., m)``: summed over real positions."""
    if values.dim() == 2:
        return values
    mask = batch.position_mask(values.shape)
    if mask is not None:
        values = values * mask[..., None].to(values.dtype)
    return values.reshape(values.shape[0], -1, values.shape[-1]).sum(dim=1)


def _neuron_skip(
    model: nn.Module, adapter: InputAdapter, layer: nn.Linear, out_dim: int, samples: int, n_steps: int, spent: float
) -> str | None:
    """Why NeuronConductance is not run for ``layer``, or ``None`` when it is affordable."""
    if samples <= 0:
        return "not asked for (neuron_samples=0)"
    if adapter.neuron_conductance_skip is not None:
        return adapter.neuron_conductance_skip
    if out_dim != 2:
        return "the layer's output is per position; NeuronConductance needs one value per neuron and sample"
    if out_features(layer) > MAX_NEURONS:
        return f"{out_features(layer)} neurons is more than the {MAX_NEURONS} NeuronConductance is run for"
    params = sum(p.numel() for p in model.parameters())
    cost = float(out_features(layer)) * samples * n_steps * params
    if spent + cost > NEURON_CONDUCTANCE_BUDGET:
        return (
            f"{out_features(layer)} neurons x {samples} samples x {n_steps} steps on a model of {params:,} "
            f"parameters is over the budget ({NEURON_CONDUCTANCE_BUDGET:.0e} passes x parameters)"
        )
    return None


@dataclass(frozen=True)
class _Prepared:
    """One batch on the attribution path: the function of the path point (the target ``(n, 1)``),
    the inputs and baselines (float inputs, or the embedding's output for tokens) and the
    additional forward arguments."""

    batch: Batch
    forward: Callable[..., torch.Tensor]
    inputs: torch.Tensor
    baselines: torch.Tensor
    args: tuple[Any, ...]


def _path_alphas(n_steps: int) -> list[float]:
    """Captum's path points for conductance: ``n_steps + 1`` Gauss-Legendre nodes in (0, 1)."""
    return (0.5 * (1 + np.polynomial.legendre.leggauss(n_steps + 1)[0])).tolist()


def _repeat_args(args: tuple[Any, ...], times: int) -> tuple[Any, ...]:
    """Per-sample forward arguments for ``times`` stacked copies of the batch (Captum's ``repeat``)."""
    return tuple(torch.cat([a] * times) if isinstance(a, torch.Tensor) and a.dim() else a for a in args)


def _layer_conductances(
    part: _Prepared, layers: Sequence[nn.Module], n_steps: int, rows_per_pass: int
) -> list[tuple[torch.Tensor, int] | str]:
    """Conductance (Dhamdhere et al. 2018) of every neuron of each of ``layers`` on one batch, all
    layers from the same forward and backward passes: per layer ``(values, rank)``, ``values``
    ``(n, m)`` float64 (summed over real positions when the layer's output is per position) and
    ``rank`` the layer output's number of dimensions; or a one-line reason the layer has none.

    As Captum's ``LayerConductance``: along the path from the baselines to the inputs at
    ``n_steps + 1`` Gauss-Legendre points ``x_k``, neuron j's conductance is
    ``sum_k dF/dy_j(x_k) * (y_j(x_{k+1}) - y_j(x_k))``. The points are evaluated
    ``rows_per_pass // n`` at a time (consecutive windows share one point).
    """
    n = len(part.batch)
    alphas = _path_alphas(n_steps)
    per_pass = max(2, rows_per_pass // max(n, 1))
    totals: list[torch.Tensor | None] = [None] * len(layers)
    ranks = [2] * len(layers)
    errors: dict[int, str] = {}
    start = 0
    while start < len(alphas) - 1:
        window = alphas[start : start + per_pass]
        captured: list[list[torch.Tensor]] = [[] for _ in layers]
        with torch.autograd.set_grad_enabled(True):
            scaled = torch.cat([part.baselines + a * (part.inputs - part.baselines) for a in window])
            scaled.requires_grad_()
            handles = [
                layer.register_forward_hook(lambda m, i, o, store=store: store.append(o))
                for layer, store in zip(layers, captured)
            ]
            try:
                out = part.forward(scaled, *_repeat_args(part.args, len(window)))
            finally:
                for handle in handles:
                    handle.remove()
            for k, outputs in enumerate(captured):
                if len(outputs) != 1 and k not in errors:
                    errors[k] = (
                        f"applied {len(outputs)} times in one forward pass; conductance needs a layer applied once"
                        if outputs
                        else "not applied in the forward pass"
                    )
            live = [k for k in range(len(layers)) if k not in errors and captured[k][0].requires_grad]
            grads = (
                torch.autograd.grad(out[:, 0].sum(), [captured[k][0] for k in live], allow_unused=True) if live else ()
            )
        for k, outputs in enumerate(captured):
            if k not in errors:
                ranks[k] = outputs[0].dim()
        for k, grad in zip(live, grads):
            y = captured[k][0].detach()
            g = torch.zeros_like(y) if grad is None else grad
            y = y.reshape(len(window), n, *y.shape[1:])
            g = g.reshape(len(window), n, *g.shape[1:])
            step = _reduce_positions(((y[1:] - y[:-1]) * g[:-1]).sum(dim=0), part.batch).double()
            so_far = totals[k]
            totals[k] = step if so_far is None else so_far + step
        start += len(window) - 1
    results: list[tuple[torch.Tensor, int] | str] = []
    for k, layer in enumerate(layers):
        total = totals[k]
        if k in errors:
            results.append(errors[k])
        elif total is None:  # its output does not move along the path: it conducts nothing
            results.append((torch.zeros(n, out_features(layer), dtype=torch.float64), ranks[k]))
        else:
            results.append((total, ranks[k]))
    return results


def _by_class(values: np.ndarray, classes: np.ndarray, n_classes: int) -> np.ndarray:
    """``(C, m)`` mean of ``values`` ``(n, m)`` over each class's rows; NaN for a class with none."""
    out = np.full((n_classes, values.shape[1]), np.nan)
    for c in range(n_classes):
        rows = classes == c
        if rows.any():
            out[c] = values[rows].mean(axis=0)
    return out


def _neuron_conductance(model: nn.Module, layer: nn.Linear, batch: Batch, task: Task, n_steps: int) -> np.ndarray:
    """``(m, d)``: mean |NeuronConductance| of each input element through each neuron of ``layer``."""
    from captum.attr import NeuronConductance

    if task.kind == "classification":
        # which inputs drive neuron j towards the class the model predicts
        with torch.no_grad():
            predicted = output_tensor(batch.call(model)).argmax(dim=1)
        batch = dataclasses.replace(batch, labels=predicted)
    nc = NeuronConductance(task.explained(model, batch), layer)
    out = np.zeros((out_features(layer), int(math.prod(batch.inputs.shape[1:]))))
    for j in range(out_features(layer)):  # one batched call per neuron, over all samples at once
        a = nc.attribute(
            batch.inputs,
            neuron_selector=j,
            baselines=torch.zeros_like(batch.inputs[:1]),
            target=0,
            additional_forward_args=forward_args(batch) or None,
            n_steps=n_steps,
            internal_batch_size=len(batch) * n_steps,
        )
        out[j] = a.detach().abs().mean(dim=0).reshape(-1).cpu().numpy()
    return out


def conductance(
    model: nn.Module,
    batches: Sequence[Batch],
    task: Task,
    adapter: InputAdapter,
    *,
    n_steps: int = 50,
    max_samples: int = CONDUCTANCE_SAMPLES,
    neuron_samples: int = NEURON_SAMPLES,
    n_classes: int | None = None,
    layers: Sequence[tuple[str, nn.Linear]] | None = None,
) -> tuple[LayerConductanceResult, ...]:
    """Layer conductance (per class for classification) of every hidden layer (``layers``, default
    :func:`hidden_layers`) over the first ``max_samples`` samples of ``batches``, all layers from
    the same passes (:func:`_layer_conductances`); and, where affordable, NeuronConductance per neuron.
    Token models are attributed through the embedding's output (the reference: the pad token at
    every real position). ``model`` must be in eval mode.
    """
    if not batches:
        return ()
    if layers is None:
        layers = hidden_layers(model, batches[0])
    sub = take(batches, max_samples)
    per_sample = per_sample_elements(adapter, model)

    def prepared(batch: Batch) -> _Prepared:
        # the adapter's route: the inputs themselves, or the embedding's output for token ids
        forward, x, x0, args = adapter.path(
            model, batch.inputs, real_positions(batch), task.explained(model, batch), forward_args(batch)
        )
        return _Prepared(batch, forward, x, x0, args)

    # per layer: the (n, m) conductances of each batch, or why it has none
    measured: list[list[np.ndarray]] = [[] for _ in layers]
    failed: dict[int, str] = {}
    changes = []
    ranks = [2] * len(layers)
    for batch in sub:
        try:
            part = prepared(batch)
            # f(x) - f(baseline) per sample: what the conductances of a layer every path crosses sum to
            with torch.no_grad():
                moved = part.forward(part.inputs, *part.args) - part.forward(
                    part.baselines.expand_as(part.inputs), *part.args
                )
            changes.append(moved[:, 0].double().cpu().numpy())
            found = _layer_conductances(
                part, [layer for _, layer in layers], n_steps, captum_batch_size(len(batch), n_steps, per_sample)
            )
        except CAPTUM_ERRORS as exc:
            found = [method_error(exc)] * len(layers)
            changes.append(np.full(len(batch), np.nan))
        for k, value in enumerate(found):
            if isinstance(value, str):
                failed.setdefault(k, value)
            else:
                measured[k].append(value[0].cpu().numpy())
                ranks[k] = value[1]
    change = np.concatenate(changes)
    labels = [class_labels(b, task) for b in sub]
    known = [v for v in labels if v is not None]
    classes = np.concatenate(known) if task.kind == "classification" and len(known) == len(labels) else None

    out = []
    spent = 0.0
    for k, (name, layer) in enumerate(layers):
        if k in failed:
            out.append(LayerConductanceResult(name, None, np.zeros((0, 0)), 0, int(n_steps), math.nan, error=failed[k]))
            continue
        values = np.concatenate(measured[k])
        gap = float(np.abs(values.sum(axis=1) - change).mean()) if len(values) else 0.0
        by_class = _by_class(values, classes, n_classes) if classes is not None and n_classes is not None else None
        samples = min(neuron_samples, len(change))
        skipped = _neuron_skip(model, adapter, layer, ranks[k], samples, n_steps, spent)
        neuron_inputs = np.zeros((0, 0))
        if skipped is None:
            try:
                neuron_inputs = _neuron_conductance(model, layer, Batch.concat(take(sub, samples)), task, n_steps)
            except CAPTUM_ERRORS as exc:
                skipped = f"NeuronConductance failed: {method_error(exc)}"
            spent += float(out_features(layer)) * samples * n_steps * sum(p.numel() for p in model.parameters())
        out.append(
            LayerConductanceResult(
                name,
                by_class,
                neuron_inputs,
                len(values),
                int(n_steps),
                gap,
                mean_conductance=values.mean(axis=0) if len(values) else np.zeros(0),
                neuron_inputs_skipped=skipped,
            )
        )
    return tuple(out)
