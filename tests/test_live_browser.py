"""The Live view in a real headless Chromium (dash_duo), opened while another process trains and records.

Leaves a screenshot in docs/screenshots/live.png (the README shows it).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from dash.testing.wait import until

from dashboards import ids
from dashboards.launch import app_for_runs
from dashboards.views import live as live_view
from inspector.live.store import is_run, read_run

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "docs" / "screenshots"
STEPS = 80

# A real training process: full-batch SGD on the digits with a Monitor, paced so that the run lasts
# about 10 s; two steps at a learning rate 200x too high (steps 21-22) kill many of the ReLUs, which
# the Monitor reports as a warning. The dashboard is opened while it trains.
TRAINER = textwrap.dedent(
    f"""
    import sys, time
    import torch
    from torch import nn
    import inspector

    digits = inspector.load_digits()
    X, y = torch.from_numpy(digits.X).float() / 16, torch.from_numpy(digits.y).long()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with inspector.Monitor(model, sys.argv[1], every=5, snapshot_every=25, optimizer=optimizer) as monitor:
        for step in range(1, {STEPS} + 1):
            for group in optimizer.param_groups:
                group["lr"] = 20.0 if step in (21, 22) else 0.1
            loss = nn.functional.cross_entropy(model(X), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            monitor.step(loss)
            time.sleep(0.12)
    """
)


def _step(duo) -> int:
    text = duo.find_element(f"#{live_view.LIVE_STATUS}").text
    match = re.search(r"exp1: step (\d+)", text)
    return int(match.group(1)) if match else -1


def test_live_view_follows_a_run_being_written(dash_duo, tmp_path):
    run = tmp_path / "runs" / "exp1"
    run.parent.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    writer = subprocess.Popen([sys.executable, "-c", TRAINER, str(run)], env=env)
    try:
        deadline = time.monotonic() + 60
        # its first snapshot (step 25 of 80): the other tabs show the newest snapshot found at launch
        while not (is_run(run) and read_run(run).snapshots):
            assert writer.poll() is None and time.monotonic() < deadline, "the writer did not start recording"
            time.sleep(0.1)
        dash_duo.start_server(app_for_runs(run.parent, refresh=0.5, log=lambda _: None))
        dash_duo.wait_for_contains_text(f"#{live_view.LIVE_STATUS}", "exp1: step", timeout=20)
        first = _step(dash_duo)
        assert "running" in dash_duo.find_element(f"#{live_view.LIVE_STATUS}").text
        until(lambda: _step(dash_duo) > first, timeout=20)  # the DOM follows the writer
        second = _step(dash_duo)
        assert second > first
        # dead fraction: the one ReLU layer ("0"); gradient norms: both dense layers
        until(lambda: len(dash_duo.find_elements(f"#{live_view.LIVE_CURVES} .scatterlayer .trace")) == 1, 10)
        until(lambda: len(dash_duo.find_elements(f"#{live_view.LIVE_GRADS} .scatterlayer .trace")) == 2, 10)
        assert writer.wait(timeout=90) == 0
        dash_duo.wait_for_contains_text(f"#{live_view.LIVE_STATUS}", f"exp1: step {STEPS}, finished", timeout=20)
        dash_duo.wait_for_contains_text(f"#{live_view.LIVE_WARNINGS}", "of neurons died between steps 25 and 30", 10)
        recorded = read_run(run)
        assert list(recorded.steps) == list(range(5, STEPS + 1, 5))
        dead = recorded.scalar("dead", "0").values
        assert dead[5] - dead[4] >= 0.1 * 128  # steps 21-22 kill; the first window without their forwards: 26-30
        until(
            lambda: f"weights at step {STEPS}" in dash_duo.find_element(f"#{live_view.LIVE_SNAPSHOT} .gtitle").text, 20
        )
        tabs = [t.text.strip() for t in dash_duo.find_elements(f"#{ids.TABS} .tab")]
        assert tabs[0] == "Live" and "Weights" in tabs  # the snapshot's analysis in the other views
        SHOTS.mkdir(parents=True, exist_ok=True)
        dash_duo.driver.save_screenshot(str(SHOTS / "live.png"))
        assert dash_duo.get_logs() == [], "the browser console reported errors"
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()


def test_a_run_started_after_launch_joins_the_picker(dash_duo, tmp_path):
    from tests.test_live_views import _corrupt, write

    root = tmp_path / "runs"
    root.mkdir()
    write(root / "a", 0)  # finished before launch: a folder still polls
    _corrupt(root / "bad")
    dash_duo.start_server(app_for_runs(root, refresh=0.3, log=lambda _: None))
    dash_duo.wait_for_contains_text(f"#{live_view.LIVE_STATUS}", "a: step 200, finished", timeout=20)
    assert "skipped bad: cannot read the run in" in dash_duo.find_element(f"#{live_view.LIVE_NOTE}").text
    writer = write(root / "b", 1, close=False)  # started after launch
    dash_duo.wait_for_contains_text(f"#{live_view.LIVE_STATUS}", "b: step 200, running", timeout=20)
    # the status lines are the selected runs': every run was selected, so is the new one
    assert dash_duo.find_element(f"#{live_view.LIVE_STATUS}").text.splitlines() == [
        "a: step 200, finished",
        "b: step 200, running",
    ]
    until(lambda: len(dash_duo.find_elements(f"#{live_view.LIVE_CURVES} .scatterlayer .trace")) == 6, 10)
    writer.record(250, {("loss", ""): 0.25})
    writer.close()
    dash_duo.wait_for_contains_text(f"#{live_view.LIVE_STATUS}", "b: step 250, finished", timeout=20)
    assert dash_duo.get_logs() == [], "the browser console reported errors"
