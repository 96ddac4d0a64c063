"""The census projection's solver: Lanczos (above EXACT_PCA_SIDE) against the exact eigensolver.

The reference is computed here from first principles: numpy's full SVD of the centred matrix (the
right singular vectors are the principal axes, the squared singular values the variances).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inspector.analysis import activations as A


def _reference(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scores (k, 2) and explained-variance ratios (2,) by a full SVD in float64."""
    centred = a - a.mean(axis=0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    return u[:, :2] * s[:2], s[:2] ** 2 / (s**2).sum()


def _same_up_to_sign(got: np.ndarray, want: np.ndarray, rtol: float) -> None:
    for j in range(want.shape[1]):
        scale = np.abs(want[:, j]).max()
        err = min(np.abs(got[:, j] - want[:, j]).max(), np.abs(got[:, j] + want[:, j]).max())
        assert err <= rtol * scale, f"component {j}: {err / scale:.2e} of its largest score"


def _lanczos_only(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make the exact route an error, so that a test proves the Lanczos route answered; returns the
    list the Lanczos calls are counted in."""
    calls: list[int] = []
    solve = A._top_eigenpairs

    def counted(centred: np.ndarray, q: int):  # type: ignore[no-untyped-def]
        calls.append(q)
        found = solve(centred, q)
        assert found is not None, "Lanczos fell back to the exact solver"
        return found

    monkeypatch.setattr(A, "_top_eigenpairs", counted)
    return calls


def _low_rank_plus_noise(rng: np.random.Generator, k: int, m: int) -> np.ndarray:
    scales = np.array([10.0, 6.0, 3.0, 2.0, 1.0])
    basis = rng.standard_normal((5, m)) / np.sqrt(m)
    return (rng.standard_normal((k, 5)) * scales) @ basis + 0.01 * rng.standard_normal((k, m)) + 3.0


@pytest.mark.parametrize("width", [3072, 1536])  # the Gram side (k x k), and the covariance side (m x m)
@pytest.mark.parametrize("kind", ["random", "low-rank"])
def test_lanczos_matches_the_exact_components_on_2048_rows(
    kind: str, width: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(7)
    a = rng.standard_normal((2048, width)) if kind == "random" else _low_rank_plus_noise(rng, 2048, width)
    calls = _lanczos_only(monkeypatch)
    scores, ratio = A._pca_2d(torch.from_numpy(a).float())
    assert calls == [2]
    # the input went through float32 like the census's kept rows: compare against the same rounding
    want_scores, want_ratio = _reference(a.astype(np.float32).astype(np.float64))
    np.testing.assert_allclose(ratio, want_ratio, rtol=1e-6)
    _same_up_to_sign(scores.astype(np.float64), want_scores, 1e-6)


def test_wide_short_matrices_take_the_gram_side(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    a = _low_rank_plus_noise(rng, 600, 1500).astype(np.float32).astype(np.float64)
    calls = _lanczos_only(monkeypatch)
    scores, ratio = A._pca_2d(torch.from_numpy(a).float())
    assert calls == [2]
    want_scores, want_ratio = _reference(a)
    np.testing.assert_allclose(ratio, want_ratio, rtol=1e-6)
    _same_up_to_sign(scores.astype(np.float64), want_scores, 1e-6)


@pytest.mark.parametrize("shape", [(50, 8), (300, 64), (3, 700), (2048, 100)])
def test_small_matrices_are_solved_exactly(shape: tuple[int, int], monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    a = rng.standard_normal(shape).astype(np.float32).astype(np.float64)

    def refuse(centred: np.ndarray, q: int) -> None:
        raise AssertionError("a small matrix went to Lanczos")

    monkeypatch.setattr(A, "_top_eigenpairs", refuse)
    scores, ratio = A._pca_2d(torch.from_numpy(a).float())
    want_scores, want_ratio = _reference(a)
    np.testing.assert_allclose(ratio, want_ratio, rtol=1e-6)
    _same_up_to_sign(scores.astype(np.float64), want_scores, 1e-5)


def test_tied_top_eigenvalues_give_the_same_plane(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two equal top variances: the components are any orthonormal basis of their plane (the documented
    tie rule), so the test compares the plane (the projector onto the score columns) and the ratios."""
    rng = np.random.default_rng(5)
    k, m = 1024, 800
    plane = np.linalg.qr(rng.standard_normal((m, 2)))[0]  # (m, 2) orthonormal
    coords = np.linalg.qr(rng.standard_normal((k, 2)))[0] * np.sqrt(k) * 5.0  # equal spread on both axes
    a = coords @ plane.T + 0.01 * rng.standard_normal((k, m))
    a = a.astype(np.float32).astype(np.float64)
    calls = _lanczos_only(monkeypatch)
    scores, ratio = A._pca_2d(torch.from_numpy(a).float())
    assert calls == [2]
    want_scores, want_ratio = _reference(a)
    np.testing.assert_allclose(ratio, want_ratio, rtol=1e-6)
    got_q = np.linalg.qr(scores.astype(np.float64))[0]
    want_q = np.linalg.qr(want_scores)[0]
    np.testing.assert_allclose(got_q @ got_q.T, want_q @ want_q.T, atol=1e-6)


def test_the_sign_rule_makes_each_axis_largest_entry_positive() -> None:
    rng = np.random.default_rng(2)
    a = _low_rank_plus_noise(rng, 700, 900)
    centred = a - a.mean(axis=0)
    found = A._top_eigenpairs(centred, 2)
    assert found is not None
    values, vectors, scores = found
    assert values[0] >= values[1] > 0
    assert scores is None  # more columns than rows: the Gram side, whose scores need no product
    assert np.all(vectors[np.abs(vectors).argmax(axis=0), [0, 1]] > 0)
    np.testing.assert_allclose(vectors.T @ vectors, np.eye(2), atol=1e-9)
    tall = centred[:, :500]  # fewer columns than rows: the scores come with the axes
    values, vectors, scores = A._top_eigenpairs(tall, 2)  # type: ignore[misc]
    np.testing.assert_allclose(scores, tall @ vectors, rtol=1e-12)
    assert np.all(vectors[np.abs(vectors).argmax(axis=0), [0, 1]] > 0)


def test_layers_finished_one_after_another_in_one_scratch_get_their_own_projection() -> None:
    """The census finish centres each layer's kept rows into the memory the previous layer used: a
    larger layer after a smaller one (the memory grows), then a smaller one again (inside it), each gives
    the same scores and ratios as with memory of its own, and as the SVD reference."""
    rng = np.random.default_rng(3)
    layers = [_low_rank_plus_noise(rng, k, m) for k, m in ((300, 280), (600, 320), (40, 30))]
    scratch = A.Scratch()
    shared = [A._pca_2d(torch.from_numpy(a).float(), scratch) for a in layers]
    for a, (scores, ratio) in zip(layers, shared, strict=True):
        alone_scores, alone_ratio = A._pca_2d(torch.from_numpy(a).float())
        np.testing.assert_array_equal(scores, alone_scores)
        np.testing.assert_array_equal(ratio, alone_ratio)
        want_scores, want_ratio = _reference(a.astype(np.float32).astype(np.float64))
        _same_up_to_sign(scores.astype(np.float64), want_scores, 1e-4)
        np.testing.assert_allclose(ratio, want_ratio, rtol=1e-5)
