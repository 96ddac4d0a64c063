"""A small CNN on the 8x8 digits, its dense head inspected.

The convolutions extract features (edges, strokes) from the image; the dense head
(flatten -> fc1 -> ReLU -> out) decides which digit it is. This example trains the
CNN briefly, hands it and a ``DataLoader`` of held-out images to
``inspector.analyze``, and prints what the head shows:

- where the parameters are: each conv layer, out x (in x k x k + 1), against each
  dense layer, out x (in + 1); the head holds most of them;
- which of the head's neurons never fire (dead) and how often the others do;
- the pixels the decision rests on (integrated gradients, |attribution| averaged
  over the held-out images), as a top list and an 8x8 map. Pixels that are blank in
  every image get exactly zero: integrated gradients from a black image multiplies
  by (pixel - 0).

Then it writes the HTML report (attribution maps in the images' shape) and, with
``--dashboard``, opens the dashboard on the analysis with the model and the data,
so per-sample attribution maps can be asked for.

    python examples/cnn_head.py [--small] [--out DIR] [--dashboard] [--port 8050]
"""

from __future__ import annotations

import argparse
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import inspector
from inspector.analysis import AnalysisOptions

N_TRAIN = 1400  # the rest of the 1,797 digits are held out for the analysis


class DigitsCNN(nn.Module):
    """conv1 (1->8, 3x3) - ReLU - conv2 (8->16, 3x3) - ReLU - maxpool 2 - flatten (16 x 4 x 4 = 256) -
    ``head``: fc1 (256->32) - ReLU - out (32->10).

    Input ``(n, 1, 8, 8)`` images in [0, 1], output ``(n, 10)`` logits.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(1, 8, 3, padding=1),
                relu1=nn.ReLU(),
                conv2=nn.Conv2d(8, 16, 3, padding=1),
                relu2=nn.ReLU(),
                pool=nn.MaxPool2d(2),
            )
        )
        self.head = nn.Sequential(OrderedDict(fc1=nn.Linear(16 * 4 * 4, 32), act=nn.ReLU(), out=nn.Linear(32, 10)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.features(x), 1))


def digits_images() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's digits as images ``(1797, 1, 8, 8)`` float32 in [0, 1] and labels ``(1797,)``."""
    bunch = load_digits()
    images = torch.as_tensor(bunch.images / 16.0, dtype=torch.float32).unsqueeze(1)
    return images, torch.as_tensor(bunch.target, dtype=torch.int64)


def train(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, steps: int) -> None:
    """Full-batch Adam: the digits are small enough to fit in one batch."""
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    for _ in range(steps):
        optimiser.zero_grad()
        F.cross_entropy(model(images), labels).backward()
        optimiser.step()
    model.eval()


def pixel_map(values: np.ndarray) -> str:
    """An 8x8 map of ``values`` ``(8, 8)`` as text: ' ' for zero, then . : o O @ by share of the maximum."""
    shades = " .:oO@"
    top = float(values.max()) or 1.0
    rows = []
    for row in values:
        cells = (shades[min(len(shades) - 1, int(np.ceil(v / top * (len(shades) - 1))))] for v in row)
        rows.append("    |" + " ".join(cells) + "|")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="fewer training steps and IG steps (for CI)")
    parser.add_argument("--out", type=Path, default=Path("cnn-head-output"), help="folder for the report")
    parser.add_argument("--dashboard", action="store_true", help="open the dashboard on the analysis")
    parser.add_argument("--port", type=int, default=8050)
    args = parser.parse_args()

    images, labels = digits_images()
    torch.manual_seed(0)
    model = DigitsCNN()
    train(model, images[:N_TRAIN], labels[:N_TRAIN], steps=40 if args.small else 200)
    loader = DataLoader(TensorDataset(images[N_TRAIN:], labels[N_TRAIN:]), batch_size=128)

    if args.small:
        options = AnalysisOptions(
            methods=("integrated_gradients",), n_steps=16, max_importance_samples=200, conductance=False,
            sparsities=(0.0, 0.5, 0.9),
        )  # fmt: skip
    else:
        options = AnalysisOptions()
    analysis = inspector.analyze(model, loader, options=options)
    assert analysis.data is not None and analysis.activations is not None and analysis.importance is not None
    print(f"held-out accuracy {analysis.data.metric:.2%} on {analysis.data.n_samples} images")

    # Where the parameters are: the convolutions are small, the head that reads their 256 outputs is not.
    print("parameters:")
    conv_total = 0
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            count = sum(p.numel() for p in module.parameters())
            conv_total += count
            print(f"  conv  {name:<15} {module.out_channels} x ({module.in_channels} x {k} + 1) = {count} parameters")
    dense_total = analysis.parameters.linear_parameters
    for layer in analysis.parameters.layers:
        print(
            f"  dense {layer.layer:<15} {layer.out_features} x ({layer.in_features} + 1) = {layer.parameters} parameters"
        )
    total = analysis.parameters.total_parameters
    print(
        f"  conv layers {conv_total} ({conv_total / total:.0%}), dense layers {dense_total} ({dense_total / total:.0%})"
    )

    # The head's neurons: a dead one never fires on any held-out image.
    print("the head's neurons:")
    for census in analysis.activations:
        if census.fire_rate is None or census.dead_mask is None:
            print(f"  {census.layer} ({census.activation}): no firing threshold for this activation")
            continue
        dead = int(census.dead_mask.sum())
        firing = census.fire_rate[~census.dead_mask]
        mean_rate = float(firing.mean()) if firing.size else 0.0
        print(
            f"  {census.layer} ({census.activation}): {dead} of {len(census.fire_rate)} never fire; "
            f"the others fire on {mean_rate:.0%} of the images on average"
        )

    # The pixels the decision rests on.
    ig = analysis.importance.method("integrated_gradients")
    per_pixel = ig.global_importance.reshape(8, 8)
    top = ig.ranking[:5]
    print("top pixels (integrated gradients, mean |attribution|):")
    for index in top:
        row, col = divmod(int(index), 8)
        print(f"  row {row}, column {col}: {ig.global_importance[index]:.4f}")
    blank = (images[N_TRAIN:].reshape(-1, 64) == 0).all(dim=0).numpy()
    print(f"blank pixels (zero in every held-out image): {int(blank.sum())}, their importance: "
          f"{float(np.abs(ig.global_importance[blank]).max(initial=0.0)):.4f}")  # fmt: skip
    print(pixel_map(per_pixel))

    args.out.mkdir(parents=True, exist_ok=True)
    analysis.save(args.out / "analysis", force=True)  # for `inspector dashboard DIR` later
    report = args.out / "cnn-head.html"
    inspector.to_html(analysis, report, force=True)  # force replaces only a report this tool wrote
    print(f"wrote {report} and {args.out / 'analysis'}")

    if args.dashboard:
        from dashboards.app import create_app, serve

        serve(create_app(analysis, model=model, data=loader), port=args.port)


if __name__ == "__main__":
    try:
        main()
    except inspector.InspectorError as error:  # e.g. --out holds a file dense-inspector did not write
        sys.exit(f"error: {error}")
