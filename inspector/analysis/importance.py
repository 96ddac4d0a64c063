"""Feature importance with Captum, global and per class; neuron-level conductance;
and the model-randomisation sanity check.

Attributions explain the logit of the **true class** of each sample, from an
all-zero baseline. After dense-inspector's standardisation, zero is the
training mean: an attribution says how much a feature's deviation from the
average moved the logit.

The methods, one Captum class each, are the registry in :mod:`inspector.analysis.methods`.

Global importance is the mean |attribution| over the evaluation samples, and
per class over the samples of that class. The sanity check follows Adebayo et
al. 2018, "Sanity Checks for Saliency Maps": the Spearman rank correlation
between each sample's attribution on the trained model and on a copy with
every linear layer re-initialised. A method that still scores high is not
looking at the model.
"""

from __future__ import annotations

import contextlib
import copy
import time
import warnings
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import nn

from inspector.analysis.guard import inspecting
from inspector.analysis.methods import METHODS, CallContext, method_spec
from inspector.analysis.parameters import linear_layers
from inspector.results import result



@result
class MethodImportance:
    """One attribution method over the evaluation samples.

    ``global_importance`` ``(d,)``: mean |attribution|; ``per_class`` ``(C, d)``:
    the same over each class's samples (NaN for a class with no samples);
    ``mean_attribution`` ``(d,)``: the signed mean. ``convergence_delta``: mean
    |delta| for methods with a completeness property. ``sanity_correlation``:
    mean Spearman correlation against the randomised model (lower is better).
    ``error`` says why a method could not run on this model; its arrays are then empty.
    """

    method: str
    global_importance: np.ndarray
    per_class: np.ndarray
    mean_attribution: np.ndarray
    convergence_delta: float | None
    sanity_correlation: float | None
    seconds: float
    error: str | None = None

    @property
    def ranking(self) -> np.ndarray:
        """Feature indices, most important first."""
        return np.argsort(-self.global_importance, kind="stable")


@result
class LayerConductanceResult:
    """Conductance (Dhamdhere et al. 2018) of hidden layer ``layer``.

    ``by_class`` ``(C, m)``: mean conductance of neuron j for class c over the
    samples of class c (how much the neuron carries that class's logit).
    ``neuron_inputs`` ``(m, d)``: mean |NeuronConductance| of input i through
    neuron j, for the predicted class (which inputs drive neuron j).
    ``completeness_gap``: mean over samples of ``|sum_j conductance_j - (f(x) - f(baseline))|``;
    conductance is a first-order path sum, so this shrinks like ``1 / n_steps``.
    """

    layer: str
    by_class: np.ndarray
    neuron_inputs: np.ndarray
    n_samples: int
    n_steps: int
    completeness_gap: float


@result
class ImportanceReport:
    methods: tuple[MethodImportance, ...]
    conductance: tuple[LayerConductanceResult, ...]
    n_samples: int
    n_steps: int
    baseline: str

    def method(self, name: str) -> MethodImportance:
        for m in self.methods:
            if m.method == name:
                return m
        raise KeyError(f"no importance for method {name!r}; have {[m.method for m in self.methods]}")


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch's global RNG (Captum samples from it) and put the caller's state back."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.random.set_rng_state(state)


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
    extra = () if additional_forward_args is None else (
        additional_forward_args if isinstance(additional_forward_args, tuple) else (additional_forward_args,))
    with torch.autograd.set_grad_enabled(True):
        out = forward_fn(*inputs, *extra)
        if target_ind is not None:
            if isinstance(target_ind, int):
                out = out[:, target_ind]
            else:
                index = torch.as_tensor(target_ind, device=out.device).reshape(-1)
                out = out.gather(1, index.expand(out.shape[0])[:, None] if index.numel() == 1 else index[:, None])
        return torch.autograd.grad(out.sum(), inputs)


def attribute(
    model: nn.Module,
    method: str,
    X: torch.Tensor,
    target: torch.Tensor,
    *,
    n_steps: int = 50,
    background: torch.Tensor | None = None,
    internal_batch_size: int | None = None,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Attributions ``(n, d)`` of ``method`` for ``X`` ``(n, d)`` and ``target`` ``(n,)``, with delta ``(n,)``.

    ``method`` is a name in :data:`~inspector.analysis.methods.REGISTRY`. ``model`` must
    already be in eval mode. Batched by Captum (``internal_batch_size`` /
    ``perturbations_per_eval``), never per sample.
    """
    from captum import attr

    spec = method_spec(method)
    X = X.detach().clone().requires_grad_(spec.needs_gradient)
    explainer = getattr(attr, spec.captum_class)(model)
    if spec.summed_gradients:
        explainer.gradient_func = summed_gradients
    settings = spec.settings(CallContext(inputs=X, baseline=torch.zeros_like(X[:1]), background=background,
                                         n_steps=n_steps, internal_batch_size=internal_batch_size))
    with _seeded(seed), warnings.catch_warnings():
        # DeepLift announces the temporary hooks it puts on activations; they are its own and it removes them
        warnings.filterwarnings("ignore", message="Setting forward, backward hooks", category=UserWarning)
        if spec.has_delta:
            out, delta = explainer.attribute(X, target=target, return_convergence_delta=True, **settings)
            return out, delta
        return explainer.attribute(X, target=target, **settings), None


def _rank(a: np.ndarray) -> np.ndarray:
    """Average ranks along the last axis (ties share their mean rank)."""
    from scipy.stats import rankdata

    return rankdata(a, axis=-1)


def spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row Spearman correlation of ``|a|`` and ``|b|`` ``(n, d)``, over features nonzero in either.

    Features that are exactly zero in both rows (an input equal to the baseline
    gets zero attribution from both models) would tie and inflate the score, so they are left out.
    """
    out = np.full(a.shape[0], np.nan)
    for i, (ra, rb) in enumerate(zip(np.abs(a), np.abs(b))):
        keep = (ra != 0) | (rb != 0)
        if keep.sum() < 3:
            continue
        x, y = _rank(ra[keep]), _rank(rb[keep])
        x, y = x - x.mean(), y - y.mean()
        denom = np.sqrt((x * x).sum() * (y * y).sum())
        if denom > 0:
            out[i] = float((x * y).sum() / denom)
    return out


def randomized_copy(model: nn.Module, seed: int = 1) -> nn.Module:
    """A copy with every linear layer re-initialised (Adebayo et al.'s full cascading randomisation)."""
    clone = copy.deepcopy(model)
    with _seeded(seed):
        for _, layer in linear_layers(clone):
            layer.reset_parameters()
    return clone.eval()


def randomization_correlation(
    explain: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
    model: nn.Module,
    X: torch.Tensor,
    target: torch.Tensor,
    seed: int = 1,
    trained: np.ndarray | None = None,
) -> float:
    """Mean Spearman correlation between ``explain`` on ``model`` and on its randomised copy.

    ``trained`` ``(n, d)``: the trained model's attributions for ``X`` when already computed.
    """
    if trained is None:
        trained = explain(model, X, target).detach().cpu().numpy()
    random = explain(randomized_copy(model, seed), X, target).detach().cpu().numpy()
    return float(np.nanmean(spearman_rows(trained, random))) if len(X) else float("nan")


def _per_class(values: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """Row means of ``values`` ``(n, k)`` per class ``(C, k)``; NaN for a class with no rows."""
    out = np.full((n_classes, values.shape[1]), np.nan)
    for c in range(n_classes):
        rows = values[y == c]
        if len(rows):
            out[c] = rows.mean(axis=0)
    return out


def _chunks(n: int, size: int) -> list[slice]:
    return [slice(s, min(s + size, n)) for s in range(0, n, size)]


def method_importance(
    model: nn.Module,
    method: str,
    X: torch.Tensor,
    y: torch.Tensor,
    n_classes: int,
    *,
    n_steps: int = 50,
    chunk: int = 256,
    sanity_samples: int = 64,
    background: torch.Tensor | None = None,
) -> MethodImportance:
    """Global and per-class importance of one method, and its sanity-check score."""
    started = time.perf_counter()
    try:
        parts, deltas = [], []
        for s in _chunks(len(X), chunk):
            a, delta = attribute(model, method, X[s], y[s], n_steps=n_steps, background=background,
                                 internal_batch_size=max(chunk, 1) * min(n_steps, 64))
            parts.append(a.detach())
            if delta is not None:
                deltas.append(delta.detach().reshape(-1))
        attributions = torch.cat(parts).cpu().numpy().astype(np.float64)
        sub = slice(0, min(sanity_samples, len(X)))

        def explain(m: nn.Module, xs: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
            return attribute(m, method, xs, ts, n_steps=n_steps, background=background)[0]

        # the trained model's attributions for these samples are already in hand
        sanity = randomization_correlation(explain, model, X[sub], y[sub], trained=attributions[sub])
    except (RuntimeError, AssertionError, ValueError, TypeError) as exc:
        # Captum refuses some architectures (e.g. DeepLift on an unsupported
        # nonlinearity); the other methods still run and the report says why.
        return MethodImportance(method, np.zeros(0), np.zeros((0, 0)), np.zeros(0), None, None,
                                time.perf_counter() - started, error=str(exc).splitlines()[0][:300])
    abs_attr = np.abs(attributions)
    y_np = y.cpu().numpy()
    delta_mean = float(torch.cat(deltas).abs().mean()) if deltas else None
    return MethodImportance(
        method=method,
        global_importance=abs_attr.mean(axis=0),
        per_class=_per_class(abs_attr, y_np, n_classes),
        mean_attribution=attributions.mean(axis=0),
        convergence_delta=delta_mean,
        sanity_correlation=sanity,
        seconds=time.perf_counter() - started,
    )


def conductance(
    model: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    n_classes: int,
    *,
    n_steps: int = 50,
    max_samples: int = 128,
    neuron_samples: int = 32,
) -> tuple[LayerConductanceResult, ...]:
    """LayerConductance per class and NeuronConductance per neuron for every hidden linear layer."""
    from captum.attr import LayerConductance, NeuronConductance

    layers = linear_layers(model)[:-1]  # the last linear layer is the output, not a hidden layer
    X_sub, y_sub = X[:max_samples], y[:max_samples]
    X_nc = X[:neuron_samples]
    baseline = torch.zeros_like(X[:1])
    with torch.no_grad():
        predicted = model(X_nc).argmax(dim=1)
        logit_change = (model(X_sub) - model(baseline)).gather(1, y_sub[:, None]).squeeze(1).cpu().numpy()
    y_np = y_sub.cpu().numpy()
    out = []
    for name, layer in layers:
        cond = LayerConductance(model, layer).attribute(
            X_sub, baselines=baseline, target=y_sub, n_steps=n_steps,
            internal_batch_size=len(X_sub) * n_steps)
        cond = cond.detach().cpu().numpy().astype(np.float64)
        gap = float(np.abs(cond.sum(axis=1) - logit_change).mean()) if len(cond) else 0.0
        by_class = _per_class(cond, y_np, n_classes)
        nc = NeuronConductance(model, layer)
        neuron_inputs = np.zeros((layer.out_features, X.shape[1]))
        for j in range(layer.out_features):  # one batched call per neuron, over all samples at once
            a = nc.attribute(X_nc, neuron_selector=j, baselines=baseline, target=predicted,
                             n_steps=n_steps, internal_batch_size=len(X_nc) * n_steps)
            neuron_inputs[j] = a.detach().abs().mean(dim=0).cpu().numpy()
        out.append(LayerConductanceResult(name, by_class, neuron_inputs, int(len(X_sub)), int(n_steps), gap))
    return tuple(out)


def importance_report(
    model: nn.Module,
    X: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    n_classes: int,
    *,
    methods: tuple[str, ...] = METHODS,
    n_steps: int = 50,
    max_samples: int | None = 1000,
    with_conductance: bool = True,
) -> ImportanceReport:
    """Every method in ``methods`` plus conductance, leaving ``model`` as it was."""
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise ValueError(f"unknown attribution methods {sorted(unknown)}; choose from {', '.join(METHODS)}")
    X = torch.as_tensor(X, dtype=torch.float32)
    y = torch.as_tensor(y, dtype=torch.long)
    if max_samples is not None:
        X, y = X[:max_samples], y[:max_samples]
    device = next(model.parameters()).device
    X, y = X.to(device), y.to(device)
    background = X[torch.randperm(len(X), generator=torch.Generator().manual_seed(0))[:32].to(device)]
    with inspecting(model):
        results = tuple(
            method_importance(model, m, X, y, n_classes, n_steps=n_steps, background=background)
            for m in methods
        )
        cond = conductance(model, X, y, n_classes) if with_conductance else ()
    return ImportanceReport(results, cond, int(len(X)), int(n_steps), "zeros (the training mean)")


class Explainer:
    """Per-sample attributions on demand, cached: the one object that holds the model
    for questions only the model can answer (used by the dashboard)."""

    def __init__(self, model: nn.Module, X: np.ndarray, y: np.ndarray, *, n_steps: int = 50) -> None:
        self.model = model
        self.X = torch.as_tensor(X, dtype=torch.float32)
        self.y = torch.as_tensor(y, dtype=torch.long)
        self.n_steps = n_steps
        self._cache: dict[tuple[str, int, int | None], np.ndarray] = {}

    def explain(self, method: str, index: int, target: int | None = None) -> np.ndarray:
        """Attribution ``(d,)`` of sample ``index`` for ``target`` (default: its label)."""
        key = (method, int(index), target)
        if key not in self._cache:
            x = self.X[index:index + 1]
            t = torch.tensor([int(self.y[index]) if target is None else int(target)])
            with inspecting(self.model):
                a, _ = attribute(self.model, method, x, t, n_steps=self.n_steps,
                                 background=self.X[:32])
            self._cache[key] = a.detach().cpu().numpy()[0]
        return self._cache[key]

    def predict(self, index: int) -> np.ndarray:
        """Class probabilities ``(C,)`` for sample ``index``."""
        with inspecting(self.model), torch.no_grad():
            return torch.softmax(self.model(self.X[index:index + 1]), dim=1).cpu().numpy()[0]
