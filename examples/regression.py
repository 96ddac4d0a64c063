"""A regression MLP: which features matter, and what-if curves for each.

The data are 8 standard normal features and ``y = 3 x2 - 2 x5 + noise``: only x2 and
x5 matter, x2 with slope 3 and x5 with slope -2. A small MLP learns it; then

- ``inspector.analyze`` evaluates it with regression metrics (R², MSE) and ranks the
  features by attribution (the explained value is the model's output): x2 and x5 on top;
- ``inspector.analysis.partial_dependence`` sweeps each feature over its observed range
  and averages the model's output over the data (partial dependence, Friedman 2001),
  with individual curves for a sample of rows (ICE, Goldstein et al. 2015). The
  example prints each curve's least-squares slope: about 3 for x2, -2 for x5 and 0
  elsewhere, the function's own coefficients.

Then it writes the HTML report (with the what-if curves) and, with ``--dashboard``,
opens the dashboard (What-if view, with a slider per feature) on it.

    python examples/regression.py [--small] [--out DIR] [--dashboard] [--port 8050]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

import inspector
from inspector.analysis import AnalysisOptions, partial_dependence

N_FEATURES = 8
WEIGHTS = {2: 3.0, 5: -2.0}  # y = 3 x2 - 2 x5 + noise
FEATURE_NAMES = tuple(f"x{j}" for j in range(N_FEATURES))


def make_data(n: int, *, seed: int, noise: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """``X`` ``(n, 8)`` standard normal float32 and ``y`` ``(n,)`` = 3 x2 - 2 x5 + N(0, noise²) float32."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, N_FEATURES)).astype(np.float32)
    y = sum(w * X[:, j].astype(np.float64) for j, w in WEIGHTS.items()) + noise * rng.standard_normal(n)
    return X, y.astype(np.float32)


def build_model() -> nn.Module:
    """8 -> 32 -> 32 -> 1 with ReLU: one linear output for the one target."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(N_FEATURES, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 1))


def train(model: nn.Module, X: np.ndarray, y: np.ndarray, epochs: int, batch_size: int = 128) -> None:
    """Adam on the mean squared error, shuffled mini-batches."""
    inputs, targets = torch.from_numpy(X), torch.from_numpy(y).unsqueeze(1)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(epochs):
        for rows in torch.randperm(len(X), generator=generator).split(batch_size):
            optimiser.zero_grad()
            nn.functional.mse_loss(model(inputs[rows]), targets[rows]).backward()
            optimiser.step()
    model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="fewer epochs and IG steps (for CI)")
    parser.add_argument("--out", type=Path, default=Path("regression-output"), help="folder for the report")
    parser.add_argument("--dashboard", action="store_true", help="open the dashboard on the analysis")
    parser.add_argument("--port", type=int, default=8050)
    args = parser.parse_args()

    X_train, y_train = make_data(4000, seed=0)
    X_test, y_test = make_data(1000, seed=1)
    model = build_model()
    train(model, X_train, y_train, epochs=10 if args.small else 60)

    if args.small:
        options = AnalysisOptions(
            methods=("integrated_gradients", "saliency", "feature_ablation"), n_steps=16, max_importance_samples=200,
            conductance=False, sparsities=(0.0, 0.5, 0.9),
        )  # fmt: skip
    else:
        options = AnalysisOptions()
    data = (X_test, y_test)
    analysis = inspector.analyze(model, data, feature_names=FEATURE_NAMES, options=options)
    assert analysis.data is not None and analysis.importance is not None
    print(f"{analysis.data.metric_name} {analysis.data.metric:.4f}, {analysis.data.loss_name} {analysis.data.loss:.4f}")

    print("feature importance (mean |attribution| of the output), top two:")
    for method in analysis.importance.methods:
        if method.error is None:
            print(f"  {method.method:<22} {', '.join(FEATURE_NAMES[i] for i in method.ranking[:2])}")

    # The same curves are in analysis.whatif (over the importance samples); here every test row counts.
    curves = partial_dependence(model, data, feature_names=FEATURE_NAMES, grid_points=20, n_ice=20)
    print(f"partial dependence over {curves.n_samples} rows: least-squares slope of each feature's curve")
    for column, name in zip(curves.features, curves.feature_names, strict=True):
        truth = WEIGHTS.get(int(column), 0.0)
        print(f"  {name}: slope {curves.slope(name):+.3f} (true {truth:+.0f}), effect {curves.effect(name):.3f}")

    args.out.mkdir(parents=True, exist_ok=True)
    analysis.save(args.out / "analysis", force=True)  # for `inspector dashboard DIR` later
    path = args.out / "regression.html"
    inspector.to_html(analysis, path, force=True)  # force replaces only a report this tool wrote
    print(f"wrote {path} and {args.out / 'analysis'}")

    if args.dashboard:
        from dashboards.app import create_app, serve

        serve(create_app(analysis, model=model, data=data), port=args.port)


if __name__ == "__main__":
    try:
        main()
    except inspector.InspectorError as error:  # e.g. --out holds a file dense-inspector did not write
        sys.exit(f"error: {error}")
