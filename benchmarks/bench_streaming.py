"""Peak memory of the data sections against the size of the data. Prints; asserts nothing.

    .venv/bin/python benchmarks/bench_streaming.py [--sizes 20000 200000]

The census, the evaluation and a two-level pruning sweep (global and neuron scopes) each read a ``DataLoader`` of
synthetic samples that are generated batch by batch (the data set itself holds nothing),
on a small MLP. Each size runs in a fresh subprocess, which reports the growth of its peak
resident set (``ru_maxrss``, after a warm-up pass that allocates the per-batch buffers) and
the peak of Python-tracked allocations (``tracemalloc``: numpy arrays and Python objects,
which is where gathered data would show up).

Target (issue 9): memory is bounded by the number of neurons and a fixed sample reservoir,
not by the data: the peak at the largest size over the peak at the smallest is ~1 (a
gathering implementation would grow with the inputs alone, ``n x features x 4`` bytes,
printed for scale).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import torch

FEATURES, CLASSES, BATCH = 64, 10, 2048
LEVELS, SCOPES = (0.0, 0.5), ("global", "neuron")  # two levels; the neuron scope also runs its observed pass


class SyntheticBatches(torch.utils.data.Dataset):
    """``n`` samples, made on demand: indexed by a list of indices (one batch), it returns
    ``(X (b, FEATURES) float32, y (b,) int64)`` drawn from a generator seeded by the batch's first
    index, with labels from a fixed linear rule. Nothing is stored."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.rule = torch.randn(FEATURES, CLASSES, generator=torch.Generator().manual_seed(1))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(int(index[0]))
        X = torch.randn(len(index), FEATURES, generator=gen)
        return X, (X @ self.rule).argmax(1)


def loader(n: int) -> torch.utils.data.DataLoader:
    sampler = torch.utils.data.BatchSampler(torch.utils.data.SequentialSampler(range(n)), BATCH, drop_last=False)
    return torch.utils.data.DataLoader(SyntheticBatches(n), sampler=sampler, batch_size=None)


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def child(n: int) -> dict[str, float]:
    from inspector.analysis.activations import activation_census
    from inspector.analysis.pruning import pruning_sweep
    from inspector.evaluation import evaluate_model
    from inspector.models import MLPConfig, build_mlp

    torch.manual_seed(0)
    torch.set_num_threads(2)
    model = build_mlp(MLPConfig(FEATURES, (128, 64), CLASSES)).eval()
    # warm-up at a fixed size: imports, allocator pools and per-batch buffers, the same for every n
    activation_census(model, loader(4 * BATCH))
    pruning_sweep(model, loader(4 * BATCH), sparsities=LEVELS, scopes=SCOPES)
    base = _maxrss_mib()
    tracemalloc.start()
    out: dict[str, float] = {"n": n}
    data = loader(n)
    for phase, run in (
        ("census", lambda: activation_census(model, data)),
        ("evaluation", lambda: evaluate_model(model, data)),
        ("pruning", lambda: pruning_sweep(model, data, sparsities=LEVELS, scopes=SCOPES)),
    ):
        tracemalloc.reset_peak()
        started = time.perf_counter()
        run()
        out[f"{phase}_s"] = time.perf_counter() - started
        out[f"{phase}_traced_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    out["rss_growth_mib"] = _maxrss_mib() - base
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child)))
        return
    root = Path(__file__).resolve().parent.parent
    rows = []
    for n in args.sizes:
        done = subprocess.run(
            [sys.executable, __file__, "--child", str(n)], cwd=root, check=True, capture_output=True, text=True
        )
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(
        f"{'samples':>9}  {'gathered X':>10}  {'RSS growth':>10}  {'census':>17}  {'evaluation':>17}  "
        f"{'pruning (2 lvl)':>17}"
    )
    for r in rows:
        phases = "  ".join(
            f"{r[f'{p}_traced_mib']:6.1f} MiB {r[f'{p}_s']:5.1f} s" for p in ("census", "evaluation", "pruning")
        )
        print(f"{int(r['n']):>9,}  {r['n'] * FEATURES * 4 / 2**20:7.1f} MiB  {r['rss_growth_mib']:6.1f} MiB  {phases}")
    print("(per phase: peak of Python-tracked allocations, tracemalloc, and wall time)")
    small, large = rows[0], rows[-1]
    print(
        f"ratio {int(large['n']):,} / {int(small['n']):,} samples (target ~1; gathering would give "
        f"{large['n'] / small['n']:.0f}):"
    )
    # 1 MiB added to both sides: a growth of a few hundred KiB is noise in a page-granular high-water mark
    print(f"  RSS growth      {(large['rss_growth_mib'] + 1) / (small['rss_growth_mib'] + 1):.2f}")
    for p in ("census", "evaluation", "pruning"):
        print(f"  {p:<15} {large[f'{p}_traced_mib'] / max(small[f'{p}_traced_mib'], 1e-9):.2f} (tracemalloc peak)")


if __name__ == "__main__":
    main()
