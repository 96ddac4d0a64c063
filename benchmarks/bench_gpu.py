"""GPU benchmarks for the analysis core. Prints ratios and rates; asserts nothing.

    .venv/bin/python benchmarks/bench_gpu.py [--quick]

On a CUDA device, for an MLP of width 4096 (three hidden layers, ReLU) and for a transformer
MLP block 4096 -> 11008 -> 4096 (SiLU):

* the activation census vs a bare ``torch.inference_mode`` forward over the same rows;
* Integrated Gradients over a batch vs ``n_steps`` x (forward + backward) on that batch;
* weight statistics (:func:`inspector.analysis.weights.weight_report`) in GB/s of weights read,
  against the card's memory bandwidth: from a table of known cards, else measured with a
  device-to-device copy (which reads and writes every byte: 2 x bytes / time).

Without a CUDA device it prints "no CUDA device: skipped" and exits 0.
Each timing is the best of several repeats, between ``torch.cuda.synchronize()`` calls.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import torch
from torch import nn

from inspector.analysis.activations import activation_census
from inspector.analysis.importance import attribute
from inspector.analysis.inputs import Batch
from inspector.analysis.weights import weight_report
from inspector.models import MLPConfig, build_mlp

# Peak memory bandwidth in GB/s (vendor data sheets), matched against torch.cuda.get_device_name().
KNOWN_BANDWIDTH_GBS = (
    ("H200", 4800.0),
    ("H100 SXM", 3350.0),
    ("H100 80GB HBM3", 3350.0),
    ("H100 PCIe", 2000.0),
    ("H100", 3350.0),
    ("A100-SXM4-80GB", 2039.0),
    ("A100 80GB PCIe", 1935.0),
    ("A100", 1555.0),
    ("L40S", 864.0),
    ("L4", 300.0),
    ("A10G", 600.0),
    ("T4", 320.0),
    ("V100", 900.0),
)


def best(fn: Callable[[], object], repeats: int = 5) -> float:
    fn()  # warm-up (kernels, allocator)
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def measured_bandwidth(device: torch.device, n_bytes: int = 1 << 30) -> float:
    """GB/s of a device-to-device copy of ``n_bytes`` (each byte read once and written once)."""
    source = torch.empty(n_bytes // 4, dtype=torch.float32, device=device)
    target = torch.empty_like(source)
    seconds = best(lambda: target.copy_(source), 10)
    # the closure holds both buffers until this frame returns; they are freed with it
    return 2 * n_bytes / seconds / 1e9


def card_bandwidth(device: torch.device) -> tuple[float, str]:
    name = torch.cuda.get_device_name(device)
    for known, gbs in KNOWN_BANDWIDTH_GBS:
        if known.lower() in name.lower():
            return gbs, "data sheet"
    return measured_bandwidth(device), "measured copy"


def mlp_4096() -> nn.Module:
    return build_mlp(MLPConfig(4096, (4096, 4096, 4096), 10))


def mlp_block() -> nn.Module:
    return nn.Sequential(nn.Linear(4096, 11008), nn.SiLU(), nn.Linear(11008, 4096))


def census_ratio(model: nn.Module, n: int, batch: int, device: torch.device) -> tuple[float, float]:
    X = torch.randn(n, 4096, device=device)

    def bare() -> None:
        with torch.inference_mode():
            for s in range(0, n, batch):
                model(X[s : s + batch])

    t_bare = best(bare)
    t_census = best(lambda: activation_census(model, X, batch_size=batch, keep_samples=0, device=device))
    return t_bare, t_census


def ig_ratio(model: nn.Module, batch: int, n_steps: int, n_out: int, device: torch.device) -> tuple[float, float]:
    X = torch.randn(batch, 4096, device=device)
    target = torch.randint(0, n_out, (batch,), device=device)

    def forward_backward() -> None:
        x = X.clone().requires_grad_()
        out = model(x).gather(1, target[:, None]).sum()
        torch.autograd.grad(out, x)

    t_fb = best(forward_backward, 10)
    t_ig = best(lambda: attribute(model, "integrated_gradients", Batch(X, target), n_steps=n_steps), 3)
    return t_fb * n_steps, t_ig


def weight_rate(model: nn.Module) -> tuple[float, float]:
    """(GB of linear weights, GB/s that weight_report reads them at)."""
    n_bytes = sum(m.weight.numel() * m.weight.element_size() for m in model.modules() if isinstance(m, nn.Linear))
    seconds = best(lambda: weight_report(model), 2)
    return n_bytes / 1e9, n_bytes / seconds / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rows, for a smoke run")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: skipped")
        return
    device = torch.device("cuda")
    torch.manual_seed(0)
    bandwidth, how = card_bandwidth(device)
    print(
        f"torch {torch.__version__}, {torch.cuda.get_device_name(device)}, memory bandwidth {bandwidth:.0f} GB/s ({how})"
    )
    n = 16384 if args.quick else 131072
    for name, make, n_out in (
        ("MLP 4096 x3 (ReLU)", mlp_4096, 10),
        ("MLP block 4096-11008-4096 (SiLU)", mlp_block, 4096),
    ):
        model = make().to(device).eval()
        print(f"\n{name}")
        t_bare, t_census = census_ratio(model, n, 4096, device)
        print(
            f"  census vs bare forward ({n} rows, batch 4096): {t_census:.4f} s vs {t_bare:.4f} s"
            f" -> ratio {t_census / t_bare:.2f}  (target <= 1.10)"
        )
        ref, t_ig = ig_ratio(model, 256, 50, n_out, device)
        print(f"  IG vs 50 x (forward + backward), batch 256: {t_ig:.4f} s vs {ref:.4f} s -> ratio {t_ig / ref:.2f}")
        gb, rate = weight_rate(model)
        print(
            f"  weight statistics: {gb:.2f} GB of weights at {rate:.2f} GB/s"
            f" ({100 * rate / bandwidth:.2f}% of the card's bandwidth)"
        )
        del model
        torch.cuda.empty_cache()


if __name__ == "__main__":
    sys.exit(main())
