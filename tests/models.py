"""Small models for tests of any-model analyses: a CNN with a dense head, modules whose activations
are shared or functional, and a tiny BERT built from a config (random weights, no download).

Every builder is deterministic given its ``seed``; planting helpers change weights in place so a test
knows the right answer on paper (a row of zeros and bias -10 is a neuron whose pre-activation is -10
on every input: dead under any rectifier).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

# --------------------------------------------------------------------------- #
# Planting
# --------------------------------------------------------------------------- #


def plant_dead(linear: nn.Linear, neuron: int, bias: float = -10.0) -> None:
    """Make ``neuron`` of ``linear`` output ``bias`` on every input (row of zeros): never positive."""
    with torch.no_grad():
        linear.weight[neuron].zero_()
        linear.bias[neuron] = bias


# --------------------------------------------------------------------------- #
# LeNet-style CNN on the 8x8 digits
# --------------------------------------------------------------------------- #


class LeNetDigits(nn.Module):
    """conv(1->6, 3x3) - ReLU - maxpool - conv(6->16, 3x3) - ReLU - maxpool - flatten (64) -
    ``head``: fc1 (64->32) - ReLU - fc2 (32->16) - ReLU - out (16->10).

    Input ``(n, 1, 8, 8)`` images, output ``(n, 10)`` logits. The dense sites are ``head.fc1`` and
    ``head.fc2`` (ReLU), ``head.out`` has no activation.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(1, 6, 3, padding=1),
                relu1=nn.ReLU(),
                pool1=nn.MaxPool2d(2),
                conv2=nn.Conv2d(6, 16, 3, padding=1),
                relu2=nn.ReLU(),
                pool2=nn.MaxPool2d(2),
            )
        )
        self.head = nn.Sequential(
            OrderedDict(
                fc1=nn.Linear(64, 32),
                act1=nn.ReLU(),
                fc2=nn.Linear(32, 16),
                act2=nn.ReLU(),
                out=nn.Linear(16, 10),
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.features(x), 1))


HEAD_LAYERS = ("head.fc1", "head.fc2")


def digits_images(n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 8x8 digits as images ``(N, 1, 8, 8)`` float32 in [0, 1] and labels ``(N,)`` int64."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.as_tensor(bunch.images[:n] / 16.0, dtype=torch.float32).unsqueeze(1)
    labels = torch.as_tensor(bunch.target[:n], dtype=torch.int64)
    return images, labels


def digits_loader(n: int | None = None, batch_size: int = 256) -> torch.utils.data.DataLoader:
    """A ``DataLoader`` of ``(image (1, 8, 8), label)`` pairs over the digits, in order."""
    images, labels = digits_images(n)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, labels), batch_size=batch_size)


def lenet_digits(seed: int = 0, epochs: int = 0, lr: float = 0.01) -> LeNetDigits:
    """A :class:`LeNetDigits`, randomly initialised from ``seed`` and trained for ``epochs`` full-batch
    Adam steps on all the digits (0: random weights). Returned in eval mode."""
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    model = LeNetDigits()
    torch.random.set_rng_state(gen_state)
    if epochs:
        images, labels = digits_images()
        optimiser = torch.optim.Adam(model.parameters(), lr=lr)
        model.train()
        for _ in range(epochs):
            optimiser.zero_grad()
            F.cross_entropy(model(images), labels).backward()
            optimiser.step()
    return model.eval()


# --------------------------------------------------------------------------- #
# Shared and functional activations
# --------------------------------------------------------------------------- #


class SharedReLU(nn.Module):
    """fc1 (d->h1) - act - fc2 (h1->h2) - act - out (h2->k), with ONE ``self.act = nn.ReLU()`` used twice."""

    def __init__(self, d: int = 6, h1: int = 8, h2: int = 5, k: int = 3) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d, h1)
        self.fc2 = nn.Linear(h1, h2)
        self.out = nn.Linear(h2, k)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.fc2(self.act(self.fc1(x)))))


def shared_relu(seed: int = 0, **sizes: int) -> SharedReLU:
    torch.manual_seed(seed)
    return SharedReLU(**sizes).eval()


class FunctionalActivations(nn.Module):
    """fc1 (d->h) - ``torch.relu`` - fc2 (h->h) - ``F.gelu`` - fc3 (h->h) - BatchNorm1d - ``F.relu`` -
    out (h->k): every activation is a function call, so only tracing (``torch.fx``) can find it."""

    def __init__(self, d: int = 6, h: int = 8, k: int = 3) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d, h)
        self.fc2 = nn.Linear(h, h)
        self.fc3 = nn.Linear(h, h)
        self.bn = nn.BatchNorm1d(h)
        self.out = nn.Linear(h, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.fc1(x))
        x = F.gelu(self.fc2(x))
        x = F.relu(self.bn(self.fc3(x)))
        return self.out(x)


def functional_activations(seed: int = 0, **sizes: int) -> FunctionalActivations:
    """A :class:`FunctionalActivations` with non-trivial BatchNorm running statistics (eval mode)."""
    torch.manual_seed(seed)
    model = FunctionalActivations(**sizes)
    bn = model.bn
    assert bn.running_mean is not None and bn.running_var is not None
    with torch.no_grad():
        h = bn.num_features
        bn.running_mean.copy_(torch.linspace(-0.5, 0.5, h))
        bn.running_var.copy_(torch.linspace(0.5, 2.0, h))
        bn.weight.copy_(torch.linspace(0.5, 1.5, h))
        bn.bias.copy_(torch.linspace(-0.2, 0.2, h))
    return model.eval()


class Untraceable(nn.Module):
    """fc1 (d->h) - a function no rule knows (``x * sigmoid(2x)`` behind data-dependent control flow,
    so ``torch.fx`` cannot trace it) - out (h->k)."""

    def __init__(self, d: int = 6, h: int = 8, k: int = 3) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d, h)
        self.out = nn.Linear(h, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.fc1(x)
        if z.sum() > -1e30:  # data-dependent branch: symbolic tracing fails here
            z = z * torch.sigmoid(2 * z)
        return self.out(z)


def untraceable(seed: int = 0, **sizes: int) -> Untraceable:
    torch.manual_seed(seed)
    return Untraceable(**sizes).eval()


# --------------------------------------------------------------------------- #
# A tiny BERT and padded dict batches
# --------------------------------------------------------------------------- #


def tiny_bert(
    *,
    vocab_size: int = 50,
    hidden_size: int = 16,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 2,
    intermediate_size: int = 24,
    max_position_embeddings: int = 32,
    num_labels: int | None = None,
    seed: int = 0,
    **config: Any,
) -> nn.Module:
    """A ``transformers`` BERT from ``BertConfig`` with random weights (no download), in eval mode.

    ``num_labels=None``: a ``BertModel`` (no pooler); else a ``BertForSequenceClassification``
    with that many labels (its encoder is ``model.bert``). Dropout is off. Extra ``config`` items go
    to ``BertConfig``.
    """
    import transformers

    cfg = transformers.BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        hidden_act="gelu",
        pad_token_id=0,
        **config,
    )
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    model: nn.Module
    if num_labels is None:
        model = transformers.BertModel(cfg, add_pooling_layer=False)
    else:
        cfg.num_labels = num_labels
        model = transformers.BertForSequenceClassification(cfg)
    torch.random.set_rng_state(gen_state)
    return model.eval()


def padded_batch(
    lengths: list[int] | np.ndarray,
    width: int | None = None,
    *,
    vocab_size: int = 50,
    pad_id: int = 0,
    num_labels: int | None = None,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """A tokenizer-style dict batch: ``input_ids`` ``(n, T)`` with random ids in ``[1, vocab_size)`` on
    the first ``lengths[i]`` positions of row i and ``pad_id`` after, ``attention_mask`` ``(n, T)``
    (1 real, 0 padding), ``token_type_ids`` zeros; with ``num_labels``, ``labels`` ``(n,)``.
    ``T`` = ``width`` or ``max(lengths)``."""
    lengths = [int(v) for v in lengths]
    width = max(lengths) if width is None else int(width)
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab_size, (len(lengths), width), generator=gen)
    positions = torch.arange(width).unsqueeze(0)
    mask = (positions < torch.tensor(lengths).unsqueeze(1)).long()
    batch = {
        "input_ids": torch.where(mask.bool(), ids, torch.full_like(ids, pad_id)),
        "attention_mask": mask,
        "token_type_ids": torch.zeros_like(ids),
    }
    if num_labels is not None:
        batch["labels"] = torch.randint(0, num_labels, (len(lengths),), generator=gen)
    return batch


def padded_batches(
    n_batches: int = 3, batch_size: int = 4, width: int = 10, *, min_length: int = 2, seed: int = 0, **kwargs: Any
) -> list[dict[str, torch.Tensor]]:
    """``n_batches`` :func:`padded_batch` es of ``batch_size`` rows, lengths drawn in
    ``[min_length, width]`` (the first row of each batch is full, so every batch is ``width`` wide)."""
    rng = np.random.default_rng(seed)
    out = []
    for b in range(n_batches):
        lengths = rng.integers(min_length, width + 1, batch_size)
        lengths[0] = width
        out.append(padded_batch(lengths, width, seed=seed + b, **kwargs))
    return out
