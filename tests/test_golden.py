"""Golden analyses: the digits demo model and a tiny BERT, analysed with the defaults, must give the
same result document (structure, text, every number) as when the golden files were written.

These guard refactors that promise "behaviour unchanged". The files were written by this test with
``DENSE_INSPECTOR_REGOLD=1`` on the pinned CPU torch; regenerate them only for a change that is meant
to change results, and say so in the commit. Timings, every ``seconds`` field and the package version
are left out (measurements, not results); the checkpoint path is compared by its file name; numbers agree to 1e-6 relative
(summation order may move the last bits, nothing more).
"""

from __future__ import annotations

import json
import math
import os
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
RTOL, ATOL = 1e-6, 1e-9


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
                np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, err_msg=f"{name}{key}")
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
        assert isinstance(got, (int, float)) and math.isclose(got, want, rel_tol=RTOL, abs_tol=ATOL), (
            f"{path}: {got!r} != {want!r}"
        )
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
