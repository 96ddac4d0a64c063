"""``inspector info``: a checkpoint's layer table, read from its header."""

from __future__ import annotations

import argparse
import json
import sys

from inspector.inventory import read_inventory
from inspector.render.tables import format_inventory


def run(args: argparse.Namespace) -> int:
    """Header only: no tensor is read (the NaN/Inf scan is ``analyze``'s), so any file answers at once."""
    inv = read_inventory(args.checkpoint, trust_pickle=args.trust_pickle)
    for notice in inv.notices:
        print(f"inspector: note: {notice}", file=sys.stderr)
    if args.json:
        print(json.dumps(inv.to_dict(), indent=2))
        return 0
    print(f"{inv.path} ({inv.format})")
    if inv.config is not None:  # validated: only dense-inspector's own metadata has a config
        extras = [inv.config.activation]
        if inv.config.batch_norm:
            extras.append("batch norm")
        if inv.config.dropout:
            extras.append(f"dropout {inv.config.dropout}")
        print(f"MLP {'-'.join(map(str, inv.config.layer_sizes))} ({', '.join(extras)})")
    if not inv.linear_layers and not inv.embeddings:
        # an answer, not an error: the file was read, it just holds nothing dense (as --json says: "layers": [])
        print(f"no 2-D weight tensors: nothing dense in this file ({len(inv.tensors)} other tensors)")
        return 0
    print(format_inventory(inv))
    metrics = inv.metadata.get("metrics", {}) if inv.config is not None else {}
    if isinstance(metrics.get("test_accuracy"), float):
        print(f"test accuracy {metrics['test_accuracy']:.2%}")
    if isinstance(metrics.get("test_r2"), float):  # a regression run
        mse = metrics.get("test_mse")
        print(f"test R² {metrics['test_r2']:.4f}" + (f", MSE {mse:.4g}" if isinstance(mse, float) else ""))
    return 0
