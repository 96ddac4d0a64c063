"""The collectives of data-parallel work on ``torch.distributed``: ranks, exact merges, stopping together.

Every statistic the tool streams is a :class:`~inspector.core.statistic.Statistic`: accumulate
(on a rank's shard) / merge (its base class calls the collectives here once: sums by
``all_reduce``, bounded rows by ``all_gather``) / finish (the same code on every rank), the
pattern of torchmetrics' ``Metric``. Without an initialised process group (or with one process)
every function here is the identity, so one process and N processes run the same code.
Sharding a data source lives with the sources (:mod:`inspector.analysis.distributed`).

The backend decides where a reduced tensor lives: NCCL reduces CUDA tensors (on
``torch.cuda.current_device()``), gloo CPU tensors.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from inspector.core.batches import DataSource, Shard
from inspector.errors import InspectorError


def active() -> bool:
    """Whether an initialised process group with more than one process is in use."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """The number of processes (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_writer() -> bool:
    """Rank 0 (or the only process): the one that writes files, reports and progress bars."""
    return rank() == 0


def _device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Each array summed over every rank, same shapes; float64 and int64 only (sums are exact for int64).

    One collective per dtype present: the arrays are flattened into one buffer, so a call costs
    one round trip whatever the number of arrays. Every rank must pass arrays of the same shapes.
    """
    return _all_reduce("sum", arrays)


def all_reduce_max(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Each array's elementwise maximum over every rank; as :func:`all_reduce_sum` otherwise."""
    return _all_reduce("max", arrays)


def all_reduce_min(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Each array's elementwise minimum over every rank; as :func:`all_reduce_sum` otherwise."""
    return _all_reduce("min", arrays)


def _all_reduce(op: str, arrays: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    out = [np.array(a, copy=True) for a in arrays]
    for a in out:
        if a.dtype not in (np.float64, np.int64):
            raise TypeError(f"all_reduce_{op} takes float64 or int64 arrays, not {a.dtype}")
    if not active():
        return tuple(out)
    reduce_op = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}[op]
    device = _device()
    for dtype in (np.float64, np.int64):
        chosen = [i for i, a in enumerate(out) if a.dtype == dtype and a.size]
        if not chosen:  # the shapes are the same on every rank: every rank skips the same collectives
            continue
        flat = np.concatenate([out[i].reshape(-1) for i in chosen])
        buffer = torch.from_numpy(flat).to(device)
        dist.all_reduce(buffer, op=reduce_op)
        reduced = buffer.cpu().numpy()
        start = 0
        for i in chosen:
            size = out[i].size
            out[i] = reduced[start : start + size].reshape(out[i].shape)
            start += size
    return tuple(out)


def all_gather_objects(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` (pickled; for small or bounded things such as kept samples)."""
    if not active():
        return [obj]
    gathered: list[Any] = [None] * world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


@contextmanager
def together(what: str) -> Iterator[None]:
    """Run a rank's local work for ``what``, then agree across ranks that every rank finished it.

    If any rank raised, every rank raises: the failing rank its own exception, the others one
    :class:`~inspector.errors.InspectorError` naming the rank and its message. Wrap only local work
    (no collectives inside), so a failure never leaves the ranks waiting in different collectives;
    a rank that dies outright is caught by the process group's timeout.
    """
    failure: BaseException | None = None
    try:
        yield
    except BaseException as error:  # noqa: BLE001 - re-raised below, after telling the other ranks
        failure = error
    if not active():
        if failure is not None:
            raise failure
        return
    message = None if failure is None else (f"{type(failure).__name__}: {failure}".splitlines() or [""])[0]
    messages = all_gather_objects(message)
    if failure is not None:
        raise failure
    for index, text in enumerate(messages):
        if text is not None:
            raise InspectorError(f"rank {index} of {len(messages)} failed during {what} ({text}); every rank stops")


def launched_by_torchrun() -> bool:
    """Whether this process is one of several started by ``torchrun`` (``WORLD_SIZE`` > 1 in the environment)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


@contextmanager
def process_group(device: torch.device | str | None = None, timeout_s: float | None = None) -> Iterator[None]:
    """Join the process group ``torchrun`` describes (NCCL for a CUDA ``device``, else gloo) for the
    duration, and leave it afterwards; nothing when not launched by torchrun or already in a group.

    ``timeout_s`` (default ``INSPECTOR_DIST_TIMEOUT`` seconds, else 600) bounds every collective: a rank
    that dies outright stops the others after at most that long instead of leaving them waiting.
    """
    if not launched_by_torchrun() or (dist.is_available() and dist.is_initialized()):
        yield
        return
    if not dist.is_available():
        raise InspectorError("this PyTorch build has no torch.distributed; run one process")
    cuda = device is not None and torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    seconds = timeout_s if timeout_s is not None else float(os.environ.get("INSPECTOR_DIST_TIMEOUT", "600"))
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=seconds))
    try:
        yield
    finally:
        dist.destroy_process_group()


def already_sharded(data: Any) -> bool:
    """Whether ``data`` is a ``DataLoader`` whose sampler gives each rank its own share
    (a ``DistributedSampler``, directly or inside a batch sampler)."""
    from torch.utils.data import DataLoader
    from torch.utils.data.distributed import DistributedSampler

    if not isinstance(data, DataLoader):
        return False
    samplers = [data.sampler, getattr(data.batch_sampler, "sampler", None)]
    return any(isinstance(s, DistributedSampler) for s in samplers)


def shard(source: DataSource, data: Any = None) -> DataSource:
    """This rank's share of ``source``: batch ``i`` goes to rank ``i % world_size``, unless ``data`` (what
    ``source`` was made from) is a ``DataLoader`` with a ``DistributedSampler``, already one share per rank.

    Either way local batch ``i`` of rank ``r`` has the global batch index ``i * world_size + r``, which
    orders the rows kept for histograms and projections. Without a process group: ``source`` itself;
    a source that is already a share is returned as it is.
    """
    if not active() or source.shard is not None:
        return source
    clone = source.on(source.device)
    clone.shard = Shard(rank(), world_size(), strided=not already_sharded(data))
    if clone.shard.strided:
        clone.n_samples = None  # known only after a pass over the share
    return clone
