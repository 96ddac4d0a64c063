"""The Statistic protocol: every reduction, merged over 1, 2 and 3 spawned gloo ranks (and by merge_from),
equals one process on the same data; ties in top-k go to the row first in global order."""

from __future__ import annotations

import pickle
import socket
import traceback
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from inspector.core.statistic import Rows, Statistic, TopK, merge_statistics
from inspector.errors import InspectorError

N, COLUMNS, BATCH, KEEP, K = 37, 4, 5, 9, 3


def planted() -> np.ndarray:
    """``(N, COLUMNS)`` small whole numbers: many ties, so top-k's tie rule decides."""
    return np.random.default_rng(7).integers(-3, 4, size=(N, COLUMNS)).astype(np.float64)


class Everything(Statistic):
    """One state of each reduction, over rows of :func:`planted`."""

    total: np.ndarray | float
    rows_seen: int
    largest: np.ndarray | float
    smallest: np.ndarray | float
    every: Rows
    first: Rows
    top: TopK

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", 0.0, "sum")  # (COLUMNS,) once a batch is seen: broadcast where none was
        self.add_state("rows_seen", 0, "sum")
        self.add_state("largest", -np.inf, "max")
        self.add_state("smallest", np.inf, "min")
        self.add_state("every", reduction="cat")
        self.add_state("first", reduction="kept", limit=KEEP)
        self.add_state("top", reduction="topk", limit=K)

    def update(self, batch: np.ndarray, index: int) -> None:
        """``batch`` rows of global batch ``index`` (row ``r`` of it is global row ``index * BATCH + r``)."""
        self.total = self.total + batch.sum(axis=0)
        self.rows_seen += len(batch)
        self.largest = np.maximum(self.largest, batch.max(axis=0))
        self.smallest = np.minimum(self.smallest, batch.min(axis=0))
        self.every.add(batch, key=(index,))
        # a tuple payload with a torch part: rows and their global row numbers
        rows = torch.arange(index * BATCH, index * BATCH + len(batch))
        self.first.add((batch, rows), key=(index, 0))
        self.top.add(batch, keys=rows.numpy()[:, None])

    def finish(self) -> dict[str, Any]:
        return {
            "total": np.asarray(self.total),
            "rows_seen": self.rows_seen,
            "largest": np.asarray(self.largest),
            "smallest": np.asarray(self.smallest),
            "every": np.concatenate(self.every.values()) if self.every.count else np.zeros((0, COLUMNS)),
            "first": np.concatenate(self.first.column(0)),
            "first_rows": torch.cat(self.first.column(1)).numpy(),
            "top": self.top.values,
            "top_rows": self.top.keys[..., 0],  # type: ignore[index]
        }


def batches() -> list[np.ndarray]:
    values = planted()
    return [values[i : i + BATCH] for i in range(0, N, BATCH)]


def truth() -> dict[str, Any]:
    """Worked out from the definitions, without the Statistic."""
    values = planted()
    top_rows = np.stack([sorted(range(N), key=lambda r: (-values[r, c], r))[:K] for c in range(COLUMNS)], axis=1)
    return {
        "total": values.sum(axis=0),
        "rows_seen": N,
        "largest": values.max(axis=0),
        "smallest": values.min(axis=0),
        "every": values,
        "first": values[:KEEP],
        "first_rows": np.arange(KEEP),
        "top": np.take_along_axis(values, top_rows, axis=0),
        "top_rows": top_rows,
    }


def share(rank: int, world: int) -> Everything:
    """Rank ``rank``'s statistic over its share: batch ``i`` goes to rank ``i % world`` (as ``shard``)."""
    statistic = Everything()
    for index, batch in enumerate(batches()):
        if index % world == rank:
            statistic.update(batch, index)
    return statistic


def assert_same(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert got.keys() == want.keys()
    for name in want:
        np.testing.assert_array_equal(np.asarray(got[name]), np.asarray(want[name]), err_msg=name)


# --------------------------------------------------------------------------- one process


def test_one_process_equals_the_definitions():
    assert_same(share(0, 1).finish(), truth())


def test_the_tie_rule_is_global_order():
    """Column 0 ties five rows at 2; the top 3 are the three first in global order, whatever the order
    in which they were added."""
    values = np.array([[1.0], [2.0], [2.0], [0.0], [2.0], [2.0], [2.0]])
    top = TopK(3)
    for rows in ([6, 5], [0, 4, 3], [2, 1]):  # out of order
        top.add(values[rows], keys=np.array(rows)[:, None])
    np.testing.assert_array_equal(top.values[:, 0], [2.0, 2.0, 2.0])  # type: ignore[index]
    np.testing.assert_array_equal(top.keys[:, 0, 0], [1, 2, 4])  # type: ignore[index]
    # NaN never displaces a number; fewer rows than k keeps them all
    few = TopK(5)
    few.add(np.array([[np.nan], [1.0]]))
    assert few.values.shape == (2, 1) and few.values[0, 0] == 1.0 and np.isnan(few.values[1, 0])  # type: ignore[union-attr]


@pytest.mark.parametrize("world", [2, 3])
def test_merge_from_the_shares_equals_one_process(world):
    merged = share(0, world)
    for rank in range(1, world):
        merged.merge_from(share(rank, world))
    assert_same(merged.finish(), truth())


def test_reset_returns_every_state_to_its_default():
    statistic = share(0, 1)
    statistic.reset()
    assert isinstance(statistic.every, Rows) and isinstance(statistic.top, TopK)
    assert (statistic.total, statistic.rows_seen, statistic.largest, statistic.smallest) == (0.0, 0, -np.inf, np.inf)
    assert statistic.top.values is None and statistic.first.count == 0 and statistic.every.chunks == []
    for index, batch in enumerate(batches()):  # and it counts again from there
        statistic.update(batch, index)
    assert_same(statistic.finish(), truth())


def test_unkeyed_rows_follow_the_order_of_the_parts_and_may_differ_in_width():
    first, second = Rows(limit=4), Rows(limit=4)
    first.add(np.zeros((3, 2)))
    second.add(np.ones((2, 5)))  # another width (tokens: another sequence length)
    second.add(np.full((2, 5), 2.0))
    first.merge_from(second)
    assert first.count == 4 and [v.shape for v in first.values()] == [(3, 2), (1, 5)]
    assert float(first.values()[1][0, 0]) == 1.0


def test_kept_stops_at_its_limit_and_cuts_the_last_chunk():
    rows = Rows(limit=5)
    for start in (0, 3, 6):
        rows.add(np.arange(start, start + 3)[:, None], key=(start,))
    assert rows.full and np.concatenate(rows.values())[:, 0].tolist() == [0, 1, 2, 3, 4]


def test_shapes_that_cannot_broadcast_are_a_user_error():
    a, b = Everything(), Everything()
    a.total = np.zeros(3)
    b.total = np.zeros(4)
    with pytest.raises(InspectorError, match="Everything.total has shapes"):
        a.merge_from(b)


def test_declaring_states_is_checked():
    class Bad(Statistic):
        def __init__(self, reduction: str, **kwargs: Any) -> None:
            super().__init__()
            self.add_state("x", 0.0, reduction, **kwargs)

    with pytest.raises(ValueError, match="unknown reduction"):
        Bad("mean")
    with pytest.raises(ValueError, match="needs limit"):
        Bad("topk")
    with pytest.raises(ValueError, match="keeps every row"):
        Bad("cat", limit=3)
    with pytest.raises(NotImplementedError):
        Statistic().finish()


def test_merge_without_a_process_group_is_the_identity():
    statistic = share(0, 1)
    before = statistic.finish()
    merge_statistics([statistic])
    assert_same(statistic.merge().finish(), before)


# --------------------------------------------------------------------------- 1, 2 and 3 ranks


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_rank(rank: int, world: int, port: int, folder: str) -> None:
    """Rank ``rank``: its share, merged through gloo; counts the collectives the merge issued."""
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world, timeout=timedelta(seconds=60)
    )
    result: dict[str, Any] = {}
    calls = {"all_reduce": 0, "all_gather_object": 0}
    reduce, gather = dist.all_reduce, dist.all_gather_object

    def counted_reduce(*args: Any, **kwargs: Any) -> Any:
        calls["all_reduce"] += 1
        return reduce(*args, **kwargs)

    def counted_gather(*args: Any, **kwargs: Any) -> Any:
        calls["all_gather_object"] += 1
        return gather(*args, **kwargs)

    try:
        statistic = share(rank, world)
        dist.all_reduce, dist.all_gather_object = counted_reduce, counted_gather  # type: ignore[assignment]
        try:
            statistic.merge()
        finally:
            dist.all_reduce, dist.all_gather_object = reduce, gather  # type: ignore[assignment]
        result = {"finish": statistic.finish(), "calls": calls}
    except Exception:  # noqa: BLE001 - the test reads it
        result = {"error": traceback.format_exc()}
    finally:
        Path(folder, f"rank{rank}.pkl").write_bytes(pickle.dumps(result))
        dist.destroy_process_group()


@pytest.mark.parametrize("world", [1, 2, 3])
def test_merged_over_spawned_ranks_equals_one_process(world, tmp_path):
    context = mp.get_context("spawn")
    port = _free_port()
    processes = [context.Process(target=run_rank, args=(r, world, port, str(tmp_path))) for r in range(world)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout=120)
    alive = [p for p in processes if p.is_alive()]
    for p in alive:
        p.kill()
    assert not alive, "a rank hung"
    want = truth()
    for r in range(world):
        got = pickle.loads(Path(tmp_path, f"rank{r}.pkl").read_bytes())
        assert "error" not in got, f"rank {r}: {got['error']}"
        assert_same(got["finish"], want)  # every rank holds the merged result
        # one process: no collective; several: one all_reduce per (reduction, dtype) -- float sums,
        # int sums, max, min -- and two all_gathers (layout, then rows), for all seven states together
        expected = (
            {"all_reduce": 0, "all_gather_object": 0} if world == 1 else {"all_reduce": 4, "all_gather_object": 2}
        )
        assert got["calls"] == expected
