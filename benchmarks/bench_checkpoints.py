"""Peak memory and time of ``inspector info`` and the weight-only analysis on a checkpoint larger
than 2 GB, in three layouts. Prints; asserts nothing.

    .venv/bin/python benchmarks/bench_checkpoints.py [--rows 65536] [--cols 2048] [--layers 4] [--dir /tmp]
    .venv/bin/python benchmarks/bench_checkpoints.py --shapes 4096x4096,8192x8192,11008x4096

The checkpoint is a stack of transformer MLP blocks (``layers.{i}.mlp.up_proj.weight``, ``rows x cols``
float32, plus a norm per block: not an MLP chain, so ``analyze`` does the weight-only analysis).
It is generated tensor by tensor into a temporary folder (deleted afterwards, one layout at a
time, so the disk holds one copy): a single safetensors file (header written first, then each
tensor's bytes), the same tensors as Hugging Face shards (one per block, with
``model.safetensors.index.json``), and a ``torch.save`` zip (saved from tensors that are memory
maps of the safetensors file, so the generator never holds the weights either).

Each command runs in a fresh process (``inspector.cli.main`` in ``python -c``), which prints its
own peak resident set (``VmHWM`` of ``/proc/self/status``) as it exits: every byte the process
touched, torch's and numpy's allocations included (tracemalloc would miss torch's), and file
pages it mapped (dense-inspector maps none: it reads each tensor with ``readinto``). Not the
child's ``ru_maxrss``: Linux carries the parent's peak over a fork into it, and the parent held
a tensor while writing the file. The constant (the interpreter with torch and dense-inspector
imported, measured the same way) is subtracted, and the rest is printed over the largest
tensor's bytes.

Commands: ``info``; ``read`` (what the weight-only analysis reads: every tensor through
``inspector.iter_tensors`` with its NaN/Inf count, one at a time); ``analyze`` (``inspector analyze
--out``, the whole weight-only analysis: reading plus each layer's statistics and exact spectrum).

Stages: the child wraps the weight-only analysis's reading (``iter_tensors``), exact spectrum
(``singular_values``) and alpha fit (``esd_alpha``); at each stage's start it resets the peak
(``/proc/self/clear_refs``), at its end it reads ``VmHWM``: the process's peak during that stage,
what was already resident (the interpreter, the weight) included. ``other``: everything else
(header, statistics besides the spectrum, findings, writing the output).

``--shapes 4096x4096,8192x8192,11008x4096``: one single-layer file per shape instead of the
layouts, and per layer: the peak against the bound, the stage peaks, the time of ``analyze`` and of
its spectrum, and ``np.linalg.svd(W, compute_uv=False)`` on the same float32 weight (numpy's
full SVD, LAPACK ``sgesdd``) in a fresh process of the same run, its time and peak.

Targets: ``info`` does not grow with the tensors (growth / largest ~ 0, issue 11); the
weight-only analysis peaks at most at twice the largest tensor plus 600 MiB (issue 20).
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _names(layers: int) -> list[str]:
    return [f"layers.{i}.mlp.up_proj.weight" for i in range(layers)] + [
        f"layers.{i}.norm.weight" for i in range(layers)
    ]


def _tensor(name: str, rows: int, cols: int) -> torch.Tensor:
    if name.endswith("norm.weight"):
        return torch.ones(cols)
    seed = int(name.split(".")[1])
    return torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed))


def write_safetensors(path: Path, names: list[str], rows: int, cols: int) -> None:
    """One safetensors file written tensor by tensor: the header (shapes are known up front), then the data."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name in sorted(names):
        shape = [cols] if name.endswith("norm.weight") else [rows, cols]
        nbytes = 4 * (shape[0] * (shape[1] if len(shape) > 1 else 1))
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with path.open("wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw)
        for name in sorted(names):
            fh.write(_tensor(name, rows, cols).numpy().tobytes())


def write_sharded(folder: Path, names: list[str], rows: int, cols: int, layers: int) -> Path:
    from safetensors.torch import save_file

    folder.mkdir()
    weight_map = {}
    for i in range(layers):
        shard = f"model-{i + 1:05d}-of-{layers:05d}.safetensors"
        block = [n for n in names if n.startswith(f"layers.{i}.")]
        save_file({n: _tensor(n, rows, cols) for n in block}, str(folder / shard), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(block, shard))
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": dict(sorted(weight_map.items()))})
    )
    return folder


def write_pt(path: Path, source: Path) -> None:
    """``torch.save`` of tensors that are read-only memory maps of the safetensors file ``source``."""
    from inspector.formats import read_safetensors_header

    header = read_safetensors_header(source)
    with source.open("rb") as fh:
        mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY)
    state = {}
    for name, entry in header.tensors.items():
        begin = header.data_start + entry.begin
        state[name] = torch.frombuffer(mapped, dtype=torch.float32, offset=begin, count=entry.nbytes // 4).view(
            entry.shape
        )
    torch.save(state, path)
    del state


_CHILD = """
import sys, time
import inspector.analysis, inspector.cli, inspector.inventory
import inspector.analysis.weights as weights, inspector.analysis.weights_file as weights_file

def hwm():
    return int(next(line for line in open("/proc/self/status") if line.startswith("VmHWM:")).split()[1]) * 1024

peaks, seconds, stage, since = {}, {}, ["import"], [time.perf_counter()]

def mark(name):  # the stage that ends: its peak (VmHWM, then reset to the current resident set) and time
    peaks[stage[0]] = max(peaks.get(stage[0], 0), hwm())
    seconds[stage[0]] = seconds.get(stage[0], 0.0) + time.perf_counter() - since[0]
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass  # no reset: each stage's peak is then the process's peak so far
    stage[0], since[0] = name, time.perf_counter()

def timed(name, function):
    def wrapper(*args, **kwargs):
        outer = stage[0]
        mark(name)
        try:
            return function(*args, **kwargs)
        finally:
            mark(outer)
    return wrapper

def reading(function):
    def wrapper(*args, **kwargs):
        stream = function(*args, **kwargs)
        while True:
            outer = stage[0]
            mark("read")
            item = next(stream, None)
            mark(outer)
            if item is None:
                return
            yield item
    return wrapper

weights_file.iter_tensors = reading(weights_file.iter_tensors)
weights.singular_values = timed("spectrum", weights.singular_values)
weights.esd_alpha = timed("alpha", weights.esd_alpha)
mark("other")
if sys.argv[1:2] == ["read"]:  # the weight-only analysis's reading alone: every tensor, one at a time
    status = 0
    for _, tensor in weights_file.iter_tensors(sys.argv[2]):
        inspector.inventory.count_nonfinite(tensor)
        del tensor
else:
    status = inspector.cli.main(sys.argv[1:]) if len(sys.argv) > 1 else 0
mark("end")
for name in peaks:
    print("STAGE", name, peaks[name], seconds[name], file=sys.stderr)
print("PEAK", max(peaks.values()), file=sys.stderr)
sys.exit(status)
"""

_NUMPY_SVD = """
import sys, time
import numpy as np, torch
rows, cols, seed = (int(a) for a in sys.argv[1:4])
w = torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed)).numpy()  # the file's weight
np.linalg.svd(np.ones((8, 8), dtype=w.dtype), compute_uv=False)  # warm-up
started = time.perf_counter()
np.linalg.svd(w, compute_uv=False)
print("SECONDS", time.perf_counter() - started, file=sys.stderr)
print("PEAK", int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM:")).split()[1]) * 1024, file=sys.stderr)
"""


STAGES = ("read", "spectrum", "alpha", "other")  # "other": the statistics besides the spectrum, findings, output


def _run(code: str, argv: list[str]) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", code, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, check=False
    )
    err = done.stderr.decode()
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {err.strip()[-400:]}")
    return err


def measure(argv: list[str]) -> tuple[float, float, dict[str, tuple[float, float]]]:
    """(peak resident set in bytes, wall seconds, {stage: (peak bytes, seconds)}) of ``inspector argv``
    in a fresh process (no ``argv``: the interpreter with dense-inspector imported).

    A stage's peak is the process's ``VmHWM`` at its end, reset (``clear_refs``) at its start: what
    was resident when it began (the weight, for the spectrum) plus what it added at most."""
    started = time.perf_counter()
    err = _run(_CHILD, argv)
    elapsed = time.perf_counter() - started
    stages = {}
    for line in err.splitlines():
        if line.startswith("STAGE "):
            _, name, peak, seconds = line.split()
            stages[name] = (float(peak), float(seconds))
    peak = next(line for line in err.splitlines() if line.startswith("PEAK "))
    return float(peak.split()[1]), elapsed, stages


def numpy_svd(rows: int, cols: int, seed: int) -> tuple[float, float]:
    """(peak bytes, seconds) of ``np.linalg.svd(W, compute_uv=False)`` on the float32 weight the file holds."""
    err = _run(_NUMPY_SVD, [str(rows), str(cols), str(seed)])
    found = {line.split()[0]: float(line.split()[1]) for line in err.splitlines() if line[:1].isupper()}
    return found["PEAK"], found["SECONDS"]


def _stage_columns(stages: dict[str, tuple[float, float]]) -> str:
    return " ".join(f"{stages[name][0] / 2**20:>8.0f}" if name in stages else f"{'-':>8}" for name in STAGES)


def layer_table(shapes: list[tuple[int, int]], work: Path) -> None:
    """One weight-only analysis per layer shape (a single-layer file): peak against the bound, per-stage
    peaks, time, next to numpy's full SVD of the same weight measured in the same run."""
    base, _, _ = measure([])
    print(f"constant (interpreter, torch, dense-inspector imported): {base / 2**20:.0f} MiB")
    print(
        f"{'layer':<12} {'MiB':>5} {'peak':>6} {'bound':>6} "
        + " ".join(f"{name:>8}" for name in STAGES)
        + f" {'analyze s':>10} {'spectrum s':>11} {'numpy SVD s':>12} {'numpy MiB':>10}"
    )
    for rows, cols in shapes:
        target = work / f"layer-{rows}x{cols}.safetensors"
        write_safetensors(target, _names(1), rows, cols)
        tensor = 4 * rows * cols
        peak, seconds, stages = measure(["analyze", str(target), "--out", str(work / "analysis")])
        shutil.rmtree(work / "analysis", ignore_errors=True)
        target.unlink()
        svd_peak, svd_seconds = numpy_svd(rows, cols, 0)
        bound = 2 * tensor + 600 * 2**20
        print(
            f"{f'{rows}x{cols}':<12} {tensor / 2**20:>5.0f} {peak / 2**20:>6.0f} {bound / 2**20:>6.0f} "
            f"{_stage_columns(stages)} {seconds:>10.1f} {stages.get('spectrum', (0, 0))[1]:>11.1f} "
            f"{svd_seconds:>12.1f} {svd_peak / 2**20:>10.0f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=65536)
    parser.add_argument("--cols", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--dir", default=tempfile.gettempdir())
    parser.add_argument("--formats", default="safetensors,sharded,pt")
    parser.add_argument("--commands", default="info,read,analyze")
    parser.add_argument(
        "--shapes",
        default=None,
        help="comma-separated ROWSxCOLS (e.g. 4096x4096,8192x8192,11008x4096): one single-layer file each, "
        "the weight-only analysis's peak and time per layer next to numpy's full SVD, instead of the layouts",
    )
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    if args.shapes:
        shapes = [tuple(int(x) for x in shape.lower().split("x")) for shape in args.shapes.split(",")]
        work = Path(tempfile.mkdtemp(prefix="bench-checkpoints-", dir=args.dir))
        try:
            layer_table([(r, c) for r, c in shapes], work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return
    names = _names(args.layers)
    largest = 4 * args.rows * args.cols
    total = args.layers * (largest + 4 * args.cols)
    print(
        f"checkpoint: {args.layers} x ({args.rows} x {args.cols} float32 + a norm) = "
        f"{total / 1e9:.2f} GB ({total / 2**30:.2f} GiB)"
    )
    print(f"largest tensor: {largest / 2**20:.0f} MiB")
    base, base_s, _ = measure([])
    print(f"constant (interpreter, torch, dense-inspector imported): {base / 2**20:.0f} MiB, {base_s:.1f} s")
    print(
        f"{'layout':<12} {'command':<8} {'peak MiB':>9} {'growth MiB':>11} {'growth / largest':>17} {'time s':>7}  "
        "stage peaks MiB: " + " ".join(f"{name:>8}" for name in STAGES)
    )
    work = Path(tempfile.mkdtemp(prefix="bench-checkpoints-", dir=args.dir))
    try:
        for layout in args.formats.split(","):
            started = time.perf_counter()
            if layout == "sharded":
                target = write_sharded(work / "sharded", names, args.rows, args.cols, args.layers)
            else:
                single = work / "model.safetensors"
                write_safetensors(single, names, args.rows, args.cols)
                target = single
                if layout == "pt":
                    target = work / "model.pt"
                    write_pt(target, single)
                    single.unlink()
            written = time.perf_counter() - started
            for command in args.commands.split(","):
                extra = ["--out", str(work / "analysis")] if command == "analyze" else []
                peak, seconds, stages = measure([command, str(target), *extra])
                growth = max(0.0, peak - base)
                print(
                    f"{layout:<12} {command:<8} {peak / 2**20:>9.0f} {growth / 2**20:>11.0f} "
                    f"{growth / largest:>17.2f} {seconds:>7.1f}  {'':>16} {_stage_columns(stages)}"
                )
                shutil.rmtree(work / "analysis", ignore_errors=True)
            print(f"{'':<12} (written in {written:.0f} s)")
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
