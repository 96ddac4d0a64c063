"""What each attribution method and each importance step costs on a token model, as a ratio to the bare
forward over the same samples; and the default full analysis against the forward over all the data.
Prints; asserts nothing.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_importance_tokens.py [--quick] [--sentences N] [--rounds R]

The model: a MiniLM-sized ``BertForSequenceClassification`` built from a config (hidden 384, 6 layers,
12 heads, intermediate 1536, vocab 30522, 2 labels; random weights, nothing downloaded), explaining the
true label's logit. The data: ``--sentences`` sentences (512) of 8 to 64 tokens (log-normal lengths, mean
about 23 tokens, as 512 real English sentences), random ids, attention masks, batches of 32 padded per batch.

On one thread, numerator and denominator interleaved ``--rounds`` times, each ratio's median and spread
(min..max) over the rounds on process CPU time:

- per method: its attributions (``attribute``) on the first ``--method-samples`` samples (at the token
  defaults' steps, Integrated Gradients also at 50) / the bare forward over the same samples; the
  sanity check costs the same per sample (the same method on a weight-randomised copy);
- per importance step: conductance of every hidden layer (per conductance sample) / the forward;
- the default full analysis (``analyze(model, data)``, token defaults): total and per section
  (``analysis.timings``, importance split per method) / the bare forward over all the sentences.
  Target (issue 19): <= 25.

``--quick``: 128 sentences, 8 method samples, 1 round.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inspector.analysis import analyze  # noqa: E402
from inspector.analysis.attribution import attribute  # noqa: E402
from inspector.analysis.conductance import conductance, hidden_layers  # noqa: E402
from inspector.analysis.guard import inspecting  # noqa: E402
from inspector.analysis.inputs import as_source, make_adapter  # noqa: E402
from inspector.analysis.methods import METHODS  # noqa: E402
from inspector.analysis.options import AnalysisOptions  # noqa: E402
from inspector.analysis.task import make_task  # noqa: E402
from inspector.core.adapters import TokensAdapter  # noqa: E402

BATCH = 32


def minilm() -> torch.nn.Module:
    import transformers

    config = transformers.BertConfig(
        vocab_size=30522,
        hidden_size=384,
        num_hidden_layers=6,
        num_attention_heads=12,
        intermediate_size=1536,
        num_labels=2,
    )
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(config).eval()


def sentences(n: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """``n`` sentences of 8..64 tokens (log-normal, mean ~23) in padded batches of :data:`BATCH`."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(np.round(rng.lognormal(np.log(20), 0.5, n)), 8, 64).astype(int)
    out = []
    for start in range(0, n, BATCH):
        part = torch.from_numpy(lengths[start : start + BATCH])
        width = int(part.max())
        mask = (torch.arange(width)[None] < part[:, None]).long()
        ids = torch.from_numpy(rng.integers(1000, 30000, (len(part), width))) * mask
        labels = torch.from_numpy(rng.integers(0, 2, len(part)))
        out.append({"input_ids": ids, "attention_mask": mask, "labels": labels})
    return out


def forward(model: torch.nn.Module, batches: list[dict[str, torch.Tensor]]) -> Callable[[], None]:
    def run() -> None:
        with torch.inference_mode():
            for batch in batches:
                model(**batch)

    return run


def cpu_ratio(numerator: Callable[[], object], denominator: Callable[[], object], rounds: int) -> list[float]:
    """``numerator / denominator`` on process CPU time, interleaved, one value per round."""
    ratios = []
    for _ in range(rounds):
        times = []
        for fn in (numerator, denominator):
            start = time.process_time()
            fn()
            times.append(time.process_time() - start)
        ratios.append(times[0] / times[1])
    return ratios


def summary(ratios: list[float]) -> str:
    return f"{statistics.median(ratios):7.1f}x [{min(ratios):.1f}..{max(ratios):.1f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="128 sentences, 8 method samples, 1 round")
    parser.add_argument("--sentences", type=int, default=512)
    parser.add_argument("--method-samples", type=int, default=32, help="samples each method is timed on")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-analysis", action="store_true", help="skip the default full analysis")
    args = parser.parse_args()
    if args.quick:
        args.sentences, args.method_samples, args.rounds = 128, 8, 1
    torch.set_num_threads(1)
    model = minilm()
    data = sentences(args.sentences)
    head = sentences(args.method_samples, seed=1)
    defaults = AnalysisOptions().for_inputs(TokensAdapter)
    assert defaults.n_steps is not None
    tokens = int(sum(int(b["attention_mask"].sum()) for b in data))
    print(
        f"MiniLM-sized BERT classifier, {args.sentences} sentences ({tokens:,} tokens), one thread, "
        f"{args.rounds} round(s); ratios on process CPU time, median [min..max]"
    )
    print(
        f"token defaults: methods {', '.join(defaults.methods or ())}; {defaults.n_steps} steps; "
        f"{defaults.max_importance_samples} importance samples, {defaults.conductance_samples} for conductance, "
        f"pruning on {defaults.max_pruning_samples}"
    )
    bare_head = forward(model, head)
    batches = list(as_source(head))
    task, adapter = make_task(None, batches[0]), make_adapter(model, batches[0])
    print(f"\nper sample, as a ratio to the forward over the same {args.method_samples} samples:")
    with inspecting(model):
        runs = [(m, defaults.n_steps) for m in METHODS] + [("integrated_gradients", 50)]
        for method, steps in runs:

            def explain(method: str = method, steps: int = steps) -> None:
                for batch in batches:
                    attribute(model, method, batch, task, adapter, n_steps=steps)

            explain()  # warm-up
            ratios = cpu_ratio(explain, bare_head, args.rounds)
            default = "default" if method in (defaults.methods or ()) and steps == defaults.n_steps else "on request"
            label = f"{method} ({steps} steps)" if method == "integrated_gradients" else method
            print(f"  {label:34s} {summary(ratios)}  {default}")
        layers = hidden_layers(model, batches[0])

        def conduct() -> None:
            conductance(model, batches, task, adapter, n_steps=defaults.n_steps, layers=layers)

        print(
            f"  {'conductance (' + str(defaults.n_steps) + ' steps)':34s} {summary(cpu_ratio(conduct, bare_head, args.rounds))}"
        )
    print("  (the sanity check of a method costs the method itself on its samples, on a randomised copy)")
    if args.no_analysis:
        return
    bare = forward(model, data)
    bare()  # warm-up
    totals: list[float] = []
    parts: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        start, wall = time.process_time(), time.perf_counter()
        analysis = analyze(model, data)
        spent, wall = time.process_time() - start, time.perf_counter() - wall
        start = time.process_time()
        bare()
        base = time.process_time() - start
        totals.append(spent / base)
        for key, seconds in analysis.timings.items():
            # the timings are wall seconds: each step's share of the analysis's wall time, on its CPU time
            parts.setdefault(key, []).append(seconds / wall * spent / base)
    print(f"\ndefault full analysis on {args.sentences} sentences / the forward over them (target <= 25):")
    print("  (a key with a '/' is a part of the step before it)")
    print(f"  {'total':34s} {summary(totals)}")
    for key, ratios in parts.items():
        print(f"  {key:34s} {summary(ratios)}")


if __name__ == "__main__":
    main()
