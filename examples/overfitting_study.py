"""Overfitting study: no regularisation vs L2 vs dropout vs early stopping, in one report.

Trains the same MLP four ways on a deliberately small training split of the digits
(so that it can overfit), analyses each, and writes one HTML report that puts their
training curves, train/validation gaps and dead neurons side by side.

    python examples/overfitting_study.py [--out DIR] [--small]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

import inspector
from inspector import figures as F
from inspector.analysis import AnalysisOptions, analyze
from inspector.evaluation import EvalData
from inspector.fileio import write_text_atomic
from inspector.render.html import Section, html_table, render_html

SETTINGS = {
    "no regularisation": dict(config={}, training={"patience": None}),
    "L2 weight decay 1e-3": dict(config={}, training={"patience": None, "weight_decay": 1e-3}),
    "dropout 0.3": dict(config={"dropout": 0.3}, training={"patience": None}),
    "early stopping (patience 5)": dict(config={}, training={"patience": 5}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("overfitting-output"))
    parser.add_argument("--small", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    dataset = inspector.load_digits()
    # 45% for test and 35% for validation leaves a training split of ~360 samples: easy to overfit
    splits = inspector.split_dataset(dataset, inspector.SplitSpec(seed=0, val_fraction=0.35, test_fraction=0.45))
    epochs = 15 if args.small else 120
    data = EvalData(
        dataset.name,
        "test",
        splits.X_test,
        splits.y_test,
        dataset.feature_names,
        dataset.class_names,
        dataset.image_shape,
    )
    options = AnalysisOptions(sections=("parameters", "activations", "training"))

    rows, curves = [], go.Figure()
    for name, setting in SETTINGS.items():
        config = inspector.MLPConfig(64, (256, 128), 10, **setting["config"])
        result = inspector.train(config, splits, inspector.TrainConfig(epochs=epochs, lr=3e-3, **setting["training"]))
        analysis = analyze(result.model, data, history=result.history, options=options)
        t = analysis.training
        rows.append(
            {
                "setting": name,
                "epochs": t.epochs_run,
                "best epoch": t.best_epoch,
                "train-val accuracy gap": f"{100 * t.accuracy_gap:.1f} points",
                "overfitting from epoch": t.overfitting_epoch or "-",
                "test accuracy": f"{result.test_accuracy:.2%}",
                "dead neurons": sum(a.dead_count for a in analysis.activations),
            }
        )
        curves.add_trace(go.Scatter(x=np.arange(1, t.epochs_run + 1), y=t.val_loss, name=name))
        print(
            f"{name:<28} test {result.test_accuracy:.2%}, gap {100 * t.accuracy_gap:5.1f} points, "
            f"best epoch {t.best_epoch}/{t.epochs_run}"
        )
    curves.update_layout(
        template=F.TEMPLATE,
        title="Validation loss per epoch",
        xaxis_title="epoch",
        yaxis_title="validation loss",
        height=420,
    )
    sections = [
        Section(
            "summary",
            "Four ways to train the same MLP",
            [
                f"<p>MLP 64-256-128-10 on {len(splits.y_train)} training digits, {epochs} epochs at most.</p>",
                html_table(rows),  # the report's own table renderer keeps the look consistent
            ],
        ),
        Section("curves", "Validation loss", [curves]),
    ]
    path = write_text_atomic(args.out / "overfitting.html", render_html("Overfitting study", sections), force=True)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
