"""Quick start: train an MLP on the bundled digits, analyse it, write a report.

    python examples/quickstart.py [--out DIR] [--small]

The same from the shell:
    inspector train --dataset digits --out digits-mlp.pt
    inspector analyze digits-mlp.pt --out digits-analysis
    inspector report digits-analysis --out digits-report.html
"""

from __future__ import annotations

import argparse
from pathlib import Path

import inspector
from inspector.analysis import AnalysisOptions, analyze
from inspector.evaluation import eval_data_for
from inspector.render.tables import format_summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("quickstart-output"))
    parser.add_argument("--small", action="store_true", help="a few epochs and fewer IG steps (for CI)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    # 1. data and training: the split and the standardisation are stored with the checkpoint
    dataset = inspector.load_digits()
    splits = inspector.split_dataset(dataset, inspector.SplitSpec(seed=0))
    config = inspector.MLPConfig(input_size=64, hidden_sizes=(128, 64), output_size=10, activation="relu")
    result = inspector.train(config, splits, inspector.TrainConfig(epochs=5 if args.small else 100, snapshot_every=2))
    print(f"test accuracy {result.test_accuracy:.2%} after {result.history.epochs_run} epochs")
    checkpoint = inspector.checkpoint_from_training(result, dataset, splits.standardizer, splits.spec)
    path = inspector.save_checkpoint(checkpoint, args.out / "digits-mlp.pt", force=True)

    # 2. analysis: every section, on the test split recreated from the checkpoint
    ckpt = inspector.load(path)
    options = AnalysisOptions(n_steps=16, max_importance_samples=120) if args.small else AnalysisOptions()
    analysis = analyze(ckpt, eval_data_for(ckpt), options=options)
    analysis.save(args.out / "analysis", force=True)
    print(format_summary(analysis))

    # 3. reports: a self-contained HTML file and Markdown for a pull request
    inspector.to_html(analysis, args.out / "report.html", force=True)
    (args.out / "report.md").write_text(inspector.to_markdown(analysis), encoding="utf-8")
    print(f"wrote {args.out / 'report.html'} and {args.out / 'report.md'}")


if __name__ == "__main__":
    main()
