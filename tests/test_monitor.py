"""The Monitor against independent recomputations: recounts from its own snapshots, gradient norms taken
in the loop, numpy."""

from __future__ import annotations

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

from inspector.live import Monitor, read_run


def _relu_net(seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    X = torch.randn(256, 8)
    y = X[:, :2].sum(1, keepdim=True) * 3
    return nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 1)), X, y


def _never_fire(model: nn.Module, X: torch.Tensor) -> int:
    with torch.no_grad():
        hidden = model[0](X)
    return int((hidden > 0).sum(0).eq(0).sum())


def test_high_learning_rate_deaths_equal_a_recount_from_the_snapshots(tmp_path):
    # full-batch SGD: every record's window sees the whole data. A neuron that never fires on it gets a
    # zero gradient (weights and bias), so plain SGD leaves it dead for good: the neurons dead in the
    # window ending at step s are exactly those dead under the weights of step s - k (the window's first
    # forward used them), which the snapshot at s - k holds.
    model, X, y = _relu_net()
    k = 3
    initial = {name: t.clone() for name, t in model.state_dict().items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2)
    with Monitor(model, tmp_path / "run", every=k, snapshot_every=k, optimizer=optimizer) as monitor:
        for _ in range(30):
            loss = nn.functional.mse_loss(model(X), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            monitor.step(loss)
    run = read_run(tmp_path / "run")
    assert run.status == "finished"
    assert run.layers == ("0", "2") and run.activations == ("relu", "none")
    dead = run.scalar("dead", "0")
    assert list(dead.steps) == list(range(k, 31, k))
    snapshots = {s.step: s.path for s in run.snapshots}
    fresh = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 1))
    for step, count in zip(dead.steps, dead.values, strict=True):
        fresh.load_state_dict(initial if step == k else load_file(snapshots[int(step) - k]))
        assert count == _never_fire(fresh, X), step
    assert len(set(dead.values)) >= 3 and dead.values[0] < dead.values[-1]  # the count did change
    np.testing.assert_allclose(run.scalar("dead_fraction", "0").values, dead.values / 64)
    assert np.all(run.scalar("rows", "0").values == k * len(X))
    assert np.all(np.isnan(run.scalar("dead", "2").values))  # the output layer has no activation
    _, rates = run.vector("fire_rate", "0")
    assert rates.shape == (10, 64)
    np.testing.assert_array_equal((rates == 0).sum(1), dead.values)
    np.testing.assert_allclose(run.scalar("lr").values, 0.2)
    assert any("died between steps" in e.message and e.layer == "0" for e in run.events)
