"""Watch ReLUs die while a model trains: a plain PyTorch loop with a Monitor.

An MLP learns the digits with full-batch SGD at a sane learning rate, then two steps at a rate far
too high knock many of its hidden ReLUs into never firing again, then it goes on at the sane rate.
The Monitor records every few steps into a run directory (``runs/live_training-N``: a fresh one each
time, or ``--out DIR``, which must not hold a run yet): the dead count jumps during the spike and its
warning lands in the run's events. At the end the last record's dead count is checked against a
recount from the final weights (plain full-batch SGD never revives a dead ReLU: its gradient is zero).

    python examples/live_training.py [--small] [--out DIR]

Read the run back with ``inspector.live.read_run(DIR)``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

import inspector
from inspector.live import Monitor, read_run


def _fresh_run_dir(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    n = 1
    while (root / f"live_training-{n}").exists():
        n += 1
    return root / f"live_training-{n}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="fewer steps (the test suite's size)")
    parser.add_argument("--out", type=Path, help="the run directory (default: runs/live_training-N)")
    args = parser.parse_args()
    run_dir = args.out or _fresh_run_dir(Path("runs"))

    digits = inspector.load_digits()
    # raw pixels scaled to [0, 1]: inputs that are never negative, as images are, so one large step
    # that drives a neuron's weights negative leaves it below zero on every input
    X, y = torch.from_numpy(digits.X).float() / 16, torch.from_numpy(digits.y).long()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    warm, spike, after = 20, 2, 28 if args.small else 178
    schedule = [0.1] * warm + [20.0] * spike + [0.1] * after  # the rate each step trains at
    every = 5

    with Monitor(model, run_dir, every=every, optimizer=optimizer, snapshot_every=0) as monitor:
        for lr in schedule:
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = nn.functional.cross_entropy(model(X), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            monitor.step(loss)

    run = read_run(run_dir)
    dead = run.scalar("dead", "0")
    lr = run.scalar("lr")
    print(f"run: {run_dir} ({run.status}, {len(run.steps)} records, every {every} steps)")
    print(f"learning rate 0.1, except steps {warm + 1}-{warm + spike}: 20")
    print("step     lr    loss  dead ReLUs (of 128)")
    for i, step in enumerate(run.steps):
        print(f"{step:4d} {lr.values[i]:6.2f} {run.scalar('loss').values[i]:7.3f}  {int(dead.values[i]):3d}")
    for event in run.events:
        print(f"warning at step {event.step}: {event.message}")
    with torch.no_grad():
        recount = int((model[1](model[0](X)) > 0).sum(0).eq(0).sum())
    print(f"dead at the last record: {int(dead.values[-1])}; recount from the final weights: {recount}")


if __name__ == "__main__":
    main()
