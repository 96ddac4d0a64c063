"""Peak memory and time of ``inspector info`` and the weight-only analysis on a checkpoint larger
than 2 GB, in three layouts. Prints; asserts nothing.

    .venv/bin/python benchmarks/bench_checkpoints.py [--rows 65536] [--cols 2048] [--layers 4] [--dir /tmp]

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

Target (issue 11): ``info`` does not grow with the tensors (growth / largest ~ 0); the
weight-only analysis peaks at about twice the largest tensor plus a constant.
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


def _names(layers: int) -> list[tuple[str, tuple[int, ...]]]:
    return [(f"layers.{i}.mlp.up_proj.weight", ()) for i in range(layers)] + [
        (f"layers.{i}.norm.weight", ()) for i in range(layers)
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
import sys
import inspector.analysis, inspector.cli, inspector.inventory
if sys.argv[1:2] == ["read"]:  # the weight-only analysis's reading alone: every tensor, one at a time
    status = 0
    for _, tensor in inspector.inventory.iter_tensors(sys.argv[2]):
        inspector.inventory.count_nonfinite(tensor)
        del tensor
else:
    status = inspector.cli.main(sys.argv[1:]) if len(sys.argv) > 1 else 0
peak = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print("PEAK", int(peak.split()[1]) * 1024, file=sys.stderr)
sys.exit(status)
"""


def measure(argv: list[str]) -> tuple[float, float]:
    """(peak resident set in bytes, wall seconds) of ``inspector argv`` in a fresh process
    (no ``argv``: the interpreter with dense-inspector imported)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, check=False
    )
    elapsed = time.perf_counter() - started
    err = done.stderr.decode()
    if done.returncode != 0:
        raise SystemExit(f"inspector {' '.join(argv)} failed: {err.strip()[-400:]}")
    peak = next(line for line in err.splitlines() if line.startswith("PEAK "))
    return float(peak.split()[1]), elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=65536)
    parser.add_argument("--cols", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--dir", default=tempfile.gettempdir())
    parser.add_argument("--formats", default="safetensors,sharded,pt")
    parser.add_argument("--commands", default="info,read,analyze")
    args = parser.parse_args()
    names = [n for n, _ in _names(args.layers)]
    largest = 4 * args.rows * args.cols
    total = args.layers * (largest + 4 * args.cols)
    print(
        f"checkpoint: {args.layers} x ({args.rows} x {args.cols} float32 + a norm) = "
        f"{total / 1e9:.2f} GB ({total / 2**30:.2f} GiB)"
    )
    print(f"largest tensor: {largest / 2**20:.0f} MiB ({torch.__version__}, {os.cpu_count()} CPUs)")
    base, base_s = measure([])
    print(f"constant (interpreter, torch, dense-inspector imported): {base / 2**20:.0f} MiB, {base_s:.1f} s")
    print(f"{'layout':<12} {'command':<8} {'peak MiB':>9} {'growth MiB':>11} {'growth / largest':>17} {'time s':>7}")
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
                peak, seconds = measure([command, str(target), *extra])
                growth = max(0.0, peak - base)
                print(
                    f"{layout:<12} {command:<8} {peak / 2**20:>9.0f} {growth / 2**20:>11.0f} "
                    f"{growth / largest:>17.2f} {seconds:>7.1f}"
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
