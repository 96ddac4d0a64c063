"""Data-parallel analysis on ``torch.distributed``: sharding a data source, plus the collectives: all of
:mod:`inspector.core.distributed`, re-exported here, where the analyses have always found them.

Without an initialised process group (or with one process) every function here is the identity,
so one process and N processes run the same code.
"""

from __future__ import annotations

from inspector.core.distributed import (
    PeerFailure,
    active,
    all_gather_objects,
    all_reduce_max,
    all_reduce_min,
    all_reduce_sum,
    already_sharded,
    is_writer,
    launched_by_torchrun,
    process_group,
    rank,
    shard,
    together,
    world_size,
)

__all__ = [
    "PeerFailure",
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
