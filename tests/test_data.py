from __future__ import annotations

import numpy as np
import pytest

from inspector.data import SplitSpec, load_csv, load_dataset, load_digits, load_npz, make_synthetic, split_dataset
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
