"""The training loop: Adam or SGD, L2 weight decay, early stopping, snapshots.

Classification minimises cross-entropy and reports accuracy. Regression minimises the
mean squared error of the *standardised* targets (each target's training mean and
standard deviation), so targets in any units train at the same learning rate; the
scale is then folded into the output layer, so the returned model, its snapshots and
every reported number are in the data's own units. It reports R² (``1 - SSE / SST``,
SST about the evaluated data's own mean, averaged over targets as scikit-learn's
``r2_score`` does) and the MSE.

Seeded and reproducible on the CPU: the same seed gives bit-identical weights.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from inspector.analysis.inputs import Batch
from inspector.analysis.task import task_for_labels
from inspector.core.evaluator import Scores, evaluate_arrays
from inspector.data import Splits, Standardizer
from inspector.errors import InspectorError
from inspector.live.monitor import Monitor
from inspector.models import MLP, MLPConfig, build_mlp
from inspector.records import History, TrainConfig  # re-exported: where callers have always found them


@dataclass(frozen=True)
class TrainResult:
    """A trained model (best weights restored), its history and weight snapshots.

    ``snapshots`` maps a 1-based epoch to the state dict at the end of that epoch (CPU tensors).
    Classification: ``test_accuracy`` and ``test_loss`` (cross-entropy); ``test_r2`` is NaN.
    Regression: ``test_r2`` and ``test_loss`` (MSE in the targets' units); ``test_accuracy`` is NaN.
    """

    model: MLP
    history: History
    train_config: TrainConfig
    test_accuracy: float
    test_loss: float
    wall_time_s: float
    device: str
    snapshots: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict, repr=False)
    task: str = "classification"
    test_r2: float = math.nan


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without one is a user error."""
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InspectorError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
    if not (name == "cpu" or name.startswith("cuda")):
        raise InspectorError(f"unknown device {name!r}; use auto, cpu or cuda")
    return torch.device(name)


def evaluate(model: nn.Module, X: torch.Tensor, y: torch.Tensor, batch_size: int = 4096) -> tuple[float, float]:
    """``(loss, metric)`` of ``model`` on ``X`` ``(n, d)``, in eval mode: the one
    evaluator (:mod:`inspector.core.evaluator`), the task read from ``y``'s dtype.

    Integer ``y`` ``(n,)`` are classes: mean cross-entropy and accuracy. Floating ``y``
    ``(n,)`` or ``(n, k)`` are regression targets: MSE (mean over samples and targets) and
    R² averaged over the ``k`` targets (a constant target left out; NaN when every one is), in float64.
    For the metric's name as well, :func:`~inspector.core.evaluator.evaluate_arrays`.
    """
    scores = evaluate_arrays(model, X, y, task_for_labels(y), batch_size)
    return scores.loss, scores.metric


def predict(model: nn.Module, X: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """``model``'s outputs ``(n, outputs)`` on ``X`` ``(n, d)``, in eval mode, without gradients."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            outputs = [model(X[start : start + batch_size]) for start in range(0, X.shape[0], batch_size)]
        return torch.cat(outputs) if outputs else torch.empty(0)
    finally:
        model.train(was_training)


def regression_scores(predictions: np.ndarray, targets: np.ndarray) -> tuple[float, float]:
    """``(MSE, R²)`` of ``predictions`` against ``targets``, both ``(n,)`` or ``(n, k)``, in float64,
    by the one evaluator (:class:`~inspector.core.evaluator.Scores`).

    MSE is the mean over samples and targets; R² = 1 - SSE/SST per target (SST about the
    targets' own mean), averaged over the targets that are not constant; NaN when every one is.
    """
    pred = torch.from_numpy(np.asarray(predictions, np.float64).reshape(len(predictions), -1))
    true = torch.from_numpy(np.asarray(targets, np.float64).reshape(len(targets), -1))
    scores = Scores(task_for_labels(true))
    if len(true):
        scores.update(pred, Batch(pred, true))
    return scores.finish()


def fold_target_scale(
    state: dict[str, torch.Tensor], layer: str, mean: np.ndarray, scale: np.ndarray
) -> dict[str, torch.Tensor]:
    """``state`` with the output ``layer`` rescaled from standardised to original target units.

    A model trained on ``(y - mean) / scale`` predicts ``z = W h + b``; the original units
    are ``z * scale + mean = (scale * W) h + (scale * b + mean)``. ``mean``, ``scale``: ``(k,)``.
    """
    out = dict(state)
    weight, bias = state[f"{layer}.weight"], state[f"{layer}.bias"]
    s = torch.as_tensor(scale, dtype=weight.dtype, device=weight.device)
    m = torch.as_tensor(mean, dtype=bias.dtype, device=bias.device)
    out[f"{layer}.weight"] = weight * s[:, None]
    out[f"{layer}.bias"] = bias * s + m
    return out


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


# Weights, gradients and Adam's two moment buffers: four float32 copies of every parameter.
TRAINING_COPIES = 4
FLOAT32_BYTES = 4


def _gib(n_bytes: int) -> str:
    return f"{n_bytes / 2**30:,.1f} GiB"


def physical_memory_bytes() -> int | None:
    """This machine's RAM, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows) or no such name
        return None


def check_fits_in_memory(config: MLPConfig, device: torch.device) -> None:
    """Refuse, before anything is allocated, a model whose training state cannot fit on ``device``."""
    n_parameters = sum(math.prod(shape) for shape in config.state_shapes().values())
    needed = n_parameters * FLOAT32_BYTES * TRAINING_COPIES
    available = physical_memory_bytes()
    where = "this machine's memory"
    if device.type == "cuda":
        available, where = torch.cuda.get_device_properties(device).total_memory, f"{device}'s memory"
    if available is not None and needed > available:
        raise InspectorError(
            f"an MLP {'-'.join(map(str, config.layer_sizes))} has {n_parameters:,} parameters and needs about "
            f"{_gib(needed)} to train, more than {where} ({_gib(available)}); choose smaller --hidden sizes"
        )


def _is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text)


def train(
    config: MLPConfig,
    splits: Splits,
    train_config: TrainConfig | None = None,
    *,
    device: str | torch.device = "auto",
    progress: bool | None = None,
    run_dir: str | os.PathLike[str] | None = None,
    every: int = 50,
) -> TrainResult:
    """Train an :class:`MLP` on ``splits`` and return it with the best validation weights.

    Early stopping watches validation loss: after ``patience`` epochs without
    improvement, training stops and the best epoch's weights are restored.
    ``progress=None`` shows a tqdm bar only when stderr is a terminal.
    A model too large for the device's memory is a user error, refused before building it.
    ``run_dir``: record the dense layers every ``every`` optimizer steps there, through a
    :class:`~inspector.live.monitor.Monitor` (a new run directory; an existing run is refused).
    """
    dev = resolve_device(device)
    check_fits_in_memory(config, dev)
    try:
        return _train(config, splits, train_config or TrainConfig(), dev, progress, run_dir, every)
    except (MemoryError, RuntimeError) as exc:
        # The estimate leaves out activations and the data: an allocation can still fail.
        if not _is_out_of_memory(exc):
            raise
        raise InspectorError(
            f"out of memory while training an MLP {'-'.join(map(str, config.layer_sizes))} on {dev}; "
            "choose smaller --hidden sizes or --batch-size"
        ) from None


def _train(
    config: MLPConfig,
    splits: Splits,
    tc: TrainConfig,
    dev: torch.device,
    progress: bool | None,
    run_dir: str | os.PathLike[str] | None = None,
    every: int = 50,
) -> TrainResult:
    if config.input_size != splits.X_train.shape[1]:
        raise InspectorError(
            f"model expects {config.input_size} inputs but the data has {splits.X_train.shape[1]} features"
        )
    regression = splits.dataset.task == "regression"
    if regression and config.output_size != splits.dataset.n_outputs:
        raise InspectorError(
            f"model has {config.output_size} outputs but the data has {splits.dataset.n_outputs} regression "
            "targets; a regression MLP has one output per target"
        )
    if config.output_size < splits.dataset.n_classes:
        raise InspectorError(
            f"model has {config.output_size} outputs but the data has {splits.dataset.n_classes} classes"
        )
    torch.manual_seed(tc.seed)
    model = build_mlp(config).to(dev)
    generator = torch.Generator().manual_seed(tc.seed)
    target_scaler = None
    if regression:
        # Train on standardised targets (train split statistics), folded back into fc_L at the end.
        target_scaler = Standardizer.fit(splits.y_train.reshape(len(splits.y_train), -1))

    def tensors(X: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        if target_scaler is not None:
            y = ((y.reshape(len(y), -1) - target_scaler.mean) / target_scaler.scale).astype(np.float32)
        return torch.from_numpy(X).to(dev), torch.from_numpy(y).to(dev)

    loss_fn = nn.functional.mse_loss if regression else nn.functional.cross_entropy
    last = config.linear_names[-1]  # fc_L, or the name a foreign file gave it

    def in_target_units(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if target_scaler is None:
            return state
        return fold_target_scale(state, last, target_scaler.mean, target_scaler.scale)

    X_train, y_train = tensors(splits.X_train, splits.y_train)
    X_val, y_val = tensors(splits.X_val, splits.y_val)

    if tc.optimizer == "adam":
        optimizer: torch.optim.Optimizer = torch.optim.Adam(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=tc.lr, momentum=tc.momentum, weight_decay=tc.weight_decay)

    monitor = None
    if run_dir is not None:
        meta = {"source": "inspector train", "layer_sizes": list(config.layer_sizes), "train_config": tc.to_dict()}
        monitor = Monitor(model, run_dir, every=every, optimizer=optimizer, meta=meta)

    curves: dict[str, list[float]] = {"train_loss": [], "val_loss": [], "train_accuracy": [], "val_accuracy": []}
    snapshots: dict[int, dict[str, torch.Tensor]] = {}
    best_loss, best_epoch, best_state = float("inf"), 0, _cpu_state(model)
    stopped_early = False
    n = X_train.shape[0]
    show = sys.stderr.isatty() if progress is None else progress
    started = time.perf_counter()
    bar = tqdm(range(1, tc.epochs + 1), desc="training", unit="epoch", disable=not show, leave=False)
    with monitor if monitor is not None else contextlib.nullcontext():
        for epoch in bar:
            model.train()
            order = torch.randperm(n, generator=generator).to(dev)
            for start in range(0, n, tc.batch_size):
                idx = order[start : start + tc.batch_size]
                if idx.numel() < 2 and config.batch_norm:
                    continue  # batch norm cannot normalise a batch of one
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(model(X_train[idx]), y_train[idx])
                loss.backward()
                optimizer.step()
                if monitor is not None:
                    monitor.step(loss)
            train_loss, train_acc = evaluate(model, X_train, y_train)
            val_loss, val_acc = evaluate(model, X_val, y_val)
            for key, value in zip(curves, (train_loss, val_loss, train_acc, val_acc)):
                curves[key].append(value)
            bar.set_postfix(
                train_loss=f"{train_loss:.3f}",
                val_loss=f"{val_loss:.3f}",
                **{"val_r2" if regression else "val_acc": f"{val_acc:.3f}"},
            )
            if tc.snapshot_every and epoch % tc.snapshot_every == 0:
                snapshots[epoch] = in_target_units(_cpu_state(model))
            if val_loss < best_loss:
                best_loss, best_epoch, best_state = val_loss, epoch, _cpu_state(model)
            elif tc.patience is not None and epoch - best_epoch >= tc.patience:
                stopped_early = True
                break
    bar.close()
    if tc.patience is not None:
        model.load_state_dict(in_target_units(best_state))
    else:
        best_epoch = len(curves["train_loss"])
        model.load_state_dict(in_target_units(_cpu_state(model)))
    wall = time.perf_counter() - started
    # the test split in the data's own units, on the model exactly as it is returned and saved
    X_test, y_test = torch.from_numpy(splits.X_test).to(dev), torch.from_numpy(splits.y_test).to(dev)
    test_loss, test_metric = evaluate(model, X_test, y_test)
    model.eval()
    history = History(
        **{k: np.asarray(v, np.float64) for k, v in curves.items()},
        best_epoch=best_epoch,
        stopped_early=stopped_early,
        metric_name="R²" if regression else "accuracy",
    )
    return TrainResult(
        model=model.cpu(),
        history=history,
        train_config=tc,
        test_accuracy=math.nan if regression else test_metric,
        test_loss=test_loss,
        wall_time_s=wall,
        device=str(dev),
        snapshots=snapshots,
        task=splits.dataset.task,
        test_r2=test_metric if regression else math.nan,
    )
