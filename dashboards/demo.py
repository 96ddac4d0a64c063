"""The built-in demo: an MLP on scikit-learn's digits, trained on first use and cached.

The cache lives in ``$DENSE_INSPECTOR_CACHE`` (default ``~/.cache/dense-inspector``) and
is keyed by the package version, so an upgrade retrains instead of reading a stale file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from inspector._version import __version__
from inspector.analysis import Analysis, analyze
from inspector.checkpoints import Checkpoint, checkpoint_from_training, load, save_checkpoint
from inspector.data import SplitSpec, load_digits, split_dataset
from inspector.errors import InspectorError
from inspector.evaluation import EvalData, eval_data_for
from inspector.models import MLPConfig
from inspector.training import TrainConfig, train

# A learning rate on the high side kills a few ReLUs, so the dead-neuron views have something to show.
DEMO_CONFIG = MLPConfig(64, (128, 64), 10, activation="relu")
DEMO_TRAINING = TrainConfig(lr=1e-2, snapshot_every=2, seed=0)


def cache_dir() -> Path:
    root = os.environ.get("DENSE_INSPECTOR_CACHE") or Path.home() / ".cache" / "dense-inspector"
    return Path(root) / f"demo-{__version__}"


def load_demo(
    directory: Path | None = None, log: Callable[[str], None] = print
) -> tuple[Analysis, Checkpoint, EvalData]:
    """The demo's analysis, checkpoint and evaluation data, training and analysing on first use."""
    directory = directory or cache_dir()
    ckpt_path, analysis_dir = directory / "digits-mlp.pt", directory / "analysis"
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InspectorError(
            f"cannot create the demo cache {directory} ({exc.strerror}); set DENSE_INSPECTOR_CACHE to a writable folder"
        ) from None
    if not ckpt_path.exists():
        log("training the demo model (digits, 64-128-64-10 ReLU) ...")
        dataset = load_digits()
        spec = SplitSpec(seed=0)
        splits = split_dataset(dataset, spec)
        result = train(DEMO_CONFIG, splits, DEMO_TRAINING, device="cpu", progress=False)
        save_checkpoint(checkpoint_from_training(result, dataset, splits.standardizer, spec), ckpt_path, force=True)
        log(f"test accuracy {result.test_accuracy:.2%}, trained in {result.wall_time_s:.1f} s")
    ckpt = load(ckpt_path)
    data = eval_data_for(ckpt)
    if data is None:  # pragma: no cover - the demo is trained on digits
        raise InspectorError(f"{ckpt_path}: the demo checkpoint lost its dataset")
    if (analysis_dir / "analysis.json").exists():
        try:
            return Analysis.load(analysis_dir), ckpt, data
        except InspectorError:
            log("the cached demo analysis is unreadable; recomputing it")
    log("analysing the demo model ...")
    analysis = analyze(ckpt, data)
    analysis.save(analysis_dir, force=True)
    return analysis, ckpt, data
