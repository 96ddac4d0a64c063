"""Census throughput and the cost of merging it across ranks. Prints; asserts nothing.

    .venv/bin/python benchmarks/bench_distributed.py [--width 1024 --hidden 2752 --rows 16384 --batch 512]

1. One process: a Llama-style MLP block (``down(silu(gate(x)) * up(x))``, ``width -> hidden -> width``)
   counted by the census against a bare forward over the same batches: rows per second, the
   census / forward ratio, and the forward's GFLOP/s (2 x 3 x width x hidden FLOPs a row).
2. Two gloo processes on the same rows (each reads every other batch): wall time of the whole
   census against one process, and of the merge alone (its collectives). On a machine with few
   cores the two ranks share them: this measures correctness cost, not speed-up.
3. The bytes that cross the network per counted layer (see docs/scaling.md) for this block.
Used by docs/scaling.md for its projection (labelled there as one).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.multiprocessing as mp
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inspector.analysis import activations  # noqa: E402
from inspector.analysis.activations import activation_census  # noqa: E402

KEEP = 2048


class SwiGLU(nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.gate = nn.Linear(width, hidden, bias=False)
        self.up = nn.Linear(width, hidden, bias=False)
        self.down = nn.Linear(hidden, width, bias=False)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.act(self.gate(x)) * self.up(x))


def batches(rows: int, width: int, batch: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(min(batch, rows - s), width, generator=g) for s in range(0, rows, batch)]


def timed(fn, repeats: int = 3) -> float:  # noqa: ANN001
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def single(args: argparse.Namespace) -> float:
    block = SwiGLU(args.width, args.hidden).eval()
    data = batches(args.rows, args.width, args.batch)

    def forward() -> None:
        with torch.inference_mode():
            for x in data:
                block(x)

    forward()  # warm-up
    bare = timed(forward)
    streaming = timed(lambda: activation_census(block, data, keep_samples=0))
    census = timed(lambda: activation_census(block, data, keep_samples=KEEP), repeats=1)
    flops = 2 * 3 * args.width * args.hidden * args.rows
    print(f"1. one process, SwiGLU {args.width} -> {args.hidden}, {args.rows} rows in batches of {args.batch}")
    print(f"   bare forward {bare:.3f} s ({args.rows / bare:,.0f} rows/s, {flops / bare / 1e9:.1f} GFLOP/s)")
    print(
        f"   census counts (keep_samples=0) {streaming:.3f} s ({args.rows / streaming:,.0f} rows/s), "
        f"census / forward {streaming / bare:.2f}"
    )
    print(
        f"   census with histograms and projections (keep_samples={KEEP}) {census:.3f} s: "
        f"{census - streaming:.3f} s fixed per census (exact PCA of {KEEP} kept rows per counted layer)"
    )
    return census


def _rank(rank: int, world: int, port: int, args: argparse.Namespace, out: dict) -> None:  # noqa: ANN001
    import torch.distributed as dist

    torch.set_num_threads(max(1, (os.cpu_count() or 2) // world))
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world, timeout=timedelta(seconds=300)
    )
    block = SwiGLU(args.width, args.hidden).eval()
    data = batches(args.rows, args.width, args.batch)
    merge_time = [0.0]
    original = activations._merge

    def merge(accumulators: list) -> None:  # noqa: ANN001
        started = time.perf_counter()
        original(accumulators)
        merge_time[0] = time.perf_counter() - started

    activations._merge = merge  # type: ignore[assignment]
    dist.barrier()
    started = time.perf_counter()
    activation_census(block, data, keep_samples=KEEP)
    total = time.perf_counter() - started
    if rank == 0:
        out["total"], out["merge"] = total, merge_time[0]
    dist.destroy_process_group()


def two(args: argparse.Namespace, one: float) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    manager = mp.get_context("spawn").Manager()
    out = manager.dict()
    mp.start_processes(_rank, args=(2, port, args, out), nprocs=2, start_method="spawn")
    print("2. two gloo processes, same rows")
    print(f"   census {out['total']:.3f} s (one process {one:.3f} s), of which merge {out['merge']:.3f} s")


def traffic(args: argparse.Namespace) -> None:
    m = args.hidden
    reduce_bytes = 3 * m * 8 + 2 * 8
    gather_bytes = KEEP * m * 4
    keys_bytes = KEEP * 16
    print(f"3. network per counted layer of {m} neurons (once per census, not per batch)")
    print(
        f"   all_reduce of sums: {reduce_bytes:,} B; kept rows gathered: {gather_bytes:,} B in all ranks "
        f"together + {keys_bytes:,} B of order keys per rank"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--hidden", type=int, default=2752)
    parser.add_argument("--rows", type=int, default=16384)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--skip-two", action="store_true", help="only the one-process measurement")
    args = parser.parse_args()
    one = single(args)
    if not args.skip_two:
        two(args, one)
    traffic(args)


if __name__ == "__main__":
    main()
