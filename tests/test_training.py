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
    result = train(
        MLPConfig(6, (256, 256), 3), splits, TrainConfig(epochs=200, lr=1e-2, patience=3), device="cpu", progress=False
    )
    h = result.history
    assert h.stopped_early
    assert h.epochs_run == h.best_epoch + 3
    assert h.best_epoch == int(np.argmin(h.val_loss)) + 1
    val_loss, _ = evaluate(result.model, torch.from_numpy(splits.X_val), torch.from_numpy(splits.y_val))
    assert val_loss == pytest.approx(h.val_loss[h.best_epoch - 1], rel=1e-6)


def test_history_has_one_entry_per_epoch_and_sane_values():
    result = train(
        MLPConfig(6, (8,), 3), tiny_splits(), TrainConfig(epochs=4, patience=None), device="cpu", progress=False
    )
    h = result.history
    for curve in (h.train_loss, h.val_loss, h.train_accuracy, h.val_accuracy):
        assert curve.shape == (4,)
    assert np.all((h.val_accuracy >= 0) & (h.val_accuracy <= 1))
    assert h.best_epoch == 4 and not h.stopped_early


def test_snapshots_every_k_epochs_hold_that_epochs_weights():
    result = train(
        MLPConfig(6, (8,), 3),
        tiny_splits(),
        TrainConfig(epochs=6, snapshot_every=2, patience=None),
        device="cpu",
        progress=False,
    )
    assert sorted(result.snapshots) == [2, 4, 6]
    assert torch.equal(result.snapshots[6]["fc1.weight"], result.model.fc1.weight)
    assert not torch.equal(result.snapshots[2]["fc1.weight"], result.snapshots[6]["fc1.weight"])


def test_sgd_and_weight_decay_train():
    result = train(
        MLPConfig(6, (16,), 3, batch_norm=True),
        tiny_splits(),
        TrainConfig(epochs=10, optimizer="sgd", lr=0.05, weight_decay=1e-3),
        device="cpu",
        progress=False,
    )
    assert result.history.train_accuracy[-1] > 0.6


def test_weight_decay_shrinks_weights():
    splits = tiny_splits()
    plain = train(MLPConfig(6, (32,), 3), splits, TrainConfig(epochs=20, patience=None), device="cpu", progress=False)
    decayed = train(
        MLPConfig(6, (32,), 3),
        splits,
        TrainConfig(epochs=20, patience=None, optimizer="sgd", lr=0.05, weight_decay=0.5),
        device="cpu",
        progress=False,
    )
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


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lr": float("nan")},
        {"lr": float("inf")},
        {"lr": 0.0},
        {"weight_decay": float("nan")},
        {"weight_decay": float("inf")},
        {"weight_decay": -1e-4},
        {"momentum": float("nan")},
        {"seed": -1},
        {"seed": 2**32},
        {"seed": 1.5},
    ],
)
def test_train_config_refuses_non_finite_and_out_of_range_values(kwargs):
    with pytest.raises(InspectorError) as info:
        TrainConfig(**kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_split_refuses_a_seed_outside_numpy_range_in_one_line(seed):
    with pytest.raises(InspectorError, match="seed must be an integer from 0 to 4294967295"):
        split_dataset(tiny_splits().dataset, SplitSpec(seed=seed))


def test_split_accepts_the_largest_seed_and_is_deterministic():
    dataset = tiny_splits().dataset
    a, b = (split_dataset(dataset, SplitSpec(seed=2**32 - 1)) for _ in range(2))
    assert np.array_equal(a.train_index, b.train_index) and np.array_equal(a.val_index, b.val_index)
    assert len(a.train_index) + len(a.val_index) + len(a.test_index) == 200


def test_a_model_whose_training_state_exceeds_memory_is_refused_before_building(monkeypatch):
    import inspector.training as training

    monkeypatch.setattr(training, "physical_memory_bytes", lambda: 2**30)  # a 1 GiB machine
    built = []
    monkeypatch.setattr(training, "build_mlp", lambda config: built.append(config))
    # 6 -> 5000 -> 5000 -> 3: 5000*7 + 5000*5001 + 3*5001 = 25,055,008 parameters, x 16 bytes = 0.37 GiB: fits
    training.check_fits_in_memory(MLPConfig(6, (5000, 5000), 3), torch.device("cpu"))
    # 6 -> 20000 -> 20000 -> 3: 20000*7 + 20000*20001 + 3*20001 = 400,220,003 parameters, x 16 = 5.96 GiB
    with pytest.raises(InspectorError, match=r"400,220,003 parameters .* 6\.0 GiB .* \(1\.0 GiB\)"):
        train(MLPConfig(6, (20000, 20000), 3), tiny_splits(), TrainConfig(epochs=1), device="cpu", progress=False)
    assert built == []


@pytest.mark.parametrize(
    "error",
    [
        MemoryError(),
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:114] "
            "DefaultCPUAllocator: can't allocate memory: you tried to allocate 4000 bytes"
        ),
    ],
)
def test_an_allocation_failure_during_training_is_one_line(monkeypatch, error):
    import inspector.training as training

    def fail(config):
        raise error

    monkeypatch.setattr(training, "build_mlp", fail)
    with pytest.raises(InspectorError, match="out of memory while training an MLP 6-4-3 on cpu") as info:
        train(MLPConfig(6, (4,), 3), tiny_splits(), TrainConfig(epochs=1), device="cpu", progress=False)
    assert "\n" not in str(info.value)


def test_other_runtime_errors_during_training_are_not_disguised(monkeypatch):
    import inspector.training as training

    def fail(config):
        raise RuntimeError("a bug")

    monkeypatch.setattr(training, "build_mlp", fail)
    with pytest.raises(RuntimeError, match="a bug"):
        train(MLPConfig(6, (4,), 3), tiny_splits(), TrainConfig(epochs=1), device="cpu", progress=False)
