"""Load someone else's state dict and inspect it.

Someone trained `nn.Sequential(Linear(64, 48), Tanh(), Linear(48, 10))` on the digits
and sent you only `model.state_dict()`. dense-inspector rebuilds the MLP from the weight
shapes (the activation is not in the file: you say it), reports its parameters from the
file alone, and analyses it on data you provide.

    python examples/foreign_state_dict.py [--out DIR] [--small]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

import inspector
from inspector.analysis import AnalysisOptions, analyze
from inspector.evaluation import EvalData
from inspector.render.tables import format_inventory


def someone_elses_model(splits: inspector.Splits, epochs: int) -> nn.Module:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(64, 48), nn.Tanh(), nn.Linear(48, 10))
    optimiser = torch.optim.Adam(model.parameters(), lr=5e-3)
    X, y = torch.from_numpy(splits.X_train), torch.from_numpy(splits.y_train)
    for _ in range(epochs):
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(X), y).backward()
        optimiser.step()
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("foreign-output"))
    parser.add_argument("--small", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    dataset = inspector.load_digits()
    splits = inspector.split_dataset(dataset)

    path = args.out / "their_model.pt"
    torch.save(someone_elses_model(splits, 30 if args.small else 150).state_dict(), path)  # all we receive

    print(format_inventory(inspector.read_inventory(path)))  # from the file, without building anything
    ckpt = inspector.load(path, activation="tanh")  # weights_only load; the chain is inferred from shapes
    print(f"rebuilt: {ckpt.config.layer_sizes}, activation {ckpt.config.activation}")

    data = EvalData.from_arrays(
        splits.X_test,
        splits.y_test,
        name="digits",
        feature_names=dataset.feature_names,
        class_names=dataset.class_names,
        image_shape=dataset.image_shape,
    )
    analysis = analyze(ckpt, data, options=AnalysisOptions(n_steps=16 if args.small else 50))
    print(f"accuracy {analysis.data.accuracy:.2%}")
    for f in analysis.findings:
        print(f"  - {f.text}")
    inspector.to_html(analysis, args.out / "their_model.html", force=True)


if __name__ == "__main__":
    main()
