"""The Live view in a real headless Chromium (dash_duo), opened while another process records a run.

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
from inspector.live.store import is_run, read_run

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "docs" / "screenshots"
LAYERS = ("fc1", "fc2", "fc3")

# A training process stand-in: a record every 0.3 s for about 10 s, a snapshot first, and fc2 dying
# around step 300 (the event the Monitor would raise). Written with the run store's own writer.
WRITER = textwrap.dedent(
    """
    import math, sys, time
    import torch
    from inspector.live.store import RunWriter

    layers = ("fc1", "fc2", "fc3")
    writer = RunWriter(sys.argv[1], meta={"source": "test writer"})
    writer.set_layers([("fc1", 64, 128, "relu"), ("fc2", 128, 64, "relu"), ("fc3", 64, 10, "identity")])
    torch.manual_seed(0)
    writer.snapshot(0, {"fc1.weight": torch.randn(128, 64) * 0.1, "fc2.weight": torch.randn(64, 128) * 0.1,
                        "fc3.weight": torch.randn(10, 64) * 0.1})
    for k in range(1, 34):
        step = 20 * k
        dead = {"fc1": 0.02 + 0.001 * k, "fc2": 0.05 + (0.3 if step >= 300 else 0.0) + 0.002 * k, "fc3": 0.0}
        scalars = {("loss", ""): 2.3 * math.exp(-step / 300) + 0.1, ("lr", ""): 0.1 if step < 400 else 0.01}
        for i, name in enumerate(layers):
            scalars[("dead_fraction", name)] = dead[name]
            scalars[("grad_norm", name)] = 10.0 ** -(i + 1) * (1 + math.sin(step / 50) / 2)
        events = [("warning", "fc2", "fc2: 30% of neurons died between steps 280 and 300; "
                   "the learning rate may be too high")] if step == 300 else []
        writer.record(step, scalars, events=events)
        time.sleep(0.3)
    writer.close()
    """
)


def _step(duo) -> int:
    text = duo.find_element(f"#{ids.LIVE_STATUS}").text
    match = re.search(r"exp1: step (\d+)", text)
    return int(match.group(1)) if match else -1


def test_live_view_follows_a_run_being_written(dash_duo, tmp_path):
    run = tmp_path / "runs" / "exp1"
    run.parent.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(run)], env=env)
    try:
        deadline = time.monotonic() + 60
        while not (is_run(run) and read_run(run).last_step is not None):  # its first record
            assert writer.poll() is None and time.monotonic() < deadline, "the writer did not start recording"
            time.sleep(0.1)
        dash_duo.start_server(app_for_runs(run.parent, refresh=0.5, log=lambda _: None))
        dash_duo.wait_for_contains_text(f"#{ids.LIVE_STATUS}", "exp1: step", timeout=20)
        first = _step(dash_duo)
        assert "running" in dash_duo.find_element(f"#{ids.LIVE_STATUS}").text
        until(lambda: _step(dash_duo) > first, timeout=20)  # the DOM follows the writer
        second = _step(dash_duo)
        assert second > first
        until(lambda: len(dash_duo.find_elements(f"#{ids.LIVE_CURVES} .scatterlayer .trace")) == len(LAYERS), 10)
        writer.wait(timeout=60)
        dash_duo.wait_for_contains_text(f"#{ids.LIVE_STATUS}", "exp1: step 660, finished", timeout=20)
        dash_duo.wait_for_contains_text(f"#{ids.LIVE_WARNINGS}", "fc2: 30% of neurons died", timeout=10)
        assert len(dash_duo.find_elements(f"#{ids.LIVE_CURVES} .scatterlayer .trace")) == len(LAYERS)
        assert "weights at step 0" in dash_duo.find_element(f"#{ids.LIVE_SNAPSHOT} .gtitle").text
        tabs = [t.text.strip() for t in dash_duo.find_elements(f"#{ids.TABS} .tab")]
        assert tabs[0] == "Live" and "Weights" in tabs  # the snapshot's analysis in the other views
        SHOTS.mkdir(parents=True, exist_ok=True)
        dash_duo.driver.save_screenshot(str(SHOTS / "live.png"))
        assert dash_duo.get_logs() == [], "the browser console reported errors"
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
