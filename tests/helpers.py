"""Small shared builders for tests."""

from __future__ import annotations

import numpy as np

from inspector.data import Dataset, Splits, SplitSpec, split_dataset


def tiny_splits(n: int = 200, d: int = 6, classes: int = 3, seed: int = 0) -> Splits:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    y = (np.argmax(X[:, :classes], axis=1)).astype(np.int64)
    ds = Dataset("tiny", X, y, tuple(f"x{i}" for i in range(d)), tuple(map(str, range(classes))))
    return split_dataset(ds, SplitSpec(seed=seed))
