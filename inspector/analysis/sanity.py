"""The model-randomisation sanity check of an attribution method.

It follows Adebayo et al. 2018, "Sanity Checks for Saliency Maps": the Spearman rank
correlation between each sample's attribution on the trained model and on a copy with
every linear, convolution and embedding layer re-initialised. A method that still scores
high is not looking at the model.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
from torch import nn

from inspector.analysis.attribution import seeded

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
    with seeded(seed):
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
