from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from inspector.analysis.sections.weights import weight_findings
from inspector.analysis.spectra import esd_alpha, fit_power_law, singular_values
from inspector.analysis.weights import LayerWeights, layer_weights
from inspector.results import from_json_document, results_equal, to_json_document
from tests.helpers import planted_weight, svd64


@pytest.mark.parametrize("shape", [(1100, 300), (300, 1100)])
def test_singular_values_of_layers_longer_than_1024_equal_numpy_svd(shape):
    w = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    s = singular_values(w)
    assert s.shape == (300,) and np.all(np.diff(s) <= 0)
    np.testing.assert_allclose(s, svd64(w), rtol=1e-4)


@pytest.mark.slow
def test_square_1500_layer_with_a_tiny_smallest_value_is_exact_at_every_value():
    # a square Gaussian matrix has s_min ~ s_max / (4 * 1500): below the Gram route's 1e-4 reach, so the
    # exact (QR + SVD) route must take over; every value, the smallest included, to 1e-4 relative
    w = torch.randn(1500, 1500, generator=torch.Generator().manual_seed(2))
    reference = svd64(w)
    assert reference[-1] / reference[0] < 1e-3
    np.testing.assert_allclose(singular_values(w), reference, rtol=1e-4)


def test_planted_spectrum_over_seven_decades_is_recovered_to_1e4_relative():
    n = 300
    planted = 10.0 * np.logspace(0, -7, n)  # float32 storage moves a value by ~1e-7 * s_max: exact planted only on top
    w = planted_weight(1100, n, planted)
    s = singular_values(w)
    np.testing.assert_allclose(s, svd64(w), rtol=1e-4)  # the stored float32 matrix's own spectrum, every value
    np.testing.assert_allclose(s[:150], planted[:150], rtol=1e-4)


def test_zero_rows_give_zero_singular_values_to_1e12_of_the_largest():
    w = torch.randn(200, 1100, generator=torch.Generator().manual_seed(3))
    w[150:] = 0.0  # 50 pruned neurons: rank 150
    s = singular_values(w)
    np.testing.assert_allclose(s[:150], svd64(w)[:150], rtol=1e-4)
    assert np.all(s[150:] <= 1e-12 * s[0])


def test_stable_rank_is_frobenius_squared_over_top_singular_value_squared():
    planted = np.array([4.0, 2.0, 2.0, 1.0] + [0.5] * 16)
    stats = layer_weights("planted", planted_weight(60, 20, planted))
    assert stats.stable_rank == pytest.approx((16 + 4 + 4 + 1 + 16 * 0.25) / 16, rel=1e-5)
    assert stats.spectral_norm == pytest.approx(4.0, rel=1e-5)


def _pareto(alpha: float, xmin: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """Samples of ``p(x) = (alpha - 1) / xmin * (x / xmin)^-alpha`` on ``x >= xmin``, by inverting the CDF."""
    return xmin * (1.0 - rng.random(n)) ** (-1.0 / (alpha - 1.0))


@pytest.mark.parametrize("alpha", [1.8, 2.5, 4.0])
def test_alpha_of_pareto_samples_is_recovered_within_its_standard_error(alpha):
    rng = np.random.default_rng(int(alpha * 10))
    fit = fit_power_law(_pareto(alpha, 1.0, 4000, rng))
    assert fit is not None
    # the MLE's standard error is (alpha - 1) / sqrt(n); four of them leave a false failure at ~1e-4
    assert abs(fit.alpha - alpha) < 4 * fit.alpha_error
    assert fit.alpha_error == pytest.approx((fit.alpha - 1) / math.sqrt(fit.tail_size))
    assert fit.tail_size > 1000  # the KS search keeps a long tail: the sample is a power law from its start


def test_xmin_search_finds_where_the_planted_tail_begins():
    rng = np.random.default_rng(5)
    body = rng.uniform(0.1, 1.0, 3000)  # no power law below 1
    tail = _pareto(3.0, 2.0, 1000, rng)
    fit = fit_power_law(np.concatenate([body, tail]))
    assert fit is not None
    assert 2.0 <= fit.xmin < 2.3
    assert abs(fit.alpha - 3.0) < 4 * fit.alpha_error


def _reference_fit(values: np.ndarray, min_tail: int) -> tuple[float, float, float, int]:
    """The xmin search written as a plain loop over candidates, as in WeightWatcher's ``WWFit``."""
    x = np.sort(values)
    best = (math.nan, math.nan, math.inf, 0)
    for i in range(x.size - min_tail + 1):
        tail = x[i:]
        n = tail.size
        alpha = 1 + n / np.sum(np.log(tail / x[i]))
        distance = np.max(np.abs(1 - (tail / x[i]) ** (1 - alpha) - np.arange(n) / n))
        if distance < best[2]:
            best = (alpha, x[i], distance, n)
    return best


def test_vectorised_fit_equals_a_loop_over_every_candidate():
    rng = np.random.default_rng(6)
    values = np.concatenate([rng.lognormal(0.0, 1.0, 700), _pareto(2.5, 5.0, 300, rng)])
    fit = fit_power_law(values, min_tail=10)
    alpha, xmin, distance, tail_size = _reference_fit(values, 10)
    assert fit is not None
    assert fit.alpha == pytest.approx(alpha, rel=1e-12)
    assert fit.xmin == xmin and fit.tail_size == tail_size
    assert fit.ks_distance == pytest.approx(distance, rel=1e-12)


def test_too_few_positive_values_give_no_fit():
    assert fit_power_law(np.array([0.0, -1.0, 2.0])) is None
    # two values are a sample (WeightWatcher fits them too: 1 + (n - 1) / ln(3 / 2)), flagged as far too short
    fit = fit_power_law(np.array([0.0, -1.0, 2.0, 3.0]))
    assert fit is not None and fit.short_tail and fit.tail_size == 2
    assert fit.alpha == pytest.approx(1 + 1 / math.log(1.5), rel=1e-12)
    assert fit_power_law(np.ones(50)) is None  # a tail of equal values has no exponent


def test_marchenko_pastur_random_matrix_has_no_heavy_tail():
    # i.i.d. Gaussian weights: the eigenvalues of W^T W / N follow Marchenko-Pastur, with a hard edge, so the best
    # power law is very steep (WeightWatcher's guidance: alpha > 6 for an untrained layer)
    w = torch.randn(400, 1200, generator=torch.Generator().manual_seed(7))
    fit = esd_alpha(singular_values(w))
    assert fit is not None and fit.alpha > 6


def test_heavy_tailed_spectrum_gives_the_planted_alpha():
    # eigenvalues s^2 drawn from a Pareto law with alpha = 2.5 (a very heavy-tailed, "well-trained" layer)
    rng = np.random.default_rng(8)
    eigenvalues = np.sort(_pareto(2.5, 1.0, 600, rng))[::-1]
    w = planted_weight(1200, 600, np.sqrt(eigenvalues))
    stats = layer_weights("heavy", w)
    assert abs(stats.alpha - 2.5) < 4 * (stats.alpha - 1) / math.sqrt(stats.alpha_tail_size)
    assert stats.alpha_tail_size >= 100 and 0 < stats.alpha_ks_distance < 0.1
    assert stats.alpha_xmin >= eigenvalues.min() * (1 - 1e-4)


def test_alpha_fields_round_trip_and_an_older_file_without_them_loads_as_not_fitted():
    stats = layer_weights("w", torch.randn(40, 30, generator=torch.Generator().manual_seed(9)))
    assert stats.alpha_tail_size > 0
    assert results_equal(from_json_document(to_json_document(stats)), stats)
    doc = json.loads(to_json_document(stats))
    older = json.dumps(_without_alpha(doc))
    loaded = from_json_document(older)
    assert isinstance(loaded, LayerWeights)
    assert math.isnan(loaded.alpha) and loaded.alpha_tail_size == 0


def _without_alpha(tree: object) -> object:
    if isinstance(tree, dict):
        return {k: _without_alpha(v) for k, v in tree.items() if not str(k).startswith("alpha")}
    if isinstance(tree, list):
        return [_without_alpha(v) for v in tree]
    return tree


def test_findings_name_alpha_only_when_clearly_outside_two_to_six():
    rng = np.random.default_rng(10)
    heavy = planted_weight(500, 300, np.sqrt(np.sort(_pareto(1.5, 1.0, 300, rng))[::-1]))
    random = torch.randn(300, 900, generator=torch.Generator().manual_seed(11))
    texts = [f.text for f in weight_findings((layer_weights("heavy", heavy), layer_weights("random", random)))]
    alpha_texts = [t for t in texts if "alpha" in t]
    assert any(t.startswith("layer heavy:") and "very heavy tail" in t for t in alpha_texts)
    assert any(t.startswith("layer random:") and "close to a random matrix" in t for t in alpha_texts)
    in_range = planted_weight(500, 300, np.sqrt(np.sort(_pareto(4.0, 1.0, 300, rng))[::-1]))
    assert not [f for f in weight_findings((layer_weights("fine", in_range),)) if "alpha" in f.text]
