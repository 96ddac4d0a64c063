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

import importlib
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
        _collective(lambda buffer=buffer: dist.all_reduce(buffer, op=reduce_op))
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
    _collective(lambda: dist.all_gather_object(gathered, obj))
    return gathered


class PeerFailure(InspectorError):
    """Another rank failed (its own error is its own line); this rank stops too."""


# the store of the group :func:`process_group` joined (None for a group the caller created): where a
# failing rank leaves its one line for the others, and where each rank says it has stopped
_store: Any = None
_FAILED = "inspector/failed/"
_STOPPED = "inspector/stopped/"
_DONE = "inspector/done/"


def _first_line(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}" if not isinstance(error, InspectorError) else str(error)
    return (text.strip().splitlines() or [type(error).__name__])[0]


def _peer_failure() -> str | None:
    """The line the lowest failed rank left in the store, if any (never raises)."""
    if _store is None:
        return None
    try:
        for r in range(world_size()):
            if _store.check([f"{_FAILED}{r}"]):
                return bytes(_store.get(f"{_FAILED}{r}")).decode("utf-8", "replace")
    except Exception:  # noqa: BLE001 - the store left with its host: fall back to the plain message
        return None
    return None


def _collective(call: Any) -> Any:
    """``call()``, a collective; the backend's error when a peer is gone (its connection reset, or the
    process group's timeout) becomes one :class:`PeerFailure` line naming the rank that failed when it
    left its line in the store, instead of a backend traceback."""
    try:
        return call()
    except RuntimeError as error:  # DistBackendError, DistNetworkError and gloo's own are RuntimeErrors
        if not active():
            raise
        peer = _peer_failure()
        if peer is not None:
            raise PeerFailure(f"{peer}; every rank stops") from None
        what = (
            "had no answer from another rank within the process group's timeout"
            if "timed out" in str(error).lower()
            else "lost contact with another rank"
        )
        raise PeerFailure(
            f"rank {rank()} of {world_size()} {what} ({_first_line(error)[:160]}); "
            "a rank failed, died or hangs, and its own output says why; every rank stops"
        ) from None


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
            raise PeerFailure(f"rank {index} of {len(messages)} failed during {what} ({text}); every rank stops")


def launched_by_torchrun() -> bool:
    """Whether this process is one of several started by ``torchrun`` (``WORLD_SIZE`` > 1 in the environment)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


@contextmanager
def process_group(device: torch.device | str | None = None, timeout_s: float | None = None) -> Iterator[None]:
    """Join the process group ``torchrun`` describes (NCCL for a CUDA ``device``, else gloo) for the
    duration, and leave it afterwards; nothing when not launched by torchrun or already in a group.

    ``timeout_s`` (default ``INSPECTOR_DIST_TIMEOUT`` seconds, else 600) bounds every collective: a rank
    that dies outright stops the others after at most that long instead of leaving them waiting.

    A rank whose work raises leaves its error's first line in the rendezvous store, leaves the group
    (its connections close, so the ranks waiting for it in a collective stop at once with that line:
    :class:`PeerFailure`) and waits up to 10 s for every rank to say it stopped, so that a launcher
    that ends the other ranks when one exits does not end them before they print their line. Rank 0
    waits the same way (it hosts the store unless the launcher's agent does).
    """
    global _store
    if not launched_by_torchrun() or (dist.is_available() and dist.is_initialized()):
        yield
        return
    if not dist.is_available():
        raise InspectorError("this PyTorch build has no torch.distributed; run one process")
    cuda = device is not None and torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    seconds = timeout_s if timeout_s is not None else float(os.environ.get("INSPECTOR_DIST_TIMEOUT", "600"))
    timeout = timedelta(seconds=seconds)
    where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
    _import_before_the_group()
    try:
        store, me, world = next(iter(dist.rendezvous("env://", timeout=timeout)))
        dist.init_process_group("nccl" if cuda else "gloo", store=store, rank=me, world_size=world, timeout=timeout)
    except (RuntimeError, ValueError) as error:
        raise InspectorError(
            f"could not join the process group at {where} ({_first_line(error)[:160]}); "
            "start every rank with the same torchrun command"
        ) from None
    _store = store  # held here too: the store outlives the group (rank 0 may host it)
    failure: BaseException | None = None
    try:
        yield
    except BaseException as error:
        failure = error
        raise
    finally:
        if failure is not None and not isinstance(failure, PeerFailure):
            _leave_line(store, me, world, _first_line(failure))
        try:
            dist.destroy_process_group()
        finally:
            # a failing rank waits for the others to have read its line; rank 0 (which may host the store,
            # when not the launcher's agent) waits for every rank to be done with it
            _stopped(store, me, world, wait=failure is not None and not isinstance(failure, PeerFailure))
            _store = None


def _import_before_the_group() -> None:
    """Import ``torch.distributed.nn`` before the group exists. Its functions take ``group=group.WORLD`` as a
    default argument, read once, at import: imported while a group is up (``transformers`` imports it
    when it builds a model), they hold that group for the life of the process. ``destroy_process_group``
    then cannot free it, and its gloo worker threads outlive it. One of them may still be dropping its
    last collective's tensors when Python finalizes; it then needs the GIL, cannot take it, and the
    process aborts ("terminate called without an active exception") after its work is done."""
    try:
        importlib.import_module("torch.distributed.nn")
    except Exception:  # noqa: BLE001 - a build without it has nothing to hold the group either
        pass


def _leave_line(store: Any, me: int, world: int, line: str) -> None:
    try:
        store.set(f"{_FAILED}{me}", f"rank {me} of {world} failed ({line})")
    except Exception:  # noqa: BLE001 - no store left: the others fall back to the plain message
        pass


def _stopped(store: Any, me: int, world: int, *, wait: bool, seconds: float = 10.0) -> None:
    """Say this rank stopped; a failing rank (``wait``) then waits up to ``seconds`` for the others to say
    so. Then this rank says it is done with the store, and rank 0, which may host it, waits for every
    rank to be done (so that no rank's last word to the store meets a closed socket)."""
    others = [r for r in range(world) if r != me]
    try:
        store.set(f"{_STOPPED}{me}", "1")
        if wait and others:
            store.wait([f"{_STOPPED}{r}" for r in others], timedelta(seconds=seconds))
    except Exception:  # noqa: BLE001 - a rank died without a word, or the store left with its host
        pass
    try:
        store.set(f"{_DONE}{me}", "1")
        if me == 0 and others:
            store.wait([f"{_DONE}{r}" for r in others], timedelta(seconds=2 * seconds))
    except Exception:  # noqa: BLE001
        pass


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
