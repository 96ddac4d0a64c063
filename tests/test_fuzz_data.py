"""Hostile CSV and .npz files through the real CLI: a sensible result or one clean line, nothing between.

Each case starts from a valid dataset and applies harmless changes (a byte-order
mark, CRLF, blank lines, padding, quoting, ``1000.0`` for ``1000``, features near
float32's limit, compression, Fortran order) and at most one hostile one. With no
hostile change the run must succeed and the checkpoint must hold exactly the
classes and columns that were written; with one it must print exactly one line
starting ``inspector: error:``, exit 1 and leave no file behind. Raw random bytes
may go either way, but only those two ways. Sizes are small, so time is bounded;
memory is checked where a file declares more than it holds (tracemalloc sees
numpy's allocations), and every run has a cap on its address space, so a
regression fails as a MemoryError instead of exhausting the machine.
"""

from __future__ import annotations

import contextlib
import csv
import io
import struct
import tempfile
import tracemalloc
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from inspector.analysis import Analysis
from inspector.checkpoints import load, save_checkpoint
from inspector.cli import main
from inspector.data import load_dataset
from inspector.errors import InspectorError
from tests.checkpoint_files import argmax_checkpoint as argmax_checkpoint_of

pytestmark = pytest.mark.fuzz

FUZZ = settings(
    max_examples=120,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# label sets as written, in the order the classes must come out (numbers by value)
LABEL_SETS = (("cat", "dog"), ("0", "1", "2"), ("1000", "2000"), ("0", "1000000000"), ("-1", "1"), ("9", "10"))
CSV_HARMLESS = ("bom", "crlf", "blank_lines", "padding", "quote_all", "float_spelling", "near_float32_max")
CSV_HOSTILE = (
    "blank_label",
    "single_class",
    "continuous",
    "duplicate_column",
    "unnamed_column",
    "ragged",
    "bad_cell",
    "not_utf8",
    "header_only",
    "two_rows",
    "no_label_column",
)
BAD_CELLS = ("", " ", "abc", "nan", "NaN", "inf", "-inf", "1e39", "-1e39", "1,5", "0x1p3", "\x00")


def _refused(code: int, err: str, folder: Path, inputs: set[str]) -> None:
    lines = err.splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("inspector: error: "), err
    assert {p.name for p in folder.iterdir()} == inputs  # no checkpoint, no temporary left behind


@contextlib.contextmanager
def _address_space_capped(headroom: int = 3 * 2**30) -> Iterator[None]:
    """Turn a runaway allocation (1e9 class names once) into a MemoryError, not a machine out of memory."""
    try:
        import resource

        with open("/proc/self/status") as fh:
            in_use = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize:"))
    except (ImportError, OSError, StopIteration):
        yield  # not Linux: no cap
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = in_use + headroom if hard == resource.RLIM_INFINITY else min(hard, in_use + headroom)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught, _address_space_capped():
        warnings.simplefilter("always")
        code = main(argv)
    # a warning was how complex features lost their imaginary part "successfully"
    assert not [w for w in caught if issubclass(w.category, (RuntimeWarning, np.exceptions.ComplexWarning))]
    out, err = capsys.readouterr()
    return code, out, err


def _train(path: Path, out: Path, capsys) -> tuple[int, str, str]:
    return _run(
        [
            "train",
            "--dataset",
            str(path),
            "--label-column",
            "label",
            "--task",  # these cases are about classification labels; regression has its own tests
            "classification",
            "--hidden",
            "4",
            "--epochs",
            "1",
            "--out",
            str(out),
            "-q",
        ],
        capsys,
    )


# --------------------------------------------------------------------------- #
# CSV
# --------------------------------------------------------------------------- #


@st.composite
def csv_cases(draw, hostile: str | None):
    """(file bytes, expected class names, expected feature names) with ``hostile`` applied."""
    n_features = draw(st.integers(1, 3))
    names = [f"f{j}" for j in range(n_features)]
    label_at = draw(st.integers(0, n_features))
    header = names[:label_at] + ["label"] + names[label_at:]
    classes = draw(st.sampled_from(LABEL_SETS))
    n_rows = draw(st.integers(6, 16))
    labels = draw(st.permutations([classes[i % len(classes)] for i in range(n_rows)]))
    values = draw(
        st.lists(
            st.lists(st.floats(-1e6, 1e6) | st.integers(-1000, 1000), min_size=n_features, max_size=n_features),
            min_size=n_rows,
            max_size=n_rows,
        )
    )
    rows = [[repr(v) for v in row] for row in values]
    for row, label in zip(rows, labels):
        row.insert(label_at, label)
    harmless = draw(st.lists(st.sampled_from(CSV_HARMLESS), unique=True, max_size=4))
    pick = st.integers(0, n_rows - 1)
    feature_cols = [j for j in range(len(header)) if j != label_at]

    if "near_float32_max" in harmless:
        rows[draw(pick)][feature_cols[0]] = draw(st.sampled_from(["3.4e38", "-3.4e38", "1e37", "1.5e-40"]))
    if "float_spelling" in harmless and classes[0].lstrip("-").isdigit():
        i = draw(pick)
        rows[i][label_at] = draw(
            st.sampled_from([f"{rows[i][label_at]}.0", f"{int(rows[i][label_at]):+d}", f"{float(rows[i][label_at]):e}"])
        )
    if hostile == "blank_label":
        rows[draw(pick)][label_at] = draw(st.sampled_from(["", "  ", "nan", "NaN"]))
    elif hostile == "single_class":
        for row in rows:
            row[label_at] = classes[0]
    elif hostile == "continuous":
        for i, row in enumerate(rows):
            row[label_at] = f"{i % 3}.5"
    elif hostile == "duplicate_column":
        a, b = draw(st.lists(st.integers(0, len(header) - 1), min_size=2, max_size=2, unique=True))
        header[b] = header[a]
    elif hostile == "unnamed_column":
        header[draw(st.integers(0, len(header) - 1))] = draw(st.sampled_from(["", "   "]))
    elif hostile == "ragged":
        row = rows[draw(pick)]
        if draw(st.booleans()):
            row.append("0")
        else:
            row.pop(draw(st.integers(0, len(row) - 1)))
    elif hostile == "bad_cell":
        rows[draw(pick)][draw(st.sampled_from(feature_cols))] = draw(st.sampled_from(BAD_CELLS))
    elif hostile == "header_only":
        rows = []
    elif hostile == "two_rows":
        rows = rows[:2]
    elif hostile == "no_label_column":
        header[label_at] = "target"
    if "padding" in harmless:
        header = [f"  {h} " if h.strip() else h for h in header]
        rows = [[f" {c} " if c.strip() else c for c in row] for row in rows]

    text = io.StringIO()
    writer = csv.writer(
        text,
        lineterminator="\r\n" if "crlf" in harmless else "\n",
        quoting=csv.QUOTE_ALL if "quote_all" in harmless else csv.QUOTE_MINIMAL,
    )
    writer.writerow(header)
    for row in rows:
        writer.writerow(row)
        if "blank_lines" in harmless and draw(st.booleans()):
            text.write("\n")
    data = text.getvalue().encode("utf-8")
    if "bom" in harmless:
        data = b"\xef\xbb\xbf" + data
    if hostile == "not_utf8":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.sampled_from([b"\xff", b"\xe9", b"\xc3\x28", b"\x80abc"])) + data[at:]
    return data, classes, tuple(names)


def _assert_trained(path: Path, classes: tuple[str, ...], feature_names: tuple[str, ...]) -> None:
    """A valid data file trained a checkpoint with exactly its classes and columns, and finite numbers."""
    ckpt = load(path)
    assert ckpt.dataset.class_names == classes and ckpt.config.output_size == len(classes)
    assert ckpt.dataset.feature_names == feature_names and ckpt.config.input_size == len(feature_names)
    assert np.all(np.isfinite(ckpt.standardizer.mean)) and np.all(np.isfinite(ckpt.standardizer.scale))
    assert all(torch.isfinite(t).all() for t in ckpt.model.state_dict().values())
    assert 0.0 <= ckpt.metrics["test_accuracy"] <= 1.0


@pytest.mark.parametrize("hostile", (None, *CSV_HOSTILE))
@settings(FUZZ, max_examples=16)
@given(data=st.data())
def test_hostile_csv_trains_correctly_or_fails_in_one_line(capsys, hostile, data):
    data, classes, feature_names = data.draw(csv_cases(hostile))
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        (folder / "d.csv").write_bytes(data)
        code, out, err = _train(folder / "d.csv", folder / "m.pt", capsys)
        if hostile is not None:
            _refused(code, err, folder, {"d.csv"})
            return
        assert code == 0 and err == "", err
        _assert_trained(folder / "m.pt", classes, feature_names)


@settings(FUZZ, max_examples=80)
@given(body=st.binary(max_size=300), header=st.sampled_from([b"", b"f0,label\n", b"f0,f1,label\n"]))
def test_random_bytes_as_csv_succeed_or_fail_in_one_line(capsys, body, header):
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        (folder / "d.csv").write_bytes(header + body)
        code, _, err = _train(folder / "d.csv", folder / "m.pt", capsys)
        if code != 0:
            _refused(code, err, folder, {"d.csv"})
        else:
            assert load(folder / "m.pt").config.output_size >= 2


# --------------------------------------------------------------------------- #
# .npz
# --------------------------------------------------------------------------- #

NPZ_LABELS = (
    (np.array([0, 1]), ("0", "1")),
    (np.array([1000, 2000, 3000]), ("1000", "2000", "3000")),
    (np.array([2.0, -1.0]), ("-1", "2")),
    (np.array([0, 10**9], dtype=np.uint32), ("0", "1000000000")),
    (np.array(["dog", "cat"]), ("cat", "dog")),
    (np.array([b"b", b"a"]), ("a", "b")),
    (np.array(["10", "9"]), ("9", "10")),
)
NPZ_HARMLESS = ("compressed", "int_X", "float32_X", "fortran_X", "named")
NPZ_HOSTILE = (
    "complex_X",
    "nonfinite_X",
    "X_3d",
    "X_1d",
    "y_2d",
    "length_mismatch",
    "single_class",
    "continuous_y",
    "nan_y",
    "blank_y",
    "missing_key",
    "object_y",
    "duplicate_names",
    "name_count",
    "text_X",
    "truncated",
    "huge_header",
    "too_few_rows",
    "empty_wide_X",
    "flipped_X",
)


def _with_lying_header(data: bytes, elements: int) -> bytes:
    """The .npz ``data`` with X.npy's header claiming ``elements`` rows but its bytes unchanged."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    fh = io.BytesIO(members["X.npy"])
    np.lib.format.read_magic(fh)
    shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header,
        {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": fortran, "shape": (elements, *shape[1:])},
    )
    members["X.npy"] = header.getvalue() + fh.read()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, payload in members.items():
            zf.writestr(name, payload)
    return out.getvalue()


def _with_flipped_data(data: bytes, count: int) -> bytes:
    """``data`` with the last ``count`` stored bytes of X.npy inverted (its data, past the .npy header)."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        info = zf.getinfo("X.npy")
    name_length, extra_length = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    end = info.header_offset + 30 + name_length + extra_length + info.compress_size
    blob = bytearray(data)
    for k in range(1, count + 1):
        blob[end - k] ^= 0xFF
    return bytes(blob)


def _loader_peak_bytes(path: Path) -> int:
    """Peak bytes allocated while loading ``path`` (tracemalloc sees numpy's array buffers)."""
    tracemalloc.start()
    try:
        load_dataset(str(path))
    except InspectorError:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


@st.composite
def npz_cases(draw, hostile: str | None):
    """(file bytes, expected class names, expected feature names) with ``hostile`` applied."""
    y_values, classes = draw(st.sampled_from(NPZ_LABELS))
    n, d = draw(st.integers(6, 16)), draw(st.integers(1, 3))
    y = y_values[np.array(draw(st.permutations([i % len(y_values) for i in range(n)])))]
    X = np.array(draw(st.lists(st.floats(-1e3, 1e3), min_size=n * d, max_size=n * d))).reshape(n, d)
    harmless = draw(st.lists(st.sampled_from(NPZ_HARMLESS), unique=True, max_size=3))
    names = tuple(f"col{j}" for j in range(d)) if "named" in harmless else tuple(f"x{j}" for j in range(d))
    arrays = {"X": X.astype(np.int64) if "int_X" in harmless else X, "y": y}
    if "float32_X" in harmless:
        arrays["X"] = X.astype(np.float32)
    if "fortran_X" in harmless:
        arrays["X"] = np.asfortranarray(arrays["X"])
    if "named" in harmless:
        arrays["feature_names"] = np.array(names)
    at = draw(st.integers(0, n - 1))
    if hostile == "complex_X":
        arrays["X"] = X + 1j
    elif hostile == "nonfinite_X":
        arrays["X"] = X.copy()
        arrays["X"][at, 0] = draw(st.sampled_from([np.nan, np.inf, -np.inf, 1e39, -1e300]))
    elif hostile == "X_3d":
        arrays["X"] = X[:, :, None]
    elif hostile == "X_1d":
        arrays["X"] = X[:, 0]
    elif hostile == "y_2d":
        arrays["y"] = y[:, None]
    elif hostile == "length_mismatch":
        arrays["y"] = np.delete(y, at)
    elif hostile == "single_class":
        arrays["y"] = np.repeat(y[:1], n)
    elif hostile == "continuous_y":
        arrays["y"] = np.arange(n) + 0.5
    elif hostile == "nan_y":
        arrays["y"] = np.zeros(n)
        arrays["y"][::2], arrays["y"][at] = 1.0, np.nan
    elif hostile == "blank_y":
        arrays["y"] = np.array(["a", "b"] * n, dtype="<U8")[:n]
        arrays["y"][at] = draw(st.sampled_from(["", "  ", "nan"]))
    elif hostile == "missing_key":
        del arrays[draw(st.sampled_from(["X", "y"]))]
    elif hostile == "object_y":
        arrays["y"] = np.array([str(v) for v in y], dtype=object)
    elif hostile == "duplicate_names":
        arrays["X"] = np.hstack([X, X[:, :1]])
        arrays["feature_names"] = np.array([*names, names[0]])
    elif hostile == "name_count":
        arrays["feature_names"] = np.array([*names, "extra"])
    elif hostile == "text_X":
        arrays["X"] = X.astype(str)
    elif hostile == "too_few_rows":
        arrays = {"X": X[:2], "y": np.array(y_values[:2])}
    elif hostile == "empty_wide_X":  # no byte of data, and a width that would name 10^12 features
        rows = draw(st.sampled_from([0, n]))
        arrays["X"] = np.zeros((rows, 0) if rows else (0, draw(st.integers(1, 10**12))), dtype=np.float32)
        arrays["y"] = y[:rows]
    buf = io.BytesIO()
    save = np.savez_compressed if "compressed" in harmless else np.savez
    save(buf, allow_pickle=True, **arrays) if hostile == "object_y" else save(buf, **arrays)
    data = buf.getvalue()
    if hostile == "truncated":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif hostile == "huge_header":
        data = _with_lying_header(data, draw(st.sampled_from([10**7, 10**9, 10**12, 2**62 // 8])))
    elif hostile == "flipped_X":  # the zip keeps X.npy's CRC-32: compressed or not, the read must notice
        data = _with_flipped_data(data, draw(st.integers(1, 16)))
    return data, classes, names


@pytest.mark.parametrize("hostile", (None, *NPZ_HOSTILE))
@settings(FUZZ, max_examples=12)
@given(data=st.data())
def test_hostile_npz_trains_correctly_or_fails_in_one_line(capsys, hostile, data):
    data, classes, feature_names = data.draw(npz_cases(hostile))
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        (folder / "d.npz").write_bytes(data)
        assert _loader_peak_bytes(folder / "d.npz") < 16 * 2**20  # kilobytes of data, whatever X.npy declares
        code, out, err = _train(folder / "d.npz", folder / "m.pt", capsys)
        if hostile is not None:
            _refused(code, err, folder, {"d.npz"})
            return
        assert code == 0 and err == "", err
        _assert_trained(folder / "m.pt", classes, feature_names)


# --------------------------------------------------------------------------- #
# analyze --data: evaluation files against a checkpoint whose answers are known
# --------------------------------------------------------------------------- #

CLASSES = ("cat", "dog", "fish")
FEATURES = ("a", "b", "c")


@pytest.fixture(scope="module")
def argmax_checkpoint(tmp_path_factory) -> Path:
    """The identity argmax MLP (see :func:`tests.checkpoint_files.argmax_checkpoint`), saved once."""
    path = tmp_path_factory.mktemp("fuzz-ckpt") / "argmax.pt"
    save_checkpoint(argmax_checkpoint_of(CLASSES, FEATURES), path)
    return path


@st.composite
def eval_cases(draw):
    """(csv text, expected accuracy or None for an error)."""
    n = draw(st.integers(2, 12))  # one row is refused, as before
    X = np.array(draw(st.lists(st.integers(0, 9), min_size=3 * n, max_size=3 * n)), dtype=float).reshape(n, 3)
    labels = draw(st.lists(st.sampled_from(CLASSES), min_size=n, max_size=n))
    if draw(st.booleans()):
        labels[draw(st.integers(0, n - 1))] = draw(st.sampled_from(["bird", "0", "2", "Cat", "dog "]))
    order = draw(st.permutations(range(3)))
    columns = draw(st.sampled_from(["same", "same", "renamed_all", "renamed_one", "dropped", "extra"]))
    header = [FEATURES[j] for j in order]
    body = X[:, list(order)]
    if columns == "renamed_one":
        header[draw(st.integers(0, 2))] = "z"
    elif columns == "renamed_all":
        header = ["p", "q", "r"]  # no name in common: fed to the inputs by position
    elif columns == "dropped":
        header, body = header[:2], body[:, :2]
    elif columns == "extra":
        header, body = [*header, "w"], np.hstack([body, np.zeros((n, 1))])
    lines = [",".join([*header, "label"])]
    lines += [",".join([*(repr(float(v)) for v in row), lab]) for row, lab in zip(body, labels)]
    error = any(lab.strip() not in CLASSES for lab in labels) or columns in ("renamed_one", "dropped", "extra")
    event("refused" if error else f"scored ({columns})")
    if error:
        return "\n".join(lines) + "\n", None
    model_X = body if columns == "renamed_all" else X
    predicted = np.argmax(model_X, axis=1)
    truth = np.array([CLASSES.index(lab.strip()) for lab in labels])
    return "\n".join(lines) + "\n", float(np.mean(predicted == truth))


@FUZZ
@given(case=eval_cases())
def test_evaluation_csv_scores_by_name_or_fails_in_one_line(capsys, argmax_checkpoint, case):
    text, accuracy = case
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        (folder / "e.csv").write_text(text)
        code, out, err = _run(
            [
                "analyze",
                str(argmax_checkpoint),
                "--data",
                str(folder / "e.csv"),
                "--label-column",
                "label",
                "--sections",
                "activations",
                "--out",
                str(folder / "out"),
            ],
            capsys,
        )
        if accuracy is None:
            _refused(code, err, folder, {"e.csv"})
            return
        assert code == 0, err
        assert Analysis.load(folder / "out").data.accuracy == pytest.approx(accuracy, abs=1e-12)
