"""Magnitude-pruning sweeps: accuracy and loss against sparsity.

Scopes:

* ``global``: one magnitude ranking over the weights of every linear layer
  (Han et al. 2015); at sparsity s exactly ``floor(s * N)`` weights, the
  smallest by |w|, are zeroed;
* ``layer``: the same inside each layer, so every layer loses the same fraction;
* ``neuron``: structured pruning of hidden neurons (rows of hidden linear
  layers) by their incoming L2 norm, weakest first, a fraction s of each
  hidden layer; a removed neuron's weights, bias and outgoing weights are zeroed.

The ranking is computed once (one sort per scope), not once per level, always
on the caller's original weights, and every level is evaluated on a copy that
starts from those weights: the caller's model is never modified, and no level
or scope sees what an earlier one pruned or fine-tuned. A weight tensor shared
by several layers (tied) is ranked, pruned and counted once.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn

from inspector.analysis.guard import inspecting
from inspector.analysis.parameters import count_parameters, linear_layers
from inspector.results import result
from inspector.training import evaluate

DEFAULT_SPARSITIES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
SCOPES = ("global", "layer", "neuron")


@result
class PruningCurve:
    """One scope's sweep: per sparsity level, the evaluation accuracy, loss and parameters left.

    ``parameters_left`` counts nonzero linear weights plus the biases of neurons that remain
    (see :func:`parameters_left`); ``PruningReport.total_parameters`` is the same count
    for the unpruned model (its linear layers' weights and biases, a shared tensor once).
    ``finetuned_accuracy`` is filled when fine-tuning was asked for.
    """

    scope: str
    sparsity: np.ndarray
    accuracy: np.ndarray
    loss: np.ndarray
    parameters_left: np.ndarray
    finetuned_accuracy: np.ndarray | None = None


@result
class PruningReport:
    curves: tuple[PruningCurve, ...]
    baseline_accuracy: float
    baseline_loss: float
    total_parameters: int
    n_samples: int
    dead_removed_accuracy: float | None = None
    dead_removed_count: int = 0

    def curve(self, scope: str) -> PruningCurve:
        for c in self.curves:
            if c.scope == scope:
                return c
        raise KeyError(f"no pruning curve for scope {scope!r}")


def _weights(model: nn.Module) -> list[nn.Linear]:
    return [layer for _, layer in linear_layers(model)]


def _distinct_weights(layers: list[nn.Linear]) -> tuple[list[torch.Tensor], list[int]]:
    """The distinct weight tensors of ``layers`` and, per layer, the index of its own among them.

    A weight shared by several layers (tied) is one set of numbers: ranked once,
    masked once, counted once.
    """
    index: dict[int, int] = {}
    distinct: list[torch.Tensor] = []
    owner = []
    for layer in layers:
        if id(layer.weight) not in index:
            index[id(layer.weight)] = len(distinct)
            distinct.append(layer.weight)
        owner.append(index[id(layer.weight)])
    return distinct, owner


def global_masks(model: nn.Module, sparsities: tuple[float, ...]) -> list[list[torch.Tensor]]:
    """Per level, a keep-mask per linear weight; exactly ``floor(s * N)`` smallest |w| are dropped."""
    layers = _weights(model)
    distinct, owner = _distinct_weights(layers)
    flat = torch.cat([w.detach().abs().reshape(-1) for w in distinct])
    order = torch.argsort(flat, stable=True)  # the one sort
    sizes = [w.numel() for w in distinct]
    out = []
    for s in sparsities:
        keep = torch.ones_like(flat, dtype=torch.bool)
        keep[order[: math.floor(s * flat.numel())]] = False
        pieces = [m.view_as(w) for m, w in zip(torch.split(keep, sizes), distinct)]
        out.append([pieces[k] for k in owner])
    return out


def layer_masks(model: nn.Module, sparsities: tuple[float, ...]) -> list[list[torch.Tensor]]:
    """Per level, each layer keeps all but its ``floor(s * N_layer)`` smallest weights."""
    distinct, owner = _distinct_weights(_weights(model))
    orders = [torch.argsort(w.detach().abs().reshape(-1), stable=True) for w in distinct]
    out = []
    for s in sparsities:
        pieces = []
        for w, order in zip(distinct, orders):
            keep = torch.ones(w.numel(), dtype=torch.bool, device=w.device)
            keep[order[: math.floor(s * w.numel())]] = False
            pieces.append(keep.view_as(w))
        out.append([pieces[k] for k in owner])
    return out


def neuron_keep(model: nn.Module, sparsities: tuple[float, ...]) -> list[list[torch.Tensor]]:
    """Per level, a keep-vector per hidden layer: drops the ``floor(s * m)`` weakest neurons by incoming norm."""
    hidden = _weights(model)[:-1]
    orders = [torch.argsort(torch.linalg.vector_norm(layer.weight.detach(), dim=1), stable=True) for layer in hidden]
    out = []
    for s in sparsities:
        level = []
        for layer, order in zip(hidden, orders):
            keep = torch.ones(layer.out_features, dtype=torch.bool, device=layer.weight.device)
            keep[order[: math.floor(s * layer.out_features)]] = False
            level.append(keep)
        out.append(level)
    return out


def neuron_masks(model: nn.Module, keep: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Weight and bias keep-masks that remove the hidden neurons not in ``keep``.

    Removing neuron j of layer k zeroes row j and bias j of layer k and column j
    of layer k + 1. Zeroing the outgoing column is what makes the removal
    complete: whatever the neuron still emits (a batch-norm shift, GELU(0),
    sigmoid(0) = 0.5) is multiplied by zero downstream.
    """
    layers = _weights(model)
    w_masks = [torch.ones_like(layer.weight, dtype=torch.bool) for layer in layers]
    b_masks = [torch.ones(layer.out_features, dtype=torch.bool, device=layer.weight.device) for layer in layers]
    for k, kv in enumerate(keep):
        w_masks[k] &= kv[:, None]
        b_masks[k] &= kv
        if layers[k + 1].in_features == kv.numel():
            w_masks[k + 1] &= kv[None, :]
    return w_masks, b_masks


def dead_keep(model: nn.Module, dead_masks: dict[str, np.ndarray]) -> list[torch.Tensor]:
    """Keep-vectors per hidden layer that drop the neurons a census found dead (``{linear name: mask}``)."""
    out = []
    for name, layer in linear_layers(model)[:-1]:
        dead = dead_masks.get(name)
        keep = torch.ones(layer.out_features, dtype=torch.bool, device=layer.weight.device)
        if dead is not None:
            keep &= ~torch.as_tensor(dead, device=layer.weight.device)
        out.append(keep)
    return out


def apply_masks(model: nn.Module, weight_masks: list[torch.Tensor], bias_masks: list[torch.Tensor] | None = None) -> nn.Module:
    """Zero masked weights (and biases) of ``model`` in place; returns ``model``."""
    with torch.no_grad():
        for k, layer in enumerate(_weights(model)):
            layer.weight.mul_(weight_masks[k])
            if bias_masks is not None and layer.bias is not None:
                layer.bias.mul_(bias_masks[k])
    return model


Masks = tuple[list[torch.Tensor], list[torch.Tensor] | None]


def level_masks(model: nn.Module, scope: str, sparsities: tuple[float, ...]) -> list[Masks]:
    """Per sparsity level, ``(weight masks, bias masks or None)`` for ``scope``, ranked on ``model``'s weights."""
    if scope == "global":
        return [(m, None) for m in global_masks(model, sparsities)]
    if scope == "layer":
        return [(m, None) for m in layer_masks(model, sparsities)]
    if scope == "neuron":
        return [neuron_masks(model, keep) for keep in neuron_keep(model, sparsities)]
    raise ValueError(f"unknown pruning scope {scope!r}; choose from {', '.join(SCOPES)}")


def prune(model: nn.Module, sparsity: float, scope: str = "global") -> nn.Module:
    """A pruned **copy** of ``model`` at ``sparsity`` (0 <= s < 1) in ``scope``."""
    if not 0 <= sparsity < 1:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    (masks,) = level_masks(model, scope, (sparsity,))
    return apply_masks(copy.deepcopy(model), *masks)


def prune_and_finetune(model: nn.Module, sparsity: float, scope: str, X: torch.Tensor | np.ndarray,
                       y: torch.Tensor | np.ndarray, epochs: int, lr: float = 1e-3, seed: int = 0) -> nn.Module:
    """:func:`prune`, then ``epochs`` of masked fine-tuning on ``(X, y)``: pruned weights stay zero."""
    if not 0 <= sparsity < 1:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    (masks,) = level_masks(model, scope, (sparsity,))
    pruned = apply_masks(copy.deepcopy(model), *masks)
    device = next(pruned.parameters()).device
    _finetune(pruned, *masks, torch.as_tensor(X, dtype=torch.float32, device=device),
              torch.as_tensor(y, dtype=torch.long, device=device), epochs, lr, seed)
    return pruned


def _finetune(model: nn.Module, w_masks: list[torch.Tensor], b_masks: list[torch.Tensor] | None,
              X: torch.Tensor, y: torch.Tensor, epochs: int, lr: float, seed: int) -> None:
    """Train the pruned model for ``epochs`` with Adam, re-applying the masks after each step."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(X), generator=g).to(X.device)
        for s in range(0, len(X), 64):
            idx = order[s:s + 64]
            if len(idx) < 2:
                continue
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(X[idx]), y[idx]).backward()
            opt.step()
            apply_masks(model, w_masks, b_masks)
    model.eval()


def pruning_sweep(
    model: nn.Module,
    X: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    *,
    sparsities: tuple[float, ...] = DEFAULT_SPARSITIES,
    scopes: tuple[str, ...] = SCOPES,
    dead_masks: dict[str, np.ndarray] | None = None,
    finetune: tuple[np.ndarray, np.ndarray] | None = None,
    finetune_epochs: int = 0,
    finetune_lr: float = 1e-3,
    seed: int = 0,
) -> PruningReport:
    """Accuracy, loss and parameters left at each sparsity for each scope.

    ``dead_masks`` (``{linear name: (m,) bool}``) adds the accuracy with the dead
    neurons removed. ``finetune=(X_train, y_train)`` with ``finetune_epochs > 0``
    also reports the accuracy after that many epochs of masked fine-tuning.
    """
    for s in sparsities:
        if not 0 <= s < 1:
            raise ValueError(f"sparsities must lie in [0, 1), got {s}")
    unknown = set(scopes) - set(SCOPES)
    if unknown:
        raise ValueError(f"unknown pruning scopes {sorted(unknown)}; choose from {', '.join(SCOPES)}")
    device = next(model.parameters()).device
    X = torch.as_tensor(X, dtype=torch.float32, device=device)
    y = torch.as_tensor(y, dtype=torch.long, device=device)
    total = count_parameters(model).linear_parameters
    work = copy.deepcopy(model).eval()
    # Every level starts from the caller's model, which nothing here modifies: masks are
    # ranked on its weights, and before each level the whole state of the working copy
    # (weights, biases, batch-norm parameters and running statistics) is reloaded from
    # it, so neither a previous level's pruning nor its fine-tuning can leak forward.
    original = model.state_dict()

    def restore() -> None:
        work.load_state_dict(original)

    base_loss, base_acc = evaluate(work, X, y)
    curves = []
    ft = None
    if finetune is not None and finetune_epochs > 0:
        ft = (torch.as_tensor(finetune[0], dtype=torch.float32, device=device),
              torch.as_tensor(finetune[1], dtype=torch.long, device=device))
    with inspecting(work):
        for scope in scopes:
            acc, loss, params, tuned = [], [], [], []
            for w_masks, b_masks in level_masks(model, scope, sparsities):
                restore()
                apply_masks(work, w_masks, b_masks)
                lo, ac = evaluate(work, X, y)
                acc.append(ac), loss.append(lo), params.append(parameters_left(model, w_masks, b_masks))
                if ft is not None:
                    _finetune(work, w_masks, b_masks, ft[0], ft[1], finetune_epochs, finetune_lr, seed)
                    tuned.append(evaluate(work, X, y)[1])
            curves.append(PruningCurve(
                scope=scope, sparsity=np.asarray(sparsities, dtype=np.float64),
                accuracy=np.asarray(acc), loss=np.asarray(loss), parameters_left=np.asarray(params, dtype=np.int64),
                finetuned_accuracy=np.asarray(tuned) if ft is not None else None,
            ))
        dead_acc, dead_count = None, 0
        if dead_masks:
            keep = dead_keep(model, dead_masks)
            dead_count = int(sum(int((~k).sum()) for k in keep))
            restore()
            apply_masks(work, *neuron_masks(model, keep))
            dead_acc = evaluate(work, X, y)[1]
    return PruningReport(tuple(curves), base_acc, base_loss, int(total), int(len(X)), dead_acc, dead_count)


def parameters_left(model: nn.Module, weight_masks: list[torch.Tensor],
                    bias_masks: list[torch.Tensor] | None = None) -> int:
    """Nonzero weights of ``model`` kept by ``weight_masks`` plus the biases kept by ``bias_masks``.

    A tensor shared by several layers counts once, and only the entries that every
    layer using it keeps are left, so at sparsity 0 this equals
    :func:`~inspector.analysis.parameters.count_parameters`' ``linear_parameters``
    (when no weight is exactly zero).
    """
    kept: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def keep(tensor: torch.Tensor | None, mask: torch.Tensor | None) -> None:
        if tensor is None:
            return
        mask = torch.ones_like(tensor, dtype=torch.bool) if mask is None else mask
        previous = kept.get(id(tensor))
        kept[id(tensor)] = (tensor, mask if previous is None else previous[1] & mask)

    for k, layer in enumerate(_weights(model)):
        keep(layer.weight, weight_masks[k])
        keep(layer.bias, None if bias_masks is None else bias_masks[k])
    weights = {id(layer.weight) for layer in _weights(model)}
    return int(sum(int((mask & (tensor.detach() != 0)).sum()) if key in weights else int(mask.sum())
                   for key, (tensor, mask) in kept.items()))
