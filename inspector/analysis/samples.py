"""The explained samples as batches: cut into chunks, the first ``n`` taken, rows picked,
per-token arrays stacked, and each sample's class and real (unpadded) positions.

Shared by :mod:`~inspector.analysis.importance` and :mod:`~inspector.analysis.conductance`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from inspector.analysis.inputs import Batch, InputAdapter
from inspector.analysis.task import Task


def chunk_batches(batches: Sequence[Batch], adapter: InputAdapter, rows: int) -> list[Batch]:
    """The explained samples as batches of at most ``rows``: float batches are joined first (they
    share a shape), token batches are cut one by one (their lengths may differ)."""
    if not batches:
        return []
    if not adapter.ragged and len(batches) > 1:
        batches = [Batch.concat(batches)]
    out = []
    for batch in batches:
        out += [batch.rows(slice(s, s + rows)) for s in range(0, len(batch), rows)]
    return out


def input_rows(batches: Sequence[Batch], index: Sequence[int]) -> torch.Tensor:
    """The inputs of the samples at ``index`` (positions in the batches one after another), stacked."""
    offsets = np.cumsum([0] + [len(b) for b in batches])
    rows = []
    for i in index:
        k = int(np.searchsorted(offsets, i, side="right")) - 1
        rows.append(batches[k].inputs[i - int(offsets[k])])
    return torch.stack(rows)


def pad_rows(parts: Sequence[np.ndarray], fill: float = 0) -> np.ndarray:
    """Rows of per-token arrays ``(n_i, T_i, ...)`` stacked, right-padded to the widest ``T``."""
    width = max(p.shape[1] for p in parts)
    padded = [
        np.concatenate([p, np.full((p.shape[0], width - p.shape[1], *p.shape[2:]), fill, p.dtype)], axis=1)
        if p.shape[1] < width
        else p
        for p in parts
    ]
    return np.concatenate(padded)


def stack_rows(parts: Sequence[np.ndarray], tokens: bool, fill: float = 0) -> np.ndarray:
    return pad_rows(parts, fill) if tokens else np.concatenate(parts)


def class_labels(batch: Batch, task: Task) -> np.ndarray | None:
    """``(n,)`` int class of each sample for classification, else ``None``."""
    if task.kind != "classification" or batch.labels is None:
        return None
    return batch.labels.reshape(len(batch), -1)[:, 0].long().cpu().numpy()


def real_positions(batch: Batch) -> torch.Tensor:
    return batch.mask if batch.mask is not None else torch.ones_like(batch.inputs, dtype=torch.bool)


def token_positions(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids, real)`` ``(n, T)`` of a token batch (one id per sample, ids ``(n,)``, is ``T = 1``)."""
    n = len(batch)
    return batch.inputs.reshape(n, -1), real_positions(batch).reshape(n, -1)
