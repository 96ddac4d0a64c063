"""Top-k examples on gloo: 1, 2 and 3 spawned processes keep the same examples (values, samples, positions,
context, rows): the top k of the union, ties broken by global order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests import top_examples_worker as worker
from tests.helpers import spawn_ranks

FIELDS = ("values", "samples", "positions", "context", "rows", "token_ids")


@pytest.mark.parametrize("world", [1, 2, 3])
def test_every_rank_keeps_the_examples_one_process_keeps(world: int, tmp_path: Path) -> None:
    single = worker.compute()
    for rank, got in enumerate(spawn_ranks(worker.run, world, tmp_path)):
        for name in ("tokens", "tabular"):
            assert [c.layer for c in got[name]] == [c.layer for c in single[name]]
            for g, w in zip(got[name], single[name], strict=True):
                assert g.top_examples is not None and w.top_examples is not None
                assert g.top_examples.summary == w.top_examples.summary
                for field in FIELDS:
                    a, b = getattr(g.top_examples, field), getattr(w.top_examples, field)
                    assert (a is None) == (b is None), (rank, name, g.layer, field)
                    if a is not None:
                        np.testing.assert_array_equal(a, b, err_msg=f"rank {rank}: {name} {g.layer}.{field}")
                # from the census's mean, whose float sums may differ in the last bits across ranks
                np.testing.assert_allclose(g.top_examples.selectivity, w.top_examples.selectivity, rtol=1e-6, atol=1e-9)
