"""Alpha equal to WeightWatcher's on every MiniLM-sized layer, checked against WeightWatcher 0.7.7's default
fit written out here as a plain loop (``WWFit`` in ``weightwatcher/WW_powerlaw.py`` and the eigenvalue
preparation of ``WeightWatcher.analyze()``), independent of the vectorised code in ``spectra.py``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from inspector.analysis.findings import Finding
from inspector.analysis.sections.weights import weight_findings
from inspector.analysis.spectra import PowerLawFit, esd_alpha, fit_power_law, singular_values
from inspector.analysis.weights import layer_weights, weight_report
from inspector.figures.weights import spectrum_rows

MINILM_SHAPES = [(384, 384), (1536, 384), (384, 1536)]  # attention, intermediate (out, in), output


def reference_fit(values: np.ndarray) -> tuple[float, float, float, int] | None:
    """``(alpha, xmin, D, tail size)`` as WeightWatcher 0.7.7's ``WWFit(values)`` finds them.

    Sorted values ``x``; each index ``i`` but the last starts a candidate tail ``x[i:]`` of ``n`` values:
    ``alpha = 1 + n / sum(ln x[i:] - ln x[i])``, ``D = max |1 - (x[i:] / x[i])^(1 - alpha) - arange(n) / n|``
    (``alpha <= 1``: no candidate), the first smallest ``D`` kept. Fewer than 20 values: ``alpha = 1 + (n - 1)
    / sum``, only tails of 8 or more with a sum above 1e-12, and the whole sample when no tail qualifies.
    """
    x = np.sort(np.asarray(values, dtype=np.float64))
    x = x[x > 0]
    size = x.size
    if size < 2:
        return None
    log_x = np.log(x)
    small = size < 20

    def candidate(i: int) -> tuple[float, float, int] | None:
        n = size - i
        total = np.sum(log_x[i:]) - n * log_x[i]
        if small and total <= 1e-12:
            return None
        alpha = 1 + (n - 1 if small else n) / total if total != 0 else math.inf
        if not alpha > 1:
            return None
        distance = np.max(np.abs(1 - (x[i:] / x[i]) ** (1 - alpha) - np.arange(n) / n))
        return float(distance), float(alpha), i

    best = None
    for i in range(size - 1):
        if small and size - i < 8:
            continue
        found = candidate(i)
        if found is not None and (best is None or found[0] < best[0]):
            best = found
    if best is None and small:
        best = candidate(0)
    if best is None:
        return None
    distance, alpha, i = best
    return alpha, float(x[i]), distance, size - i


def reference_esd(singular: np.ndarray) -> tuple[float, float, float, int] | None:
    """WeightWatcher's defaults around the fit: eigenvalues ``s^2`` of ``W`` (not divided by ``N``), those
    ``<= 1e-5`` dropped, layers with fewer than 8 singular values skipped, no finger fixing."""
    if singular.size < 8:
        return None
    eigenvalues = singular.astype(np.float64) ** 2
    return reference_fit(eigenvalues[eigenvalues > 1e-5])


def assert_same_fit(fit: PowerLawFit | None, expected: tuple[float, float, float, int] | None) -> None:
    assert (fit is None) == (expected is None)
    if fit is not None and expected is not None:
        alpha, xmin, distance, tail = expected
        assert fit.alpha == pytest.approx(alpha, rel=1e-9, abs=0)
        assert fit.xmin == pytest.approx(xmin, rel=1e-12, abs=0)
        assert fit.ks_distance == pytest.approx(distance, rel=1e-9, abs=1e-15)
        assert fit.tail_size == tail


def _minilm_sized_bert() -> nn.Module:
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=64, hidden_size=384, intermediate_size=1536, num_hidden_layers=6, num_attention_heads=12
    )
    torch.manual_seed(0)
    return transformers.BertModel(config).eval()


def _planted(m: int, n: int, eigenvalues: np.ndarray, seed: int) -> torch.Tensor:
    """A float32 weight ``(m, n)`` = ``U diag(sqrt(eigenvalues)) V^T`` with random orthonormal ``U``, ``V``."""
    rng = np.random.default_rng(seed)
    k = min(m, n)
    u, _ = np.linalg.qr(rng.standard_normal((m, k)))
    v, _ = np.linalg.qr(rng.standard_normal((n, k)))
    return torch.from_numpy(((u * np.sqrt(eigenvalues)) @ v.T).astype(np.float32))


def _tail_of_nine(seed: int = 7) -> np.ndarray:
    """384 eigenvalues: a Marchenko-Pastur bulk (a Gaussian 384 x 384 matrix's) whose 9 largest are replaced
    by 9 spikes at the quantiles of a steep power law: the KS-minimal tail is those 9, as in all-MiniLM-L6-v2's
    ``encoder.layer.4.attention.self.value`` (a tail of 9, WeightWatcher's alpha 8.44)."""
    rng = np.random.default_rng(seed)
    bulk = np.linalg.svd(rng.standard_normal((384, 384)) / math.sqrt(384), compute_uv=False) ** 2
    steep = rng.uniform(3, 9)
    spikes = bulk.max() * 1.5 * (1 - np.arange(9) / 9) ** (-1 / (steep - 1))
    return np.sort(np.concatenate([np.sort(bulk)[:-9], spikes]))[::-1]


def test_every_layer_of_a_minilm_sized_bert_equals_the_reference():
    model = _minilm_sized_bert()
    layers = weight_report(model)
    assert len(layers) == 37  # 6 x (query, key, value, attention output, intermediate, output) + the pooler
    assert {(w.out_features, w.in_features) for w in layers} == set(MINILM_SHAPES)
    dropped = 0
    for w in layers:
        expected = reference_esd(w.singular_values)
        assert expected is not None
        assert w.alpha == pytest.approx(expected[0], rel=1e-9, abs=0), w.layer
        assert w.alpha_xmin == expected[1] and w.alpha_tail_size == expected[3], w.layer
        assert w.alpha_ks_distance == pytest.approx(expected[2], rel=1e-9, abs=1e-15), w.layer
        dropped += int(np.sum(w.singular_values**2 <= 1e-5))
    # random init (std 0.02): the square layers' smallest eigenvalues fall below WeightWatcher's 1e-5
    assert dropped > 0


@pytest.mark.parametrize("shape", MINILM_SHAPES)
@pytest.mark.parametrize("alpha", [1.5, 2.0, 3.0, 4.5, 7.0])
def test_planted_pareto_spectra_equal_the_reference(shape, alpha):
    m, n = shape
    rng = np.random.default_rng(int(alpha * 10) + m)
    k = min(m, n)
    # eigenvalues s^2 from a Pareto law of exponent alpha, clipped to 1e6 of the smallest (s to 1e-3)
    eigenvalues = np.minimum((1.0 - rng.random(k)) ** (-1.0 / (alpha - 1.0)), 1e6) * 0.01
    singular = singular_values(_planted(m, n, np.sort(eigenvalues)[::-1], seed=m + n))
    fit = esd_alpha(singular)
    assert_same_fit(fit, reference_esd(singular))
    assert fit is not None and not fit.short_tail


def test_a_ks_minimal_tail_of_nine_is_kept_and_flagged():
    w = _planted(384, 384, _tail_of_nine(), seed=1)
    singular = singular_values(w)
    fit = esd_alpha(singular)
    expected = reference_esd(singular)
    assert_same_fit(fit, expected)
    assert fit is not None and fit.tail_size == 9 and fit.short_tail
    # the old rule (tails of 10 or more) chose another, worse-fitting tail and a very different alpha
    longer = fit_power_law(singular**2, min_tail=10)
    assert longer is not None and longer.ks_distance > fit.ks_distance
    assert abs(longer.alpha - fit.alpha) > 1.0

    stats = layer_weights("encoder.layer.4.attention.self.value", w)
    assert stats.alpha_tail_size == 9 and stats.alpha_short_tail and stats.alpha == fit.alpha
    assert (
        spectrum_rows((stats,))[0]["tail eigenvalues"] == "9 (too few to trust)"
    )  # the report's and dashboard's table
    (finding,) = [f for f in weight_findings((stats,)) if "alpha" in f.numbers]
    assert finding == Finding(
        "weights",
        "info",
        f"layer encoder.layer.4.attention.self.value: alpha {fit.alpha:.2f} from a tail of 9 eigenvalues: too few "
        f"to trust (fewer than 10; standard error ± {(fit.alpha - 1) / 3:.2f}). WeightWatcher reports the same fit",
        {"alpha": fit.alpha, "alpha_tail_size": 9},
    )


@pytest.mark.parametrize("size", [2, 3, 7, 8, 12, 19, 20, 21])
def test_small_samples_take_weightwatchers_small_sample_route(size):
    rng = np.random.default_rng(size)
    for values in (
        rng.lognormal(0.0, 1.0, size),
        (1 - rng.random(size)) ** -0.5,
        np.round(rng.lognormal(0, 1, size), 1),
    ):
        assert_same_fit(fit_power_law(values), reference_fit(values))


def test_repeated_values_are_candidates_at_each_of_their_places():
    values = np.repeat(np.exp(np.random.default_rng(3).normal(0.0, 1.0, 60)).round(1), 3)
    assert_same_fit(fit_power_law(values), reference_fit(values))
    assert fit_power_law(np.full(30, 2.0)) is None  # a tail of equal values has no exponent


def test_a_layer_with_fewer_than_eight_singular_values_gets_no_alpha():
    assert esd_alpha(np.linspace(1.0, 2.0, 7)) is None
    assert esd_alpha(np.linspace(1.0, 2.0, 8)) is not None
    stats = layer_weights("head", torch.randn(5, 64, generator=torch.Generator().manual_seed(0)))
    assert math.isnan(stats.alpha) and stats.alpha_tail_size == 0 and not stats.alpha_short_tail


def test_eigenvalues_at_or_below_1e_5_are_left_out():
    singular = np.sqrt(np.concatenate([np.geomspace(1e-3, 1e2, 200), np.full(50, 1e-5), np.full(50, 1e-7)]))
    fit = esd_alpha(singular)
    assert_same_fit(fit, reference_fit(np.geomspace(1e-3, 1e2, 200)))


def test_weightwatcher_itself_when_installed():
    ww_powerlaw = pytest.importorskip("weightwatcher.WW_powerlaw")
    model = _minilm_sized_bert()
    singular = [singular_values(layer.weight) for layer in model.modules() if isinstance(layer, nn.Linear)]
    singular.append(singular_values(_planted(384, 384, _tail_of_nine(), seed=1)))
    for s in singular:
        eigenvalues = s**2
        eigenvalues = eigenvalues[eigenvalues > 1e-5]
        theirs = ww_powerlaw.WWFit(eigenvalues)
        ours = esd_alpha(s)
        assert ours is not None
        assert (ours.alpha, ours.xmin, ours.ks_distance) == (theirs.alpha, theirs.xmin, theirs.D)
