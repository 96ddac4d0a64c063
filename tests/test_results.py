from __future__ import annotations

import json
import os

import numpy as np
import pytest

from inspector.errors import InspectorError
from inspector.results import load_result, result, results_equal, save_result, to_json_and_arrays


@result
class _Leaf:
    values: np.ndarray
    score: float
    label: str | None


@result
class _Tree:
    leaves: tuple[_Leaf, ...]
    table: dict[str, float]
    flag: bool
    count: int
    maybe: np.ndarray | None


def _tree() -> _Tree:
    return _Tree(
        leaves=(
            _Leaf(np.arange(6, dtype=np.int64).reshape(2, 3), 0.1 + 0.2, "a"),
            _Leaf(np.array([np.nan, np.inf, -1.5], dtype=np.float32), float("nan"), None),
        ),
        table={"x": float("-inf"), "y": 1e-300},
        flag=True,
        count=2**40,
        maybe=None,
    )


def test_round_trip_is_lossless(tmp_path):
    tree = _tree()
    save_result(tree, tmp_path / "out")
    back = load_result(tmp_path / "out")
    assert results_equal(tree, back)
    assert back.leaves[0].score == 0.1 + 0.2  # floats survive bit for bit
    assert back.leaves[1].values.dtype == np.float32


def test_json_is_strict_and_arrays_are_referenced(tmp_path):
    save_result(_tree(), tmp_path / "out")
    text = (tmp_path / "out" / "analysis.json").read_text()
    doc = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert doc["result"]["leaves"][0]["values"] == {"__array__": "leaves.0.values"}


def test_results_equal_sees_differences():
    a, b = _tree(), _tree()
    b.leaves[0].values[0, 0] = 99
    assert not results_equal(a, b)


def test_existing_folder_needs_force_and_failure_leaves_nothing(tmp_path, monkeypatch):
    out = tmp_path / "out"
    save_result(_tree(), out)
    with pytest.raises(InspectorError, match="already exists; pass --force"):
        save_result(_tree(), out)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", boom)
    before = sorted(os.listdir(out))
    with pytest.raises(InspectorError, match="could not write .*: disk full"):
        save_result(_tree(), out, force=True)
    assert results_equal(load_result(out), _tree())  # the old result is intact
    assert sorted(os.listdir(out)) == before  # and no temporary is left beside it
    with pytest.raises(InspectorError, match="disk full"):
        save_result(_tree(), tmp_path / "new")
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_unregistered_types_are_refused():
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Stray:
        x: int

    with pytest.raises(TypeError, match="not a registered result type"):
        to_json_and_arrays(Stray(1))


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(InspectorError, match="not an analysis folder"):
        load_result(tmp_path)


def test_single_file_json_document_round_trips(tmp_path):
    from inspector.results import from_json_document, to_json_document

    text = to_json_document(_tree())
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert results_equal(from_json_document(text), _tree())
    (tmp_path / "r.json").write_text(text)
    assert results_equal(load_result(tmp_path / "r.json"), _tree())


def test_an_old_analysis_renamed_by_the_user_keeps_its_arrays(tmp_path):
    from inspector.cli import main

    torch = pytest.importorskip("torch")
    from inspector.models import MLPConfig, build_mlp

    ckpt = tmp_path / "m.pt"
    torch.save(build_mlp(MLPConfig(input_size=3, hidden_sizes=(2,), output_size=2)).state_dict(), ckpt)
    out = tmp_path / "out"
    assert main(["analyze", str(ckpt), "--out", str(out), "--sections", "parameters"]) == 0
    (out / "analysis.json").rename(out / "old-analysis.json")
    old_arrays = json.loads((out / "old-analysis.json").read_text())["arrays"]
    assert main(["analyze", str(ckpt), "--out", str(out), "--sections", "parameters"]) == 0
    assert (out / old_arrays).is_file()
    (tmp_path / "old").mkdir()
    for name in ("old-analysis.json", old_arrays):
        (out / name).rename(tmp_path / "old" / (name if name != "old-analysis.json" else "analysis.json"))
    load_result(tmp_path / "old")  # still a whole analysis


def test_analysis_json_names_its_arrays_first(tmp_path):
    from inspector.results import save_result

    save_result(_tree(), tmp_path / "r")
    text = (tmp_path / "r" / "analysis.json").read_text()
    assert next(iter(json.loads(text))) == "arrays"


# --- older schema versions stay readable (issue 9) -----------------------------------------------

V1_ANALYSIS = os.path.join(os.path.dirname(__file__), "data", "analysis-v1")  # saved by schema-1 dense-inspector


@result
class _Renamed:
    layer: str
    module: str | None
    added: int = 7


def test_a_version_1_document_is_read_through_the_renames_and_defaults(monkeypatch):
    import inspector.results as results_module

    monkeypatch.setitem(results_module.FIELD_RENAMES, 1, {"_Renamed": {"linear": "layer", "name": "module"}})
    doc = {"schema_version": 1, "result": {"__type__": "_Renamed", "linear": "fc1", "name": "act1"}}
    assert results_module.from_json_and_arrays(doc, {}) == _Renamed("fc1", "act1", 7)
    current = {
        "schema_version": results_module.SCHEMA_VERSION,
        "result": {"__type__": "_Renamed", "layer": "fc1", "module": None},
    }
    assert results_module.from_json_and_arrays(current, {}) == _Renamed("fc1", None, 7)


def test_renames_of_several_versions_follow_their_chain(monkeypatch):
    import inspector.results as results_module

    monkeypatch.setattr(results_module, "SCHEMA_VERSION", 4)
    monkeypatch.setattr(
        results_module,
        "FIELD_RENAMES",
        {1: {"T": {"a": "b"}}, 2: {"T": {"b": "c", "x": "y"}}, 3: {"T": {"c": "d", "a": "z"}}},
    )
    assert results_module._renames_from(1) == {"T": {"a": "d", "x": "y"}}  # v3's new "a" is not v1's "a"
    assert results_module._renames_from(3) == {"T": {"c": "d", "a": "z"}}
    assert results_module._renames_from(4) == {}


@pytest.mark.parametrize("version", [0, 3, "2", None, True])
def test_unknown_schema_versions_are_refused(version):
    from inspector.results import from_json_and_arrays

    with pytest.raises(InspectorError, match="schema version"):
        from_json_and_arrays({"schema_version": version, "result": None}, {})


def test_a_version_1_analysis_folder_loads_with_todays_field_names():
    from inspector.analysis import Analysis

    with open(os.path.join(V1_ANALYSIS, "analysis.json"), encoding="utf-8") as fh:
        assert json.load(fh)["schema_version"] == 1
    analysis = Analysis.load(V1_ANALYSIS)
    assert [p.layer for p in analysis.parameters.layers] == ["fc1", "fc2", "fc3"]
    assert [w.layer for w in analysis.weights] == ["fc1", "fc2", "fc3"]
    assert [(a.layer, a.module, a.found_by) for a in analysis.activations] == [
        ("fc1", "act1", "module"),
        ("fc2", "act2", "module"),
    ]
    first = analysis.activations[0]
    assert first.dead_count == 1 and first.zero_rate is None and first.n_positions == 0  # the planted unit 0
    assert analysis.parameters.embeddings == () and analysis.parameters.embedding_parameters == 0
    assert analysis.parameters.total_parameters == 5 * 7 + 4 * 6 + 3 * 5
