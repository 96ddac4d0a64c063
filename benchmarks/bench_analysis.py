"""Benchmarks for the analysis core. Prints ratios; asserts nothing.

    .venv/bin/python benchmarks/bench_analysis.py [--quick]

Targets (issue 3):
  census / bare inference forward               <= 1.10  (hidden width >= 256, batch >= 256)
  IG over a batch / (n_steps x forward+backward) <= 1.3
  pruning thresholds for K levels / one sort     <= 1.5
  one pruning level's evaluation / plain eval    <= 1.1
  `inspector analyze` on the digits model        < 30 s end to end

The census and IG ratios are measured interleaved (numerator, denominator, numerator, ... so that
both see the same load), ``--rounds`` times, on ``--threads`` torch threads (1 by default: a
shared machine's other jobs then disturb each run least); each prints the median ratio and its
spread (min..max) over the rounds, on wall-clock time and on this process's CPU time (which a
loaded machine inflates less), with the load average before and after. The pruning ratios are the
best of several repeats.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from inspector.analysis import pruning as P
from inspector.analysis.activations import activation_census
from inspector.analysis.importance import attribute
from inspector.analysis.inputs import Batch
from inspector.models import MLPConfig, build_mlp
from inspector.training import evaluate


def best(fn: Callable[[], object], repeats: int = 5) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


class Ratio:
    """``numerator / denominator`` over interleaved rounds: wall-clock and process CPU time, per round."""

    def __init__(self, numerator: Callable[[], object], denominator: Callable[[], object], rounds: int) -> None:
        numerator(), denominator()  # warm-up
        self.wall: list[tuple[float, float]] = []
        self.cpu: list[tuple[float, float]] = []
        for _ in range(rounds):
            times = []
            for fn in (numerator, denominator):
                wall, cpu = time.perf_counter(), time.process_time()
                fn()
                times.append((time.perf_counter() - wall, time.process_time() - cpu))
            self.wall.append((times[0][0], times[1][0]))
            self.cpu.append((times[0][1], times[1][1]))

    @staticmethod
    def _summary(pairs: list[tuple[float, float]]) -> str:
        ratios = [a / b for a, b in pairs]
        return f"{statistics.median(ratios):.2f} [{min(ratios):.2f}..{max(ratios):.2f}]"

    def median_seconds(self) -> tuple[float, float]:
        """Median wall seconds of the numerator and the denominator."""
        return statistics.median(a for a, _ in self.wall), statistics.median(b for _, b in self.wall)

    def __str__(self) -> str:
        return f"wall {self._summary(self.wall)}  cpu {self._summary(self.cpu)}"


def census_ratio(width: int, batch: int, n: int, keep: int, rounds: int) -> Ratio:
    torch.manual_seed(0)
    model = build_mlp(MLPConfig(256, (width, width, width), 10)).eval()
    X = torch.randn(n, 256)

    def bare() -> None:
        with torch.inference_mode():
            for s in range(0, n, batch):
                model(X[s : s + batch])

    return Ratio(lambda: activation_census(model, X, batch_size=batch, keep_samples=keep), bare, rounds)


def ig_ratio(batch: int, n_steps: int, width: int, rounds: int, internal: int | None = None) -> Ratio:
    """``internal``: Captum's internal_batch_size; ``None``: the tool's default (what `analyze` uses)."""
    torch.manual_seed(0)
    model = build_mlp(MLPConfig(256, (width, width), 10)).eval()
    X = torch.randn(batch, 256)
    target = torch.randint(0, 10, (batch,))

    def forward_backward() -> None:
        for _ in range(n_steps):
            x = X.clone().requires_grad_()
            out = model(x).gather(1, target[:, None]).sum()
            torch.autograd.grad(out, x)

    def ig() -> None:
        attribute(model, "integrated_gradients", Batch(X, target), n_steps=n_steps, internal_batch_size=internal)

    return Ratio(ig, forward_backward, rounds)


def pruning_ratios(width: int, n_eval: int) -> tuple[float, float]:
    torch.manual_seed(0)
    model = build_mlp(MLPConfig(784, (width, width), 10)).eval()
    layers = [m for _, m in P.linear_layers(model)]
    flat = torch.cat([m.weight.detach().abs().reshape(-1) for m in layers])
    t_sort = best(lambda: torch.argsort(flat, stable=True))
    t_masks = best(lambda: P.global_masks(model, P.DEFAULT_SPARSITIES))
    X, y = torch.randn(n_eval, 784), torch.randint(0, 10, (n_eval,))
    masks = P.global_masks(model, (0.5,))[0]
    work = P.copy.deepcopy(model)
    originals = [m.weight.detach().clone() for _, m in P.linear_layers(work)]

    def plain() -> None:
        evaluate(model, X, y)

    def level() -> None:  # what the sweep does per level: restore, mask, evaluate
        with torch.no_grad():
            for (_, m), w in zip(P.linear_layers(work), originals):
                m.weight.copy_(w)
        P.apply_masks(work, masks)
        evaluate(work, X, y)

    return t_masks / t_sort, best(level) / best(plain)


def analyze_wall_time() -> float:
    exe = Path(sys.executable).with_name("inspector")
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "digits.pt"
        subprocess.run(
            [str(exe), "train", "--dataset", "digits", "--out", str(ckpt), "-q"], check=True, capture_output=True
        )
        start = time.perf_counter()
        subprocess.run([str(exe), "analyze", str(ckpt), "--out", str(Path(tmp) / "a")], check=True, capture_output=True)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds per ratio (default 9)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n = 8192 if args.quick else 65536
    rounds = 3 if args.quick else args.rounds
    load = "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu, {os.cpu_count()} CPUs, {load}")
    print(f"ratios: median [min..max] over {rounds} interleaved rounds")
    print("\nactivation census vs bare torch.inference_mode forward (3 hidden layers)")
    print(f"{'width':>6} {'batch':>6} {'kept':>5} {'bare s':>8} {'census s':>9}  ratio (target <= 1.10)")
    for width, batch, keep in ((256, 256, 0), (256, 1024, 0), (1024, 1024, 0), (1024, 1024, 2048)):
        ratio = census_ratio(width, batch, n, keep, rounds)
        t_census, t_bare = ratio.median_seconds()
        print(f"{width:>6} {batch:>6} {keep:>5} {t_bare:8.4f} {t_census:9.4f}  {ratio}")
    print("\nIntegrated Gradients vs n_steps x (forward + backward) on the same batch (target <= 1.3)")
    for batch, steps, width, internal in ((256, 50, 256, None), (256, 50, 256, 256 * 50), (64, 50, 1024, None)):
        ratio = ig_ratio(batch, steps, width, rounds, internal)
        t_ig, ref = ratio.median_seconds()
        passes = "default passes" if internal is None else "all steps in one pass"
        print(f"  batch {batch}, {steps} steps, width {width}, {passes}: {t_ig:.4f} s vs {ref:.4f} s -> {ratio}")
    print("\npruning sweep (784-1024-1024-10, 11 levels)")
    thresholds, level = pruning_ratios(1024, 2048 if args.quick else 10000)
    print(f"  thresholds for all levels / one sort: {thresholds:.2f}  (target <= 1.5)")
    print(f"  one level's evaluation / plain evaluation: {level:.2f}  (target <= 1.1)")
    if not args.quick:
        print(f"\n`inspector analyze` on the digits model, end to end: {analyze_wall_time():.1f} s  (target < 30 s)")
    print("\nload average {:.2f} {:.2f} {:.2f} at the end".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
