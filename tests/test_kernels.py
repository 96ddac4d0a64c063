"""The census's compiled counting loop (inspector/core/kernels.py) against first principles and against the
PyTorch operations it replaces on the CPU: the same counts to the unit, the same chunk maxima (NaN
included), sums to float32 rounding; and the census falls back to the operations when it cannot compile."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from inspector.analysis.activations import activation_census
from inspector.core import kernels
from inspector.core.counting import SATURATION, fire_rule
from tests.models import padded_batches, tiny_bert

CHUNK = 16


@pytest.fixture(autouse=True, scope="module")
def _every_call_compiled():
    """The loops take calls of any size here (the census leaves calls below kernels.MIN_VALUES to the
    operations, so that a small analysis does not import numba)."""
    size = kernels.MIN_VALUES
    kernels.MIN_VALUES = 0
    yield
    kernels.MIN_VALUES = size


# values at and beside every threshold a rule compares with, and the IEEE specials
SPECIAL = [0.0, -0.0, 0.01, -0.01, 0.00999, 0.0100001, 0.99, -0.99, 0.49, 0.51, 0.5, 1.0, -1.0, 1e-45, -1e-45]
SPECIAL += [float("nan"), float("inf"), float("-inf"), 1.0e30, -1.0e30]  # (sums of float32 maxima would overflow)


def _reference(source, out, real, rule, limit, near, chunk=CHUNK):
    """What the census counts, written out: float32 comparisons per row, sums of the real rows in float64,
    and each whole chunk's maximum (NaN if the chunk holds one)."""
    rows = real if real is not None else torch.ones(out.shape[0], dtype=torch.bool)
    src, o = source[rows], out[rows]
    limit32 = torch.tensor(limit, dtype=torch.float32)
    fired = {
        kernels.POSITIVE: src > 0,
        kernels.BEYOND: src.abs() > limit32,
        kernels.OFF_HALF: (src - torch.tensor(0.5)).abs() > limit32,
    }[rule]
    zero = (
        o.abs() < torch.tensor(near, dtype=torch.float32) if near is not None else torch.zeros_like(o, dtype=torch.bool)
    )
    whole = out.shape[0] // chunk * chunk
    peaks = out[:whole].view(-1, chunk, out.shape[1]).amax(1)
    return fired.sum(0).double(), zero.sum(0).double(), o.double().sum(0), peaks


def _compare(source, out, real, rule, limit, near, chunk=CHUNK):
    totals = torch.zeros(3, out.shape[1], dtype=torch.float64)
    peaks = torch.full((out.shape[0] // chunk, out.shape[1]), 7.0)
    assert kernels.site_counts(source, out, real, rule, limit, near, totals, peaks, chunk)
    fired, zero, total, expected_peaks = _reference(source, out, real, rule, limit, near, chunk)
    assert torch.equal(totals[0], fired)
    assert torch.equal(totals[1], zero)
    # summed in float32 in another order: within float32 rounding of the column's absolute sum
    size = out[real if real is not None else slice(None)].double().abs().sum(0)
    finite = torch.isfinite(total)
    assert torch.equal(total[~finite].isnan(), totals[2][~finite].isnan())
    assert torch.equal(total[~finite].nan_to_num(0), totals[2][~finite].nan_to_num(0))  # +-inf alike
    assert bool(((totals[2] - total)[finite].abs() <= 1e-6 * size[finite] + 1e-30).all())
    assert np.array_equal(peaks.numpy(), expected_peaks.numpy(), equal_nan=True)


RULES = [(kernels.POSITIVE, 0.0, None), (kernels.POSITIVE, 0.0, 0.01)]
RULES += [(*fire_rule("tanh"), None), (*fire_rule("sigmoid"), None)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.integers(1, 70),
    width=st.integers(1, 9),
    rule=st.sampled_from(RULES),
    masked=st.booleans(),
    chunk=st.sampled_from([CHUNK, 2, 3, 4, 6]),  # the loop takes rows four at a time where a chunk allows
    data=st.data(),
)
def test_counts_and_chunk_maxima_equal_the_comparisons_on_any_values(rows, width, rule, masked, chunk, data):
    value = st.one_of(st.sampled_from(SPECIAL), st.floats(-2, 2, width=32))
    cells = data.draw(st.lists(value, min_size=2 * rows * width, max_size=2 * rows * width))
    both = torch.tensor(cells, dtype=torch.float32).view(2, rows, width)
    real = torch.tensor(data.draw(st.lists(st.booleans(), min_size=rows, max_size=rows))) if masked else None
    fire_rule, limit, near = rule
    source = both[0] if fire_rule == kernels.POSITIVE else both[1]
    _compare(source.contiguous(), both[1].contiguous(), real, fire_rule, limit, near, chunk)


def test_many_rows_fold_into_float64_and_stay_exact():
    # more rows than one float32 block (kernels.FOLD_ROWS): counts exact, the sum as exact as float32 blocks
    gen = torch.Generator().manual_seed(0)
    pre = torch.randn(5000, 33, generator=gen)
    out = torch.nn.functional.gelu(pre)
    _compare(pre, out, None, kernels.POSITIVE, 0.0, 0.01)
    real = torch.rand(5000, generator=gen) > 0.3
    _compare(pre, out, real, kernels.POSITIVE, 0.0, 0.01)


def test_the_thresholds_are_the_float32_ones_the_operations_use():
    # 0.99 and 0.49 are not float32 numbers: a value at float32(0.99) is not beyond it, the next one up is
    at = float(np.float32(SATURATION))
    above = float(np.nextafter(np.float32(SATURATION), np.float32(2)))
    out = torch.tensor([[at], [above], [-above]], dtype=torch.float32)
    totals = torch.zeros(3, 1, dtype=torch.float64)
    assert kernels.site_counts(out, out, None, *fire_rule("tanh"), None, totals, None, CHUNK)
    assert totals[0].item() == 2.0


def test_non_float32_or_strided_or_small_tensors_are_left_to_the_operations(monkeypatch):
    x = torch.randn(32, 4)
    totals = torch.zeros(3, 4, dtype=torch.float64)
    assert not kernels.site_counts(x.double(), x.double(), None, kernels.POSITIVE, 0.0, None, totals, None, CHUNK)
    assert not kernels.site_counts(x.T, x.T, None, kernels.POSITIVE, 0.0, None, totals, None, CHUNK)
    monkeypatch.setattr(kernels, "MIN_VALUES", 129)
    assert not kernels.site_counts(x, x, None, kernels.POSITIVE, 0.0, None, totals, None, CHUNK)
    assert not totals.any()


class Kinds(nn.Module):
    """Five dense sites, one of each rule: ReLU, LeakyReLU, GELU, tanh, sigmoid."""

    def __init__(self) -> None:
        super().__init__()
        self.relu, self.leaky = nn.Linear(6, 40), nn.Linear(40, 40)
        self.gelu, self.tanh, self.sigmoid = nn.Linear(40, 40), nn.Linear(40, 40), nn.Linear(40, 40)
        self.head = nn.Linear(40, 3)
        with torch.no_grad():  # large enough to saturate often
            self.tanh.weight.mul_(40)
            self.sigmoid.weight.mul_(60)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.relu(x))
        h = nn.functional.leaky_relu(self.leaky(h))
        h = nn.functional.gelu(self.gelu(h))
        h = torch.tanh(self.tanh(h))
        return self.head(torch.sigmoid(self.sigmoid(h)))


def _fields(census):
    return [
        (c.layer, c.fire_rate, c.dead_mask, c.zero_rate, c.saturation_rate, c.histogram_counts, c.projection)
        for c in census
    ]


def _same(a, b):
    assert len(a) == len(b)
    for left, right in zip(a, b):
        for x, y in zip(_fields([left])[0], _fields([right])[0]):
            assert (x is None and y is None) or np.array_equal(np.asarray(x), np.asarray(y)), left.layer
        np.testing.assert_allclose(left.mean_activation, right.mean_activation, rtol=1e-6, atol=1e-7)
        if left.top_examples is not None:
            assert np.array_equal(left.top_examples.values, right.top_examples.values)
            assert np.array_equal(left.top_examples.samples, right.top_examples.samples)
            assert np.array_equal(left.top_examples.positions, right.top_examples.positions)


@pytest.mark.parametrize("smallest", [0, 4000])  # 4000: the last batch (88 x 40 values) by the operations
def test_a_census_by_the_loop_equals_one_by_the_operations(monkeypatch, smallest):
    torch.manual_seed(0)
    model, X = Kinds(), torch.randn(600, 6)
    monkeypatch.setattr(kernels, "MIN_VALUES", smallest)
    compiled = activation_census(model, X, batch_size=128, top_k=5)
    assert [c.activation for c in compiled] == ["relu", "leaky_relu", "gelu", "tanh", "sigmoid"]
    assert compiled[3].saturation_rate.mean() > 0.05 and compiled[4].saturation_rate.mean() > 0.05
    monkeypatch.setattr(kernels, "ENABLED", False)
    _same(compiled, activation_census(model, X, batch_size=128, top_k=5))


def test_a_padded_token_census_by_the_loop_equals_one_by_the_operations(monkeypatch):
    model = tiny_bert(intermediate_size=40)
    batches = padded_batches(n_batches=4, batch_size=6, width=20, vocab_size=50)
    compiled = activation_census(model, batches, top_k=4)
    monkeypatch.setattr(kernels, "ENABLED", False)
    _same(compiled, activation_census(model, batches, top_k=4))


@pytest.mark.parametrize("failing", ["site_counts", "top_update", "shifted_rmatvec"])
def test_a_loop_that_cannot_compile_warns_once_and_the_operations_count(monkeypatch, failing):
    from inspector.analysis import activations

    torch.manual_seed(0)
    model, X = Kinds(), torch.randn(300, 6)
    kept = torch.randn(400, 300) + torch.linspace(0, 3, 300)  # wider than the exact side: the products
    expected = activation_census(model, X, batch_size=100, top_k=5)
    expected_scores, expected_ratio = activations._pca_2d(kept)

    def broken(*arguments):
        raise RuntimeError("no LLVM here")

    loops = dict(kernels._loops() or {})
    loops[failing] = broken
    monkeypatch.setattr(kernels, "_failed", [])
    monkeypatch.setattr(kernels, "_loops", lambda: loops)
    with pytest.warns(RuntimeWarning, match="numba could not compile its counting loops .*no LLVM here"):
        fallen_back = activation_census(model, X, batch_size=100, top_k=5)
        scores, ratio = activations._pca_2d(kept)
    _same(expected, fallen_back)
    np.testing.assert_allclose(ratio, expected_ratio, rtol=1e-9)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-5, atol=1e-5 * np.abs(expected_scores).max())
    assert not kernels.usable(X)  # said once; the operations count from then on


def _rule_reference(values, rule, limit):
    """Where the Monitor's rule holds, by float32 comparisons written out."""
    limit32 = torch.tensor(limit, dtype=torch.float32)
    return {
        kernels.POSITIVE: lambda: values > limit32,
        kernels.BEYOND: lambda: values.abs() > limit32,
        kernels.OFF_HALF: lambda: (values - torch.tensor(0.5)).abs() > limit32,
        kernels.NEAR_ZERO: lambda: values.abs() < limit32,
    }[rule]()


MONITOR_RULES = [(kernels.POSITIVE, 0.0), (kernels.NEAR_ZERO, 0.01), fire_rule("tanh"), fire_rule("sigmoid")]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batch=st.integers(1, 6),
    positions=st.integers(1, 7),
    width=st.integers(1, 9),
    rule=st.sampled_from(MONITOR_RULES),
    masked=st.booleans(),
    data=st.data(),
)
def test_the_monitor_s_compiled_count_equals_the_comparisons_on_any_values(batch, positions, width, rule, masked, data):
    # (batch, positions, m) values of every kind, every row or the real ones (gathered four at a time, the
    # rest one by one: any count of real rows), added to what the sums already hold
    value = st.one_of(st.sampled_from(SPECIAL), st.floats(-2, 2, width=32))
    rows = batch * positions
    cells = data.draw(st.lists(value, min_size=rows * width, max_size=rows * width))
    values = torch.tensor(cells, dtype=torch.float32).view(batch, positions, width)
    real = torch.tensor(data.draw(st.lists(st.booleans(), min_size=rows, max_size=rows))) if masked else None
    counts = torch.full((width,), 3.0)
    count = kernels.row_counter(counts, *rule)
    assert count is not None
    counted = count(values, real)
    keep = real if real is not None else torch.ones(rows, dtype=torch.bool)
    assert counted == int(keep.sum())
    expected = _rule_reference(values.view(rows, width)[keep], *rule).sum(0)
    assert torch.equal(counts, 3.0 + expected.float())


def test_the_monitor_s_compiled_count_copies_strided_values_and_refuses_the_wrong_layout():
    values = torch.randn(9, 5)
    counts = torch.zeros(9)
    count = kernels.row_counter(counts, kernels.POSITIVE, 0.0)
    assert count is not None
    assert count(values.T) == 5  # a transposed view: counted as its values, not its memory
    assert torch.equal(counts, (values.T > 0).sum(0).float())
    negated = torch._neg_view(values.T.contiguous())  # contiguous, its memory holding the negatives
    before = counts.clone()
    assert count(negated) == 5
    assert torch.equal(counts - before, (-values.T > 0).sum(0).float())
    for wrong in (values.T.double(), torch.randn(5, 8), values.T.half(), torch.tensor(1.0)):
        with pytest.raises(ValueError, match="float32 CPU values of width 9"):
            count(wrong)
    with pytest.raises(ValueError, match="5 bools"):
        count(values.T.contiguous(), torch.ones(4, dtype=torch.bool))
    assert kernels.row_counter(torch.zeros(9, dtype=torch.float64), kernels.POSITIVE, 0.0) is None
    assert kernels.row_counter(torch.zeros(2, 9)[:, 0], kernels.POSITIVE, 0.0) is None


def test_the_monitor_s_count_is_off_with_the_loops(monkeypatch):
    monkeypatch.setattr(kernels, "ENABLED", False)
    assert kernels.row_counter(torch.zeros(4), kernels.POSITIVE, 0.0) is None


def test_the_environment_variable_switches_the_loop_off():
    code = "import inspector.core.kernels as k; print(k.ENABLED)"
    environment = dict(os.environ, DENSE_INSPECTOR_KERNELS="torch")
    done = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def _top_reference(calls, reals, k):
    """Each column's top k of every real row of every call that is a number above -inf: descending, equal
    values by global row (the first seen first); values ``(k, m)`` (-inf where fewer) and global rows."""
    every = torch.cat(calls)
    real = torch.cat([r if r is not None else torch.ones(len(c), dtype=torch.bool) for c, r in zip(calls, reals)])
    width = every.shape[1]
    values = torch.full((k, width), float("-inf"))
    rows = torch.full((k, width), -1, dtype=torch.int64)
    for j in range(width):
        column = every[:, j]
        ok = real & ~torch.isnan(column) & (column > float("-inf"))
        index = torch.nonzero(ok).reshape(-1)
        order = torch.sort(-column[index], stable=True).indices[:k]
        values[: len(order), j] = column[index[order]]
        rows[: len(order), j] = index[order]
    return values, rows


def _top_by_loop(calls, reals, k):
    width = calls[0].shape[1]
    values = torch.full((width, k), float("-inf"))
    slot = torch.arange(k)[None, :].expand(width, k).contiguous()
    entered = torch.empty(k, width, dtype=torch.int64)
    stored = torch.full((k, width), -1, dtype=torch.int64)  # the global row held in each (slot, neuron)
    offset = 0
    for flat, real in zip(calls, reals):
        whole = flat.shape[0] // CHUNK * CHUNK
        peaks = flat[:whole].view(-1, CHUNK, width).amax(1)  # NaN where the chunk holds one, as the counts give
        assert kernels.top_update(flat, real, peaks, values, slot, entered, CHUNK)
        stored = torch.where(entered >= 0, entered + offset, stored)
        offset += flat.shape[0]
    ranked, ranked_slot = values.T, slot.T
    return ranked, torch.where(ranked > float("-inf"), stored.gather(0, ranked_slot), torch.full_like(ranked_slot, -1))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sizes=st.lists(st.integers(1, 300), min_size=1, max_size=3),
    width=st.integers(1, 5),
    k=st.integers(1, 6),
    masked=st.booleans(),
    ties=st.booleans(),
    data=st.data(),
)
def test_the_compiled_top_k_is_the_top_k_of_every_row_ties_by_global_order(sizes, width, k, masked, ties, data):
    # few distinct values (ties everywhere, -0.0 beside 0.0) or any, with NaN and infinities; calls of any size
    value = st.sampled_from([0.0, -0.0, 1.0, 2.0, -1.0, float("nan"), float("-inf"), float("inf")]) if ties else None
    calls, reals = [], []
    for rows in sizes:
        seed = data.draw(st.integers(0, 2**31 - 1))
        flat = torch.randn(rows, width, generator=torch.Generator().manual_seed(seed))
        if ties:
            flat = torch.tensor(data.draw(st.lists(value, min_size=rows * width, max_size=rows * width))).view(
                rows, width
            )
        else:
            for _ in range(data.draw(st.integers(0, 3))):
                flat[data.draw(st.integers(0, rows - 1)), data.draw(st.integers(0, width - 1))] = float("nan")
        calls.append(flat.float().contiguous())
        reals.append(torch.rand(rows, generator=torch.Generator().manual_seed(seed)) > 0.3 if masked else None)
    got_values, got_rows = _top_by_loop(calls, reals, k)
    expected_values, expected_rows = _top_reference(calls, reals, k)
    assert torch.equal(got_values, expected_values)
    assert torch.equal(got_rows, expected_rows)


def test_a_first_call_reads_only_the_chunks_that_can_hold_a_top_value():
    # 64 chunks, k = 3: the bound is the 3rd largest chunk maximum; every top value is found all the same
    flat = torch.randn(64 * CHUNK + 5, 7, generator=torch.Generator().manual_seed(1))
    flat[100:110, 2] = 50.0  # ten equal top values in one column: the first three rows win
    got_values, got_rows = _top_by_loop([flat], [None], 3)
    expected_values, expected_rows = _top_reference([flat], [None], 3)
    assert torch.equal(got_values, expected_values) and torch.equal(got_rows, expected_rows)
    assert got_rows[:, 2].tolist() == [100, 101, 102]


def test_a_token_census_takes_the_compiled_top_k(monkeypatch):
    calls = []
    loop = kernels.top_update
    monkeypatch.setattr(kernels, "top_update", lambda *a: calls.append(1) or loop(*a))
    model = tiny_bert(intermediate_size=40)
    census = activation_census(model, padded_batches(n_batches=2, batch_size=6, width=20), top_k=4)
    assert calls and all(c.top_examples is not None for c in census)


def test_centred_rows_give_the_products_of_the_formed_centred_matrix():
    rng = np.random.default_rng(4)
    a = (rng.standard_normal((300, 70)) * 3 + rng.standard_normal(70) * 50).astype(np.float32)  # far from 0
    rows = kernels.centred_rows(torch.from_numpy(a))
    assert rows is not None
    centred = a.astype(np.float64) - a.astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(rows.mean, a.astype(np.float64).mean(axis=0), rtol=1e-14)
    assert rows.total == pytest.approx(float((centred**2).sum()), rel=1e-13)
    x, y = rng.standard_normal(70), rng.standard_normal(300)
    scale_x, scale_y = np.abs(centred).sum(1).max(), np.abs(centred).sum(0).max()
    assert np.abs(rows.matvec(x) - centred @ x).max() <= 1e-13 * scale_x * np.abs(x).max()
    assert np.abs(rows.rmatvec(y) - centred.T @ y).max() <= 1e-13 * scale_y * np.abs(y).max()
    several = rng.standard_normal((70, 3))
    np.testing.assert_allclose(rows.matvec(several), centred @ several, rtol=1e-10, atol=1e-10)
    assert rows.matvec(x[:, None]).shape == (300, 1)


def test_the_projection_by_centred_rows_equals_the_formed_one(monkeypatch):
    from inspector.analysis import activations

    rng = np.random.default_rng(8)
    basis = rng.standard_normal((4, 600)) / np.sqrt(600)
    a = torch.from_numpy(((rng.standard_normal((900, 4)) * [9.0, 5.0, 2.0, 1.0]) @ basis + 4.0).astype(np.float32))
    scores, ratio = activations._pca_2d(a)
    monkeypatch.setattr(kernels, "ENABLED", False)
    formed_scores, formed_ratio = activations._pca_2d(a)
    np.testing.assert_allclose(ratio, formed_ratio, rtol=1e-9)
    for j in range(2):  # each axis's sign is fixed by the same rule on both routes
        np.testing.assert_allclose(
            scores[:, j], formed_scores[:, j], rtol=1e-5, atol=1e-5 * np.abs(formed_scores[:, j]).max()
        )


def test_a_small_analysis_does_not_import_numba():
    code = (
        "import sys, torch; from inspector.analysis.activations import activation_census; "
        "m = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2)); "
        "activation_census(m, torch.randn(500, 8), top_k=3); print('numba' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize("data", ["normal", "on the edges"])
def test_the_compiled_histogram_puts_every_value_in_the_operations_bin(monkeypatch, data):
    from inspector.analysis import activations

    gen = torch.Generator().manual_seed(3)
    kept = torch.randn(700, 13, generator=gen) * 4 + 1
    if data == "on the edges":  # values at each bin edge (and the bounds) as float32 computes them
        lo, hi = -3.0, 5.0
        grid = torch.tensor([lo + (hi - lo) * b / 30 for b in range(31)], dtype=torch.float32)
        kept = grid[torch.randint(0, 31, (700, 13), generator=gen)]
    counts, edges = activations._histogram(kept)
    assert kernels.histogram(kept, float(kept.min()), float(kept.max()), 30) is not None  # the loop counted
    monkeypatch.setattr(kernels, "ENABLED", False)
    formed_counts, formed_edges = activations._histogram(kept)
    assert np.array_equal(counts, formed_counts) and np.array_equal(edges, formed_edges)
    assert counts.sum(axis=1).tolist() == [700] * 13
