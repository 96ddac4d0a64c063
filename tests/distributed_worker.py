"""Process bodies for tests/test_distributed.py: each spawned rank analyses its share and pickles what it got."""

from __future__ import annotations

import pickle
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

from tests.helpers import in_gloo_group

BATCH = 16
N = 203  # not a multiple of the batch or of the world size: uneven shards, a short last batch


def model() -> nn.Sequential:
    """ReLU (neuron 0 planted dead), tanh (weights scaled up: saturates), GELU, 3 outputs."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 12), nn.Tanh(), nn.Linear(12, 10), nn.GELU(), nn.Linear(10, 3)
    )
    with torch.no_grad():
        net[0].weight[0] = 0.0
        net[0].bias[0] = -10.0
        net[2].weight.mul_(12.0)
    return net


def data(n: int = N) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs ``(n, 6)``, class labels ``(n,)`` and regression targets ``(n, 3)``."""
    g = torch.Generator().manual_seed(1)
    X = torch.randn(n, 6, generator=g)
    return X, torch.randint(0, 3, (n,), generator=g), torch.randn(n, 3, generator=g)


def compute() -> dict[str, Any]:
    """Everything compared against one process: run identically with and without a process group."""
    from inspector.analysis import AnalysisOptions, analyze
    from inspector.analysis.activations import activation_census
    from inspector.analysis.inputs import as_source
    from inspector.analysis.task import evaluate_task, make_task

    net = model()
    X, y, targets = data()
    out: dict[str, Any] = {}
    out["census"] = activation_census(net, (X, y), batch_size=BATCH)
    out["census_kept_50"] = activation_census(net, (X, y), batch_size=BATCH, keep_samples=50)
    for kind, labels in (("classification", y), ("regression", targets)):
        source = as_source((X, labels), batch_size=BATCH)
        task = make_task(kind, source.first())
        out[kind] = evaluate_task(net, source, task)
    options = AnalysisOptions(sections=("activations", "pruning"), batch_size=BATCH, sparsities=(0.5,))
    analysis = analyze(net, (X, y), options=options)
    out["analyze"] = (analysis.data, analysis.activations, analysis.pruning)
    # the user's DistributedSampler: already one share per rank (204 = a multiple of 2 and 3: no padding)
    X2, y2, _ = data(204)
    dataset = TensorDataset(X2, y2)
    sampler = DistributedSampler(dataset, shuffle=False) if dist.is_initialized() else None
    out["sampler"] = activation_census(net, DataLoader(dataset, batch_size=BATCH, sampler=sampler))
    from inspector.analysis.importance import importance_report

    # the explained samples are split into one contiguous share per rank and the sums all_reduced
    out["importance"] = importance_report(
        net, (X, y), "classification", methods=EXACT_METHODS, n_steps=8, max_samples=101, with_conductance=False
    )
    # the user's sampler: each rank explains its own share's first 60 / N samples; together, the first 60
    out["sampler_importance"] = importance_report(
        net,
        DataLoader(dataset, batch_size=BATCH, sampler=sampler),
        "classification",
        methods=("integrated_gradients",),
        n_steps=8,
        max_samples=60,
        with_conductance=False,
    )
    ids, token_labels = tokens()
    out["token_importance"] = importance_report(
        TokenNet(),
        (ids, token_labels),
        "classification",
        methods=("integrated_gradients",),
        n_steps=8,
        max_samples=57,
        with_conductance=False,
    )
    return out


# methods whose attributions of a sample do not depend on the other samples of its batch (GradientShap's
# random draws and FeaturePermutation's shuffles do: they are compared by rank, not by value)
EXACT_METHODS = ("integrated_gradients", "saliency", "input_x_gradient", "deeplift", "feature_ablation")


class TokenNet(nn.Module):
    """Token ids -> embedding -> mean over positions -> ReLU layer -> 2 classes."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.embed = nn.Embedding(30, 8)
        self.fc = nn.Linear(8, 6)
        self.act = nn.ReLU()
        self.out = nn.Linear(6, 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.fc(self.embed(ids).mean(dim=1))))


def tokens(n: int = 57) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return torch.randint(0, 30, (n, 5), generator=g), torch.randint(0, 2, (n,), generator=g)


class _Explodes(nn.Module):
    """A model whose forward raises on rank 1 only, after the other ranks started."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 4)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if dist.get_rank() == 1:
            raise ValueError("rank one's batch is broken")
        return self.act(self.fc(x))


def run(rank: int, world: int, port: int, folder: str) -> None:
    """Rank ``rank``: join the gloo group, compute, then check that a failing rank stops every rank."""
    in_gloo_group(rank, world, port, folder, lambda: _checks(rank))


def _checks(rank: int) -> dict[str, Any]:
    from inspector.analysis import distributed
    from inspector.analysis.activations import activation_census

    result = compute()
    result["all_reduce"] = distributed.all_reduce_sum(np.full(3, rank + 0.5), np.arange(4, dtype=np.int64) * (rank + 1))
    result["writer"] = distributed.is_writer()
    # a model with no counted site (no activation after its only layer): nothing to merge, no hang
    result["no_sites"] = activation_census(nn.Sequential(nn.Linear(6, 2)), data()[0], batch_size=BATCH)
    try:
        X, _, _ = data()
        activation_census(_Explodes(), X, batch_size=BATCH)
        result["failure"] = None
    except Exception as error:  # noqa: BLE001 - the test reads what each rank raised
        result["failure"] = (type(error).__name__, str(error))
    return result


# --------------------------------------------------------------------------- fewer batches than ranks

SMALL_SECTIONS = ("parameters", "activations", "importance", "whatif", "pruning")
# (samples, batch size): one batch (2 and 3 ranks: ranks without a batch), and fewer samples than ranks
SMALL_CASES = ((20, 1024), (2, 1024), (2, 1))


def compute_small() -> dict[Any, Any]:
    """Every data section of :func:`analyze` where some ranks read no batch: run alike with and without a
    process group; ``{(case, kind): (data, activations, importance, whatif, pruning)}``."""
    from inspector.analysis import AnalysisOptions, analyze

    out: dict[Any, Any] = {}
    for n, batch_size in SMALL_CASES:
        options = AnalysisOptions(
            sections=SMALL_SECTIONS,
            batch_size=batch_size,
            sparsities=(0.5,),
            methods=("integrated_gradients", "saliency"),
            n_steps=4,
            top_k=3,
            conductance_samples=4,
        )
        X, y, _ = data(n)
        ids, token_labels = tokens(n)
        for kind, net, batches in (("features", model(), (X, y)), ("tokens", TokenNet(), (ids, token_labels))):
            a = analyze(net, batches, options=options)
            out[(n, batch_size, kind)] = (a.data, a.activations, a.importance, a.whatif, a.pruning)
    return out


def run_small(rank: int, world: int, port: int, folder: str) -> None:
    """Rank ``rank``: :func:`compute_small` in a gloo group (some ranks hold no batch)."""
    in_gloo_group(rank, world, port, folder, lambda: {"small": compute_small()})


def run_lost(rank: int, world: int, port: int, folder: str) -> None:
    """Rank ``rank`` joins the group as under torchrun (:func:`process_group`, from the environment); rank 1
    raises a user error in its local work while the others already wait in a collective for it."""
    _run_failing(rank, world, port, folder, timeout_s=60, silent=False)


def run_silent(rank: int, world: int, port: int, folder: str) -> None:
    """As :func:`run_lost`, but rank 1 neither fails nor enters the collective: it stays silent past the
    group's 3 s timeout, then leaves; the others stop at the timeout with one line."""
    _run_failing(rank, world, port, folder, timeout_s=3, silent=True)


def _run_failing(rank: int, world: int, port: int, folder: str, *, timeout_s: float, silent: bool) -> None:
    import os
    import time

    from inspector.analysis import distributed
    from inspector.errors import InspectorError

    torch.set_num_threads(1)
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    result: dict[str, Any] = {"failure": None}
    try:
        with distributed.process_group(timeout_s=timeout_s):
            if rank != 1:
                distributed.all_reduce_sum(np.zeros(3))
            elif silent:
                time.sleep(8)
            else:
                raise InspectorError("rank one's own mistake; fix the data")
    except InspectorError as error:
        result["failure"] = (type(error).__name__, str(error))
    except Exception:  # noqa: BLE001
        result["error"] = traceback.format_exc()
    Path(folder, f"rank{rank}.pkl").write_bytes(pickle.dumps(result))
