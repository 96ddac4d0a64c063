"""Pruning that pays: size and CPU latency before -> after structured removal, and accuracy. Prints; asserts nothing.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_shrink.py [--rounds 15] [--quick] [--json OUT]

Three models, each pruned at sparsity 0.5 in the neuron scope (the weakest half of every hidden
layer's neurons by incoming L2 norm) and shrunk (:func:`inspector.analysis.shrink.shrink_model`):

- ``digits MLP``: 64-128-64-10 ReLU, trained as ``inspector train --dataset digits`` does
  (seed 0); scored on the digits test split: the model, the pruned model, and the pruned model
  fine-tuned for 3 epochs (``--finetune-epochs 3``: the shrunk model trained with Adam, lr 1e-3);
- ``wide MLP``: 784-2048-2048-10 ReLU, random weights (size and latency only);
- ``BERT layer``: one BertConfig encoder layer at BERT-base width (768 hidden, 12 heads, 3072
  intermediate, GELU), random weights, on 4 sequences of 128 tokens: the intermediate/output pair
  loses half of its 3072 neurons (and the pooler half of its 768).

Latency: one thread (``torch.set_num_threads(1)``), process CPU time of one forward under
``inference_mode``, the dense and the shrunk model interleaved for ``--rounds`` rounds (the order
alternating), the median per model and the spread of the ratio (min..max over rounds). Sizes are
parameters and the bytes of parameters and buffers. Every shrunk output is checked against the
masked model's (the max abs difference is printed).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inspector.analysis.inputs import as_source  # noqa: E402
from inspector.analysis.pruning import (  # noqa: E402
    apply_masks,
    neuron_keep,
    neuron_masks,
    neuron_plan,
    prune_and_finetune,
)
from inspector.analysis.shrink import model_size, shrink_and_finetune, shrink_model  # noqa: E402
from inspector.data import SplitSpec, load_digits, split_dataset  # noqa: E402
from inspector.models import MLPConfig, build_mlp  # noqa: E402
from inspector.render.tables import human_bytes  # noqa: E402
from inspector.training import TrainConfig, train  # noqa: E402

SPARSITY = 0.5


def _cpu_time(call: Callable[[], Any], repeats: int) -> float:
    start = time.process_time()
    for _ in range(repeats):
        call()
    return (time.process_time() - start) / repeats


def latency(dense: nn.Module, small: nn.Module, batch: Any, rounds: int, repeats: int) -> dict[str, float]:
    """Median CPU seconds per forward of ``dense`` and ``small`` on ``batch``, interleaved rounds."""
    source = as_source(batch).first()
    calls = {"before": lambda: source.call(dense), "after": lambda: source.call(small)}
    times: dict[str, list[float]] = {"before": [], "after": []}
    with torch.inference_mode():
        for call in calls.values():
            call()  # warm-up
        for r in range(rounds):
            for name in ("before", "after") if r % 2 == 0 else ("after", "before"):
                times[name].append(_cpu_time(calls[name], repeats))
    ratios = [a / b for a, b in zip(times["after"], times["before"])]
    return {
        "before_s": statistics.median(times["before"]),
        "after_s": statistics.median(times["after"]),
        "ratio": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
    }


def _first(out: Any) -> torch.Tensor:
    return out if isinstance(out, torch.Tensor) else out[0]


def shrink_one(name: str, model: nn.Module, batch: Any, rounds: int, repeats: int) -> dict[str, Any]:
    model.eval()
    first = as_source(batch).first()
    plan = neuron_plan(model, first)
    (keep,) = neuron_keep(model, plan, (SPARSITY,))
    masked = apply_masks(copy.deepcopy(model), *neuron_masks(model, keep, plan))
    shrunk = shrink_model(model, keep, first, plan=plan)
    with torch.inference_mode():
        diff = (_first(first.call(shrunk.model)) - _first(first.call(masked))).abs().max().item()
    before, after = model_size(model), model_size(shrunk.model)
    row: dict[str, Any] = {
        "model": name,
        "widths": {k: list(v) for k, v in shrunk.widths.items()},
        "kept_masked": shrunk.notes(),
        "params_before": before[0],
        "params_after": after[0],
        "bytes_before": before[1],
        "bytes_after": after[1],
        "max_abs_diff_vs_masked": diff,
        **latency(model, shrunk.model, batch, rounds, repeats),
    }
    print(
        f"{name}: {before[0]:,} -> {after[0]:,} parameters, {human_bytes(before[1])} -> {human_bytes(after[1])}; "
        f"CPU {row['before_s'] * 1e3:.3f} -> {row['after_s'] * 1e3:.3f} ms per forward "
        f"(x{row['ratio']:.2f}, {row['ratio_min']:.2f}..{row['ratio_max']:.2f}); |shrunk - masked| {diff:.1e}",
        flush=True,
    )
    return row


def digits(rounds: int, repeats: int) -> tuple[dict[str, Any], dict[str, float]]:
    dataset = load_digits()
    splits = split_dataset(dataset, SplitSpec(seed=0))
    torch.manual_seed(0)
    model = train(MLPConfig(64, (128, 64), 10), splits, TrainConfig(seed=0), device="cpu", progress=False).model
    model.eval()
    X_test, y_test = torch.from_numpy(splits.X_test), torch.from_numpy(splits.y_test)
    row = shrink_one("digits MLP 64-128-64-10 (batch 359)", model, X_test, rounds, repeats)

    def accuracy(m: nn.Module) -> float:
        with torch.inference_mode():
            return float((m.eval()(X_test).argmax(1) == y_test).float().mean())

    pruned = shrink_and_finetune(model, SPARSITY, X_test[:64], epochs=0).model
    tuned = shrink_and_finetune(model, SPARSITY, splits.X_train, splits.y_train, epochs=3).model
    masked_tuned = prune_and_finetune(model, SPARSITY, "neuron", splits.X_train, splits.y_train, 3)
    scores = {
        "model": accuracy(model),
        "pruned": accuracy(pruned),
        "pruned_finetuned_3": accuracy(tuned),
        "masked_finetuned_3": accuracy(masked_tuned),
    }
    print(
        f"digits test accuracy ({len(y_test)} samples): model {scores['model']:.2%}, pruned 50% neurons "
        f"{scores['pruned']:.2%}, pruned + --finetune-epochs 3 {scores['pruned_finetuned_3']:.2%} "
        f"(masked, not shrunk, fine-tuned alike: {scores['masked_finetuned_3']:.2%})",
        flush=True,
    )
    return row, scores


def bert_layer() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=1000, hidden_size=768, num_hidden_layers=1, num_attention_heads=12, intermediate_size=3072
    )
    model = BertModel(config).eval()
    return model, {"input_ids": torch.randint(0, 1000, (4, 128))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="3 rounds, the wide models at half width")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rounds = 3 if args.quick else args.rounds
    rows = []
    row, scores = digits(rounds, repeats=200)
    rows.append(row)
    torch.manual_seed(0)
    width = 1024 if args.quick else 2048
    wide = build_mlp(MLPConfig(784, (width, width), 10))
    rows.append(shrink_one(f"wide MLP 784-{width}-{width}-10 (batch 64)", wide, torch.randn(64, 784), rounds, 5))
    model, batch = bert_layer()
    rows.append(shrink_one("BERT layer 768/3072 (4 x 128 tokens)", model, [batch], rounds, 1))
    print()
    print("| model | parameters before -> after | bytes before -> after | CPU ms per forward before -> after |")
    print("| --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['model']} | {r['params_before']:,} -> {r['params_after']:,} "
            f"| {human_bytes(r['bytes_before'])} -> {human_bytes(r['bytes_after'])} "
            f"| {r['before_s'] * 1e3:.3f} -> {r['after_s'] * 1e3:.3f} (x{r['ratio']:.2f}) |"
        )
    if args.json is not None:
        args.json.write_text(json.dumps({"rows": rows, "digits_accuracy": scores}, indent=1, default=float))


if __name__ == "__main__":
    main()
