"""Models, data and process bodies for tests/test_top_examples*.py: each spawned rank runs the census
with top-k examples on its share and pickles what it got."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tests.helpers import in_gloo_group

VOCAB = 12
PLANTED_TOKEN = 7
PLANTED_NEURON = 0


class TokenMLP(nn.Module):
    """Token ids ``(n, T)`` -> one-hot embedding (``VOCAB`` wide) -> ``fc`` (VOCAB -> 6) -> ReLU -> mean over
    the real positions -> 2 classes. Neuron :data:`PLANTED_NEURON` of ``fc`` reads only token
    :data:`PLANTED_TOKEN` (weight 1 on it, 0 elsewhere, bias -0.5): it outputs 0.5 there and 0 everywhere
    else. The other neurons' weights are rounded to 0.5 so that equal activations (ties) are common."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.embed = nn.Embedding(VOCAB, VOCAB)
        self.fc = nn.Linear(VOCAB, 6)
        self.act = nn.ReLU()
        self.out = nn.Linear(6, 2)
        with torch.no_grad():
            self.embed.weight.copy_(torch.eye(VOCAB))
            self.fc.weight.copy_((self.fc.weight * 4).round() / 2)
            self.fc.bias.copy_((self.fc.bias * 4).round() / 2)
            self.fc.weight[PLANTED_NEURON] = 0.0
            self.fc.weight[PLANTED_NEURON, PLANTED_TOKEN] = 1.0
            self.fc.bias[PLANTED_NEURON] = -0.5

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        hidden = self.act(self.fc(self.embed(input_ids)))  # (n, T, 6)
        if attention_mask is None:
            return self.out(hidden.mean(dim=1))
        weights = attention_mask.float()[..., None]
        return self.out((hidden * weights).sum(1) / weights.sum(1).clamp_min(1))


def token_batches(n_batches: int = 7, batch_size: int = 5, width: int = 11, seed: int = 1) -> list[dict[str, Any]]:
    """Padded dict batches (``input_ids``, ``attention_mask``, ``labels``); the planted token is rare
    but occurs more than 20 times; padded positions hold the planted token (they must never count)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        ids = torch.randint(0, VOCAB, (batch_size, width), generator=g)
        ids[ids == PLANTED_TOKEN] = 1  # only where planted below
        plant = torch.rand(batch_size, width, generator=g) < 0.15
        ids[plant] = PLANTED_TOKEN
        lengths = torch.randint(3, width + 1, (batch_size,), generator=g)
        lengths[0] = width
        mask = torch.arange(width)[None, :] < lengths[:, None]
        ids[~mask] = PLANTED_TOKEN
        out.append(
            {"input_ids": ids, "attention_mask": mask.long(), "labels": torch.randint(0, 2, (batch_size,), generator=g)}
        )
    return out


def tabular(n: int = 203) -> tuple[nn.Sequential, torch.Tensor, torch.Tensor]:
    """A ReLU / GELU MLP on ``(n, 6)`` rows (activations rounded weights: ties), its inputs and labels."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 10), nn.GELU(), nn.Linear(10, 3))
    with torch.no_grad():
        net[0].weight.copy_((net[0].weight * 2).round() / 2)
    g = torch.Generator().manual_seed(1)
    X = (torch.randn(n, 6, generator=g) * 2).round() / 2
    return net, X, torch.randint(0, 3, (n,), generator=g)


def compute() -> dict[str, Any]:
    """The census with top-k examples, run identically with and without a process group."""
    from inspector.analysis.activations import activation_census

    out: dict[str, Any] = {}
    out["tokens"] = activation_census(TokenMLP(), token_batches(), top_k=4)
    net, X, y = tabular()
    out["tabular"] = activation_census(net, (X, y), batch_size=16, top_k=5)
    return out


def run(rank: int, world: int, port: int, folder: str) -> None:
    in_gloo_group(rank, world, port, folder, compute)
