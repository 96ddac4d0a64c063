"""Property-based fuzzing of checkpoint files through the real CLI entry point.

Every generated file is malformed by construction (the strategies exclude the
mutations that would leave a valid file), and every command must answer it with
exactly one ``inspector: error:`` line and exit status 1, leave nothing behind in
the folder, and stay within a memory bound far below the sizes the files declare
(a 1 KB file declaring a 14 GB layer must not allocate it). The last suite
flips random bytes, which may or may not break a file: there any outcome is fine
except a traceback, a multi-line error or a leftover file.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inspector.checkpoints import FORMAT_VERSION
from inspector.cli import main
from inspector.formats import _ST_DTYPES
from tests.checkpoint_files import (
    foreign_safetensors,
    own_checkpoint,
    pickle_bomb,
    safetensors_bytes,
    split_safetensors,
    zero_size_safetensors,
)

pytestmark = pytest.mark.fuzz

RSS_BOUND = 512 * 1024 * 1024  # every "declared far larger" case declares >= 4 GiB
PYTHON_HEAP_BOUND = 64 * 1024 * 1024
SUFFIXES = [".pt", ".safetensors", ".pth", ".bin"]
_SUPPRESSED = [
    HealthCheck.function_scoped_fixture,
    HealthCheck.too_slow,
    HealthCheck.data_too_large,
    HealthCheck.filter_too_much,
]


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> dict[str, bytes]:
    from inspector.checkpoints import save_checkpoint

    folder = tmp_path_factory.mktemp("bases")
    out = {"foreign.safetensors": foreign_safetensors()}
    for suffix in (".pt", ".safetensors"):
        out[f"own{suffix}"] = save_checkpoint(own_checkpoint(), folder / f"own{suffix}").read_bytes()
    torch.manual_seed(0)
    state = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2)).state_dict()
    torch.save(state, folder / "zip.pt")
    torch.save(state, folder / "legacy.pt", _use_new_zipfile_serialization=False)
    out["foreign.pt"] = (folder / "zip.pt").read_bytes()
    out["legacy.pt"] = (folder / "legacy.pt").read_bytes()
    # One analysis before any heap is measured: the first one imports what it needs (torch.fx,
    # captum, scipy), and those one-off imports are not what the heap bound is about.
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        main(["analyze", str(folder / "own.pt"), "--out", str(folder / "warm-up")])
    return out


def _max_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def check_every_command(blob: bytes, suffix: str, capsys: Any, *, must_fail: bool = True) -> None:
    """Run info, info --json and analyze --out on ``blob`` saved as ``in<suffix>``."""
    with tempfile.TemporaryDirectory() as folder_name:
        folder = Path(folder_name)
        path = folder / f"in{suffix}"
        path.write_bytes(blob)
        out = folder / "out"
        rss_before = _max_rss()
        tracemalloc.start()
        try:
            for argv in (["info", str(path)], ["info", "--json", str(path)], ["analyze", str(path), "--out", str(out)]):
                status = main(argv)
                captured = capsys.readouterr()
                errors = [line for line in captured.err.splitlines() if not line.startswith("inspector: note: ")]
                assert "Traceback" not in captured.err
                if must_fail or status != 0:
                    assert status == 1, (argv, status, captured.err)
                    assert len(errors) == 1 and errors[0].startswith("inspector: error: "), (argv, captured.err)
                    assert captured.err.count("\n") == 1, captured.err  # the error line is the only line
                    assert sorted(os.listdir(folder)) == [path.name], argv
                else:
                    assert errors == [], captured.err
                    left = set(os.listdir(folder)) - {path.name, "out"}
                    assert not left, left
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < PYTHON_HEAP_BOUND, peak
        assert _max_rss() - rss_before < RSS_BOUND


def _fuzz(capsys: Any, strategy: Any, build: Any, max_examples: int, *, must_fail: bool = True) -> int:
    """Run ``build(drawn) -> (bytes, suffix)`` under ``strategy``; return how many distinct files it tried."""
    seen: set[bytes] = set()

    # no example database: nothing written into the working tree; no deadline: a loaded CI machine is no bug
    @settings(max_examples=max_examples, database=None, deadline=None, suppress_health_check=_SUPPRESSED)
    @given(strategy)
    def run(drawn: Any) -> None:
        blob, suffix = build(drawn)
        seen.add(hashlib.sha1(blob + suffix.encode()).digest())
        check_every_command(blob, suffix, capsys, must_fail=must_fail)

    run()
    print(f"\n{len(seen)} distinct malformed inputs")
    return len(seen)


# --------------------------------------------------------------------------- #
# Strategies: values that can't be right where they are put
# --------------------------------------------------------------------------- #

JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), st.text(max_size=6)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=6,
)
NOT_A_DICT = JSON_VALUES.filter(lambda v: not isinstance(v, dict))
NOT_AN_INT = JSON_VALUES.filter(lambda v: not isinstance(v, int) or isinstance(v, bool))
HUGE = st.integers(2**16, 2**40)


def _numel(shape: list[int]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def bad_entry_field() -> Any:
    """(tensor, field, value) that makes one entry of foreign_safetensors() wrong."""
    nbytes = {"fc.weight": 24, "fc.bias": 12}
    tensor = st.sampled_from(sorted(nbytes))
    dtype = st.one_of(
        st.text(max_size=8).filter(lambda s: s not in _ST_DTYPES), NOT_A_DICT.filter(lambda v: not isinstance(v, str))
    )
    shape = st.one_of(
        st.lists(st.integers(-(2**40), -1), min_size=1, max_size=3),  # negative
        st.lists(NOT_AN_INT, min_size=1, max_size=3),  # not integers
        NOT_A_DICT.filter(lambda v: not isinstance(v, list)),  # not a list
        st.lists(st.integers(0, 2**64), max_size=4),  # wrong size (filtered)
    )
    offsets = st.one_of(
        NOT_A_DICT.filter(lambda v: not isinstance(v, list)),
        st.lists(st.integers(-(2**40), 2**40), min_size=0, max_size=4).filter(lambda v: len(v) != 2),
        st.lists(NOT_AN_INT, min_size=2, max_size=2),
        st.tuples(st.integers(-(2**70), 2**70), st.integers(-(2**70), 2**70)).map(list),
    )
    field = st.sampled_from(["dtype", "shape", "data_offsets", "missing"])

    def value_for(draw_field: str) -> Any:
        return {"dtype": dtype, "shape": shape, "data_offsets": offsets, "missing": st.just(...)}[draw_field]

    def wrong(item: tuple[str, str, Any]) -> bool:
        name, which, value = item
        if which == "shape" and isinstance(value, list) and all(isinstance(s, int) and s >= 0 for s in value):
            return _numel(value) * 4 != nbytes[name]
        if which == "data_offsets" and isinstance(value, list) and len(value) == 2:
            return value != ([0, 24] if name == "fc.weight" else [24, 36])
        return True

    return (
        st.tuples(tensor, field)
        .flatmap(lambda tf: st.tuples(st.just(tf[0]), st.just(tf[1]), value_for(tf[1])))
        .filter(wrong)
    )


def test_fuzz_malformed_safetensors_entries(capsys):
    def build(drawn: tuple[str, str, Any, str]) -> tuple[bytes, str]:
        (name, field, value), suffix = drawn
        header, data = split_safetensors(foreign_safetensors())
        if value is ...:
            del header[name][field if field != "missing" else "shape"]
        else:
            header[name][field] = value
        return safetensors_bytes(header, data), suffix

    assert _fuzz(capsys, st.tuples(bad_entry_field(), st.sampled_from(SUFFIXES)), build, 40) >= 20


def test_fuzz_sizes_declared_far_beyond_the_file(capsys):
    """Shapes and offsets that agree with each other and promise >= 4 GiB the file does not hold."""

    def build(drawn: tuple[list[int], str, str]) -> tuple[bytes, str]:
        shape, dtype, suffix = drawn
        nbytes = _numel(shape) * _ST_DTYPES[dtype].itemsize
        header = {"big.weight": {"dtype": dtype, "shape": shape, "data_offsets": [0, nbytes]}}
        return safetensors_bytes(header, bytes(64)), suffix

    shapes = st.lists(HUGE, min_size=2, max_size=3).filter(lambda s: _numel(s) >= 2**32)
    _fuzz(capsys, st.tuples(shapes, st.sampled_from(["F32", "F64", "BF16", "U8"]), st.sampled_from(SUFFIXES)), build, 8)


def test_fuzz_safetensors_metadata_and_header_length(capsys):
    base = foreign_safetensors()
    header, data = split_safetensors(base)
    real = len(json.dumps(header).encode())

    def build(drawn: tuple[str, Any, str]) -> tuple[bytes, str]:
        kind, value, suffix = drawn
        if kind == "metadata":
            return safetensors_bytes({**header, "__metadata__": value}, data), suffix
        raw = base[8:]
        return value.to_bytes(8, "little") + raw, suffix

    bad_metadata = st.one_of(
        NOT_A_DICT.filter(lambda v: v is not None),
        st.dictionaries(
            st.text(max_size=4), NOT_A_DICT.filter(lambda v: not isinstance(v, str)), min_size=1, max_size=3
        ),
    )
    bad_length = st.integers(0, 2**64 - 1).filter(lambda n: n != real)
    strategy = st.one_of(
        st.tuples(st.just("metadata"), bad_metadata, st.sampled_from(SUFFIXES)),
        st.tuples(st.just("length"), bad_length, st.sampled_from(SUFFIXES)),
    )
    assert _fuzz(capsys, strategy, build, 30) >= 15


def test_fuzz_truncated_and_relabelled_files(capsys, bases):
    def build(drawn: tuple[str, float, str]) -> tuple[bytes, str]:
        name, fraction, suffix = drawn
        blob = bases[name]
        return blob[: int(fraction * len(blob))], suffix  # any proper prefix, the empty file included

    strategy = st.tuples(st.sampled_from(sorted(bases)), st.floats(0, 1, exclude_max=True), st.sampled_from(SUFFIXES))
    assert _fuzz(capsys, strategy, build, 45) >= 20


CONFIG_FIELDS = {
    "input_size": 4,
    "hidden_sizes": [3],
    "output_size": 2,
    "activation": "tanh",
    "dropout": 0.0,
    "batch_norm": False,
}


def bad_metadata_entry() -> Any:
    """(key, value) for a dense-inspector checkpoint's metadata that can't be right."""
    wrong_type = {
        "input_size": NOT_AN_INT,
        "output_size": NOT_AN_INT,
        "hidden_sizes": NOT_A_DICT.filter(
            lambda v: (
                not (
                    isinstance(v, list)
                    and all(isinstance(x, int) and not isinstance(x, bool) and x == 3 for x in v)
                    and len(v) == 1
                )
            )
        ),
        "activation": JSON_VALUES.filter(lambda v: v != "tanh" and v not in ("relu", "gelu", "sigmoid", "leaky_relu")),
        "dropout": JSON_VALUES.filter(
            lambda v: not (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1)
        ),
        "batch_norm": JSON_VALUES.filter(lambda v: v is not False),
    }
    config = st.one_of(
        NOT_A_DICT,
        st.sampled_from(["input_size", "hidden_sizes", "output_size", "activation"]).map(
            lambda k: {f: v for f, v in CONFIG_FIELDS.items() if f != k}
        ),
        st.text(min_size=1, max_size=6).filter(lambda k: k not in CONFIG_FIELDS).map(lambda k: {**CONFIG_FIELDS, k: 1}),
        st.sampled_from(sorted(wrong_type)).flatmap(lambda k: wrong_type[k].map(lambda v: {**CONFIG_FIELDS, k: v})),
        st.integers(1, 60000).filter(lambda n: n != 4).map(lambda n: {**CONFIG_FIELDS, "input_size": n}),
    )
    train_keys = {"epochs": "int", "batch_size": "int", "lr": "float", "optimizer": "str", "seed": "int"}
    train_config = st.one_of(
        NOT_A_DICT.filter(lambda v: v is not None),
        st.text(min_size=1, max_size=6)
        .filter(lambda k: k not in train_keys and k not in ("momentum", "weight_decay", "patience", "snapshot_every"))
        .map(lambda k: {k: 1}),
        st.sampled_from(["epochs", "batch_size", "seed"]).flatmap(lambda k: NOT_AN_INT.map(lambda v: {k: v})),
    )
    metrics = st.one_of(
        NOT_A_DICT.filter(lambda v: v not in (None, [], 0, False, "", 0.0)),
        st.dictionaries(
            st.text(max_size=4),
            JSON_VALUES.filter(lambda v: not isinstance(v, (int, float)) or isinstance(v, bool)),
            min_size=1,
            max_size=3,
        ),
    )
    format_version = st.one_of(
        NOT_AN_INT.filter(lambda v: v is not None), st.integers(FORMAT_VERSION + 1, 2**70), st.integers(-(2**70), -1)
    )
    history = st.one_of(
        NOT_A_DICT.filter(lambda v: v is not None),
        st.just(
            {
                "train_loss": [1.0],
                "val_loss": [],
                "train_accuracy": [],
                "val_accuracy": [],
                "best_epoch": 1,
                "stopped_early": False,
            }
        ),
        st.dictionaries(st.text(max_size=5), JSON_VALUES, max_size=3),
    )
    return st.one_of(
        st.tuples(st.just("config"), config),
        st.tuples(st.just("train_config"), train_config),
        st.tuples(st.just("metrics"), metrics),
        st.tuples(st.just("format_version"), format_version),
        st.tuples(st.just("history"), history),
        st.just(("config", ...)),
    )  # the one entry a checkpoint can't do without


def test_fuzz_corrupt_own_metadata(capsys, bases, tmp_path):
    pt_path = tmp_path / "own.pt"
    pt_path.write_bytes(bases["own.pt"])
    original = torch.load(pt_path, weights_only=True)

    def build(drawn: tuple[tuple[str, Any], str]) -> tuple[bytes, str]:
        (key, value), fmt = drawn
        if fmt == ".safetensors":
            header, data = split_safetensors(bases["own.safetensors"])
            if value is ...:
                header["__metadata__"].pop(key)
            else:
                header["__metadata__"][key] = json.dumps(value)
            return safetensors_bytes(header, data), fmt
        edited = dict(original)
        if value is ...:
            edited.pop(key)
        else:
            edited[key] = value
        out = tmp_path / "edited.pt"
        torch.save(edited, out)
        return out.read_bytes(), fmt

    strategy = st.tuples(bad_metadata_entry(), st.sampled_from([".pt", ".safetensors"]))
    assert _fuzz(capsys, strategy, build, 45) >= 20


def test_fuzz_expanded_views_declaring_gigabytes(capsys, tmp_path):
    def build(drawn: tuple[int, int, int, bool]) -> tuple[bytes, str]:
        rows, cols, stored, legacy = drawn
        out = tmp_path / "x.pt"
        # a view of one stored element: `stored` elements on disk, rows * cols (>= 2**30) once touched
        torch.save({"w": torch.zeros(stored)[:1].expand(rows, cols)}, out, _use_new_zipfile_serialization=not legacy)
        return out.read_bytes(), ".pt"

    strategy = st.tuples(st.integers(2**15, 2**17), st.integers(2**15, 2**17), st.integers(1, 64), st.booleans())
    _fuzz(capsys, strategy, build, 8)


def test_fuzz_flipped_bytes_never_give_a_traceback(capsys, bases):
    def build(drawn: tuple[str, list[tuple[float, int]]]) -> tuple[bytes, str]:
        name, flips = drawn
        blob = bytearray(bases[name])
        for where, value in flips:
            blob[int(where * len(blob))] = value
        return bytes(blob), "." + name.rsplit(".", 1)[1]

    strategy = st.tuples(
        st.sampled_from(sorted(bases)),
        st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=4),
    )
    _fuzz(capsys, strategy, build, 25, must_fail=False)


# --------------------------------------------------------------------------- #
# Bytes that cost more than they are: zero-size tensors and inflating pickles
# --------------------------------------------------------------------------- #

BEYOND_A_LAYER = st.integers(2**31 + 1, 2**70)  # no layer is this wide; int64 overflows past 2**63
WITHIN_A_LAYER = st.integers(2**16, 2**31)


def zero_beside(dims: Any) -> Any:
    """Shapes holding a 0 and, beside it, 1 to 3 dimensions drawn from ``dims``, in any order: zero
    bytes in the file, and one dimension that would size gigabytes of anything computed per row or column."""
    return st.tuples(st.lists(dims, min_size=1, max_size=3), st.integers(0, 3)).map(
        lambda drawn: drawn[0][: drawn[1]] + [0] + drawn[0][drawn[1] :]
    )


def test_fuzz_zero_size_beside_huge_dimensions(capsys, tmp_path):
    """``(0, 10**12)`` passed a ``numel == 0`` check and then sized a 4 TB array by its other side."""

    def build(drawn: tuple[list[int], str, str]) -> tuple[bytes, str]:
        shape, how, suffix = drawn
        if how == "torch.save" and _numel([d for d in shape if d]) < 2**62:  # torch's strides stop at int64
            out = tmp_path / "z.pt"
            torch.save({"fc1.weight": torch.zeros(shape)}, out)
            return out.read_bytes(), ".pt"
        return zero_size_safetensors(shape, beside=how == "beside"), suffix

    strategy = st.tuples(
        zero_beside(BEYOND_A_LAYER), st.sampled_from(["safetensors", "beside", "torch.save"]), st.sampled_from(SUFFIXES)
    )
    assert _fuzz(capsys, strategy, build, 30) >= 15


def test_fuzz_zero_size_tensors_within_bounds_are_left_out_with_flat_memory(capsys, tmp_path):
    """``(0, 300000000)`` in an 89-byte file made analyze reach 1.4 GB: an empty layer is left out, and
    a real layer beside it is analysed; either outcome, one line or a result, within the memory bounds."""

    def build(drawn: tuple[list[int], bool, str]) -> tuple[bytes, str]:
        shape, beside, suffix = drawn
        return zero_size_safetensors(shape, beside=beside), suffix

    strategy = st.tuples(zero_beside(WITHIN_A_LAYER), st.booleans(), st.sampled_from(SUFFIXES))
    assert _fuzz(capsys, strategy, build, 20, must_fail=False) >= 10


def test_fuzz_inflating_pickles(capsys, tmp_path):
    """A deflated ``data.pkl`` of millions of one-byte opcodes: refused from its declared size, at once."""

    def build(drawn: tuple[int, bytes]) -> tuple[bytes, str]:
        opcodes, opcode = drawn
        return pickle_bomb(tmp_path / "bomb.pt", opcodes, opcode).read_bytes(), ".pt"

    strategy = st.tuples(st.integers(2**20 + 1024, 2**25), st.sampled_from([b"N", b"]", b")", b"}"]))
    assert _fuzz(capsys, strategy, build, 10) >= 5
