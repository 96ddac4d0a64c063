"""``inspector train``: train an MLP on a dataset and save a checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from inspector.analysis.parameters import count_parameters
from inspector.checkpoints import checkpoint_from_training, checkpoint_suffix, is_own_checkpoint, save_checkpoint
from inspector.cli.commands.common import (
    input_files,
    note,
)
from inspector.data import BUILTIN_DATASETS, SplitSpec, check_classification_labels, load_dataset, split_dataset
from inspector.fileio import check_writable
from inspector.models import MLPConfig
from inspector.render.tables import format_parameters
from inspector.training import TrainConfig, train
from inspector.workflows import check_new_run_dir


def run(args: argparse.Namespace) -> int:
    dataset_name = Path(args.dataset).stem if args.dataset not in BUILTIN_DATASETS else args.dataset
    out = args.out or Path(f"{dataset_name}-mlp.pt")
    check_writable(
        out,
        force=args.force,
        inputs=input_files(args.dataset),  # fail before training, not after
        ours=is_own_checkpoint,
    )
    checkpoint_suffix(out)
    if args.run_dir is not None:
        check_new_run_dir(args.run_dir)
    dataset = load_dataset(args.dataset, label_column=args.label_column, task=args.task or "auto")
    regression = dataset.task == "regression"
    if regression and args.task is None and args.dataset not in BUILTIN_DATASETS:
        note(
            f"{args.dataset}: the labels are numbers that are not all whole numbers, so this trains a regression "
            "model (MSE loss, R²); pass --task to choose"
        )
    if not regression:
        check_classification_labels(dataset, str(args.dataset))
    spec = SplitSpec(seed=args.seed, val_fraction=args.val_fraction, test_fraction=args.test_fraction)
    splits = split_dataset(dataset, spec)
    config = MLPConfig(
        input_size=dataset.n_features,
        hidden_sizes=args.hidden,
        output_size=dataset.n_outputs,
        activation=args.activation,
        dropout=args.dropout,
        batch_norm=args.batch_norm,
    )
    train_config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        optimizer=args.optimizer,
        weight_decay=args.weight_decay,
        patience=args.patience or None,
        snapshot_every=args.snapshot_every,
        seed=args.seed,
    )
    result = train(
        config,
        splits,
        train_config,
        device=args.device,
        progress=False if args.quiet else None,
        run_dir=args.run_dir,
        every=args.every,
    )
    ckpt = checkpoint_from_training(result, dataset, splits.standardizer, spec)
    save_checkpoint(ckpt, out, force=args.force)
    h = result.history
    n_targets = len(dataset.target_names)
    what = f"regression of {n_targets} target{'s' if n_targets != 1 else ''}, " if regression else ""
    print(
        f"MLP {'-'.join(map(str, config.layer_sizes))} ({config.activation}) on {dataset.name}: {what}"
        f"{dataset.n_samples} samples, {len(splits.y_train)}/{len(splits.y_val)}/{len(splits.y_test)} "
        "train/val/test"
    )
    print(format_parameters(count_parameters(result.model)))
    if not args.patience:  # no early stopping: the last epoch is what was kept, whatever validation said
        lowest = int(np.argmin(h.val_loss)) + 1 if len(h.val_loss) else h.epochs_run
        stop = f"last epoch kept (no early stopping); lowest validation loss at epoch {lowest}"
    else:
        stop = f"early stop, best epoch {h.best_epoch}" if h.stopped_early else f"best epoch {h.best_epoch}"
    print(f"trained {h.epochs_run} epochs ({stop}) in {result.wall_time_s:.1f} s on {result.device}")
    if regression:
        mean_of = f" (mean of {n_targets} targets)" if n_targets > 1 else ""
        print(f"test R² {result.test_r2:.4f}{mean_of}, MSE {result.test_loss:.4g} ({len(splits.y_test)} samples)")
    else:
        print(
            f"test accuracy {result.test_accuracy:.2%} ({len(splits.y_test)} samples), test loss {result.test_loss:.4f}"
        )
    if result.snapshots:
        print(f"kept {len(result.snapshots)} weight snapshots")
    if args.run_dir is not None:
        print(f"recorded the dense layers every {args.every} steps in {args.run_dir}")
    print(f"saved {out}")
    return 0
