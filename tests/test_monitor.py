"""The Monitor against independent recomputations: recounts from its own snapshots, gradient norms taken
in the loop, numpy."""

from __future__ import annotations

import logging
import math
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import inspector
from inspector.core import kernels
from inspector.errors import InspectorError
from inspector.live import Monitor, read_run

# the Monitor counts on the CPU by a compiled loop (numba), else by operations (a GPU, DENSE_INSPECTOR_KERNELS=torch)
COUNTED_BY = pytest.mark.parametrize("counted_by", ["loop", "operations"])


def _count_by(monkeypatch: pytest.MonkeyPatch, counted_by: str) -> None:
    monkeypatch.setattr(kernels, "ENABLED", counted_by == "loop")


def _relu_net(seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    X = torch.randn(256, 8)
    y = X[:, :2].sum(1, keepdim=True) * 3
    return nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 1)), X, y


def _never_fire(model: nn.Module, X: torch.Tensor) -> int:
    with torch.no_grad():
        hidden = model[0](X)
    return int((hidden > 0).sum(0).eq(0).sum())


def _train(
    model: nn.Module, X: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer, monitor: Monitor, steps: int
) -> None:
    """``steps`` full-batch steps of mean squared error, each followed by ``monitor.step(loss)``."""
    for _ in range(steps):
        loss = nn.functional.mse_loss(model(X), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        monitor.step(loss)


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
        _train(model, X, y, optimizer, monitor, 30)
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


def test_planted_vanishing_gradient_norms_equal_the_loop_s_and_warn(tmp_path, caplog):
    # a deep sigmoid chain with small weights: each layer multiplies the backward signal by at most
    # 0.25 * ||W||, so the gradient shrinks by orders of magnitude towards the input
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(8):
        linear = nn.Linear(16, 16)
        nn.init.normal_(linear.weight, std=0.1)
        layers += [linear, nn.Sigmoid()]
    model = nn.Sequential(*layers, nn.Linear(16, 1))
    X = torch.randn(64, 16)
    y = 3 * X[:, :1]
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    expected: dict[int, list[float]] = {}
    caplog.set_level(logging.WARNING, logger="inspector.live")
    with Monitor(model, tmp_path / "run", every=4, optimizer=optimizer) as monitor:
        for step in range(1, 13):
            loss = nn.functional.mse_loss(model(X), y)
            optimizer.zero_grad()
            loss.backward()
            if step % 4 == 0:
                modules = dict(model.named_modules())
                expected[step] = [float(modules[n].weight.grad.norm()) for n in linears]
            optimizer.step()
            monitor.step(loss)
    run = read_run(tmp_path / "run")
    for i, name in enumerate(linears):
        series = run.scalar("grad_norm", name)
        assert list(series.steps) == [4, 8, 12]
        np.testing.assert_allclose(series.values, [expected[s][i] for s in (4, 8, 12)], rtol=1e-6)
    norms = np.array([run.scalar("grad_norm", name).values for name in linears])  # (layers, records)
    assert np.all(np.diff(norms[1:], axis=0) > 0)  # smaller at every sigmoid layer nearer the input
    assert np.all(norms[0] < 1e-6 * norms[-1])  # by orders of magnitude
    vanishing = [e for e in run.events if "vanishes" in e.message]
    assert {e.layer for e in vanishing} >= {linears[0], linears[1]}
    assert all(e.step == 4 for e in vanishing)  # edge-triggered: once, when it starts
    assert any("vanishes" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("flush_rows", [None, 60])  # 60: float32 counts folded into float64 on every batch
def test_tanh_saturation_nearly_dead_update_ratio_lr_and_loss_equal_a_recount(tmp_path, monkeypatch, flush_rows):
    if flush_rows is not None:
        monkeypatch.setattr("inspector.core.counting.FLUSH_ROWS", flush_rows)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, 1))
    with torch.no_grad():
        model[0].weight.mul_(8.0)  # drive the tanh into its tails
        model[2].bias[:3] = torch.tensor([-1.0, -1.2, -1.2])  # ReLUs that fire on few rows or none
    X, y = torch.randn(200, 6), torch.randn(200, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    batches = [(X[i : i + 50], y[i : i + 50]) for i in range(0, 200, 50)]
    threshold = 0.05
    saturated = rows = 0
    positive = np.zeros(10)
    expected: dict[int, dict[str, float]] = {}
    with Monitor(model, tmp_path / "run", every=4, optimizer=optimizer, nearly_dead_threshold=threshold) as monitor:
        for step in range(1, 9):
            xb, yb = batches[(step - 1) % 4]
            with torch.no_grad():
                h = torch.tanh(model[0](xb)).numpy()
                r = model[2](torch.tanh(model[0](xb))).numpy()
            saturated += int((np.abs(h) > 0.99).sum())
            positive += (r > 0).sum(0)
            rows += len(xb)
            loss = nn.functional.mse_loss(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            before = model[2].weight.detach().clone()
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            ratio = float((model[2].weight.detach() - before).norm() / before.norm())
            monitor.step(loss)
            scheduler.step()
            if step % 4 == 0:
                rate = positive / rows
                expected[step] = {
                    "saturation": saturated / (rows * 12),
                    "dead": float((positive == 0).sum()),
                    "nearly_dead": float(((positive > 0) & (rate < threshold)).sum()),
                    "update_ratio": ratio,
                    "loss": float(loss.detach()),
                    "lr": lr,
                    "weight_norm": float(model[2].weight.norm()),
                }
                saturated = rows = 0
                positive[:] = 0
    run = read_run(tmp_path / "run")
    for step in (4, 8):
        i = list(run.steps).index(step)
        want = expected[step]
        assert run.scalar("saturation", "0").values[i] == pytest.approx(want["saturation"], rel=1e-9)
        assert run.scalar("dead", "2").values[i] == want["dead"]
        assert run.scalar("nearly_dead", "2").values[i] == want["nearly_dead"]
        assert run.scalar("update_ratio", "2").values[i] == pytest.approx(want["update_ratio"], rel=1e-5)
        assert run.scalar("weight_norm", "2").values[i] == pytest.approx(want["weight_norm"], rel=1e-6)
        assert run.scalar("loss").values[i] == pytest.approx(want["loss"], rel=1e-6)
        assert run.scalar("lr").values[i] == pytest.approx(want["lr"])
    assert expected[4]["saturation"] > 0.5 and expected[4]["nearly_dead"] > 0 and expected[4]["dead"] > 0
    assert expected[4]["lr"] != expected[8]["lr"]  # the scheduler's rate, read from the optimizer
    assert np.isnan(run.scalar("saturation", "2").values).all() and np.isnan(run.scalar("dead", "0").values).all()
    assert any("saturated" in e.message and e.layer == "0" for e in run.events)


def test_eval_forwards_are_not_counted_and_a_model_output_loss_is_used(tmp_path):
    class WithLoss(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 8)
            self.act = nn.ReLU()
            self.head = nn.Linear(8, 1)

        def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None):  # Hugging Face style
            out = self.head(self.act(self.fc(x)))
            loss = None if labels is None else nn.functional.mse_loss(out, labels)
            return type("Output", (), {"loss": loss, "logits": out})()

    torch.manual_seed(0)
    model = WithLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    X, y = torch.randn(32, 4), torch.randn(32, 1)
    losses = []
    with Monitor(model, tmp_path / "run", every=2, snapshot_every=0) as monitor:
        for _ in range(4):
            out = model(X, labels=y)
            losses.append(float(out.loss))
            optimizer.zero_grad()
            out.loss.backward()
            optimizer.step()
            model.eval()
            model(torch.randn(100, 4))  # an evaluation pass inside the loop
            model.train()
            monitor.step()
    run = read_run(tmp_path / "run")
    assert run.layers == ("fc", "head") and run.activations[0] == "relu"
    np.testing.assert_array_equal(run.scalar("rows", "fc").values, [64, 64])
    np.testing.assert_allclose(run.scalar("loss").values, [losses[1], losses[3]], rtol=1e-6)
    assert np.isnan(run.scalar("lr").values).all()  # no optimizer, no lr given
    assert run.snapshots == ()  # snapshot_every=0: never


@COUNTED_BY
def test_padding_is_not_counted(tmp_path, monkeypatch, counted_by):
    _count_by(monkeypatch, counted_by)

    class Tokens(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(10, 4)
            self.fc = nn.Linear(4, 6)
            self.act = nn.ReLU()

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.act(self.fc(self.embed(input_ids))).sum()

    torch.manual_seed(0)
    model = Tokens()
    ids = torch.randint(0, 10, (3, 5))
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]])
    with Monitor(model, tmp_path / "run", every=1) as monitor:
        model(input_ids=ids, attention_mask=mask).backward()
        monitor.step(0.0)
    run = read_run(tmp_path / "run")
    with torch.no_grad():
        pre = model.fc(model.embed(ids))[mask.bool()].numpy()
    assert run.scalar("rows", "fc").values[0] == 9
    np.testing.assert_allclose(run.vector("fire_rate", "fc")[1][0], (pre > 0).mean(0), rtol=1e-6)


def test_bad_arguments_and_a_closed_monitor_are_one_line_errors(tmp_path):
    model, _, _ = _relu_net()
    with pytest.raises(InspectorError, match="every"):
        Monitor(model, tmp_path / "a", every=0)
    monitor = Monitor(model, tmp_path / "b")
    monitor.close()
    with pytest.raises(InspectorError, match="closed"):
        monitor.step(1.0)
    with pytest.raises(InspectorError, match="already holds a run"):
        Monitor(model, tmp_path / "b")
    assert inspector.Monitor is Monitor


def test_tensorboard_missing_is_a_one_line_error(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if not installed
    model, _, _ = _relu_net()
    with pytest.raises(InspectorError, match="pip install tensorboard"):
        Monitor(model, tmp_path / "run", tensorboard=True)
    assert not (tmp_path / "run").exists()  # refused before anything is written


def test_inspector_train_run_dir_records_the_training_steps_only(tmp_path, capsys):
    from inspector.cli import main
    from inspector.data import load_dataset

    run_dir = tmp_path / "run"
    args = ["train", "--dataset", "synthetic", "--hidden", "16", "--epochs", "2", "--batch-size", "64", "-q"]
    args += ["--patience", "0", "--out", str(tmp_path / "m.pt"), "--run-dir", str(run_dir), "--every", "3"]
    assert main(args) == 0
    assert "recorded the dense layers every 3 steps" in capsys.readouterr().out
    run = read_run(run_dir)
    n_train = len(inspector.split_dataset(load_dataset("synthetic")).y_train)
    per_epoch = math.ceil(n_train / 64)
    assert run.status == "finished" and run.meta["source"] == "inspector train"
    assert run.layers == ("fc1", "fc2") and run.activations == ("relu", "none")
    assert list(run.steps) == list(range(3, 2 * per_epoch + 1, 3))
    # every record counts exactly its 3 training batches: the evaluation passes after each epoch are not counted
    sizes = [min(64, n_train - 64 * (i % per_epoch)) for i in range(2 * per_epoch)]
    expected = [sum(sizes[s - 3 : s]) for s in run.steps]
    np.testing.assert_array_equal(run.scalar("rows", "fc1").values, expected)
    assert np.all(np.isfinite(run.scalar("grad_norm", "fc1").values)) and np.all(np.isfinite(run.scalar("loss").values))
    assert run.latest_snapshot is not None and run.latest_snapshot.step == 2 * per_epoch
    assert main(args + ["--force"]) == 1  # an existing run is never overwritten, --force or not
    assert "choose a new --run-dir" in capsys.readouterr().err


def test_tensorboard_gets_the_same_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model, X, y = _relu_net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2)
    with Monitor(model, tmp_path / "run", every=2, optimizer=optimizer, tensorboard=True) as monitor:
        _train(model, X, y, optimizer, monitor, 6)
    run = read_run(tmp_path / "run")
    events = EventAccumulator(str(tmp_path / "run"))
    events.Reload()
    for tag, (name, layer) in {
        "train/loss": ("loss", ""),
        "train/lr": ("lr", ""),
        "dense/0/dead": ("dead", "0"),
        "dense/0/grad_norm": ("grad_norm", "0"),
    }.items():
        scalars = events.Scalars(tag)
        assert [s.step for s in scalars] == [2, 4, 6]
        np.testing.assert_allclose([s.value for s in scalars], run.scalar(name, layer).values, rtol=1e-6)


class _Wrapper(nn.Module):
    """A LightningModule-like wrapper whose loop calls only ``self.net``; ``head`` is never used."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
        self.head = nn.Linear(3, 3)
        with torch.no_grad():  # neurons 0-3 planted dead: zero weights, negative bias
            self.net[0].weight[:4] = 0.0
            self.net[0].bias[:4] = -1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.net(x))


def test_a_loop_that_calls_only_a_part_of_the_model_is_watched_there(tmp_path):
    model = _Wrapper()
    X, y = torch.randn(64, 6, generator=torch.Generator().manual_seed(0)), torch.randint(0, 3, (64,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    fired = torch.zeros(16)
    with Monitor(model, tmp_path / "run", every=4, optimizer=optimizer) as monitor:
        for step in range(1, 9):
            with torch.no_grad():  # the recount: the same training-mode forward, seen from outside
                if step in (1, 5):
                    fired.zero_()
                fired += (torch.relu(model.net[0](X[step * 8 - 8 : step * 8])) > 0).sum(0)
            loss = nn.functional.cross_entropy(model.net(X[step * 8 - 8 : step * 8]), y[step * 8 - 8 : step * 8])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            monitor.step(loss)
            if step % 4 == 0:
                np.testing.assert_array_equal(
                    monitor.history().vector("fire_rate", "net.0")[1][-1], (fired / 32).numpy().astype(np.float32)
                )
    run = read_run(tmp_path / "run")
    assert run.meta["entry"] == "net" and monitor.entry == "net"
    assert run.layers == ("net.0", "net.2")  # named from the model's root; the unused head is not a site
    assert list(run.scalar("dead", "net.0").values) == [4.0, 4.0]
    assert list(run.scalar("rows", "net.0").values) == [32.0, 32.0]
    assert math.isnan(run.scalar("grad_norm", "head").values[-1])  # never used: no gradient


class _NeedsLabels(nn.Module):
    """A Hugging Face-style model: labels is a required keyword, the output a dict with the loss, and a
    reshape that only works at the batch size it was built for."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.fc = nn.Linear(4, 8)
        self.act = nn.ReLU()
        self.out = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.out(self.act(self.fc(x))).reshape(16, 2)
        return {"loss": nn.functional.cross_entropy(logits, labels), "logits": logits}


def test_a_model_that_needs_labels_and_its_batch_size_trains_as_without_a_monitor(tmp_path):
    model = _NeedsLabels()
    X, y = torch.randn(64, 4, generator=torch.Generator().manual_seed(1)), torch.randint(0, 2, (64,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    with Monitor(model, tmp_path / "run", every=2) as monitor:
        for step in range(4):
            out = model(x=X[16 * step : 16 * step + 16], labels=y[16 * step : 16 * step + 16])
            losses.append(float(out["loss"]))
            optimizer.zero_grad()
            out["loss"].backward()
            optimizer.step()
            monitor.step()  # no loss given: the output dict's "loss"
    run = read_run(tmp_path / "run")
    assert run.layers == ("fc", "out") and run.activations[0] == "relu"
    np.testing.assert_allclose(run.scalar("loss").values, [losses[1], losses[3]], rtol=1e-6)
    assert list(run.scalar("rows", "fc").values) == [32.0, 32.0] and run.events == ()


def test_a_zero_learning_rate_on_small_batches_raises_no_death_warning(tmp_path):
    # with lr 0 nothing can die; a neuron that fires rarely is silent on some 8-row windows by chance
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 1))
    with torch.no_grad():
        model[0].bias.sub_(1.5)  # most neurons fire rarely
    X = torch.randn(400, 8, generator=torch.Generator().manual_seed(2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    with Monitor(model, tmp_path / "run", every=1, snapshot_every=0) as monitor:
        for step in range(50):
            loss = model(X[8 * step : 8 * step + 8]).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            monitor.step(loss)
    run = read_run(tmp_path / "run")
    dead = run.scalar("dead", "0").values
    assert dead.max() - dead.min() >= 0.1 * 64  # the counts do swing by more than the old threshold
    assert not [e for e in run.events if "died" in e.message]


def test_a_model_never_trained_and_bad_arguments_are_said(tmp_path):
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1)).eval()
    with Monitor(model, tmp_path / "run", every=2) as monitor:
        for _ in range(4):
            model(torch.randn(5, 3))  # eval mode: nothing to count
            monitor.step(0.0)
    events = read_run(tmp_path / "run").events
    assert len(events) == 1 and events[0].step == 2 and "no layer statistics are recorded" in events[0].message
    for bad in ({"every": 2.5}, {"every": True}, {"snapshot_every": -1}, {"activations": {"nope": "relu"}}):
        with pytest.raises(InspectorError) as error:
            Monitor(model, tmp_path / f"bad{len(str(bad))}", **bad)
        assert "\n" not in str(error.value)
        assert not (tmp_path / f"bad{len(str(bad))}").exists()  # refused before anything is written


class _Noisy(nn.Module):
    """Draws from the global random stream in every forward (noise injection) and has dropout."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(5, 16)
        self.drop = nn.Dropout(0.3)
        self.act = nn.ReLU()
        self.out = nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.drop(self.fc(x + 0.1 * torch.randn_like(x)))))


def test_the_monitor_leaves_the_training_trajectory_bit_identical(tmp_path):
    def train(monitored: bool) -> list[torch.Tensor]:
        torch.manual_seed(0)
        model = _Noisy()
        X, y = torch.randn(40, 5), torch.randn(40, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        monitor = Monitor(model, tmp_path / f"run{monitored}", every=3) if monitored else None
        for step in range(7):
            loss = (model(X[5 * step : 5 * step + 5]) - y[5 * step : 5 * step + 5]).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if monitor is not None:
                monitor.step(loss)
        if monitor is not None:
            monitor.close()
        return [p.detach().clone() for p in model.parameters()]

    for a, b in zip(train(False), train(True), strict=True):
        assert torch.equal(a, b)  # discovery's extra forward drew nothing from the random stream


def test_a_part_outside_the_watched_one_that_trains_is_said_once(tmp_path):
    # the loop calls enc, then head, separately: the Monitor watches enc (the first part it saw train)
    enc = nn.Sequential(nn.Linear(4, 16), nn.ReLU())
    head = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 1))
    model = nn.ModuleDict({"enc": enc, "head": head})
    with Monitor(model, tmp_path / "run", every=2) as monitor:
        for _ in range(4):
            x = torch.randn(8, 4)
            x_before = x.clone()
            head(enc(x)).sum().backward()
            monitor.step(0.0)
            assert torch.equal(x, x_before)
    run = read_run(tmp_path / "run")
    assert run.meta["entry"] == "enc" and run.layers == ("enc.0",)
    outside = [e for e in run.events if "also runs 'head'" in e.message]
    assert len(outside) == 1 and outside[0].step == 1


def test_death_warnings_count_samples_not_positions(tmp_path):
    # lr 0; each sequence's 32 positions share one feature vector, so a neuron fires on a whole sequence
    # or on none of it: silences of 4-sequence windows are common by chance and nothing dies
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 64), nn.ReLU(), nn.Linear(64, 1))
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(4).repeat(16, 1))
        model[0].bias.fill_(-1.3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    generator = torch.Generator().manual_seed(1)
    with Monitor(model, tmp_path / "run", every=1, snapshot_every=0) as monitor:
        for _ in range(30):
            z = torch.randn(4, 1, 4, generator=generator)
            x = z + 0.01 * torch.randn(4, 32, 4, generator=generator)
            loss = model(x).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            monitor.step(loss)
    run = read_run(tmp_path / "run")
    assert run.scalar("dead", "0").values.max() - run.scalar("dead", "0").values.min() >= 0.1 * 64
    assert not [e for e in run.events if "died" in e.message]


@COUNTED_BY
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_each_unit_s_count_equals_a_recount_as_batch_shapes_change(tmp_path, monkeypatch, dtype, counted_by):
    # every rule (leaky: positive inputs; GELU: |out| < 0.01; sigmoid, hardtanh: the tails), on sequences
    # whose batch and length change from step to step (each new shape makes the count anew), in float32,
    # float64 and bfloat16 (converted before counting); lr 0 keeps the weights, so hooks written here recount it all
    _count_by(monkeypatch, counted_by)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(6, 10), nn.LeakyReLU(0.1), nn.Linear(10, 12), nn.GELU(), nn.Linear(12, 8), nn.Sigmoid(),
        nn.Linear(8, 8), nn.Hardtanh(), nn.Linear(8, 1),
    ).to(dtype)  # fmt: skip
    with torch.no_grad():
        model[4].weight.mul_(40.0)  # into the sigmoid's tails
        model[6].weight.mul_(3.0)  # and the hardtanh's
    seen: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {i: [] for i in (1, 3, 5, 7)}
    for i in seen:
        model[i].register_forward_hook(
            lambda m, args, out, i=i: seen[i].append((args[0].detach().float().numpy(), out.detach().float().numpy()))
        )
    shapes = [(4, 7), (4, 7), (2, 5), (3, 7), (4, 7), (1, 9)]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    with Monitor(model, tmp_path / "run", every=3, snapshot_every=0) as monitor:
        for batch, length in shapes:
            loss = model(torch.randn(batch, length, 6, dtype=dtype)).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            monitor.step(loss)
        assert {c._compiled is not None for c in monitor._counts.values()} == {counted_by == "loop"}
    run = read_run(tmp_path / "run")
    rules = {
        1: ("fire_rate", lambda pre, out: pre > 0),
        3: ("zero_rate", lambda pre, out: np.abs(out) < 0.01),
        5: ("saturation", lambda pre, out: np.abs(out - 0.5) > 0.49),
        7: ("saturation", lambda pre, out: np.abs(out) > 0.99),
    }
    for i, (name, rule) in rules.items():
        layer = str(i - 1)
        steps, rates = run.vector(name, layer)
        assert list(steps) == [3, 6]
        calls = seen[i][1:]  # the first call is the Monitor's site discovery (two rows, eval mode)
        assert len(calls) == 6
        for record, window in enumerate((calls[:3], calls[3:])):
            hits = sum(rule(pre, out).reshape(-1, pre.shape[-1]).sum(0) for pre, out in window)
            rows = sum(pre.shape[0] * pre.shape[1] for pre, _ in window)
            assert run.scalar("rows", layer).values[record] == rows
            np.testing.assert_allclose(rates[record], hits / rows, rtol=1e-6, err_msg=f"{name} {layer}")
        assert 0 < rates.mean() < 1, (name, layer)  # neither rule trivially all or nothing


class _Reuse(nn.Module):
    """A ReLU of an inner Sequential called once more on a tensor that is no layer's output."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 16), nn.ReLU())
        self.head = nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body[1](self.body(x) - 0.5))


@pytest.mark.parametrize("kind", ["sequential", "reuse"])
def test_an_activation_is_counted_on_its_layer_s_output_only(tmp_path, kind):
    # an nn.Sequential watched whole, dropout between the layer and its ReLU (each call of that ReLU is
    # on the layer's output); and a model calling the ReLU again on another tensor (not counted)
    torch.manual_seed(0)
    if kind == "sequential":
        model: nn.Module = nn.Sequential(nn.Linear(6, 16), nn.Dropout(0.3), nn.ReLU(), nn.Linear(16, 1))
        act, layer, per_forward = model[2], "0", 1
    else:
        model = _Reuse()
        act, layer, per_forward = model.body[1], "body.0", 2
    seen: list[np.ndarray] = []
    act.register_forward_hook(lambda m, args, out: seen.append(out.detach().numpy()))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    X, y = torch.randn(32, 6), torch.randn(32, 1)
    with Monitor(model, tmp_path / "run", every=2, snapshot_every=0) as monitor:
        _train(model, X, y, optimizer, monitor, 4)
    run = read_run(tmp_path / "run")
    training = seen[per_forward:]  # after the discovery's forward
    assert len(training) == 4 * per_forward
    layer_calls = training[::per_forward]  # the call on the layer's output comes first
    _, rates = run.vector("fire_rate", layer)
    for record in range(2):
        window = layer_calls[2 * record : 2 * record + 2]
        np.testing.assert_allclose(rates[record], sum((out > 0).sum(0) for out in window) / 64, rtol=1e-6)
    np.testing.assert_array_equal(run.scalar("rows", layer).values, [64, 64])


@COUNTED_BY
def test_a_mask_counts_only_where_it_fits_the_layer_s_rows(tmp_path, monkeypatch, counted_by):
    # per position (3-D) the padding is left out; after pooling (2-D) the mask does not fit: every row counts
    _count_by(monkeypatch, counted_by)

    class Pooled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(10, 4)
            self.fc = nn.Linear(4, 6)
            self.act = nn.ReLU()
            self.pool_fc = nn.Linear(6, 5)
            self.pool_act = nn.ReLU()
            self.head = nn.Linear(5, 1)

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            h = self.act(self.fc(self.embed(input_ids)))
            pooled = (h * attention_mask[..., None]).sum(1) / attention_mask.sum(1, keepdim=True)
            return self.head(self.pool_act(self.pool_fc(pooled))).sum()

    torch.manual_seed(0)
    model = Pooled()
    seen: dict[str, list[np.ndarray]] = {"act": [], "pool_act": []}
    for name in seen:
        getattr(model, name).register_forward_hook(lambda m, a, out, name=name: seen[name].append(out.detach().numpy()))
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]])
    with Monitor(model, tmp_path / "run", every=3, snapshot_every=0) as monitor:
        for _ in range(3):
            model(input_ids=torch.randint(0, 10, (3, 5)), attention_mask=mask).backward()
            monitor.step(0.0)
    run = read_run(tmp_path / "run")
    kept = mask.bool().numpy()
    positions = [out[kept] for out in seen["act"][1:]]  # after the discovery's forward
    assert run.scalar("rows", "fc").values[0] == 3 * 9
    np.testing.assert_allclose(
        run.vector("fire_rate", "fc")[1][0], sum((p > 0).sum(0) for p in positions) / 27, rtol=1e-6
    )
    pooled = seen["pool_act"][1:]
    assert run.scalar("rows", "pool_fc").values[0] == 3 * 3
    np.testing.assert_allclose(
        run.vector("fire_rate", "pool_fc")[1][0], sum((p > 0).sum(0) for p in pooled) / 9, rtol=1e-6
    )


def test_weight_grad_and_update_numbers_of_every_layer_equal_numpy_and_nan_where_none(tmp_path):
    # three dense layers: one frozen (no gradient, no update: NaN), two trained;
    # the numbers of all layers are read back together, each must be its own layer's
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 6), nn.Tanh(), nn.Linear(6, 2))
    model[0].weight.requires_grad_(False)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.3)
    X, y = torch.randn(16, 5), torch.randn(16, 2)
    expected: dict[int, dict[tuple[str, str], float]] = {}
    with Monitor(model, tmp_path / "run", every=2, snapshot_every=0, optimizer=optimizer) as monitor:
        for step in range(1, 7):
            loss = nn.functional.mse_loss(model(X), y)
            optimizer.zero_grad()
            loss.backward()
            before = {name: model[i].weight.detach().numpy().astype(np.float64) for i, name in ((2, "2"), (4, "4"))}
            grads = {name: model[i].weight.grad.numpy().astype(np.float64) for i, name in ((2, "2"), (4, "4"))}
            optimizer.step()
            monitor.step(loss)
            if step % 2 == 0:
                want = {("weight_norm", "0"): np.linalg.norm(model[0].weight.numpy().astype(np.float64))}
                for i, name in ((2, "2"), (4, "4")):
                    after = model[i].weight.detach().numpy().astype(np.float64)
                    want[("weight_norm", name)] = np.linalg.norm(after)
                    want[("grad_norm", name)] = np.linalg.norm(grads[name])
                    want[("update_ratio", name)] = np.linalg.norm(after - before[name]) / np.linalg.norm(before[name])
                expected[step] = want
    run = read_run(tmp_path / "run")
    assert list(run.steps) == [2, 4, 6]
    for i, step in enumerate((2, 4, 6)):
        for (name, layer), value in expected[step].items():
            assert run.scalar(name, layer).values[i] == pytest.approx(value, rel=1e-5), (step, name, layer)
        assert math.isnan(run.scalar("grad_norm", "0").values[i]) and math.isnan(
            run.scalar("update_ratio", "0").values[i]
        )
    ratios = {layer: run.scalar("update_ratio", layer).values for layer in ("2", "4")}
    assert not np.allclose(ratios["2"], ratios["4"])  # each layer its own numbers


def test_a_count_that_cannot_compile_warns_once_and_the_operations_count(tmp_path, monkeypatch):
    class Broken:
        @property
        def count_rows(self):
            raise RuntimeError("no LLVM here")

    def train(run: str) -> np.ndarray:
        model, X, y = _relu_net()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        with Monitor(model, tmp_path / run, every=2, snapshot_every=0) as monitor:
            _train(model, X, y, optimizer, monitor, 4)
        return read_run(tmp_path / run).vector("fire_rate", "0")[1]

    expected = train("compiled")
    monkeypatch.setattr(kernels, "_failed", [])
    monkeypatch.setitem(sys.modules, "inspector.core._row_counts", Broken())
    kernels._count_rows.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="numba could not compile its counting loops .*no LLVM here"):
            fallen_back = train("operations")
    finally:
        kernels._count_rows.cache_clear()
    np.testing.assert_array_equal(fallen_back, expected)
    assert kernels.row_counter(torch.zeros(3), kernels.POSITIVE, 0.0) is None  # said once; operations from then on
