from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from inspector.analysis.weights import layer_weights, pool_magnitude, weight_report, zoom
from inspector.models import MLPConfig, build_mlp


def test_norms_are_row_and_column_l2():
    w = torch.tensor([[3.0, 4.0], [0.0, 1.0], [0.0, 0.0]])
    stats = layer_weights("l", w)
    np.testing.assert_allclose(stats.neuron_norm, [5.0, 1.0, 0.0])
    np.testing.assert_allclose(stats.input_norm, [3.0, np.sqrt(16 + 1)])
    np.testing.assert_array_equal(stats.values, w.numpy())
    assert stats.magnitude.is_full_resolution
    np.testing.assert_array_equal(stats.magnitude.values, w.abs().numpy())


def test_stable_rank_of_rank_one_and_orthogonal_matrices():
    u, v = torch.randn(20, 1), torch.randn(1, 30)
    assert layer_weights("r1", u @ v).stable_rank == pytest.approx(1.0, rel=1e-6)
    q, _ = torch.linalg.qr(torch.randn(16, 16))
    ortho = layer_weights("q", q)
    assert ortho.stable_rank == pytest.approx(16.0, rel=1e-5)
    np.testing.assert_allclose(ortho.singular_values, np.ones(16), rtol=1e-5)


def test_singular_values_match_svd():
    w = torch.randn(40, 25, generator=torch.Generator().manual_seed(0))
    stats = layer_weights("w", w)
    np.testing.assert_allclose(stats.singular_values, torch.linalg.svdvals(w.double()).numpy(), rtol=1e-6)
    assert stats.frobenius_norm == pytest.approx(float(w.double().norm()), rel=1e-9)


def test_full_spectrum_of_a_layer_wider_than_1024_matches_numpy_svd():
    w = torch.randn(1100, 1500, generator=torch.Generator().manual_seed(3))
    stats = layer_weights("wide", w)
    reference = np.linalg.svd(w.numpy().astype(np.float64), compute_uv=False)
    assert stats.singular_values.shape == (1100,)
    # a Gaussian 1100 x 1500 matrix is well conditioned (s_min ~ sqrt(1500) - sqrt(1100) ~ 5.5), so every value is
    # held to the same relative tolerance, the bottom of the spectrum included
    np.testing.assert_allclose(stats.singular_values, reference, rtol=1e-6)
    assert stats.spectral_norm == pytest.approx(reference[0], rel=1e-9)
    assert stats.stable_rank == pytest.approx(np.sum(reference**2) / reference[0] ** 2, rel=1e-9)


def test_planted_spectrum_of_a_large_layer_is_recovered_exactly():
    """W = U diag(s) V^T with known s: the values the layer must report, worked out before any SVD."""
    rng = np.random.default_rng(0)
    m, n = 1300, 1060  # taller than wide: the spectrum comes from W^T W

    def householder(size: int) -> np.ndarray:  # I - 2 a a^T / |a|^2 is orthogonal and dense
        a = rng.standard_normal(size)
        return np.eye(size) - 2.0 * np.outer(a, a) / (a @ a)

    u = householder(m)[:, :n]
    v = householder(n)
    planted = 10.0 * 0.99 ** np.arange(n)  # from 10 down to ~2.4e-4: a tail a randomised SVD misses
    w = torch.from_numpy(((u * planted) @ v.T).astype(np.float32))
    stats = layer_weights("planted", w)
    s = stats.singular_values
    assert s.shape == (n,) and np.all(np.diff(s) <= 0)
    # float32 storage moves each singular value by at most ~1e-6 of the largest
    np.testing.assert_allclose(s[:50], planted[:50], rtol=1e-4)
    np.testing.assert_allclose(s, planted, rtol=0, atol=1e-5 * planted[0])
    assert stats.spectral_norm == pytest.approx(10.0, rel=1e-5)
    assert stats.stable_rank == pytest.approx(np.sum(planted**2) / 100.0, rel=1e-4)


def test_near_zero_fraction_of_planted_weights():
    w = torch.ones(10, 10)
    w[:3] = 1e-4  # 30 weights far below 1% of the largest magnitude
    stats = layer_weights("w", w)
    assert stats.near_zero_threshold == pytest.approx(0.01)
    assert stats.near_zero_fraction == pytest.approx(0.3)


def test_histogram_counts_every_weight():
    w = torch.randn(30, 7)
    stats = layer_weights("w", w)
    assert stats.histogram_counts.sum() == 210
    assert stats.histogram_edges[0] == pytest.approx(float(w.min()))


def test_block_max_pooling_keeps_every_block_maximum():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(2050, 3000, generator=g) * 0.01
    w[1234, 2999] = -7.0  # one large weight in the last (partial) column block
    pooled = pool_magnitude(w, max_side=1024)
    assert pooled.values.shape[0] <= 1024 and pooled.values.shape[1] <= 1024
    br, bc = pooled.block_rows, pooled.block_cols
    assert (br, bc) == (3, 3)
    assert pooled.values[1234 // br, 2999 // bc] == pytest.approx(7.0)
    for r, c in [(0, 0), (17, 500), (683, 999)]:
        block = w[r * br : (r + 1) * br, c * bc : (c + 1) * bc].abs().max()
        assert pooled.values[r, c] == pytest.approx(float(block))


def test_zoom_returns_the_region_at_full_resolution():
    w = torch.randn(4096, 4096, generator=torch.Generator().manual_seed(1))
    region = zoom(w, (100, 400), (3000, 3500))
    assert region.is_full_resolution and (region.row_offset, region.col_offset) == (100, 3000)
    np.testing.assert_array_equal(region.values, w[100:400, 3000:3500].abs().numpy())
    assert region.full_shape == (4096, 4096)


def test_large_layer_keeps_no_full_signed_copy():
    stats = layer_weights("big", torch.randn(2048, 1100))
    assert stats.values is None and not stats.magnitude.is_full_resolution


def test_first_layer_neuron_images_for_image_inputs():
    model = build_mlp(MLPConfig(64, (5,), 3))
    report = weight_report(model, image_shape=(8, 8))
    assert report[0].neuron_images.shape == (5, 8, 8)
    np.testing.assert_array_equal(report[0].neuron_images[2, 1, 3], model.fc1.weight[2, 8 + 3].item())
    assert report[1].neuron_images is None


def test_weight_report_covers_every_linear_layer():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Sequential(nn.Linear(4, 2)))
    assert [w.layer for w in weight_report(model)] == ["0", "2.0"]


def test_nonfinite_weights_are_reported_not_hidden():
    w = torch.ones(4, 3)
    w[1, 2] = float("nan")
    w[3, 0] = float("inf")
    stats = layer_weights("bad", w)
    assert stats.histogram_counts.sum() == 10  # the finite weights
    assert np.isnan(stats.stable_rank) and np.isnan(stats.singular_values).all()
    assert stats.singular_values.shape == (3,)
    assert np.isnan(stats.neuron_norm[1]) and np.isinf(stats.neuron_norm[3])
    assert stats.neuron_norm[0] == pytest.approx(np.sqrt(3), rel=1e-6)


def test_pooling_and_statistics_a_band_at_a_time_equal_numpy_on_the_whole_weight():
    from inspector.analysis.weights import CHUNK_ELEMENTS, layer_weights, pool_magnitude

    rng = np.random.default_rng(3)
    w = rng.standard_normal((3001, 2002)).astype(np.float32)  # pooled 4 x 3 blocks, in several bands
    assert w.size > 4 * CHUNK_ELEMENTS
    pooled = pool_magnitude(w, 768)
    br, bc = pooled.block_rows, pooled.block_cols
    padded = np.zeros((-(-3001 // br) * br, -(-2002 // bc) * bc), np.float32)
    padded[:3001, :2002] = np.abs(w)
    expected = padded.reshape(padded.shape[0] // br, br, padded.shape[1] // bc, bc).max(axis=(1, 3))
    np.testing.assert_array_equal(pooled.values, expected)
    stats = layer_weights("fc", torch.from_numpy(w))
    threshold = 0.01 * np.quantile(np.abs(w).astype(np.float64), 0.999)  # 1% of the 99.9th percentile of |w|
    assert stats.near_zero_threshold == pytest.approx(threshold, rel=1e-12)
    assert stats.near_zero_fraction == np.mean(np.abs(w) < threshold)
    assert stats.frobenius_norm == pytest.approx(np.linalg.norm(w.astype(np.float64)), rel=1e-12)


def test_finiteness_is_checked_a_chunk_at_a_time_when_the_sum_overflows():
    from inspector.analysis.weights import CHUNK_ELEMENTS, _all_finite

    big = torch.full((3 * CHUNK_ELEMENTS,), 3e38)  # every value finite, their float32 sum is not
    assert not torch.isfinite(big.sum()) and _all_finite(big)
    big[-1] = float("nan")  # in the last chunk
    assert not _all_finite(big)
    assert _all_finite(torch.randn(1000)) and not _all_finite(torch.tensor([1.0, float("-inf")]))
    huge = torch.full((4, 3), 3e38)
    huge[0, 0] = 1.0
    stats = layer_weights("huge", huge)  # every value finite: the statistics are computed, not NaN
    assert stats.histogram_counts.sum() == 12 and not np.isnan(stats.singular_values).any()
