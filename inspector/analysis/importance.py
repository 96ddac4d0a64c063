"""Feature importance with Captum for any model and input; neuron-level conductance;
and the model-randomisation sanity check.

Every attribution explains the task's target (:class:`~inspector.analysis.task.Task`):
the true class's logit for classification, the output for regression, a user
``target(output, batch)`` otherwise. Captum sees ``task.explained(model, batch)``
with ``target=0`` and the batch's other tensors (attention mask, labels) as
``additional_forward_args``.

What a feature is depends on the input (:class:`~inspector.analysis.inputs.InputAdapter`):

* float inputs (``"features"`` ``(n, d)``, ``"array"`` e.g. images ``(n, C, H, W)``):
  attributions keep the input's shape, from an all-zero baseline (after
  dense-inspector's standardisation, zero is the training mean). Global
  importance is the mean |attribution| per input element, flattened in the
  input's order.
* integer token ids ``(n, T)``: the gradient methods run through the model's input
  embedding (Captum's layer variants, see :mod:`inspector.analysis.methods`) and
  are summed over the embedding dimension to one score per token, exactly zero
  at padded positions. The reference input is the pad token at every real
  position (the input itself at padded ones). Global importance is the mean
  |attribution| per distinct token id over the real positions where it occurs.

The methods, one Captum class each, are the registry in :mod:`inspector.analysis.methods`.
Per class (classification only) is the same mean over the samples of each class.
The samples explained are the data's first ``max_samples``, in chunks.

The sanity check follows Adebayo et al. 2018, "Sanity Checks for Saliency Maps":
the Spearman rank correlation between each sample's attribution on the trained
model and on a copy with every linear, convolution and embedding layer
re-initialised. A method that still scores high is not looking at the model.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from inspector.analysis.guard import inspecting
from inspector.analysis.inputs import Batch, InputAdapter, as_source, floating_dtype, make_adapter
from inspector.analysis.methods import METHODS, CallContext, MethodSpec, method_spec
from inspector.analysis.sites import Site, discover_sites
from inspector.analysis.task import Task, forward_args, make_task, output_tensor
from inspector.results import result

N_EXAMPLES = 16  # per-sample attributions kept in the result, for the views
CHUNK_ROWS = 256  # samples per attribution call
# Input elements (or embedding outputs, for tokens) one forward pass may hold: bounds
# Captum's internal batches and perturbations so a large input does not exhaust memory.
ELEMENTS_PER_PASS = 1 << 22
BACKGROUND_SIZE = 32  # GradientShap's baseline distribution, drawn from the explained samples
SANITY_SAMPLES = 64
CONDUCTANCE_SAMPLES = 128
NEURON_SAMPLES = 32
# NeuronConductance costs one attribution per neuron: neurons x samples x steps forward and
# backward passes of the whole model. Above this many (passes x model parameters) it is skipped,
# and so it is for a layer of more than MAX_NEURONS neurons.
NEURON_CONDUCTANCE_BUDGET = 2e11  # well under a minute on a CPU
MAX_NEURONS = 512
# What Captum raises when a method or layer does not apply to a model (caught and reported in one line).
CAPTUM_ERRORS = (RuntimeError, AssertionError, ValueError, TypeError, IndexError, NotImplementedError)
# Layers the sanity check re-initialises; normalisation layers keep their weights.
RANDOMISED = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.Embedding,
    nn.EmbeddingBag,
)


def _empty(*shape: int, dtype: type = np.float64) -> Callable[[], np.ndarray]:
    return lambda: np.zeros(shape, dtype=dtype)


@result
class MethodImportance:
    """One attribution method over the explained samples.

    ``global_importance`` ``(d,)``: mean |attribution| per feature: per input element
    (flattened in the input's order) for float inputs, per distinct token id
    (:attr:`ImportanceReport.token_ids`) for tokens. ``per_class`` ``(C, d)``: the same
    over each class's samples (NaN for a class with no samples); ``None`` for tasks
    other than classification. ``mean_attribution`` ``(d,)``: the signed mean.
    ``convergence_delta``: mean |delta| for methods with a completeness property.
    ``sanity_correlation``: mean Spearman correlation against the randomised model
    (lower is better). ``examples``: the first ``k <= 16`` samples' attributions,
    ``(k, *input shape)`` for float inputs, ``(k, T)`` per-token scores for tokens
    (zero where padded). ``error`` says in one line why a method could not run on this
    model; its arrays are then empty.
    """

    method: str
    global_importance: np.ndarray
    per_class: np.ndarray | None
    mean_attribution: np.ndarray
    convergence_delta: float | None
    sanity_correlation: float | None
    seconds: float
    error: str | None = None
    examples: np.ndarray = field(default_factory=_empty(0))

    @property
    def ranking(self) -> np.ndarray:
        """Feature indices, most important first."""
        return np.argsort(-self.global_importance, kind="stable")


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
    mean_conductance: np.ndarray = field(default_factory=_empty(0))
    neuron_inputs_skipped: str | None = None
    error: str | None = None


@result
class ImportanceReport:
    """Every method's importance and every hidden layer's conductance.

    ``task``: the task's kind (``classification`` | ``regression`` | ``custom``).
    ``input_kind``: ``features`` | ``array`` | ``tokens``; ``input_shape``: one sample's
    input shape (``(d,)``, ``(C, H, W)``, ``(T,)`` of the first batch).
    ``feature_names`` ``(d)``: the name of each feature ``global_importance`` is indexed
    by (the columns; for tokens the text of each of ``token_ids``; empty for arrays).
    ``token_ids`` ``(d,)``: the distinct token ids, sorted (tokens only, else empty).
    ``example_inputs``: the first ``k <= 16`` samples' inputs (``(k, *input shape)``
    float32, or ``(k, T)`` ids); ``example_mask`` ``(k, T)`` bool (True = real token) for
    tokens, else ``None``; ``example_labels`` ``(k,)`` float64 when each sample has one
    label, else ``None``.
    """

    methods: tuple[MethodImportance, ...]
    conductance: tuple[LayerConductanceResult, ...]
    n_samples: int
    n_steps: int
    baseline: str
    task: str = "classification"
    input_kind: str = "features"
    input_shape: tuple[int, ...] = ()
    feature_names: tuple[str, ...] = ()
    token_ids: np.ndarray = field(default_factory=_empty(0, dtype=np.int64))
    example_inputs: np.ndarray = field(default_factory=_empty(0))
    example_mask: np.ndarray | None = None
    example_labels: np.ndarray | None = None

    def method(self, name: str) -> MethodImportance:
        for m in self.methods:
            if m.method == name:
                return m
        raise KeyError(f"no importance for method {name!r}; have {[m.method for m in self.methods]}")

    def feature_label(self, index: int, fallback: Sequence[str] = ()) -> str:
        """The name of feature ``index``: its column or token text, an array element's
        position ``(c, h, w)``, else ``fallback[index]`` or ``x<index>``."""
        index = int(index)
        if index < len(self.feature_names):
            return self.feature_names[index]
        if self.input_kind == "array" and self.input_shape and index < math.prod(self.input_shape):
            return "(" + ", ".join(str(int(i)) for i in np.unravel_index(index, self.input_shape)) + ")"
        return fallback[index] if index < len(fallback) else f"x{index}"


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
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


class _Explained(nn.Module):
    """``forward(inputs, *args)`` = the task's target ``(n, 1)``, as an ``nn.Module``: DeepLift
    hooks the nonlinearities of the model it is given, so it needs a module, not a function."""

    def __init__(self, model: nn.Module, forward: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.model = model
        self._forward = forward

    def forward(self, inputs: torch.Tensor, *args: Any) -> torch.Tensor:
        return self._forward(inputs, *args)


class _EmbeddingForward:
    """``forward(embedded, ids, *args)``: the target with the embedding module's output replaced by
    ``embedded`` ``(n, T, E)``. The ids travel as a forward argument so Captum expands them in step
    with ``embedded`` (the model still needs their shape: positions, default masks)."""

    def __init__(self, forward: Callable[..., torch.Tensor], embedding: nn.Module) -> None:
        self.forward = forward
        self.embedding = embedding

    def __call__(self, embedded: torch.Tensor, ids: torch.Tensor, *args: Any) -> torch.Tensor:
        # in the shape the model made (it may have reshaped its ids before the embedding)
        handle = self.embedding.register_forward_hook(lambda module, inputs, output: embedded.reshape(output.shape))
        try:
            return self.forward(ids, *args)
        finally:
            handle.remove()


def _per_sample_elements(adapter: InputAdapter, model: nn.Module) -> int:
    """Elements one sample puts through a forward pass at the attributed input."""
    if adapter.kind == "tokens":
        embedding = adapter.embedding_module(model)
        width = int(getattr(embedding, "embedding_dim", 1))
        return max(1, int(math.prod(adapter.sample_shape)) * width)
    return max(1, int(math.prod(adapter.sample_shape)))


def _internal_batch_size(rows: int, n_steps: int, per_sample: int) -> int:
    """Captum's ``internal_batch_size`` for ``rows`` samples: all steps of a chunk in one pass
    when that fits :data:`ELEMENTS_PER_PASS`, never fewer than the rows themselves."""
    return max(rows, min(CHUNK_ROWS * min(n_steps, 64), ELEMENTS_PER_PASS // per_sample))


def _perturbations(rows: int, n_features: int, per_sample: int) -> int:
    # one forward pass evaluates up to 32 perturbed copies of the batch: fewer Python round trips
    return max(1, min(32, n_features, ELEMENTS_PER_PASS // max(1, rows * per_sample)))


def _run(
    explainer: Any, inputs: torch.Tensor, spec: MethodSpec, settings: dict[str, Any], args: tuple[Any, ...], seed: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    with _seeded(seed), warnings.catch_warnings():
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
    per_sample = _per_sample_elements(adapter, model)
    rows = len(batch)
    internal = (
        internal_batch_size if internal_batch_size is not None else _internal_batch_size(rows, n_steps, per_sample)
    )
    if adapter.kind != "tokens":
        X = batch.inputs.detach().clone().requires_grad_(spec.needs_gradient)
        explainer = getattr(attr, spec.captum_class)(_Explained(model, forward) if spec.needs_module else forward)
        if spec.summed_gradients:
            explainer.gradient_func = summed_gradients
        n_features = int(math.prod(X.shape[1:]))
        ctx = CallContext(
            X,
            torch.zeros_like(X[:1]).detach(),
            background,
            n_steps,
            internal,
            perturbations or _perturbations(rows, n_features, per_sample),
        )
        out, delta = _run(explainer, X, spec, spec.settings(ctx), args, seed)
        if batch.mask is not None and tuple(batch.mask.shape) == tuple(out.shape[:2]):
            # a padded sequence of float vectors: nothing is attributed to padding
            out = out * batch.mask.reshape(*batch.mask.shape, *([1] * (out.dim() - 2))).to(out.dtype)
        return out, delta

    ids = batch.inputs
    real = batch.mask if batch.mask is not None else torch.ones_like(ids, dtype=torch.bool)
    reference = torch.where(real, torch.full_like(ids, adapter.pad_id), ids)
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
        explainer = getattr(attr, spec.captum_class)(_EmbeddingForward(forward, embedding))
        X = embedded.detach().clone().requires_grad_(True)
        ctx = CallContext(X, reference_embedded, pad_embedded, n_steps, internal, perturb)
        out, delta = _run(explainer, X, spec, spec.token_settings(ctx), (ids, *args), seed)
    else:
        explainer = getattr(attr, spec.captum_class)(forward)
        ctx = CallContext(ids, reference, None, n_steps, internal, perturb)
        out, delta = _run(explainer, ids, spec, spec.token_settings(ctx), args, seed)
    if out.shape != ids.shape:  # per embedding dimension: one score per token
        out = (out.abs() if spec.absolute else out).reshape(*ids.shape, -1).sum(dim=-1)
    return (out * real.to(out.dtype)).reshape(rows, -1), delta


def _rank(a: np.ndarray) -> np.ndarray:
    """Average ranks along the last axis (ties share their mean rank)."""
    from scipy.stats import rankdata

    return rankdata(a, axis=-1)


def spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row Spearman correlation of ``|a|`` and ``|b|`` ``(n, d)``, over features nonzero in either.

    Features that are exactly zero in both rows (an input equal to the baseline
    gets zero attribution from both models; a padded position) would tie and
    inflate the score, so they are left out.
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
    """A copy with every linear, convolution and embedding layer re-initialised (Adebayo et al.'s
    full cascading randomisation); normalisation layers keep their weights."""
    clone = copy.deepcopy(model)
    with _seeded(seed):
        for module in clone.modules():
            if isinstance(module, RANDOMISED):
                module.reset_parameters()
    return clone.eval()


def randomization_correlation(
    explain: Callable[[nn.Module], np.ndarray],
    model: nn.Module,
    *,
    seed: int = 1,
    trained: np.ndarray | None = None,
) -> float:
    """Mean Spearman correlation between ``explain(model)`` and ``explain`` of its randomised copy.

    ``explain(m)`` ``(n, ...)``: attributions of the same samples on model ``m``, one row per
    sample. ``trained``: ``explain(model)`` when already computed.
    """
    if trained is None:
        trained = np.asarray(explain(model))
    if not len(trained):
        return float("nan")
    random = np.asarray(explain(randomized_copy(model, seed)))
    n = len(trained)
    scores = spearman_rows(trained.reshape(n, -1), random.reshape(n, -1))
    if np.isnan(scores).all():
        return float("nan")
    return float(np.nanmean(scores))


# --------------------------------------------------------------------------- samples


def _chunks(batches: Sequence[Batch], adapter: InputAdapter, rows: int) -> list[Batch]:
    """The explained samples as batches of at most ``rows``: float batches are joined first (they
    share a shape), token batches are cut one by one (their lengths may differ)."""
    if not batches:
        return []
    if adapter.kind != "tokens" and len(batches) > 1:
        batches = [Batch.concat(batches)]
    out = []
    for batch in batches:
        out += [batch.rows(slice(s, s + rows)) for s in range(0, len(batch), rows)]
    return out


def _take(batches: Sequence[Batch], n: int) -> list[Batch]:
    """The first ``n`` samples of ``batches``."""
    out: list[Batch] = []
    for batch in batches:
        if n <= 0:
            break
        if len(batch) > n:
            batch = batch.rows(slice(0, n))
        out.append(batch)
        n -= len(batch)
    return out


def _input_rows(batches: Sequence[Batch], index: Sequence[int]) -> torch.Tensor:
    """The inputs of the samples at ``index`` (positions in the batches one after another), stacked."""
    offsets = np.cumsum([0] + [len(b) for b in batches])
    rows = []
    for i in index:
        k = int(np.searchsorted(offsets, i, side="right")) - 1
        rows.append(batches[k].inputs[i - int(offsets[k])])
    return torch.stack(rows)


def _pad_rows(parts: Sequence[np.ndarray], fill: float = 0) -> np.ndarray:
    """Rows of per-token arrays ``(n_i, T_i, ...)`` stacked, right-padded to the widest ``T``."""
    width = max(p.shape[1] for p in parts)
    padded = [
        np.concatenate([p, np.full((p.shape[0], width - p.shape[1], *p.shape[2:]), fill, p.dtype)], axis=1)
        if p.shape[1] < width
        else p
        for p in parts
    ]
    return np.concatenate(padded)


def _stack(parts: Sequence[np.ndarray], tokens: bool, fill: float = 0) -> np.ndarray:
    return _pad_rows(parts, fill) if tokens else np.concatenate(parts)


def _class_labels(batch: Batch, task: Task) -> np.ndarray | None:
    """``(n,)`` int class of each sample for classification, else ``None``."""
    if task.kind != "classification" or batch.labels is None:
        return None
    return batch.labels.reshape(len(batch), -1)[:, 0].long().cpu().numpy()


def _real_positions(batch: Batch) -> torch.Tensor:
    return batch.mask if batch.mask is not None else torch.ones_like(batch.inputs, dtype=torch.bool)


def _positions(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids, real)`` ``(n, T)`` of a token batch (one id per sample, ids ``(n,)``, is ``T = 1``)."""
    n = len(batch)
    return batch.inputs.reshape(n, -1), _real_positions(batch).reshape(n, -1)


class _Importance:
    """Streaming |attribution| statistics of one method: :meth:`update` per chunk, then :meth:`compute`.

    Float inputs: float64 sums per input element (and per class). Tokens: each real
    position's (token id, score, class), folded per distinct id at the end; memory is
    bounded by the explained samples' tokens. The first ``keep`` samples' attributions
    are kept as they are (sanity check, examples).
    """

    def __init__(self, tokens: bool, n_classes: int | None, token_ids: np.ndarray, keep: int) -> None:
        self.tokens = tokens
        self.n_classes = n_classes
        self.token_ids = token_ids
        self.keep = keep
        self.kept: list[np.ndarray] = []
        self.n_kept = 0
        self.n = 0
        self.abs_sum: np.ndarray | None = None
        self.signed_sum: np.ndarray | None = None
        self.class_sum: np.ndarray | None = None
        self.class_count = np.zeros(n_classes or 0)
        self.positions: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]] = []

    def update(self, attributions: np.ndarray, batch: Batch, labels: np.ndarray | None) -> None:
        """``attributions`` ``(n, ...)`` float64 for ``batch``; ``labels`` ``(n,)`` classes or ``None``."""
        n = len(attributions)
        if self.n_kept < self.keep:
            self.kept.append(attributions[: self.keep - self.n_kept].astype(np.float32))
            self.n_kept += len(self.kept[-1])
        self.n += n
        if self.tokens:
            ids_t, real_t = _positions(batch)
            real = real_t.cpu().numpy()
            ids = ids_t.cpu().numpy()[real]
            per_position = None if labels is None else np.broadcast_to(labels[:, None], real.shape)[real]
            self.positions.append((ids, attributions[real], per_position))
            return
        flat = attributions.reshape(n, -1)
        absolute = np.abs(flat)
        if self.abs_sum is None:
            self.abs_sum = np.zeros(flat.shape[1])
            self.signed_sum = np.zeros(flat.shape[1])
            if self.n_classes is not None:
                self.class_sum = np.zeros((self.n_classes, flat.shape[1]))
        self.abs_sum += absolute.sum(axis=0)
        self.signed_sum += flat.sum(axis=0)
        if labels is not None and self.class_sum is not None:
            for c in np.unique(labels):
                if c < 0:  # Hugging Face's ignore index (-100): a sample without a class
                    continue
                rows = labels == c
                self.class_sum[c] += absolute[rows].sum(axis=0)
                self.class_count[c] += rows.sum()

    def compute(self) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """``(global_importance (d,), per_class (C, d) | None, mean_attribution (d,))``."""
        if self.tokens:
            return self._compute_tokens()
        assert self.abs_sum is not None and self.signed_sum is not None
        per_class = None
        if self.class_sum is not None:
            with np.errstate(invalid="ignore", divide="ignore"):
                per_class = np.where(self.class_count[:, None] > 0, self.class_sum / self.class_count[:, None], np.nan)
        return self.abs_sum / self.n, per_class, self.signed_sum / self.n

    def _compute_tokens(self) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        d = len(self.token_ids)
        ids = np.concatenate([p[0] for p in self.positions]) if self.positions else np.zeros(0, np.int64)
        scores = np.concatenate([p[1] for p in self.positions]) if self.positions else np.zeros(0)
        index = np.searchsorted(self.token_ids, ids)
        counts = np.bincount(index, minlength=d).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            importance = np.bincount(index, np.abs(scores), minlength=d) / counts
            mean = np.bincount(index, scores, minlength=d) / counts
            per_class = None
            if self.n_classes is not None and self.positions and self.positions[0][2] is not None:
                C = self.n_classes
                classes = np.concatenate([p[2] for p in self.positions])  # type: ignore[misc]
                cell = classes * d + index
                sums = np.bincount(cell, np.abs(scores), minlength=C * d).reshape(C, d)
                n_cell = np.bincount(cell, minlength=C * d).reshape(C, d)
                per_class = np.where(n_cell > 0, sums / np.maximum(n_cell, 1), np.nan)
        return importance, per_class, mean

    def first(self, n: int) -> np.ndarray:
        """The first ``n`` samples' attributions (tokens: padded with zeros to one width)."""
        if not self.kept:
            return np.zeros(0, np.float32)
        return _stack(self.kept, self.tokens)[:n]


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
)


def _method_error(exc: BaseException) -> str:
    """One line saying why a method or a layer failed: what it means where the message is known, then
    the message itself."""
    line = _one_line(exc)
    meaning = next((what for known, what in _EXPLAINED_ERRORS if known in line), None)
    return (f"{meaning} ({line})" if meaning else line)[:300]


def method_importance(
    model: nn.Module,
    method: str,
    batches: Sequence[Batch],
    task: Task,
    adapter: InputAdapter,
    *,
    n_steps: int = 50,
    n_classes: int | None = None,
    token_ids: np.ndarray | None = None,
    background: torch.Tensor | None = None,
    sanity_samples: int = SANITY_SAMPLES,
) -> MethodImportance:
    """Global and per-class importance of one method over ``batches`` (the chunks), and its sanity score.

    ``n_classes``: ``C`` for the per-class means (classification), else ``None``.
    ``token_ids``: the distinct ids of the samples' real positions, sorted (tokens only).
    ``model`` must already be in eval mode.
    """
    started = time.perf_counter()
    tokens = adapter.kind == "tokens"
    ids = np.zeros(0, np.int64) if token_ids is None else np.asarray(token_ids)
    stats = _Importance(
        tokens, n_classes if task.kind == "classification" else None, ids, keep=max(sanity_samples, N_EXAMPLES)
    )

    def run(m: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        return attribute(m, method, batch, task, adapter, n_steps=n_steps, background=background)

    try:
        deltas = []
        for batch in batches:
            a, delta = run(model, batch)
            stats.update(a.detach().cpu().numpy().astype(np.float64), batch, _class_labels(batch, task))
            if delta is not None:
                deltas.append(delta.detach().reshape(-1).cpu())
        sanity_batches = _take(batches, sanity_samples)

        def explain(m: nn.Module) -> np.ndarray:
            return _stack([run(m, b)[0].detach().cpu().numpy() for b in sanity_batches], tokens)

        # the trained model's attributions for these samples are already in hand
        sanity = randomization_correlation(explain, model, trained=stats.first(sanity_samples))
    except CAPTUM_ERRORS as exc:
        # Captum refuses some architectures (e.g. DeepLift with one activation module used twice);
        # the other methods still run and the report says why.
        return MethodImportance(
            method, np.zeros(0), None, np.zeros(0), None, None, time.perf_counter() - started, error=_method_error(exc)
        )
    importance, per_class, mean = stats.compute()
    delta_mean = float(torch.cat(deltas).abs().mean()) if deltas else None
    return MethodImportance(
        method=method,
        global_importance=importance,
        per_class=per_class,
        mean_attribution=mean,
        convergence_delta=delta_mean,
        sanity_correlation=sanity,
        seconds=time.perf_counter() - started,
        examples=stats.first(N_EXAMPLES),
    )


# --------------------------------------------------------------------------- conductance


def output_layer(model: nn.Module, batch: Batch) -> str | None:
    """The ``nn.Linear`` whose output is the model's output tensor (a classifier head), if any."""
    produced: dict[str, torch.Tensor] = {}
    with inspecting(model) as guard, torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, nn.Linear):
                guard.hook(module.register_forward_hook(lambda m, i, o, name=name: produced.__setitem__(name, o)))
        out = output_tensor(batch.rows(slice(0, 1)).call(model))
    return next((name for name, t in produced.items() if t is out), None)


def hidden_layers(model: nn.Module, batch: Batch, sites: Sequence[Site] | None = None) -> list[tuple[str, nn.Linear]]:
    """The hidden dense layers: counted ``sites`` (default: :func:`~inspector.analysis.sites.discover_sites`)
    other than the model's output layer, in registration order."""
    if sites is None:
        sites = discover_sites(model, batch)
    last = output_layer(model, batch)
    modules = dict(model.named_modules())
    return [(s.layer, modules[s.layer]) for s in sites if s.counted and s.layer != last]


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
    if adapter.kind == "tokens":
        return "the inputs are token ids, which have no fixed input element per neuron to attribute to"
    if out_dim != 2:
        return "the layer's output is per position; NeuronConductance needs one value per neuron and sample"
    if layer.out_features > MAX_NEURONS:
        return f"{layer.out_features} neurons is more than the {MAX_NEURONS} NeuronConductance is run for"
    params = sum(p.numel() for p in model.parameters())
    cost = float(layer.out_features) * samples * n_steps * params
    if spent + cost > NEURON_CONDUCTANCE_BUDGET:
        return (
            f"{layer.out_features} neurons x {samples} samples x {n_steps} steps on a model of {params:,} "
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
            results.append((torch.zeros(n, int(getattr(layer, "out_features", 0)), dtype=torch.float64), ranks[k]))
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
        batch = Batch(batch.inputs, predicted, batch.extra, batch.mask, batch.key)
    nc = NeuronConductance(task.explained(model, batch), layer)
    out = np.zeros((layer.out_features, int(math.prod(batch.inputs.shape[1:]))))
    for j in range(layer.out_features):  # one batched call per neuron, over all samples at once
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
    sub = _take(batches, max_samples)
    tokens = adapter.kind == "tokens"
    per_sample = _per_sample_elements(adapter, model)

    def prepared(batch: Batch) -> _Prepared:
        forward = task.explained(model, batch)
        args = forward_args(batch)
        if not tokens:
            return _Prepared(batch, forward, batch.inputs, torch.zeros_like(batch.inputs[:1]), args)
        embedding = adapter.embedding_module(model)
        reference = torch.where(_real_positions(batch), torch.full_like(batch.inputs, adapter.pad_id), batch.inputs)
        with torch.no_grad():
            x, x0 = embedding(batch.inputs), embedding(reference)
        return _Prepared(batch, _EmbeddingForward(forward, embedding), x, x0, (batch.inputs, *args))

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
                part, [layer for _, layer in layers], n_steps, _internal_batch_size(len(batch), n_steps, per_sample)
            )
        except CAPTUM_ERRORS as exc:
            found = [_method_error(exc)] * len(layers)
            changes.append(np.full(len(batch), np.nan))
        for k, value in enumerate(found):
            if isinstance(value, str):
                failed.setdefault(k, value)
            else:
                measured[k].append(value[0].cpu().numpy())
                ranks[k] = value[1]
    change = np.concatenate(changes)
    labels = [_class_labels(b, task) for b in sub]
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
                neuron_inputs = _neuron_conductance(model, layer, Batch.concat(_take(sub, samples)), task, n_steps)
            except CAPTUM_ERRORS as exc:
                skipped = f"NeuronConductance failed: {_method_error(exc)}"
            spent += float(layer.out_features) * samples * n_steps * sum(p.numel() for p in model.parameters())
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


# --------------------------------------------------------------------------- the report


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _n_classes(model: nn.Module, batches: Sequence[Batch], task: Task) -> int | None:
    """``C`` for per-class means: the model's output width, or the largest label + 1."""
    if task.kind != "classification":
        return None
    with torch.no_grad():
        out = output_tensor(batches[0].rows(slice(0, 1)).call(model))
    largest = max((int(b.labels.max()) for b in batches if b.labels is not None and b.labels.numel()), default=-1)
    width = int(out.shape[1]) if out.dim() == 2 and task.target_fn is None else 0
    return max(width, largest + 1)


def _examples(
    batches: Sequence[Batch], adapter: InputAdapter
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``(inputs, mask, labels)`` of the first :data:`N_EXAMPLES` samples; see :class:`ImportanceReport`."""
    first = _take(batches, N_EXAMPLES)
    if not first:
        return np.zeros(0), None, None
    tokens = adapter.kind == "tokens"
    inputs = [(_positions(b)[0] if tokens else b.inputs).detach().cpu().numpy() for b in first]
    example_inputs = (
        _stack(inputs, tokens, fill=adapter.pad_id) if tokens else np.concatenate(inputs).astype(np.float32)
    )
    mask = _stack([_positions(b)[1].cpu().numpy() for b in first], True, fill=False) if tokens else None
    labels = None
    if all(b.labels is not None and b.labels.numel() == len(b) for b in first):
        labels = np.concatenate([b.labels.reshape(-1).double().cpu().numpy() for b in first])  # type: ignore[union-attr]
    return example_inputs, mask, labels


def _distinct_tokens(batches: Sequence[Batch]) -> np.ndarray:
    """The distinct ids at real positions, sorted ``(d,)`` int64."""
    seen = [torch.unique(ids[real]).cpu() for ids, real in map(_positions, batches)]
    return torch.unique(torch.cat(seen)).numpy().astype(np.int64) if seen else np.zeros(0, np.int64)


def _baseline_text(adapter: InputAdapter) -> str:
    if adapter.kind == "tokens":
        return f"the pad token (id {adapter.pad_id}) at every real position"
    if adapter.kind == "features":
        return "an all-zero input (the training mean, for data dense-inspector standardised)"
    return "an all-zero input"


def importance_report(
    model: nn.Module,
    data: Any,
    task: Task | str | None = None,
    adapter: InputAdapter | None = None,
    *,
    methods: tuple[str, ...] = METHODS,
    n_steps: int = 50,
    max_samples: int = 1000,
    with_conductance: bool = True,
    sites: Sequence[Site] | None = None,
) -> ImportanceReport:
    """Every method in ``methods`` plus conductance on the first ``max_samples`` samples of ``data``,
    leaving ``model`` as it was.

    ``data``: a :class:`~inspector.analysis.inputs.DataSource` or anything
    :func:`~inspector.analysis.inputs.as_source` accepts. ``task``: a :class:`Task`, a task
    name, or ``None`` (inferred from the first batch's labels). ``adapter``: ``None`` infers it
    from the model and the first batch. ``sites``: the analysis's sites, whose counted layers other
    than the output layer get conductance (default: discovered here). The earlier form ``importance_report(model, X, y,
    n_classes)`` (a classification) is still accepted.
    """
    if isinstance(task, (torch.Tensor, np.ndarray)):  # the earlier positional form (model, X, y, n_classes)
        data, task, adapter = (data, task), "classification", None
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise ValueError(f"unknown attribution methods {sorted(unknown)}; choose from {', '.join(METHODS)}")
    source = as_source(data, device=_model_device(model), dtype=floating_dtype(model))
    head = source.head(max_samples)
    if not head:
        head = [source.first()]  # raises: the data holds no samples
    first = head[0]
    task = task if isinstance(task, Task) else make_task(task, first)
    if adapter is None:
        names = source.feature_names if first.inputs.dim() == 2 else ()
        adapter = make_adapter(model, first, feature_names=names)
    tokens = adapter.kind == "tokens"
    with inspecting(model):
        n_classes = _n_classes(model, head, task)
        per_sample = _per_sample_elements(adapter, model)
        chunks = _chunks(head, adapter, max(1, min(CHUNK_ROWS, ELEMENTS_PER_PASS // per_sample)))
        del head  # the chunks hold the same samples
        n_samples = sum(len(b) for b in chunks)
        background = None
        token_ids = np.zeros(0, np.int64)
        if tokens:
            token_ids = _distinct_tokens(chunks)
        else:
            pick = torch.randperm(n_samples, generator=torch.Generator().manual_seed(0))[:BACKGROUND_SIZE]
            background = _input_rows(chunks, pick.tolist())
        results = tuple(
            method_importance(
                model,
                m,
                chunks,
                task,
                adapter,
                n_steps=n_steps,
                n_classes=n_classes,
                token_ids=token_ids,
                background=background,
            )
            for m in methods
        )
        cond = (
            conductance(
                model,
                chunks,
                task,
                adapter,
                n_steps=n_steps,
                n_classes=n_classes,
                layers=hidden_layers(model, chunks[0], sites),
            )
            if with_conductance
            else ()
        )
        example_inputs, example_mask, example_labels = _examples(chunks, adapter)
    if tokens:
        feature_names = adapter.token_text(token_ids)
    else:
        feature_names = adapter.feature_names
    return ImportanceReport(
        results,
        cond,
        int(n_samples),
        int(n_steps),
        _baseline_text(adapter),
        task=task.kind,
        input_kind=adapter.kind,
        input_shape=tuple(int(s) for s in adapter.sample_shape),
        feature_names=tuple(feature_names),
        token_ids=token_ids,
        example_inputs=example_inputs,
        example_mask=example_mask,
        example_labels=example_labels,
    )


class Explainer:
    """Per-sample attributions on demand, cached: the one object that holds the model
    for questions only the model can answer (used by the dashboard; tabular classification)."""

    def __init__(self, model: nn.Module, X: np.ndarray, y: np.ndarray, *, n_steps: int = 50) -> None:
        self.model = model
        self.X = torch.as_tensor(X, dtype=torch.float32)
        self.y = torch.as_tensor(y, dtype=torch.long)
        self.n_steps = n_steps
        self._cache: dict[tuple[str, int, int | None], np.ndarray] = {}

    def explain(self, method: str, index: int, target: int | None = None) -> np.ndarray:
        """Attribution ``(d,)`` of sample ``index`` for class ``target`` (default: its label)."""
        key = (method, int(index), target)
        if key not in self._cache:
            device = _model_device(self.model)
            label = int(self.y[index]) if target is None else int(target)
            batch = Batch(self.X[index : index + 1].to(device), torch.tensor([label], device=device))
            with inspecting(self.model):
                a, _ = attribute(
                    self.model,
                    method,
                    batch,
                    make_task("classification", batch),
                    make_adapter(self.model, batch),
                    n_steps=self.n_steps,
                    background=self.X[:BACKGROUND_SIZE].to(device),
                )
            self._cache[key] = a.detach().cpu().numpy()[0]
        return self._cache[key]

    def predict(self, index: int) -> np.ndarray:
        """Class probabilities ``(C,)`` for sample ``index``."""
        with inspecting(self.model), torch.no_grad():
            x = self.X[index : index + 1].to(_model_device(self.model))
            return torch.softmax(self.model(x), dim=1).cpu().numpy()[0]
