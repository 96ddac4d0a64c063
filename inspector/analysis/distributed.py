"""Data-parallel analysis on ``torch.distributed``: sharding a data source, plus the collectives of
:mod:`inspector.core.distributed` (re-exported here, where the analyses have always found them).

Without an initialised process group (or with one process) every function here is the identity,
so one process and N processes run the same code.
"""

from __future__ import annotations

from typing import Any

from inspector.analysis.inputs import DataSource, Shard
from inspector.core.distributed import (
    active,
    all_gather_objects,
    all_reduce_max,
    all_reduce_min,
    all_reduce_sum,
    is_writer,
    launched_by_torchrun,
    process_group,
    rank,
    together,
    world_size,
)

__all__ = [
    "active",
    "all_gather_objects",
    "all_reduce_max",
    "all_reduce_min",
    "all_reduce_sum",
    "already_sharded",
    "is_writer",
    "launched_by_torchrun",
    "process_group",
    "rank",
    "shard",
    "together",
    "world_size",
]


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
