"""Time and peak memory of exact spectra against numpy's full SVD; alpha against WeightWatcher. Prints; asserts nothing.

    .venv/bin/python benchmarks/bench_spectra.py [--sizes 1024x1024 4096x4096 4096x11008]
    .venv/bin/python benchmarks/bench_spectra.py --weightwatcher /tmp/ww-venv/bin/python

Spectra: for each size, a float32 weight is generated in a fresh subprocess, which reports the
time of :func:`inspector.analysis.spectra.singular_values` plus the alpha fit, the growth of its
peak resident set above the weight itself (``ru_maxrss``), and the largest relative gap to
``numpy.linalg.svd(W.astype(float64), compute_uv=False)``, run in its own subprocess on the
same weight for time and memory. Two kinds of weight: ``trained`` (a random matrix with a planted
power-law spectrum whose smallest value is 1e-3 of the largest, the Gram route) and ``gaussian``
(i.i.d. N(0, 1): a square one has ``s_min ~ s_max / (4n)``, below the Gram route's reach, so the
exact QR + SVD route runs).

Target (issue 11): every singular value to 1e-4 relative; memory within about twice the weight;
faster than numpy's SVD.

WeightWatcher (``--weightwatcher PYTHON``: a Python with ``weightwatcher`` installed; it is not a
dependency): all-MiniLM-L6-v2-sized layers (384x1536, 1536x384, 384x384) with planted heavy tails
and i.i.d. Gaussian ones, analysed by ``WeightWatcher(model).analyze()`` (its defaults) and by
:func:`inspector.analysis.weights.layer_weights`, each in a fresh subprocess: alpha, xmin, D per
layer, total time and peak memory growth.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
REPEATS = 3  # the WeightWatcher comparison keeps the best of this many runs on each side

_OURS = """
import json, resource, sys, time
import numpy as np, torch
from inspector.analysis.spectra import esd_alpha, singular_values
w = torch.from_numpy(np.load(sys.argv[1]))
singular_values(torch.randn(8, 8)), singular_values(torch.randn(8, 8) * torch.logspace(0, -9, 8))  # warm-up, both routes
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t, cpu = time.perf_counter(), time.process_time()
s = singular_values(w)
fit = esd_alpha(s)
seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
np.save(sys.argv[2], s)
print(json.dumps({"seconds": seconds, "cpu": cpu, "extra_mib": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024,
                  "alpha": fit.alpha if fit else None}))
"""

_NUMPY = """
import json, resource, sys, time
import numpy as np
w = np.load(sys.argv[1])
np.linalg.svd(np.random.randn(8, 8), compute_uv=False)  # warm-up
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t, cpu = time.perf_counter(), time.process_time()
s = np.linalg.svd(w.astype(np.float64), compute_uv=False)
seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
np.save(sys.argv[2], s)
print(json.dumps({"seconds": seconds, "cpu": cpu, "extra_mib": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024}))
"""

_OURS_LAYERS = """
import json, resource, sys, time
import numpy as np, torch
from inspector.analysis.spectra import esd_alpha, singular_values
from inspector.analysis.weights import layer_weights
weights = dict(np.load(sys.argv[1]))
layer_weights("warm-up", torch.randn(8, 8)), singular_values(torch.randn(8, 8) * torch.logspace(0, -9, 8))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
seconds = cpu = float("inf")
for _ in range(int(sys.argv[2])):
    out, t, c = {}, time.perf_counter(), time.process_time()
    for name, w in weights.items():
        fit = esd_alpha(singular_values(torch.from_numpy(w)))
        out[name] = {"alpha": fit.alpha, "xmin": fit.xmin, "D": fit.ks_distance, "tail": fit.tail_size, "short": fit.short_tail}
    seconds, cpu = min(seconds, time.perf_counter() - t), min(cpu, time.process_time() - c)
extra = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
t = time.perf_counter()
for name, w in weights.items():
    layer_weights(name, torch.from_numpy(w))
print(json.dumps({"seconds": seconds, "cpu": cpu, "extra_mib": extra, "layers": out, "full_seconds": time.perf_counter() - t}))
"""

_WEIGHTWATCHER = """
import json, logging, resource, sys, time, warnings
warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)
import numpy as np, torch, weightwatcher
weights = dict(np.load(sys.argv[1]))
layers = []
for name, w in weights.items():
    lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(w))
    layers.append(lin)
model = torch.nn.Sequential(*layers)
warm = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 64))
weightwatcher.WeightWatcher(model=warm).analyze(plot=False)  # warm-up
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
seconds = cpu = float("inf")
for _ in range(int(sys.argv[2])):
    t, c = time.perf_counter(), time.process_time()
    details = weightwatcher.WeightWatcher(model=model).analyze(plot=False)
    seconds, cpu = min(seconds, time.perf_counter() - t), min(cpu, time.process_time() - c)
out = {}
for name, (_, row) in zip(weights, details.sort_values("layer_id").iterrows()):
    out[name] = {"alpha": float(row["alpha"]), "xmin": float(row["xmin"]), "D": float(row["D"]), "tail": int(row["num_pl_spikes"])}
print(json.dumps({"seconds": seconds, "cpu": cpu,
                  "extra_mib": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024,
                  "layers": out, "version": weightwatcher.__version__}))
"""


def planted(m: int, n: int, spectrum: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``U diag(spectrum) V^T`` ``(m, n)`` float32, ``U``, ``V`` with orthonormal columns from Gaussian QR."""
    k = min(m, n)
    u, _ = np.linalg.qr(rng.standard_normal((m, k)))
    v, _ = np.linalg.qr(rng.standard_normal((n, k)))
    return ((u * spectrum) @ v.T).astype(np.float32)


def trained_looking(m: int, n: int, alpha: float, rng: np.random.Generator) -> np.ndarray:
    """Eigenvalues ``s^2`` from a Pareto law of exponent ``alpha``, clipped to 1e6 of the smallest (s to 1e-3)."""
    k = min(m, n)
    eigen = np.minimum((1.0 - rng.random(k)) ** (-1.0 / (alpha - 1.0)), 1e6)
    return planted(m, n, np.sqrt(np.sort(eigen)[::-1]) / np.sqrt(k), rng)


def tail_of_nine(rng: np.random.Generator) -> np.ndarray:
    """384 x 384: a Marchenko-Pastur bulk whose 9 largest eigenvalues are replaced by 9 at the quantiles of a steep
    power law, so the KS-minimal tail is 9 eigenvalues (as all-MiniLM-L6-v2's encoder.layer.4.attention.self.value)."""
    bulk = np.linalg.svd(rng.standard_normal((384, 384)) / np.sqrt(384), compute_uv=False) ** 2
    spikes = bulk.max() * 1.5 * (1 - np.arange(9) / 9) ** (-1 / (rng.uniform(3, 9) - 1))
    eigen = np.sort(np.concatenate([np.sort(bulk)[:-9], spikes]))[::-1]
    return planted(384, 384, np.sqrt(eigen), rng)


def _run(python: str, script: str, *args: str) -> dict:
    done = subprocess.run([python, "-c", script, *args], capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_sizes(sizes: list[str], kinds: list[str]) -> None:
    print("time: wall / CPU seconds (on a shared machine CPU seconds are the steadier figure)")
    print(
        f"{'size':>11} {'kind':>8} {'ours s':>11} {'ours MiB':>8} {'numpy s':>11} {'numpy MiB':>9} "
        f"{'weight MiB':>10} {'max rel err':>11} {'s_min/s_max':>11}"
    )
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            m, n = (int(v) for v in size.split("x"))
            for kind in kinds:
                w = trained_looking(m, n, 3.0, rng) if kind == "trained" else rng.standard_normal((m, n), np.float32)
                path, ours_s, ref_s = f"{tmp}/w.npy", f"{tmp}/ours.npy", f"{tmp}/ref.npy"
                np.save(path, w)
                ours = _run(sys.executable, _OURS, path, ours_s)
                ref = _run(sys.executable, _NUMPY, path, ref_s)
                s, r = np.load(ours_s), np.load(ref_s)
                err = float(np.max(np.abs(s - r) / np.maximum(r, 1e-12 * r[0])))
                print(
                    f"{size:>11} {kind:>8} {ours['seconds']:5.1f}/{ours['cpu']:5.1f} {ours['extra_mib']:8.0f} "
                    f"{ref['seconds']:5.1f}/{ref['cpu']:5.1f} "
                    f"{ref['extra_mib']:9.0f} {w.nbytes / 2**20:10.0f} {err:11.1e} {r[-1] / r[0]:11.1e}",
                    flush=True,
                )


def bench_weightwatcher(python: str) -> None:
    rng = np.random.default_rng(1)
    layers = {}
    for shape in [(384, 1536), (1536, 384), (384, 384)]:
        tag = f"{shape[0]}x{shape[1]}"
        for alpha in (2.5, 4.0):
            layers[f"{tag} planted alpha {alpha}"] = trained_looking(*shape, alpha, rng)
        # heavy-tailed entries (Student t, 3 degrees of freedom), as Martin & Mahoney's trained-like random matrices
        layers[f"{tag} student-t(3)"] = (rng.standard_t(3, shape) / np.sqrt(shape[1])).astype(np.float32)
        layers[f"{tag} gaussian"] = (rng.standard_normal(shape) / np.sqrt(shape[1])).astype(np.float32)
    layers["384x384 KS-minimal tail of 9"] = tail_of_nine(rng)
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/layers.npz"
        np.savez(path, **layers)  # type: ignore[arg-type]  # numpy's stub types **kwds as allow_pickle
        ours = _run(sys.executable, _OURS_LAYERS, path, str(REPEATS))
        theirs = _run(python, _WEIGHTWATCHER, path, str(REPEATS))
    print(f"\nWeightWatcher {theirs['version']} (analyze(), defaults) vs ours, per layer")
    print(
        f"{'layer':>32} {'alpha ours':>10} {'alpha WW':>8} {'|diff|':>7} {'xmin ours':>10} {'xmin WW':>10} "
        f"{'D ours':>7} {'D WW':>7} {'tail':>5} {'tail WW':>7}"
    )
    worst = 0.0
    for name in layers:
        a, b = ours["layers"][name], theirs["layers"][name]
        print(
            f"{name:>32} {a['alpha']:10.4f} {b['alpha']:8.4f} {abs(a['alpha'] - b['alpha']):7.1e} {a['xmin']:10.4g} "
            f"{b['xmin']:10.4g} {a['D']:7.4f} {b['D']:7.4f} {a['tail']:5d} {b['tail']:7d}"
            + ("  (short tail: flagged)" if a["short"] else "")
        )
        worst = max(worst, abs(a["alpha"] - b["alpha"]) / abs(b["alpha"]))
    print(f"largest relative alpha difference: {worst:.1e}")
    print(
        f"all {len(layers)} layers, spectra and alpha, best of {REPEATS} (wall / CPU seconds, peak memory growth): "
        f"ours {ours['seconds']:.2f} / {ours['cpu']:.2f} s, {ours['extra_mib']:.0f} MiB; WeightWatcher analyze() "
        f"{theirs['seconds']:.2f} / {theirs['cpu']:.2f} s, {theirs['extra_mib']:.0f} MiB (each in a fresh process, after a "
        f"warm-up); ours with every other weight statistic (layer_weights): {ours['full_seconds']:.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="*", default=["1024x1024", "4096x4096"])
    parser.add_argument("--kinds", nargs="*", default=["trained", "gaussian"], choices=["trained", "gaussian"])
    parser.add_argument("--weightwatcher", metavar="PYTHON", help="a Python with weightwatcher installed")
    args = parser.parse_args()
    if args.sizes:
        bench_sizes(args.sizes, args.kinds)
    if args.weightwatcher:
        bench_weightwatcher(args.weightwatcher)


if __name__ == "__main__":
    main()
