"""The activation census: one streaming pass over a dataset with forward hooks.

For every activation module that follows a linear layer:

* rectifiers (ReLU, LeakyReLU, GELU): each neuron's **firing rate**, the fraction
  of samples whose pre-activation is > 0 (for ReLU, the output is > 0). A neuron
  that fires on no sample is **dead**: for ReLU its output is always 0; for
  LeakyReLU and GELU it carries almost no signal (Lu et al. 2019, "Dying ReLU
  and Initialization"). Below ``nearly_dead_threshold`` it is **nearly dead**.
* squashing units (sigmoid, tanh): the **saturation rate**, the fraction of
  samples where the unit sits in a flat tail (``|tanh| > 0.99``; sigmoid
  ``< 0.01`` or ``> 0.99``), where its gradient all but vanishes (Glorot &
  Bengio 2010).
* every unit: its mean activation over all samples, and a histogram plus a 2-D
  PCA projection of the layer from the first ``keep_samples`` samples.

Memory grows with the number of neurons (plus the bounded sample kept for the
histogram and projection), not with the number of samples, and the per-batch
statistics stay on the device until the pass ends.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from inspector.analysis.guard import inspecting
from inspector.results import result

RECTIFIERS: dict[type[nn.Module], str] = {nn.ReLU: "relu", nn.LeakyReLU: "leaky_relu", nn.GELU: "gelu"}
SQUASHERS: dict[type[nn.Module], str] = {nn.Sigmoid: "sigmoid", nn.Tanh: "tanh"}
SATURATION = 0.99
HISTOGRAM_BINS = 30


@result
class LayerActivations:
    """Census of one activation module ``name`` that reads linear layer ``linear``.

    Per-neuron arrays have shape ``(m,)``; ``fire_rate`` and the dead masks are
    ``None`` for sigmoid/tanh, ``saturation_rate`` is ``None`` for rectifiers.
    ``histogram_counts`` is ``(m, bins)`` over the shared ``histogram_edges``.
    ``projection`` is ``(k, 2)``: the first ``k`` samples' activations on the
    layer's top two principal components, with ``projection_labels`` ``(k,)``.
    """

    name: str
    linear: str
    activation: str
    n_samples: int
    fire_rate: np.ndarray | None
    dead_mask: np.ndarray | None
    nearly_dead_mask: np.ndarray | None
    nearly_dead_threshold: float
    saturation_rate: np.ndarray | None
    mean_activation: np.ndarray
    histogram_counts: np.ndarray
    histogram_edges: np.ndarray
    projection: np.ndarray
    projection_variance: np.ndarray
    projection_labels: np.ndarray | None

    @property
    def width(self) -> int:
        return int(self.mean_activation.shape[0])

    @property
    def dead_count(self) -> int:
        return int(self.dead_mask.sum()) if self.dead_mask is not None else 0

    @property
    def dead_fraction(self) -> float:
        return self.dead_count / self.width if self.width else 0.0

    def nearly_dead_count(self, threshold: float | None = None) -> int:
        """Neurons that fire, but on fewer than ``threshold`` of the samples."""
        if self.fire_rate is None:
            return 0
        t = self.nearly_dead_threshold if threshold is None else threshold
        return int(((self.fire_rate > 0) & (self.fire_rate < t)).sum())


@result
class DeathTimeline:
    """Dead neurons over training, from weight snapshots.

    ``dead_counts`` is ``(layers, epochs)``; ``death_epoch[l][j]`` is the first
    snapshot epoch from which neuron j of layer l stayed dead to the last
    snapshot, or -1 if it is alive at the last snapshot.
    """

    epochs: np.ndarray
    layers: tuple[str, ...]
    dead_counts: np.ndarray
    death_epoch: tuple[np.ndarray, ...]


_FLUSH_ROWS = 2 ** 23  # float32 counts are exact below 2**24; flush to float64 well before


@dataclass
class _Accumulator:
    """Per-layer running sums, kept on the device for the whole pass.

    Each batch adds into float32 row vectors with one GEMM against a row of ones
    (the cheapest column sum on CPU and GPU alike); every ``_FLUSH_ROWS`` rows
    they are folded into float64 totals, so counts stay exact for any dataset size.
    """

    name: str
    linear: str
    kind: str
    fired: torch.Tensor | None = None  # rectifiers: samples with output > 0; squashers: saturated
    total: torch.Tensor | None = None
    fired32: torch.Tensor | None = None
    total32: torch.Tensor | None = None
    pending_rows: int = 0
    n: int = 0
    kept: list[torch.Tensor] | None = None
    kept_n: int = 0

    def start(self, width: int, device: torch.device) -> None:
        self.fired = torch.zeros(width, dtype=torch.float64, device=device)
        self.total = torch.zeros(width, dtype=torch.float64, device=device)
        self.fired32 = torch.zeros(1, width, device=device)
        self.total32 = torch.zeros(1, width, device=device)
        self.kept = []

    def flush(self) -> None:
        if self.pending_rows:
            self.fired += self.fired32[0]
            self.total += self.total32[0]
            self.fired32.zero_()
            self.total32.zero_()
            self.pending_rows = 0


def activation_sites(model: nn.Module) -> list[tuple[str, str, nn.Module, str]]:
    """``(activation name, preceding linear name, module, kind)`` for each rectifier or squasher.

    An activation is paired with the most recent ``nn.Linear`` registered before
    it, so ``Linear -> BatchNorm -> ReLU`` pairs the ReLU with the Linear.
    """
    sites = []
    last_linear: str | None = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last_linear = name
            continue
        kind = RECTIFIERS.get(type(module)) or SQUASHERS.get(type(module))
        if kind is not None and last_linear is not None:
            sites.append((name, last_linear, module, kind))
    return sites


def _hook(acc: _Accumulator, keep_samples: int):
    squash = acc.kind in ("sigmoid", "tanh")
    scratch: dict[tuple[int, ...], tuple[torch.Tensor, torch.Tensor]] = {}

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        out = output.detach()
        width = out.shape[-1]
        out = out.reshape(-1, width)
        rows = out.shape[0]
        if acc.total is None:
            acc.start(width, out.device)
        if acc.pending_rows + rows > _FLUSH_ROWS:
            acc.flush()
        buffers = scratch.get(out.shape)
        if buffers is None:  # one indicator buffer and one row of ones per batch shape, reused
            buffers = scratch.setdefault(out.shape, (torch.empty(out.shape, device=out.device),
                                                     torch.ones(1, rows, device=out.device)))
        indicator, ones = buffers
        if squash:
            if acc.kind == "tanh":
                torch.gt(out.abs(), SATURATION, out=indicator)
            else:
                torch.gt((out - 0.5).abs(), SATURATION - 0.5, out=indicator)
        else:
            # ReLU fires where its output is > 0; LeakyReLU and GELU where their input is
            source = out if acc.kind == "relu" else inputs[0].detach().reshape(-1, width)
            torch.gt(source, 0, out=indicator)
        acc.fired32.addmm_(ones, indicator)
        acc.total32.addmm_(ones, out)
        acc.pending_rows += rows
        if acc.kept_n < keep_samples:
            take = out[: keep_samples - acc.kept_n]
            acc.kept.append(take.clone())
            acc.kept_n += take.shape[0]
        acc.n += rows
    return hook


def _pca_2d(a: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Scores on the top two principal components ``(k, 2)`` and their explained-variance ratios.

    Exact: the eigendecomposition of the smaller of the ``m x m`` covariance and
    the ``k x k`` Gram matrix of the centred activations.
    """
    k, m = a.shape
    scores = np.zeros((k, 2), dtype=np.float32)
    ratio = np.zeros(2)
    if k < 2 or m == 0:
        return scores, ratio
    centred = a.double() - a.double().mean(dim=0, keepdim=True)
    total = float((centred ** 2).sum())
    if total <= 0:
        return scores, ratio
    q = min(k, m, 2)
    if m <= k:
        eigenvalues, vectors = torch.linalg.eigh(centred.T @ centred)  # ascending
        top = vectors[:, -q:].flip(1)
        projected = centred @ top
    else:
        eigenvalues, vectors = torch.linalg.eigh(centred @ centred.T)
        projected = vectors[:, -q:].flip(1) * eigenvalues[-q:].flip(0).clamp_min(0).sqrt()
    scores[:, :q] = projected.float().numpy()
    ratio[:q] = eigenvalues[-q:].flip(0).clamp_min(0).numpy() / total
    return scores, ratio


def _finish(acc: _Accumulator, threshold: float, labels: np.ndarray | None) -> LayerActivations:
    width = int(acc.total.shape[0])
    kept = torch.cat(acc.kept).float().cpu() if acc.kept else torch.zeros(0, width)
    lo, hi = (float(kept.min()), float(kept.max())) if kept.numel() else (0.0, 1.0)
    if hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, HISTOGRAM_BINS + 1)
    bins = torch.clamp(((kept - lo) / (hi - lo) * HISTOGRAM_BINS).long(), 0, HISTOGRAM_BINS - 1)
    flat = bins + torch.arange(width) * HISTOGRAM_BINS
    counts = torch.bincount(flat.reshape(-1), minlength=width * HISTOGRAM_BINS).reshape(width, HISTOGRAM_BINS)
    projection, variance = _pca_2d(kept)
    n = max(acc.n, 1)
    fire_rate = dead = nearly = saturation = None
    rate = (acc.fired / n).cpu().numpy()
    if acc.kind in ("sigmoid", "tanh"):
        saturation = rate
    else:
        fire_rate = rate
        dead = acc.fired.cpu().numpy() == 0
        nearly = (~dead) & (fire_rate < threshold)
    return LayerActivations(
        name=acc.name, linear=acc.linear, activation=acc.kind, n_samples=int(acc.n),
        fire_rate=fire_rate, dead_mask=dead, nearly_dead_mask=nearly, nearly_dead_threshold=float(threshold),
        saturation_rate=saturation, mean_activation=(acc.total / n).cpu().numpy(),
        histogram_counts=counts.numpy().astype(np.int64), histogram_edges=edges,
        projection=projection, projection_variance=variance,
        projection_labels=labels[: kept.shape[0]].copy() if labels is not None else None,
    )


def activation_census(
    model: nn.Module,
    X: torch.Tensor | np.ndarray,
    y: np.ndarray | None = None,
    *,
    batch_size: int = 1024,
    nearly_dead_threshold: float = 0.01,
    keep_samples: int = 2048,
    device: torch.device | str | None = None,
) -> tuple[LayerActivations, ...]:
    """Run the census over ``X`` ``(n_samples, n_features)`` in one pass.

    ``y`` ``(n_samples,)`` only labels the projection. The model is left as it
    was: eval mode inside, hooks removed and ``training`` restored afterwards,
    even if the forward pass raises.
    """
    sites = activation_sites(model)
    accs = [_Accumulator(name, linear, kind) for name, linear, _, kind in sites]
    X = torch.as_tensor(X, dtype=torch.float32)
    dev = torch.device(device) if device is not None else _model_device(model)
    with inspecting(model) as guard:
        for (_, _, module, _), acc in zip(sites, accs):
            guard.hook(module.register_forward_hook(_hook(acc, keep_samples)))
        with torch.inference_mode():
            for start in range(0, X.shape[0], batch_size):
                model(X[start:start + batch_size].to(dev, non_blocking=True))
            for acc in accs:  # the totals are inference tensors: fold them in while still in the mode
                if acc.total is not None:
                    acc.flush()
    return tuple(_finish(acc, nearly_dead_threshold, y) for acc in accs if acc.total is not None)


def _model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def death_timeline(
    model: nn.Module,
    snapshots: Mapping[int, Mapping[str, torch.Tensor]],
    X: torch.Tensor | np.ndarray,
    *,
    batch_size: int = 1024,
) -> DeathTimeline | None:
    """Dead neurons per layer at each snapshot epoch, and the epoch each final-dead neuron died.

    ``model`` is only used as a template: it is copied, never changed.
    """
    import copy

    if not snapshots:
        return None
    epochs = sorted(int(e) for e in snapshots)
    template = copy.deepcopy(model)
    masks: list[list[np.ndarray]] = []
    names: tuple[str, ...] = ()
    for epoch in epochs:
        template.load_state_dict(snapshots[epoch])
        census = activation_census(template, X, batch_size=batch_size, keep_samples=0)
        census = tuple(c for c in census if c.dead_mask is not None)
        names = tuple(c.linear for c in census)
        masks.append([c.dead_mask for c in census])
    if not names:
        return None
    dead = np.array([[m.sum() for m in per_epoch] for per_epoch in masks], dtype=np.int64).T
    death_epoch = []
    for layer in range(len(names)):
        stack = np.stack([per_epoch[layer] for per_epoch in masks])  # (epochs, m)
        # stayed dead from epoch index e to the end <=> suffix-all of the stack is true
        suffix_dead = np.flip(np.logical_and.accumulate(np.flip(stack, axis=0), axis=0), axis=0)
        first = np.where(suffix_dead.any(axis=0), suffix_dead.argmax(axis=0), -1)
        death_epoch.append(np.where(first >= 0, np.asarray(epochs)[np.maximum(first, 0)], -1).astype(np.int64))
    return DeathTimeline(epochs=np.asarray(epochs, dtype=np.int64), layers=names,
                         dead_counts=dead, death_epoch=tuple(death_epoch))
