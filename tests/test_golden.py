"""Golden analyses: the digits demo model and a tiny BERT, analysed with the defaults, must give the
same result document (structure, text, every number) as when the golden files were written.

These guard refactors that promise "behaviour unchanged". The files were written by this test with
``DENSE_INSPECTOR_REGOLD=1`` on the pinned CPU torch; regenerate them only for a change that is meant
to change results, and say so in the commit. Timings, every ``seconds`` field and the package version
are left out (measurements, not results); the checkpoint path is compared by its file name; numbers agree to 1e-5 relative
(summation order and the CPU's vector width, AVX-512 or AVX2, move the last bits of float32 results,
nothing more; see the tolerances below for the numbers that rounding moves further).
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from dashboards.demo import load_demo
from inspector.analysis import analyze
from inspector.results import to_json_and_arrays
from tests.models import padded_batches, tiny_bert

GOLDEN = Path(__file__).parent / "data" / "golden"
REGOLD = os.environ.get("DENSE_INSPECTOR_REGOLD") == "1"
RTOL, ATOL = 1e-5, 1e-9
# Numbers that float32 rounding moves with the CPU's kernels (AVX-512 or AVX2), not with the analysis:
# - completeness errors, |sum of attributions - (f(x) - f(baseline))| (Integrated Gradients' convergence
#   delta, conductance's completeness gap), what rounding leaves after that cancellation (0.0096402
#   against 0.0096404 on digits, 1.8e-09 against 2.2e-09 on the tiny BERT): compared to 1e-6 absolute (a
#   change to the attributions moves them far more), and in a finding's text the delta is left out;
# - an array's entries near zero, whose rounding error is that of the array's scale (a mean of 0.0005
#   among means up to 0.056 moved by 3e-9): each array to RTOL of its largest magnitude;
# - a histogram's counts, where a value on a bin's edge can fall on either side: each row's total
#   exact, its cumulative counts within one value per thousand (at least one).
DELTA_ATOL = 1e-6
ERROR_TERMS = ("convergence_delta", "completeness_gap")
DELTA_TEXT = re.compile(r"(convergence delta )[-+0-9.eE]+")


def _normalised(analysis: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    doc, arrays = to_json_and_arrays(analysis)
    result = doc["result"]
    result.pop("timings", None)
    result.pop("package_version", None)
    result["model"]["source"] = Path(result["model"]["source"]).name
    return _without_seconds(json.loads(json.dumps(doc, sort_keys=True))), arrays


def _without_seconds(tree: Any) -> Any:
    """The tree less every ``seconds`` field (how long a method took: a measurement, not a result)."""
    if isinstance(tree, dict):
        return {k: _without_seconds(v) for k, v in tree.items() if k != "seconds"}
    if isinstance(tree, list):
        return [_without_seconds(v) for v in tree]
    return tree


def _check(name: str, analysis: Any) -> None:
    doc, arrays = _normalised(analysis)
    json_path, npz_path = GOLDEN / f"{name}.json", GOLDEN / f"{name}.npz"
    if REGOLD:
        GOLDEN.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        np.savez_compressed(npz_path, **arrays)
        pytest.skip(f"wrote {json_path.name} and {npz_path.name}")
    golden = json.loads(json_path.read_text(encoding="utf-8"))
    _same_tree(doc, golden, name)
    with np.load(npz_path, allow_pickle=False) as stored:
        assert sorted(stored.files) == sorted(arrays), f"{name}: the set of arrays changed"
        for key in stored.files:
            want, got = stored[key], arrays[key]
            assert got.dtype == want.dtype and got.shape == want.shape, f"{name}{key}: {got.dtype}{got.shape}"
            if want.dtype.kind in "fc":
                finite = np.abs(want[np.isfinite(want)])
                atol = max(ATOL, RTOL * float(finite.max())) if finite.size else ATOL
                np.testing.assert_allclose(got, want, rtol=RTOL, atol=atol, err_msg=f"{name}{key}")
            elif key.endswith("histogram_counts"):
                np.testing.assert_array_equal(got.sum(-1), want.sum(-1), err_msg=f"{name}{key}")
                moved = np.abs(np.cumsum(got, -1) - np.cumsum(want, -1)).max(initial=0)
                assert moved <= max(1, want.sum(-1).max(initial=0) // 1000), f"{name}{key}: {moved} values changed bins"
            else:
                np.testing.assert_array_equal(got, want, err_msg=f"{name}{key}")


def _same_tree(got: Any, want: Any, path: str) -> None:
    if isinstance(want, dict):
        assert isinstance(got, dict) and sorted(got) == sorted(want), f"{path}: keys {sorted(got)} != {sorted(want)}"
        for key in want:
            _same_tree(got[key], want[key], f"{path}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{path}: length {len(got)} != {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            _same_tree(g, w, f"{path}[{i}]")
    elif isinstance(want, float) and not isinstance(want, bool):
        atol = DELTA_ATOL if path.endswith(ERROR_TERMS) else ATOL
        assert isinstance(got, (int, float)) and math.isclose(got, want, rel_tol=RTOL, abs_tol=atol), (
            f"{path}: {got!r} != {want!r}"
        )
    elif isinstance(want, str) and isinstance(got, str):
        assert DELTA_TEXT.sub(r"\1#", got) == DELTA_TEXT.sub(r"\1#", want), f"{path}: {got!r} != {want!r}"
    else:
        assert got == want, f"{path}: {got!r} != {want!r}"


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: a multi-threaded reduction order moves float32 error terms (IG's delta) by 1e-5."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_digits_demo_analysis_matches_the_golden_document(tmp_path):
    analysis, _, _ = load_demo(tmp_path, log=lambda _: None)
    _check("digits", analysis)


@pytest.mark.slow
def test_tiny_bert_analysis_matches_the_golden_document():
    model = tiny_bert(num_labels=3)
    batches = padded_batches(3, 4, 10, num_labels=3)
    _check("bert", analyze(model, batches))
