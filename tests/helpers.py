"""Small shared builders for tests."""

from __future__ import annotations

import math
import pickle
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch.multiprocessing as mp

from inspector.data import Dataset, Splits, SplitSpec, split_dataset


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
