"""singular_values: each of its three CPU routes against numpy's float64 SVD on planted spectra, and the
memory each route and the whole weight-only analysis add, measured in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from inspector.analysis import spectra
from inspector.analysis.spectra import GRAM_BLOCK, singular_values
from tests.helpers import planted_weight, svd64

ROOT = Path(__file__).resolve().parents[1]


def _check(s: np.ndarray, w: torch.Tensor) -> None:
    """The documented contract: each value within 1e-4 relative of numpy's float64 SVD of the stored
    weight; values below 1e-12 of the largest within 1e-12 of the largest."""
    reference = svd64(w)
    assert s.dtype == np.float64 and s.shape == reference.shape and np.all(np.diff(s) <= 0)
    large = reference > 1e-12 * reference[0]
    np.testing.assert_allclose(s[large], reference[large], rtol=1e-4)
    assert np.all(np.abs(s[~large] - reference[~large]) <= 1e-12 * reference[0])


@pytest.fixture
def route(monkeypatch):
    """``route(w)``: ``(singular values, the route taken)``: "square" (gesdd on a float64 copy), "gram"
    (syevd on the Gram matrix, folded from float64 blocks) or "qr" (the Gram matrix, then tpqrt + gesdd)."""
    calls: list[str] = []
    for name, label in (
        ("_float64_blocks", "blocks"),
        ("_singular_values_from_qr", "qr"),
        ("_svdvals_in_place", "svd"),
    ):
        original = getattr(spectra, name)

        def spy(*args, _original=original, _label=label, **kwargs):
            calls.append(_label)
            return _original(*args, **kwargs)

        monkeypatch.setattr(spectra, name, spy)
    known = {("svd",): "square", ("blocks",): "gram", ("blocks", "qr", "blocks", "svd"): "qr"}

    def run(w: torch.Tensor) -> tuple[np.ndarray, str]:
        calls.clear()
        s = singular_values(w)
        return s, known.get(tuple(calls), repr(calls))

    return run


SQUARE_LIKE = [(700, 700), (700, 700 + GRAM_BLOCK), (700 + GRAM_BLOCK, 700)]


@pytest.mark.parametrize("shape", SQUARE_LIKE)
def test_square_and_nearly_square_layers_take_the_exact_route_and_equal_numpy(route, shape):
    w = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    s, taken = route(w)
    assert taken == "square"
    _check(s, w)
    # a Gaussian square matrix's smallest value is far below the Gram route's reach (~1e-4 of the largest)
    if shape[0] == shape[1]:
        assert s[-1] / s[0] < 1e-3


@pytest.mark.parametrize("shape", [(300, 300 + GRAM_BLOCK + 1), (1500, 300)])
def test_well_conditioned_tall_and_wide_layers_take_the_gram_route_and_equal_numpy(route, shape):
    w = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    s, taken = route(w)
    assert taken == "gram"
    _check(s, w)


@pytest.mark.parametrize("wide", [True, False])
def test_ill_conditioned_tall_layer_falls_back_to_the_exact_qr_route(route, wide):
    planted = 10.0 * np.logspace(0, -7, 200)  # seven decades: the Gram route cannot resolve the bottom
    w = planted_weight(200, 1400, planted, seed=2)
    w = w if wide else w.T.contiguous()
    s, taken = route(w)
    assert taken == "qr"
    _check(s, w)
    np.testing.assert_allclose(s[:100], planted[:100], rtol=1e-4)


@pytest.mark.parametrize("shape", [(400, 400), (300, 1400), (1400, 300)])
def test_zero_rows_and_columns_give_zeros_to_1e12_of_the_largest(shape):
    w = torch.randn(*shape, generator=torch.Generator().manual_seed(3))
    w[: shape[0] // 4] = 0.0  # pruned neurons
    w[:, : shape[1] // 5] = 0.0  # dead inputs
    rank = min(shape[0] - shape[0] // 4, shape[1] - shape[1] // 5)
    s = singular_values(w)
    _check(s, w)
    assert np.all(s[rank:] <= 1e-12 * s[0]) and s[rank - 1] > 1e-3 * s[0]


@pytest.mark.parametrize("shape", [(500, 500), (200, 1400)])
def test_low_rank_layers_have_exactly_their_rank_of_nonzero_values(shape):
    g = torch.Generator().manual_seed(4)
    w = torch.randn(shape[0], 7, generator=g) @ torch.randn(7, shape[1], generator=g)  # rank 7
    s = singular_values(w)
    _check(s, w)
    assert s[6] > 1e-3 * s[0] and np.all(s[7:] <= 1e-6 * s[0])  # float32 rounding of the product: ~1e-7


def test_transposed_views_half_precision_and_all_zero_weights():
    g = torch.Generator().manual_seed(5)
    base = torch.randn(1300, 300, generator=g)
    _check(singular_values(base.T), base.T)  # a Conv1D weight read transposed: no contiguous copy needed
    half = torch.randn(300, 1300, generator=g).bfloat16()
    _check(singular_values(half), half.float())
    double = torch.randn(300, 300, generator=g, dtype=torch.float64)
    kept = double.clone()
    _check(singular_values(double), double)
    assert torch.equal(double, kept)  # LAPACK overwrote a copy, never the caller's float64 weight
    assert np.all(singular_values(torch.zeros(40, 900)) == 0.0)
    assert singular_values(torch.zeros(0, 5)).shape == (0,)


_MEASURE = """
import json, sys
import numpy as np, torch
from inspector.analysis.spectra import singular_values

def status(key):
    return int(next(line for line in open("/proc/self/status") if line.startswith(key)).split()[1]) * 1024

def reset():
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")

out = {}
for name, rows, cols, planted in json.loads(sys.argv[1]):
    singular_values(torch.randn(rows // 8, cols // 8))  # warm-up: LAPACK's and OpenBLAS's one-time buffers
    g = torch.Generator().manual_seed(0)
    w = torch.randn(rows, cols, generator=g)
    if planted:  # ill-conditioned: the Gram route fails and the QR route runs
        w[:, : min(rows, cols) // 2] *= 1e-7
    reset()
    before = status("VmRSS:")
    singular_values(w)
    out[name] = status("VmHWM:") - before
    del w
print(json.dumps(out))
"""


def _extra_bytes(cases: list[tuple[str, int, int, bool]]) -> dict[str, int]:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pytest.skip("the peak resident set cannot be reset here (/proc/self/clear_refs)")
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, json.dumps(cases)], capture_output=True, text=True, env=env, check=True
    )
    result: dict[str, int] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_each_route_adds_at_most_one_float64_square_of_the_smaller_side_and_one_block():
    # the bound is the documented one: 8 k (k + GRAM_BLOCK) bytes, plus 8 MiB for LAPACK's O(k) workspace and
    # the allocator; the Gram route of before (the Gram matrix, eigvalsh's copy of it, then a 2k x k QR) added
    # more than twice 8 k^2
    k, slack = 1536, 8 * 2**20
    for name, rows, cols, planted in (("square", k, k, False), ("gram", k, 4 * k, False), ("qr", 4 * k, k, True)):
        added = _extra_bytes([(name, rows, cols, planted)])[name]  # a process each: nothing freed before to reuse
        assert added <= 8 * k * (k + GRAM_BLOCK) + slack, (name, added / 2**20)
        assert added >= 8 * k * k * 0.9, (name, added / 2**20)  # it did measure the float64 matrix


_ANALYZE = """
import sys
from inspector.analysis.weights_file import analyze_weights_file

def status(key):
    return int(next(line for line in open("/proc/self/status") if line.startswith(key)).split()[1]) * 1024

analyze_weights_file(sys.argv[1])  # warm-up: imports, one-time buffers, the allocator's free lists
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")
before = status("VmRSS:")
analyze_weights_file(sys.argv[2])
print(status("VmHWM:") - before)
"""


def test_weight_only_analysis_of_a_square_layer_adds_the_tensor_and_one_float64_copy(tmp_path):
    # a 3072 x 3072 float32 layer (36 MiB) in a safetensors file: read (the tensor), statistics in chunks,
    # the exact spectrum (a float64 copy: 2x the tensor), each dropped before the next layer; the warm-up
    # analysis of a 1024 x 1024 layer has already allocated the chunked statistics' temporaries once
    safetensors = pytest.importorskip("safetensors.torch")
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pytest.skip("the peak resident set cannot be reset here (/proc/self/clear_refs)")
    g = torch.Generator().manual_seed(0)
    for name, side in (("small", 1024), ("layer", 3072)):
        tensors = {"layers.0.up.weight": torch.randn(side, side, generator=g), "layers.0.norm.weight": torch.ones(side)}
        safetensors.save_file(tensors, str(tmp_path / f"{name}.safetensors"))
    tensor = 4 * 3072 * 3072
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-c", _ANALYZE, str(tmp_path / "small.safetensors"), str(tmp_path / "layer.safetensors")],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    added = int(done.stdout.strip().splitlines()[-1])
    # 3x the tensor (itself + its float64 copy) + 48 MiB (the alpha fit's grid, LAPACK's workspace, the
    # allocator): measured 121 MiB of 156; the code of before (the Gram matrix, eigvalsh's copy of it, then
    # a float64 QR and its copies) added 280 MiB
    assert added <= 3 * tensor + 48 * 2**20, added / 2**20


@pytest.mark.parametrize("ill_conditioned", [False, True])
def test_the_device_route_run_on_the_cpu_equals_numpy(ill_conditioned):
    # the torch route a GPU weight takes (the Gram matrix, else a QR of 2k x k), exercised here on the CPU
    if ill_conditioned:
        w = planted_weight(1300, 200, 10.0 * np.logspace(0, -7, 200), seed=6)
    else:
        w = torch.randn(1300, 200, generator=torch.Generator().manual_seed(6))
    _check(spectra._singular_values_on_device(w.T, spectra.SINGULAR_RTOL), w)
