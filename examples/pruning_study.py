"""Pruning study: how far can the digits MLP be pruned, and what changes when it is?

Sweeps global, per-layer and structured pruning with fine-tuning, exports the
sparsest model that stays within one point of the original accuracy, and writes a
comparison report (before vs after pruning).

    python examples/pruning_study.py [--out DIR] [--small]
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import inspector
from inspector.analysis import AnalysisOptions, analyze
from inspector.analysis.compare import compare
from inspector.analysis.pruning import prune_and_finetune, pruning_sweep
from inspector.evaluation import eval_data_for
from inspector.render import write_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("pruning-output"))
    parser.add_argument("--small", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    dataset = inspector.load_digits()
    splits = inspector.split_dataset(dataset)
    result = inspector.train(
        inspector.MLPConfig(64, (128, 64), 10), splits, inspector.TrainConfig(epochs=10 if args.small else 100)
    )
    ckpt = inspector.checkpoint_from_training(result, dataset, splits.standardizer, splits.spec)
    original = inspector.save_checkpoint(ckpt, args.out / "digits-mlp.pt", force=True)
    ckpt = inspector.load(original)
    data = eval_data_for(ckpt)

    finetune_epochs = 1 if args.small else 3
    sweep = pruning_sweep(
        ckpt.model, data.X, data.y, finetune=(data.train_X, data.train_y), finetune_epochs=finetune_epochs
    )
    print(f"unpruned accuracy {sweep.baseline_metric:.2%}")
    best = 0.0
    for curve in sweep.curves:
        for s, acc, tuned, left in zip(curve.sparsity, curve.metric, curve.finetuned_metric, curve.parameters_left):
            print(f"  {curve.scope:<7} {s:4.0%}: {acc:.2%} -> fine-tuned {tuned:.2%}, {left:,} parameters left")
            if curve.scope == "global" and sweep.baseline_metric - tuned <= 0.01:
                best = max(best, float(s))
    print(f"sparsest global level within one point after fine-tuning: {best:.0%}")

    pruned_model = prune_and_finetune(ckpt.model, best, "global", data.train_X, data.train_y, finetune_epochs)
    pruned = dataclasses.replace(ckpt, model=pruned_model, snapshots={}, source=str(args.out / "pruned.pt"))
    inspector.save_checkpoint(pruned, args.out / "pruned.pt", force=True)

    options = AnalysisOptions(
        n_steps=16, max_importance_samples=120, sections=("parameters", "weights", "activations", "importance")
    )
    before = analyze(ckpt, data, options=options)
    after = analyze(pruned, data, options=options)
    comparison = compare(before, after, model_a=ckpt.model, model_b=pruned_model)
    write_report(comparison, args.out / "before-after.html", force=True)
    write_report(comparison, args.out / "before-after.md", force=True)
    for f in comparison.findings:
        print(f"  - {f.text}")


if __name__ == "__main__":
    main()
