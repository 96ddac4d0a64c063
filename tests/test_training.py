from __future__ import annotations

import numpy as np
import pytest
import torch

from inspector.data import SplitSpec, load_digits, split_dataset
from inspector.errors import InspectorError
from inspector.models import MLPConfig
from inspector.training import TrainConfig, evaluate, resolve_device, train
from tests.helpers import tiny_splits


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_same_seed_gives_identical_weights():
    splits = tiny_splits()
    config = MLPConfig(6, (16,), 3, dropout=0.1)
    tc = TrainConfig(epochs=5, seed=3, patience=None)
    a = train(config, splits, tc, device="cpu", progress=False)
    b = train(config, splits, tc, device="cpu", progress=False)
    for key, value in _weights(a.model).items():
        assert torch.equal(value, b.model.state_dict()[key]), key
    np.testing.assert_array_equal(a.history.train_loss, b.history.train_loss)


def test_different_seed_gives_different_weights():
    splits = tiny_splits()
    config = MLPConfig(6, (16,), 3)
    a = train(config, splits, TrainConfig(epochs=2, seed=0), device="cpu", progress=False)
    b = train(config, splits, TrainConfig(epochs=2, seed=1), device="cpu", progress=False)
    assert not torch.equal(a.model.fc1.weight, b.model.fc1.weight)


def test_early_stopping_restores_the_best_epoch():
    splits = tiny_splits(n=120)
    # A wide net with a high learning rate overfits 120 samples quickly.
    result = train(MLPConfig(6, (256, 256), 3), splits,
                   TrainConfig(epochs=200, lr=1e-2, patience=3), device="cpu", progress=False)
    h = result.history
    assert h.stopped_early
    assert h.epochs_run == h.best_epoch + 3
    assert h.best_epoch == int(np.argmin(h.val_loss)) + 1
    val_loss, _ = evaluate(result.model, torch.from_numpy(splits.X_val), torch.from_numpy(splits.y_val))
    assert val_loss == pytest.approx(h.val_loss[h.best_epoch - 1], rel=1e-6)


def test_history_has_one_entry_per_epoch_and_sane_values():
    result = train(MLPConfig(6, (8,), 3), tiny_splits(), TrainConfig(epochs=4, patience=None),
                   device="cpu", progress=False)
    h = result.history
    for curve in (h.train_loss, h.val_loss, h.train_accuracy, h.val_accuracy):
        assert curve.shape == (4,)
    assert np.all((h.val_accuracy >= 0) & (h.val_accuracy <= 1))
    assert h.best_epoch == 4 and not h.stopped_early


def test_snapshots_every_k_epochs_hold_that_epochs_weights():
    result = train(MLPConfig(6, (8,), 3), tiny_splits(), TrainConfig(epochs=6, snapshot_every=2, patience=None),
                   device="cpu", progress=False)
    assert sorted(result.snapshots) == [2, 4, 6]
    assert torch.equal(result.snapshots[6]["fc1.weight"], result.model.fc1.weight)
    assert not torch.equal(result.snapshots[2]["fc1.weight"], result.snapshots[6]["fc1.weight"])


def test_sgd_and_weight_decay_train():
    result = train(MLPConfig(6, (16,), 3, batch_norm=True), tiny_splits(),
                   TrainConfig(epochs=10, optimizer="sgd", lr=0.05, weight_decay=1e-3), device="cpu", progress=False)
    assert result.history.train_accuracy[-1] > 0.6


def test_weight_decay_shrinks_weights():
    splits = tiny_splits()
    plain = train(MLPConfig(6, (32,), 3), splits, TrainConfig(epochs=20, patience=None), device="cpu", progress=False)
    decayed = train(MLPConfig(6, (32,), 3), splits, TrainConfig(epochs=20, patience=None, optimizer="sgd",
                    lr=0.05, weight_decay=0.5), device="cpu", progress=False)
    assert decayed.model.fc1.weight.norm() < plain.model.fc1.weight.norm()


def test_wrong_input_size_is_a_user_error():
    with pytest.raises(InspectorError, match="model expects 5 inputs but the data has 6"):
        train(MLPConfig(5, (4,), 3), tiny_splits(), device="cpu", progress=False)


def test_cuda_without_gpu_is_a_user_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(InspectorError, match="no CUDA GPU"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


@pytest.mark.slow
def test_default_digits_run_reaches_95_percent():
    splits = split_dataset(load_digits(), SplitSpec(seed=0))
    result = train(MLPConfig(64, (128, 64), 10), splits, TrainConfig(), device="cpu", progress=False)
    assert result.test_accuracy >= 0.95
