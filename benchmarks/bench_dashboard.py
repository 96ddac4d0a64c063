"""Dashboard benchmarks. Prints sizes, times and load figures; asserts nothing.

    .venv/bin/python benchmarks/bench_dashboard.py [--clients 20] [--seconds 30]

Targets (issue 4):
  heatmap figure of a 4096 x 4096 layer     <= 6 MB, built in <= 0.3 s
  every callback on the demo model          <= 1 s
  20 concurrent clients for 30 s            no errors, server memory flat

The load run talks only to a server it starts itself on 127.0.0.1 and stops
after the given number of seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from dashboards import ids
from dashboards.demo import load_demo
from dashboards.state import DashboardState
from dashboards.views import activations, dead, importance, neurons, pruning, weights
from inspector import figures as F
from inspector.analysis.weights import layer_weights


def large_layer() -> None:
    w = torch.randn(4096, 4096, generator=torch.Generator().manual_seed(0))
    stats = layer_weights("big", w)
    times, size = [], 0
    for _ in range(5):
        start = time.perf_counter()
        fig = F.weight_heatmap_figure(stats)
        payload = fig.to_json()
        times.append(time.perf_counter() - start)
        size = len(payload.encode())
    print(
        f"4096 x 4096 heatmap: {size / 1e6:.2f} MB as JSON (pooled to {stats.magnitude.values.shape}, "
        f"typed arrays), built and serialised in {min(times):.3f} s  (targets <= 6 MB, <= 0.3 s)"
    )


def callback_times(state: DashboardState) -> None:
    calls = {
        "weights: layer fc2": lambda: weights.heatmap(state, "fc2", False, False),
        "weights: sort by norm": lambda: weights.heatmap(state, "fc1", True, False),
        "neurons: neuron 17 of fc1": lambda: neurons.panels(state, "fc1", 17),
        "neurons: table fc2": lambda: neurons.table_rows(state, "fc2"),
        "dead: threshold 5%": lambda: (
            dead.count_text(state, 0.05),
            F.dead_summary_figure(state.analysis.activations, 0.05),
        ),
        "importance: saliency, class 3": lambda: importance.charts(state, "saliency", "3"),
        "importance: sample 11 (IG, on demand)": lambda: importance.sample_view(state, "integrated_gradients", 11),
        "pruning: preview 90%": lambda: (
            F.pruning_figure(state.analysis.pruning, 0.9),
            F.pruning_preview_rows(state.analysis.pruning, 0.9),
        ),
        "activations: projection fc2": lambda: activations.figure(state, "fc2"),
    }
    print("\ncallback work on the demo model (first call; to_json included)")
    for name, call in calls.items():
        start = time.perf_counter()
        result = call()
        for part in result if isinstance(result, tuple) else (result,):
            if hasattr(part, "to_json"):
                part.to_json()
        print(f"  {name:<40} {1000 * (time.perf_counter() - start):7.1f} ms")
    _ = pruning  # the pruning view's callback is the two builders timed above


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _payload(
    output: str,
    outputs: list[tuple[str, str]],
    inputs: list[tuple[str, str, object]],
    changed: str,
    state: list[tuple[str, str, object]] = (),
) -> dict[str, object]:
    return {
        "output": output,
        "outputs": [{"id": i, "property": p} for i, p in outputs]
        if len(outputs) > 1
        else {"id": outputs[0][0], "property": outputs[0][1]},
        "inputs": [{"id": i, "property": p, "value": v} for i, p, v in inputs],
        "changedPropIds": [changed],
        "state": [{"id": i, "property": p, "value": v} for i, p, v in state],
    }


def _requests(layers: list[str]) -> list[dict[str, object]]:
    out = []
    for layer in layers:
        out.append(
            _payload(
                f"..{weights.WEIGHT_HEATMAP}.figure...{weights.WEIGHT_NOTE}.children..",
                [(weights.WEIGHT_HEATMAP, "figure"), (weights.WEIGHT_NOTE, "children")],
                [
                    (weights.WEIGHT_LAYER, "value", layer),
                    (weights.WEIGHT_SORT, "value", []),
                    (weights.WEIGHT_MODE, "value", "signed"),
                    (weights.WEIGHT_HEATMAP, "relayoutData", None),
                ],
                f"{weights.WEIGHT_LAYER}.value",
            )
        )
        for j in (0, 3, 7, 9):
            out.append(
                _payload(
                    f"..{neurons.NEURON_TITLE}.children...{neurons.NEURON_ACT}.figure...{neurons.NEURON_IN}.figure..."
                    f"{neurons.NEURON_DRIVERS}.figure...{neurons.NEURON_CLASSES}.figure..",
                    [
                        (neurons.NEURON_TITLE, "children"),
                        (neurons.NEURON_ACT, "figure"),
                        (neurons.NEURON_IN, "figure"),
                        (neurons.NEURON_DRIVERS, "figure"),
                        (neurons.NEURON_CLASSES, "figure"),
                    ],
                    [(ids.NEURON_LAYER, "value", layer), (ids.NEURON_INDEX, "value", j)],
                    f"{ids.NEURON_INDEX}.value",
                )
            )
    return out


def load_run(clients: int, seconds: float) -> None:
    import psutil
    import requests

    port = _free_port()
    env = dict(os.environ, DENSE_INSPECTOR_CACHE=os.environ.get("DENSE_INSPECTOR_CACHE", tempfile.mkdtemp()))
    # the server's request log goes to a file: an undrained pipe would fill up and stall the server
    log = tempfile.NamedTemporaryFile(prefix="dashboard-", suffix=".log", delete=False)
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("inspector")), "dashboard", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            try:
                if requests.get(base + "/", timeout=2).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.5)
        else:
            raise RuntimeError("the dashboard did not start")
        bodies = _requests(["fc1", "fc2", "fc3"])
        latencies: list[float] = []
        errors = 0
        failures: dict[str, int] = {}
        lock = threading.Lock()
        stop = time.time() + seconds
        memory: list[float] = []
        process = psutil.Process(server.pid)

        def client(seed: int) -> None:
            nonlocal errors
            rng = random.Random(seed)
            session = requests.Session()
            while time.time() < stop:
                body = rng.choice(bodies)
                start = time.perf_counter()
                try:
                    response = session.post(
                        base + "/_dash-update-component",
                        data=json.dumps(body),
                        headers={"Content-Type": "application/json"},
                        timeout=10,
                    )
                    ok = response.status_code == 200
                except requests.RequestException as exc:
                    ok = False
                    with lock:
                        failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1
                with lock:
                    latencies.append(time.perf_counter() - start)
                    errors += not ok

        def sample_memory() -> None:
            while time.time() < stop:
                memory.append(process.memory_info().rss / 2**20)
                time.sleep(1)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        threads.append(threading.Thread(target=sample_memory))
        started = time.time()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.time() - started
        p95 = float(np.percentile(latencies, 95)) if latencies else float("nan")
        print(
            f"\nload: {clients} clients for {elapsed:.0f} s on 127.0.0.1: {len(latencies) / elapsed:.1f} requests/s, "
            f"median {1000 * statistics.median(latencies):.0f} ms, p95 {1000 * p95:.0f} ms, {errors} errors"
            + (f" {failures}" if failures else "")
        )
        if len(memory) >= 4:
            q = len(memory) // 4
            print(
                f"server memory: {statistics.mean(memory[:q]):.0f} MiB in the first quarter, "
                f"{statistics.mean(memory[-q:]):.0f} MiB in the last (peak {max(memory):.0f} MiB)"
            )
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()
        os.unlink(log.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--skip-load", action="store_true")
    args = parser.parse_args()
    large_layer()
    cache = Path(os.environ.setdefault("DENSE_INSPECTOR_CACHE", tempfile.mkdtemp()))
    analysis, ckpt, data = load_demo(log=lambda _: None)
    callback_times(DashboardState.build(analysis, ckpt.model, data))
    if not args.skip_load:
        load_run(args.clients, min(args.seconds, 120.0))
    _ = cache


if __name__ == "__main__":
    main()
