from __future__ import annotations

import numpy as np
import pytest

from inspector.data import (
    SplitSpec,
    Standardizer,
    load_csv,
    load_dataset,
    load_digits,
    load_npz,
    make_synthetic,
    split_dataset,
)
from inspector.errors import InspectorError


def test_digits_is_the_bundled_8x8_set():
    ds = load_digits()
    assert ds.X.shape == (1797, 64) and ds.y.shape == (1797,)
    assert ds.n_classes == 10 and ds.image_shape == (8, 8)
    assert ds.X.dtype == np.float32 and ds.y.dtype == np.int64
    assert ds.feature_names[9] == "pixel_1_1"


@pytest.mark.parametrize("n_classes", [2, 4])
def test_synthetic_label_depends_only_on_planted_features(n_classes):
    from sklearn.linear_model import LogisticRegression

    ds = make_synthetic(n_samples=1000, n_features=8, informative=(2, 5), n_classes=n_classes, seed=3)
    assert ds.planted is not None and ds.planted.informative_features == (2, 5)
    assert len(np.unique(ds.y)) == n_classes
    # argmax of linear scores: the planted columns alone separate the classes (almost) perfectly...
    planted = LogisticRegression(C=1e4, max_iter=5000).fit(ds.X[:, [2, 5]], ds.y)
    assert planted.score(ds.X[:, [2, 5]], ds.y) > 0.98
    # ...and the other columns carry nothing beyond the majority class rate.
    noise = [i for i in range(8) if i not in (2, 5)]
    majority = np.bincount(ds.y).max() / len(ds.y)
    half = len(ds.y) // 2
    held_out = LogisticRegression(max_iter=5000).fit(ds.X[:half, noise], ds.y[:half])
    assert held_out.score(ds.X[half:, noise], ds.y[half:]) < majority + 0.08


def test_synthetic_two_class_label_is_sign_of_sum_of_informative_features():
    ds = make_synthetic(n_samples=300, n_features=6, informative=(1, 4), n_classes=2)
    expected = (ds.X[:, 1] + ds.X[:, 4] > 0).astype(np.int64)
    assert np.array_equal(ds.y, expected)


def test_split_is_deterministic_disjoint_and_complete():
    ds = load_digits()
    a, b = split_dataset(ds, SplitSpec(seed=7)), split_dataset(ds, SplitSpec(seed=7))
    assert np.array_equal(a.test_index, b.test_index) and np.array_equal(a.X_train, b.X_train)
    joined = np.concatenate([a.train_index, a.val_index, a.test_index])
    assert np.array_equal(np.sort(joined), np.arange(ds.n_samples))
    assert len(a.test_index) == round(0.2 * 1797) and len(a.val_index) == round(0.15 * 1797)
    c = split_dataset(ds, SplitSpec(seed=8))
    assert not np.array_equal(a.test_index, c.test_index)


def test_standardisation_is_fitted_on_train_only():
    splits = split_dataset(load_digits(), SplitSpec(seed=0))
    raw_train = splits.dataset.X[splits.train_index]
    np.testing.assert_allclose(splits.standardizer.mean, raw_train.mean(axis=0), rtol=1e-5)
    varying = raw_train.std(axis=0) > 0
    np.testing.assert_allclose(splits.X_train[:, varying].mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(splits.X_train[:, varying].std(axis=0), 1, atol=1e-3)
    # a pixel that is always 0 in training keeps scale 1 instead of dividing by zero
    assert np.all(splits.standardizer.scale[~varying] == 1)
    assert np.all(np.isfinite(splits.X_test))


def test_npz_round_trip(tmp_path):
    X = np.arange(12, dtype=np.float64).reshape(4, 3)
    np.savez(tmp_path / "d.npz", X=X, y=np.array([0, 1, 1, 0]), feature_names=np.array(["a", "b", "c"]))
    ds = load_npz(tmp_path / "d.npz")
    assert ds.feature_names == ("a", "b", "c") and ds.class_names == ("0", "1")
    np.testing.assert_array_equal(ds.X, X.astype(np.float32))


def test_npz_missing_y_is_named(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.zeros((3, 2)))
    with pytest.raises(InspectorError, match=r"needs arrays 'X' and 'y', found \['X'\]"):
        load_npz(tmp_path / "d.npz")


def test_npz_wrong_feature_count_is_named(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.zeros((3, 2)), y=np.zeros(3, int))
    with pytest.raises(InspectorError, match="has 2 features but the model expects 64"):
        load_npz(tmp_path / "d.npz", n_features=64)


def test_csv_with_string_labels(tmp_path):
    (tmp_path / "d.csv").write_text("a,species,b\n1,cat,2\n3,dog,4\n5,cat,6\n")
    ds = load_csv(tmp_path / "d.csv", "species")
    assert ds.feature_names == ("a", "b") and ds.class_names == ("cat", "dog")
    np.testing.assert_array_equal(ds.y, [0, 1, 0])
    np.testing.assert_array_equal(ds.X, [[1, 2], [3, 4], [5, 6]])


def test_csv_missing_label_column_lists_the_columns(tmp_path):
    (tmp_path / "d.csv").write_text("a,b\n1,2\n3,4\n")
    with pytest.raises(InspectorError, match="no column named 'label'; columns are a, b"):
        load_csv(tmp_path / "d.csv", "label")


def test_csv_needs_a_label_flag(tmp_path):
    (tmp_path / "d.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InspectorError, match="--label-column"):
        load_dataset(str(tmp_path / "d.csv"))


def test_csv_non_numeric_feature_names_the_line(tmp_path):
    (tmp_path / "d.csv").write_text("a,y\n1,0\nx,1\n")
    with pytest.raises(InspectorError, match="line 3 has a non-numeric"):
        load_csv(tmp_path / "d.csv", "y")


@pytest.mark.parametrize("spec,match", [("nope", "neither a built-in"), (".", "is a directory")])
def test_unknown_dataset_spec(spec, match):
    with pytest.raises(InspectorError, match=match):
        load_dataset(spec)


def test_unknown_data_suffix(tmp_path):
    (tmp_path / "d.parquet").write_bytes(b"x")
    with pytest.raises(InspectorError, match="unknown data format"):
        load_dataset(str(tmp_path / "d.parquet"))


# --------------------------------------------------------------------------- #
# Labels are the distinct values that occur, never indices
# --------------------------------------------------------------------------- #


def _csv(tmp_path, text: str, name: str = "d.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_numeric_csv_labels_1000_and_2000_are_two_classes(tmp_path):
    path = _csv(tmp_path, "a,label\n1,2000\n2,1000\n3,2000\n4,1000\n")
    ds = load_csv(path, "label")
    assert ds.class_names == ("1000", "2000")
    np.testing.assert_array_equal(ds.y, [1, 0, 1, 0])


def test_labels_zero_and_a_billion_make_two_classes_not_a_billion(tmp_path):
    path = _csv(tmp_path, "a,label\n1,0\n2,1e9\n3,0\n4,1000000000\n")
    ds = load_csv(path, "label")
    assert ds.class_names == ("0", "1000000000")
    np.testing.assert_array_equal(ds.y, [0, 1, 0, 1])


def test_numeric_labels_sort_by_value_and_merge_spellings_of_one_number(tmp_path):
    # "9" before "10" (not text order); "1", "01" and "1.0" are the number 1
    ds = load_csv(_csv(tmp_path, "a,label\n1,10\n2,9\n3,1\n4,01\n5,1.0\n"), "label")
    assert ds.class_names == ("1", "9", "10")
    np.testing.assert_array_equal(ds.y, [2, 1, 0, 0, 0])


@pytest.mark.parametrize(
    "y,names,codes",
    [
        (np.array([1000, 2000, 2000]), ("1000", "2000"), [0, 1, 1]),
        (np.array([2000.0, 1000.0, 2000.0]), ("1000", "2000"), [1, 0, 1]),
        (np.array([1.0, 0.0, -0.0]), ("0", "1"), [1, 0, 0]),
        (np.array([-3, 5, -3], dtype=np.int8), ("-3", "5"), [0, 1, 0]),
        (np.array(["10", "9", "10"]), ("9", "10"), [1, 0, 1]),
        (np.array(["dog", "cat", "dog"]), ("cat", "dog"), [1, 0, 1]),
        (np.array([b"dog", b"cat", b"dog"]), ("cat", "dog"), [1, 0, 1]),
        (np.array([True, False, True]), ("False", "True"), [1, 0, 1]),
    ],
)
def test_npz_labels_are_encoded_as_their_sorted_distinct_values(tmp_path, y, names, codes):
    np.savez(tmp_path / "d.npz", X=np.arange(6.0).reshape(3, 2), y=y)
    ds = load_npz(tmp_path / "d.npz")
    assert ds.class_names == names
    np.testing.assert_array_equal(ds.y, codes)


@pytest.mark.parametrize("y", [[0, 0, 0, 0, 0, 0], ["cat"] * 6, [1000.0] * 6])
def test_training_data_of_a_single_class_is_refused(tmp_path, y):
    np.savez(tmp_path / "d.npz", X=np.arange(12.0).reshape(6, 2), y=np.array(y))
    ds = load_dataset(str(tmp_path / "d.npz"))  # loading is fine: an evaluation file may hold one class
    with pytest.raises(InspectorError, match=r"dataset 'd' has 1 class \('.*'\); a classifier needs at least two"):
        split_dataset(ds)


def test_csv_with_a_byte_order_mark_finds_its_first_column(tmp_path):
    (tmp_path / "d.csv").write_text("label,a\ncat,1\ndog,2\n", encoding="utf-8-sig")
    ds = load_csv(tmp_path / "d.csv", "label")
    assert ds.feature_names == ("a",) and ds.class_names == ("cat", "dog")


def test_blank_lines_and_quoted_newlines_keep_line_numbers_true(tmp_path):
    path = _csv(tmp_path, 'a,label\n\n1,"two\nlines"\n\n2,x\nbad,y\n')
    with pytest.raises(InspectorError, match="line 7 has a non-numeric value 'bad' in feature column 'a'"):
        load_csv(path, "label")


# One line each, naming the culprit; every case here used to pass silently or crash.
CSV_ERRORS = [
    ("a,label\n1,x\n2,\n3,y\n", r"the label at line 3 is blank"),
    ("a,label\n1,x\n2,NaN\n3,y\n", r"the label at line 3 is 'NaN'"),
    ("a,label\n1,0.5\n2,1.25\n3,0\n", r"labels are continuous \(e\.g\. 0\.5 at line 2\).*pass --task regression"),
    ("a,label,label\n1,0,0\n2,1,1\n", r"column 'label' appears twice \(columns 2 and 3\)"),
    ("a,b,a,label\n1,2,3,0\n", r"column 'a' appears twice \(columns 1 and 3\)"),
    (",a,label\n0,1,x\n1,2,y\n", r"column 1 of the header has no name"),
    ("label\nx\ny\n", r"has no feature columns"),
    ("a,b,label\n1,,x\n2,3,y\n", r"line 2 has an empty cell in feature column 'b'"),
    ("a,label\n1,x\nnan,y\n3,x\n", r"column 'a' on line 3 is nan; features must be finite"),
    ("a,label\n1,x\n1e39,y\n3,x\n", r"column 'a' on line 3 is 1e\+39; .*float32 range"),
    ("a;label\n1;x\n2;y\n", r"no column named 'label'.*does not look comma-separated"),
    ("a,label\n1,x\n2," + "z" * 200_000 + "\n", r"line 3: not a well-formed CSV file \(field larger"),
    ("", r"empty file"),
    ("a,label\n", r"needs at least two samples, found 0"),
]


@pytest.mark.parametrize("text,message", CSV_ERRORS)
def test_malformed_csv_gets_one_line_naming_the_culprit(tmp_path, text, message):
    with pytest.raises(InspectorError, match=message) as info:
        load_csv(_csv(tmp_path, text), "label")
    assert "\n" not in str(info.value)


def test_csv_that_is_not_utf8_says_so(tmp_path):
    (tmp_path / "d.csv").write_bytes("a,label\n1,caf\xe9\n2,x\n".encode("latin-1"))
    with pytest.raises(InspectorError, match="not UTF-8 text; save the CSV as UTF-8"):
        load_csv(tmp_path / "d.csv", "label")


def test_dataset_path_that_is_not_a_regular_file_is_refused(tmp_path):
    import os

    os.mkfifo(tmp_path / "pipe.csv")  # opening it would block forever
    with pytest.raises(InspectorError, match="not a regular file"):
        load_dataset(str(tmp_path / "pipe.csv"), label_column="label")


# --------------------------------------------------------------------------- #
# .npz files
# --------------------------------------------------------------------------- #


def _npz_with_x_header(path, header: dict, data: bytes) -> None:
    """An .npz whose X.npy declares ``header`` but holds only ``data``; y is a valid (2,) array."""
    import io
    import zipfile

    x = io.BytesIO()
    np.lib.format.write_array_header_1_0(x, header)
    y = io.BytesIO()
    np.save(y, np.array([0, 1]))
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("X.npy", x.getvalue() + data)
        zf.writestr("y.npy", y.getvalue())


def test_npz_declaring_a_huge_shape_is_refused_before_allocating(tmp_path):
    # 10^6 x 10^6 float64 is 8 TB: allocating first raised MemoryError (or swapped)
    _npz_with_x_header(
        tmp_path / "d.npz", {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)}, b"\0" * 32
    )
    with pytest.raises(
        InspectorError,
        match=r"'X' declares shape \(1000000, 1000000\) "
        r"\(8,000,000,000,000 bytes\) but holds only 32 bytes",
    ):
        load_npz(tmp_path / "d.npz")


def test_npz_declaring_a_negative_shape_is_refused(tmp_path):
    _npz_with_x_header(tmp_path / "d.npz", {"descr": "<f8", "fortran_order": False, "shape": (-2, 2)}, b"")
    with pytest.raises(InspectorError, match="negative shape"):
        load_npz(tmp_path / "d.npz")


def test_npz_member_larger_than_its_compressed_bytes_allow_is_refused(tmp_path):
    import zipfile

    np.savez_compressed(tmp_path / "d.npz", X=np.zeros((4, 2)), y=np.array([0, 1, 0, 1]))
    data = bytearray((tmp_path / "d.npz").read_bytes())
    with zipfile.ZipFile(tmp_path / "d.npz") as zf:
        info = zf.getinfo("X.npy")
    # the central directory's uncompressed size of X.npy (offset 24 in its entry), now 4 GB
    entry = data.index(b"PK\x01\x02")
    while data[entry + 46 : entry + 51] != b"X.npy":
        entry = data.index(b"PK\x01\x02", entry + 4)
    data[entry + 24 : entry + 28] = (0xFFFFFFF0).to_bytes(4, "little")
    (tmp_path / "d.npz").write_bytes(bytes(data))
    assert info.compress_size * 1032 < 0xFFFFFFF0
    with pytest.raises(InspectorError, match="'X' declares more bytes than the file holds"):
        load_npz(tmp_path / "d.npz")


NPZ_ERRORS = [
    (dict(X=np.ones((4, 2)) + 1j, y=np.array([0, 1, 0, 1])), r"X is complex \(complex128\)"),
    (dict(X=np.zeros((4, 2, 2)), y=np.array([0, 1, 0, 1])), r"X must be 2-D .*shape \(4, 2, 2\)"),
    (dict(X=np.zeros((4, 2)), y=np.array([0, 1, 0])), r"X has 4 rows but y has 3 labels"),
    (dict(X=np.zeros((4, 2)), y=np.zeros((4, 1))), r"y must be one-dimensional"),
    (dict(X=np.zeros((4, 2)), y=np.array([0.0, 1.0, np.nan, 0.0])), r"the label at y\[2\] is nan"),
    (dict(X=np.zeros((4, 2)), y=np.array([0.5, 1.5, 0.5, 1.5])), r"labels are continuous"),
    (dict(X=np.zeros((4, 2)), y=np.array(["a", "b", " ", "a"])), r"the label at y\[2\] is blank"),
    (dict(X=np.zeros((4, 2)), y=np.array([0, 1, 0, 1]) + 0j), r"labels must be numbers or text"),
    (dict(X=np.array([[1.0], [1e39], [0.0], [2.0]]), y=np.array([0, 1, 0, 1])), r"X\[1, 0\] is 1e\+39"),
    (
        dict(X=np.zeros((4, 2)), y=np.array([0, 1, 0, 1]), feature_names=np.array(["a", "a"])),
        r"feature 'a' appears twice",
    ),
    (
        dict(X=np.zeros((4, 2)), y=np.array([0, 1, 0, 1]), feature_names=np.array(["a"])),
        r"feature_names has 1 entries but X has 2 columns",
    ),
    (dict(X=np.array([[1, None]] * 4, dtype=object), y=np.array([0, 1, 0, 1])), r"'X' holds Python objects"),
]


@pytest.mark.parametrize("arrays,message", NPZ_ERRORS)
def test_malformed_npz_gets_one_line_naming_the_culprit(tmp_path, arrays, message):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(InspectorError, match=message) as info:
        load_npz(tmp_path / "d.npz")
    assert "\n" not in str(info.value)


def test_npy_file_named_npz_is_not_a_zip(tmp_path):
    np.save(tmp_path / "d.npy", np.zeros(3))
    (tmp_path / "d.npy").rename(tmp_path / "d.npz")
    with pytest.raises(InspectorError, match="not a readable .npz file"):
        load_npz(tmp_path / "d.npz")


# --------------------------------------------------------------------------- #
# Standardisation
# --------------------------------------------------------------------------- #


def test_standardizer_handles_features_whose_float32_sum_overflows():
    # 100 rows of +-1e37: a float32 sum passes 3.4e38 and every value became NaN
    X = np.tile(np.array([[1e37], [-1e37]], dtype=np.float32), (50, 1))
    scaler = Standardizer.fit(X)
    np.testing.assert_allclose(scaler.mean, [0.0], atol=1e30)
    np.testing.assert_allclose(scaler.scale, [1e37], rtol=1e-6)
    np.testing.assert_allclose(scaler.transform(X)[:2, 0], [1.0, -1.0], rtol=1e-6)


def test_standardizer_refuses_values_that_standardise_beyond_float32():
    scaler = Standardizer(mean=np.zeros(2, np.float32), scale=np.array([1.0, 1e-5], np.float32))
    with pytest.raises(InspectorError, match=r"row 1, feature 1: .* too far from the training mean"):
        scaler.transform(np.array([[0.0, 0.0], [0.0, 3e38]], dtype=np.float32))
