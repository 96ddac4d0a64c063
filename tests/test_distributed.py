"""Data-parallel analysis on gloo: 2 and 3 spawned processes give what one process gives on the same data."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inspector.analysis import distributed
from tests import distributed_worker as worker
from tests.helpers import free_port, spawn_ranks

ARRAYS = (
    "fire_rate",
    "dead_mask",
    "nearly_dead_mask",
    "saturation_rate",
    "zero_rate",
    "histogram_counts",
    "histogram_edges",
    "projection",
    "projection_variance",
    "projection_labels",
)


@pytest.fixture(scope="module", params=[2, 3])
def ranks(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """One spawn of ``world`` gloo processes, shared by every check below; each rank's pickled results."""
    world = request.param
    folder = tmp_path_factory.mktemp(f"world{world}")
    return spawn_ranks(worker.run, world, folder)


@pytest.fixture(scope="module")
def single() -> dict[str, Any]:
    return worker.compute()


def _same_census(got: tuple[Any, ...], want: tuple[Any, ...]) -> None:
    assert [c.layer for c in got] == [c.layer for c in want]
    for g, w in zip(got, want, strict=True):
        assert (g.n_samples, g.n_positions) == (w.n_samples, w.n_positions)
        for name in ARRAYS:
            a, b = getattr(g, name), getattr(w, name)
            assert (a is None) == (b is None), (g.layer, name)
            if a is not None:
                np.testing.assert_array_equal(a, b, err_msg=f"{g.layer}.{name}")
        np.testing.assert_allclose(g.mean_activation, w.mean_activation, rtol=1e-6, atol=1e-7)


def test_census_is_identical_to_one_process(ranks: list[dict[str, Any]], single: dict[str, Any]) -> None:
    census = single["census"]
    assert census[0].dead_mask[0] and census[0].dead_count == 1  # the planted dead neuron
    assert census[1].saturation_rate.max() > 0.2  # the scaled-up tanh saturates
    for result in ranks:  # every rank holds the merged census
        _same_census(result["census"], census)
        _same_census(result["census_kept_50"], single["census_kept_50"])
        assert result["census_kept_50"][0].projection.shape == (50, 2)


def test_evaluation_sums_merge_exactly(ranks: list[dict[str, Any]], single: dict[str, Any]) -> None:
    for result in ranks:
        for kind in ("classification", "regression"):
            loss, metric, n = result[kind]
            want_loss, want_metric, want_n = single[kind]
            assert n == want_n == worker.N
            assert math.isclose(loss, want_loss, rel_tol=1e-9) and math.isclose(metric, want_metric, rel_tol=1e-9)


def test_analyze_merges_evaluation_census_and_pruning(ranks: list[dict[str, Any]], single: dict[str, Any]) -> None:
    want_data, want_census, want_pruning = single["analyze"]
    for result in ranks:
        data, census, pruning = result["analyze"]
        assert data.n_samples == want_data.n_samples == worker.N
        assert math.isclose(data.metric, want_data.metric, rel_tol=1e-9)
        assert math.isclose(data.loss, want_data.loss, rel_tol=1e-9)
        _same_census(census, want_census)
        for got, want in zip(pruning.curves, want_pruning.curves, strict=True):
            np.testing.assert_allclose(got.metric, want.metric, rtol=1e-9)
            np.testing.assert_allclose(got.loss, want.loss, rtol=1e-9)


def test_importance_sums_merge_across_ranks(ranks: list[dict[str, Any]], single: dict[str, Any]) -> None:
    # each rank explains its own share of the samples; the merged importance is the one-process one
    for key in ("importance", "token_importance"):
        want = single[key]
        for result in ranks:
            got = result[key]
            assert got.n_samples == want.n_samples
            np.testing.assert_array_equal(got.token_ids, want.token_ids)
            for g, w in zip(got.methods, want.methods, strict=True):
                assert g.error is None and w.error is None, (g.error, w.error)
                np.testing.assert_allclose(g.global_importance, w.global_importance, rtol=1e-6, atol=1e-9)
                np.testing.assert_allclose(g.mean_attribution, w.mean_attribution, rtol=1e-6, atol=1e-9)
                np.testing.assert_allclose(g.per_class, w.per_class, rtol=1e-6, atol=1e-9)
                np.testing.assert_allclose(g.examples, w.examples, rtol=1e-5, atol=1e-7)
                assert (g.convergence_delta is None) == (w.convergence_delta is None)
                if w.convergence_delta is not None:
                    assert math.isclose(g.convergence_delta, w.convergence_delta, rel_tol=1e-5, abs_tol=1e-9)
                assert math.isclose(g.sanity_correlation, w.sanity_correlation, rel_tol=1e-5, abs_tol=1e-9)
    # with the user's DistributedSampler: the same samples in all (a different order), the same means
    for result in ranks:
        got, want = result["sampler_importance"], single["sampler_importance"]
        assert got.n_samples == want.n_samples == 60
        g, w = got.methods[0], want.methods[0]
        np.testing.assert_allclose(g.global_importance, w.global_importance, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(g.per_class, w.per_class, rtol=1e-6, atol=1e-9)
    # and the merge is the mean over all samples: integrated gradients' |attr| recomputed here in one pass
    X, y, _ = worker.data()
    ig = single["importance"].method("integrated_gradients")
    from inspector.analysis.attribution import attribute

    attributions, _ = attribute(worker.model().eval(), "integrated_gradients", _batch(X[:101], y[:101]), n_steps=8)
    np.testing.assert_allclose(ig.global_importance, attributions.detach().abs().double().mean(0).numpy(), rtol=1e-5)


def _batch(X: Any, y: Any) -> Any:
    from inspector.analysis.inputs import Batch

    return Batch(X, y)


def test_distributed_sampler_is_read_as_it_is(ranks: list[dict[str, Any]], single: dict[str, Any]) -> None:
    # the user's sampler already shards: counts over all 204 samples, none read twice
    for result in ranks:
        for got, want in zip(result["sampler"], single["sampler"], strict=True):
            assert got.n_samples == want.n_samples == 204
            np.testing.assert_array_equal(
                got.dead_mask if got.dead_mask is not None else got.saturation_rate,
                want.dead_mask if want.dead_mask is not None else want.saturation_rate,
            )
            np.testing.assert_array_equal(got.fire_rate, want.fire_rate)


def test_all_reduce_sums_and_rank_zero_writes(ranks: list[dict[str, Any]]) -> None:
    world = len(ranks)
    floats, ints = ranks[0]["all_reduce"]
    np.testing.assert_array_equal(floats, np.full(3, sum(r + 0.5 for r in range(world))))
    np.testing.assert_array_equal(ints, np.arange(4) * sum(range(1, world + 1)))
    assert floats.dtype == np.float64 and ints.dtype == np.int64
    assert [r["writer"] for r in ranks] == [True] + [False] * (world - 1)
    assert all(r["no_sites"] == () for r in ranks)


def test_a_failing_rank_stops_every_rank_with_one_message(ranks: list[dict[str, Any]]) -> None:
    failures = [r["failure"] for r in ranks]
    assert failures[1] == ("ValueError", "rank one's batch is broken")
    for r, failure in enumerate(failures):
        if r != 1:
            assert failure is not None
            kind, message = failure
            assert kind == "PeerFailure"  # an InspectorError: one line in the CLI
            assert message.startswith(f"rank 1 of {len(ranks)} failed during the activation census (ValueError: ")
            assert "\n" not in message


def test_without_a_process_group_everything_is_the_identity() -> None:
    assert not distributed.active() and distributed.rank() == 0 and distributed.world_size() == 1
    assert distributed.is_writer()
    a = np.arange(3.0)
    (b,) = distributed.all_reduce_sum(a)
    np.testing.assert_array_equal(a, b)
    assert distributed.all_gather_objects("x") == ["x"]
    with pytest.raises(TypeError, match="float64 or int64"):
        distributed.all_reduce_sum(np.zeros(2, dtype=np.float32))


def test_torchrun_cli_writes_one_analysis_equal_to_one_process(tmp_path: Path) -> None:
    from inspector.analysis.result import Analysis
    from inspector.cli import main

    ckpt = tmp_path / "m.pt"
    assert (
        main(["train", "--dataset", "synthetic", "--epochs", "2", "--hidden", "32,16", "-q", "--out", str(ckpt)]) == 0
    )
    # the default batch size (1024): the test split is one batch, so rank 1 reads none (issue 20's repro)
    args = ["analyze", str(ckpt), "--sections", "parameters,activations,pruning"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    launch = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(free_port()),
    ]
    done = subprocess.run(
        [*launch, "-m", "inspector", *args, "--out", str(tmp_path / "two")],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("wrote ") == 1  # rank 0 alone prints and writes
    one, two = Analysis.load(tmp_path / "one"), Analysis.load(tmp_path / "two")
    assert two.data is not None and one.data is not None and two.data.n_samples == one.data.n_samples <= 1024
    assert math.isclose(two.data.metric, one.data.metric, rel_tol=1e-9)
    _same_census(two.activations, one.activations)
    for got, want in zip(two.pruning.curves, one.pruning.curves, strict=True):
        np.testing.assert_allclose(got.metric, want.metric, rtol=1e-9)


# --------------------------------------------------------------------------- ranks that read no batch

TIMES = {"seconds", "timings"}


def _same_result(got: Any, want: Any, where: str = "") -> None:
    """``got`` equals ``want`` field by field: integers, masks and strings exactly, float64 to 1e-6
    relative (sums merged over ranks in another order), float32 and Python floats (some from float32,
    such as convergence deltas) to 1e-5 relative or 1e-7, seconds skipped."""
    import dataclasses

    if dataclasses.is_dataclass(want) and not isinstance(want, type):
        assert type(got) is type(want), where
        for f in dataclasses.fields(want):
            if f.name not in TIMES:
                _same_result(getattr(got, f.name), getattr(want, f.name), f"{where}.{f.name}")
    elif isinstance(want, (tuple, list)):
        assert isinstance(got, (tuple, list)) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _same_result(g, w, f"{where}[{i}]")
    elif isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), where
        for k in want:
            _same_result(got[k], want[k], f"{where}[{k!r}]")
    elif isinstance(want, np.ndarray):
        assert isinstance(got, np.ndarray) and got.shape == want.shape and got.dtype == want.dtype, where
        if want.dtype.kind == "f":  # float32 attributions of a sample move in the last bits with its batch
            tight = want.dtype == np.float64
            np.testing.assert_allclose(
                got, want, rtol=1e-6 if tight else 1e-5, atol=1e-9 if tight else 1e-7, err_msg=where
            )
        else:
            np.testing.assert_array_equal(got, want, err_msg=where)
    elif isinstance(want, float):
        assert isinstance(got, float) and (
            (math.isnan(got) and math.isnan(want)) or math.isclose(got, want, rel_tol=1e-5, abs_tol=1e-7)
        ), (where, got, want)
    else:
        assert got == want, (where, got, want)


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_without_a_batch_contribute_nothing(world: int, tmp_path: Path) -> None:
    # one batch (20 samples at batch size 1024), and fewer samples than ranks (2 samples, batches of 1024
    # and of 1): the ranks that read no batch add nothing, and every rank returns one process's analysis
    single = worker.compute_small()
    for n, batch_size in worker.SMALL_CASES:
        data, census, importance, whatif, pruning = single[(n, batch_size, "features")]
        assert data.n_samples == n and census[0].n_samples == n and pruning.n_samples == n
        assert importance.n_samples == n
    for rank, result in enumerate(spawn_ranks(worker.run_small, world, tmp_path)):
        _same_result(result["small"], single, f"rank {rank}")


@pytest.mark.parametrize("world", [2, 3])
def test_a_rank_failing_outside_a_collective_stops_every_rank_with_its_line(world: int, tmp_path: Path) -> None:
    # rank 1 raises while the others wait for it in an all_reduce: they stop at once (its connections close)
    # with rank 1's line, read from the rendezvous store, instead of a backend traceback or a hang
    failures = [r["failure"] for r in spawn_ranks(worker.run_lost, world, tmp_path)]
    assert failures[1] == ("InspectorError", "rank one's own mistake; fix the data")
    for r, failure in enumerate(failures):
        if r != 1:
            assert failure == (
                "PeerFailure",
                f"rank 1 of {world} failed (rank one's own mistake; fix the data); every rank stops",
            )


FACTORY = """
import torch
from torch import nn


def model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def data():
    g = torch.Generator().manual_seed(1)
    X, y = torch.randn(24, 4, generator=g), torch.randint(0, 3, (24,), generator=g)
    X[9, 2] = float("nan")  # in the second batch of 8: rank 1's alone
    return X, y
"""


def test_a_user_error_on_one_rank_is_one_line_on_every_rank_of_the_cli(tmp_path: Path) -> None:
    # the ranks as torchrun starts them (its environment), each one's output read apart: rank 1 reads the
    # batch holding a NaN; every rank exits 1 with one line on stderr, no traceback, none left waiting
    (tmp_path / "f.py").write_text(FACTORY)
    world, port = 3, free_port()
    argv = [sys.executable, "-m", "inspector", "analyze", "--model", f"{tmp_path / 'f.py'}:model"]
    argv += ["--data", f"{tmp_path / 'f.py'}:data", "--batch-size", "8", "--sections", "activations,pruning"]
    argv += ["--out", str(tmp_path / "out")]
    base = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    base.update(WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), INSPECTOR_DIST_TIMEOUT="60")
    ranks = [
        subprocess.Popen(
            argv,
            env={**base, "RANK": str(r), "LOCAL_RANK": str(r)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(world)
    ]
    outputs = [p.communicate(timeout=180) for p in ranks]
    for r, (p, (_, err)) in enumerate(zip(ranks, outputs, strict=True)):
        lines = err.strip().splitlines()
        assert p.returncode == 1 and len(lines) == 1, (r, err)
        assert "Traceback" not in err
        assert (
            lines[0].startswith("inspector: error: ") and "the data's inputs hold NaN or Inf (batch 1 of" in lines[0]
        ), err
        if r != 1:  # the others name the rank that failed and what it was doing
            assert f": rank 1 of {world} failed during the evaluation (InspectorError: " in lines[0], err
            assert lines[0].endswith("; every rank stops"), err
    assert not (tmp_path / "out").exists()


def test_a_silent_rank_stops_the_others_at_the_timeout_with_one_line(tmp_path: Path) -> None:
    failures = [r["failure"] for r in spawn_ranks(worker.run_silent, 2, tmp_path)]
    assert failures[1] is None  # it never reached a collective
    kind, message = failures[0]
    assert kind == "PeerFailure" and "\n" not in message
    assert message.startswith("rank 0 of 2 had no answer from another rank within the process group's timeout (")
    assert message.endswith("every rank stops")
