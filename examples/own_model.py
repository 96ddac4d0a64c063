"""Analyse a model defined in your own code, through the Python API.

Any nn.Module with nn.Linear layers works: here a small network with LeakyReLU,
trained with a plain PyTorch loop on the synthetic task whose label depends only
on features 2 and 5. The analysis should find exactly those two.

    python examples/own_model.py [--small]
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

import inspector
from inspector.analysis import AnalysisOptions, analyze
from inspector.evaluation import EvalData


class TwoTower(nn.Module):
    """Not an MLP of dense-inspector's: its own names, nesting and forward."""

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(n_features, 32), nn.LeakyReLU(0.05), nn.Linear(32, 16), nn.LeakyReLU(0.05)
        )
        self.head = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true")
    args = parser.parse_args()
    dataset = inspector.make_synthetic(n_samples=2000, n_features=10, informative=(2, 5))
    splits = inspector.split_dataset(dataset)

    torch.manual_seed(0)
    model = TwoTower(dataset.n_features)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    X, y = torch.from_numpy(splits.X_train), torch.from_numpy(splits.y_train)
    for _ in range(20 if args.small else 60):
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(X), y).backward()
        optimiser.step()

    data = EvalData.from_arrays(splits.X_test, splits.y_test, name="synthetic", feature_names=dataset.feature_names)
    analysis = analyze(model, data, options=AnalysisOptions(n_steps=16 if args.small else 50))
    print(f"accuracy {analysis.data.accuracy:.2%}; planted features: {dataset.planted.informative_features}")
    for method in analysis.importance.methods:
        top = [dataset.feature_names[i] for i in method.ranking[:2]]
        print(f"  {method.method:<22} top two: {', '.join(top)}")
    for layer in analysis.parameters.layers:
        print(f"  {layer.layer:<12} {layer.out_features} x ({layer.in_features} + 1) = {layer.parameters} parameters")
    for census in analysis.activations:
        print(f"  {census.layer}: {census.dead_count} of {census.width} units never fire")


if __name__ == "__main__":
    main()
