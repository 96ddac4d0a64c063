"""Training step time with and without a Monitor. Prints; asserts nothing.

    .venv/bin/python benchmarks/bench_monitor.py [--every 50] [--repeats 15] [--mlp-repeats 45] [--steps 100] [--turn-ms 25]

Two models, each trained with plain SGD on synthetic data, one thread (``torch.set_num_threads(1)``):

- ``mlp``: 784-256-256-10 ReLU, batch 128, cross-entropy (an MNIST-sized classifier).
- ``block``: a transformer MLP block (LayerNorm, 128 -> 512 GELU -> 128, residual) twice, on
  (16 sequences x 64 tokens x 128), a regression loss.

The plain model and an identical monitored copy take turns of about ``--turn-ms`` of steps (10 MLP
steps, 1 block step; the side going first alternating from turn to turn, so that load from other
processes falls on both alike; ``--turn-ms 1e9``: one turn per side and repeat, as before) until
each has run ``--steps`` optimizer steps: one timing per side (each monitored timing holds
``steps / every`` records, and a weight snapshot every ``10 x every`` steps as by default), repeated
``--mlp-repeats`` times for the MLP (its 100 steps take about half a second: the median of 15 paired
ratios moved by +-1% from run to run) and ``--repeats`` times for the blocks, on process CPU time; the median step time of each and the median (min..max) of
the paired overheads ``monitored / plain - 1`` are printed. Target (issue 12): below 5% at
every=50.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inspector.live import Monitor  # noqa: E402

TARGET = 5.0  # overhead, percent of a plain step (issues 12 and 19)


class Block(nn.Module):
    def __init__(self, width: int = 128, hidden: int = 512) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.up = nn.Linear(width, hidden)
        self.act = nn.GELU()
        self.down = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down(self.act(self.up(self.norm(x))))


def _mlp() -> tuple[nn.Module, torch.Tensor, torch.Tensor, Callable[..., torch.Tensor]]:
    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    return model, torch.randn(128, 784), torch.randint(0, 10, (128,)), nn.functional.cross_entropy


def _block() -> tuple[nn.Module, torch.Tensor, torch.Tensor, Callable[..., torch.Tensor]]:
    model = nn.Sequential(Block(), Block())
    return model, torch.randn(16, 64, 128), torch.randn(16, 64, 128), nn.functional.mse_loss


def _time_steps(model: nn.Module, optimizer: torch.optim.Optimizer, monitor: Monitor | None, data, steps: int) -> float:
    """Process CPU seconds per step (steadier than wall-clock on a shared machine)."""
    X, y, loss_fn = data
    start = time.process_time()
    for _ in range(steps):
        loss = loss_fn(model(X), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if monitor is not None:
            monitor.step(loss)
    return (time.process_time() - start) / steps


def bench(
    name: str, build, every: int, repeats: int, steps: int, turn_s: float, root: Path
) -> tuple[float, float, list[float], int]:
    """Median plain and monitored seconds per step, the paired ratios ``monitored / plain`` (one per
    repeat) and the steps per turn. Within a repeat the two sides take turns of about ``turn_s`` seconds
    (the side going first alternating), so a burst of load from another process falls on both sides
    alike; each side runs ``steps`` steps per repeat, the monitored one recording every ``every`` of its
    own steps as always."""
    torch.manual_seed(0)
    plain, X, y, loss_fn = build()
    watched = copy.deepcopy(plain)
    opt_plain = torch.optim.SGD(plain.parameters(), lr=0.01)
    opt_watched = torch.optim.SGD(watched.parameters(), lr=0.01)
    monitor = Monitor(watched, root / name, every=every, optimizer=opt_watched)
    data = (X, y, loss_fn)
    step_s = _time_steps(plain, opt_plain, None, data, every)  # warm-up: allocator, site discovery
    _time_steps(watched, opt_watched, monitor, data, every)
    chunk = max(1, min(steps, round(turn_s / step_s)))
    times: dict[str, list[float]] = {"plain": [], "monitored": []}
    sides = [("plain", plain, opt_plain, None), ("monitored", watched, opt_watched, monitor)]
    turn = 0
    for _ in range(repeats):
        spent = {"plain": 0.0, "monitored": 0.0}
        for start in range(0, steps, chunk):
            n = min(chunk, steps - start)
            for side, model, optimizer, watcher in sides if turn % 2 == 0 else sides[::-1]:
                spent[side] += n * _time_steps(model, optimizer, watcher, data, n)
            turn += 1
        for side, total in spent.items():
            times[side].append(total / steps)
    monitor.close()
    ratios = [m / p for p, m in zip(times["plain"], times["monitored"], strict=True)]
    return statistics.median(times["plain"]), statistics.median(times["monitored"]), ratios, chunk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=15, help="repeats for the blocks (default 15)")
    parser.add_argument("--mlp-repeats", type=int, default=45, help="repeats for the MLP (default 45)")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--turn-ms", type=float, default=25.0, help="each side's turn, in ms of steps (default 25)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(
        f"torch {torch.__version__}, 1 thread, every={args.every}, {args.mlp_repeats} (MLP) and {args.repeats} "
        f"(blocks) x {args.steps} steps in turns of about {args.turn_ms:g} ms"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for name, build, repeats in (("mlp", _mlp, args.mlp_repeats), ("block", _block, args.repeats)):
            plain, monitored, ratios, chunk = bench(
                name, build, args.every, repeats, args.steps, args.turn_ms / 1e3, Path(tmp)
            )
            spread = f"[{100 * (min(ratios) - 1):+.1f}%..{100 * (max(ratios) - 1):+.1f}%]"
            print(
                f"{name:6s} plain {1e3 * plain:7.3f} ms/step  monitored {1e3 * monitored:7.3f} ms/step (CPU time)  "
                f"overhead {100 * (statistics.median(ratios) - 1):+5.1f}% {spread}  (target <= {TARGET:g}%: "
                f"{'met' if 100 * (statistics.median(ratios) - 1) <= TARGET else 'not met'}; turns of {chunk} steps)"
            )


if __name__ == "__main__":
    main()
