"""Small shared builders for tests."""

from __future__ import annotations

import math
import pickle
import socket
import traceback
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from inspector.analysis import Analysis, AnalysisOptions, analyze
from inspector.data import Dataset, Splits, SplitSpec, split_dataset
from inspector.evaluation import EvalData
from inspector.models import MLPConfig, build_mlp


def tiny_splits(n: int = 200, d: int = 6, classes: int = 3, seed: int = 0) -> Splits:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    y = (np.argmax(X[:, :classes], axis=1)).astype(np.int64)
    ds = Dataset("tiny", X, y, tuple(f"x{i}" for i in range(d)), tuple(map(str, range(classes))))
    return split_dataset(ds, SplitSpec(seed=seed))


def numpy_prune(layers, s, scope):
    """Magnitude pruning of ``[(weight (m, n), bias (m,))]`` from the scopes' definitions, in numpy: the
    oracle the pruning tests check against. A hidden layer's consumer is the next layer (a chain)."""
    layers = [(w.copy(), b.copy()) for w, b in layers]
    if scope == "global":
        flat = np.concatenate([np.abs(w).ravel() for w, _ in layers])
        drop = np.zeros(flat.size, bool)
        drop[np.argsort(flat, kind="stable")[: math.floor(s * flat.size)]] = True
        start = 0
        for w, _ in layers:
            w.ravel()[drop[start : start + w.size]] = 0.0
            start += w.size
    elif scope == "layer":
        for w, _ in layers:
            w.ravel()[np.argsort(np.abs(w).ravel(), kind="stable")[: math.floor(s * w.size)]] = 0.0
    else:  # neuron: weakest rows of each hidden layer by L2 norm, with their bias and outgoing column
        drops = [
            np.argsort(np.linalg.norm(w, axis=1), kind="stable")[: math.floor(s * w.shape[0])] for w, _ in layers[:-1]
        ]  # every norm from the unpruned weights
        for k, drop in enumerate(drops):
            w, b = layers[k]
            w[drop], b[drop] = 0.0, 0.0
            layers[k + 1][0][:, drop] = 0.0
    return layers


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for a gloo rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn_ranks(run: Callable[..., None], world: int, folder: Path) -> list[dict[str, Any]]:
    """``run(rank, world, port, folder)`` in ``world`` spawned processes; each rank's pickled results
    (``folder/rank{r}.pkl``), after checking that no rank hung (180 s) or reported an error."""
    context = mp.get_context("spawn")
    port = free_port()
    processes = [context.Process(target=run, args=(r, world, port, str(folder))) for r in range(world)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout=180)
    alive = [p for p in processes if p.is_alive()]
    for p in alive:
        p.kill()
    assert not alive, "a rank hung"
    results = [pickle.loads(Path(folder, f"rank{r}.pkl").read_bytes()) for r in range(world)]
    for r, result in enumerate(results):
        assert "error" not in result, f"rank {r}: {result['error']}"
    return results


def in_gloo_group(rank: int, world: int, port: int, folder: str, work: Callable[[], dict[str, Any]]) -> None:
    """The body of a rank that :func:`spawn_ranks` starts: join the gloo group on ``127.0.0.1:port`` (one
    thread, collectives time out after 60 s), run ``work()`` and pickle its dict, or the traceback
    under ``"error"``, to ``folder/rank{rank}.pkl``."""
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world, timeout=timedelta(seconds=60)
    )
    result: dict[str, Any] = {}
    try:
        result = work()
    except Exception:  # noqa: BLE001 - reported to the test through the pickle
        result = {"error": traceback.format_exc()}
    finally:
        Path(folder, f"rank{rank}.pkl").write_bytes(pickle.dumps(result))
        dist.destroy_process_group()


def svd64(w: torch.Tensor) -> np.ndarray:
    """numpy's float64 singular values of ``w``: the oracle the spectrum tests check against."""
    return np.linalg.svd(w.double().numpy(), compute_uv=False)


def planted_weight(m: int, n: int, spectrum: np.ndarray, seed: int = 0) -> torch.Tensor:
    """``U diag(spectrum) V^T`` ``(m, n)`` in float32 with dense random orthogonal ``U``, ``V``."""
    rng = np.random.default_rng(seed)
    k = min(m, n)
    u, _ = np.linalg.qr(rng.standard_normal((m, k)))
    v, _ = np.linalg.qr(rng.standard_normal((n, k)))
    return torch.from_numpy(((u * spectrum) @ v.T).astype(np.float32))


def tiny_analysis(
    n: int = 60, *, n_steps: int = 8, sparsities: tuple[float, ...] = (0.0, 0.5)
) -> tuple[Analysis, nn.Module, EvalData]:
    """A 6-8-3 ReLU MLP on ``n`` Gaussian rows labelled by the argmax of their first three features,
    with every analysis section: ``(analysis, model, data)``, small enough to build in seconds."""
    torch.manual_seed(0)
    model = build_mlp(MLPConfig(6, (8,), 3))
    X = np.random.default_rng(0).standard_normal((n, 6)).astype(np.float32)
    data = EvalData.from_arrays(X, np.argmax(X[:, :3], axis=1))
    return analyze(model, data, options=AnalysisOptions(n_steps=n_steps, sparsities=sparsities)), model, data
