"""Where the census's time over the bare forward goes, part by part: process-CPU timers wrapped around the
census's counting, top examples and finish (not a profiler: its per-call cost inflates the Python parts).
Prints; asserts nothing.

    HF_HUB_OFFLINE=1 python benchmarks/census_parts.py [--builtin minilm] [--sequences 256] [--tokens 128] [--rounds 2]

The model and data are ``bench_transformer.py``'s (built from a config, the standard library's docstrings
as text); one thread, glibc's heap held steady as there (``--system-malloc``: glibc's defaults). Each round times the bare forward, then one census with the timers on.
"""

from __future__ import annotations

import argparse
import collections
import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from steady_heap import steady_heap  # noqa: E402

HEAP = steady_heap() if __name__ == "__main__" else "as the caller's"  # see bench_transformer

import bench_transformer as bt  # noqa: E402

from inspector.analysis import activations, analyze, top_examples  # noqa: E402
from inspector.analysis.options import AnalysisOptions  # noqa: E402
from inspector.core import kernels  # noqa: E402

# (module or class, attribute, label): the parts timed, nested ones inside their callers' time
PARTS: tuple[tuple[Any, str, str], ...] = (
    (activations.SiteCensus, "update", "counts: update"),
    (activations.SiteCensus, "_sum", "counts: passes"),
    (kernels, "site_counts", "counts: compiled loop"),
    (top_examples.TopExamplesStatistic, "update", "top examples: update"),
    (kernels, "top_update", "top examples: compiled loop"),
    (top_examples, "_above", "top examples: candidate search (operations)"),
    (top_examples.TopExamplesStatistic, "_merge", "top examples: merges (operations)"),
    (top_examples, "_payload", "top examples: contexts"),
    (activations.SiteCensus, "finish", "finish: census"),
    (activations, "_pca_2d", "finish: projection"),
    (kernels, "centred_rows", "finish: column means"),
    (activations, "_centred", "finish: centring (formed matrix)"),
    (activations, "_histogram", "finish: histograms"),
    (top_examples.TopExamplesStatistic, "finish", "finish: top examples"),
)


def timed(seconds: dict[str, float], calls: collections.Counter[str]) -> None:
    """Wrap every part of :data:`PARTS` with a process-CPU timer adding into ``seconds`` and ``calls``."""
    for owner, name, label in PARTS:
        function: Callable[..., Any] = getattr(owner, name)

        def wrapper(*args: Any, _f: Callable[..., Any] = function, _label: str = label, **kwargs: Any) -> Any:
            start = time.process_time()
            try:
                return _f(*args, **kwargs)
            finally:
                seconds[_label] += time.process_time() - start
                calls[_label] += 1

        setattr(owner, name, functools.wraps(function)(wrapper))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builtin", default="minilm", help="minilm, bert-base or gpt2")
    parser.add_argument("--sequences", type=int, default=256)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(HEAP)
    texts = bt.read_texts(None)
    data = bt.packed_batches(bt.train_tokenizer(texts, 30522), texts, args.sequences, args.tokens)
    model = bt.build_model(args.builtin)
    options = AnalysisOptions(sections=("activations",))

    def forward() -> None:
        with torch.inference_mode():
            for batch in data:
                model(**batch)

    forward()
    analyze(model, data, options=options)  # warm-up
    seconds: dict[str, float] = collections.defaultdict(float)
    calls: collections.Counter[str] = collections.Counter()
    timed(seconds, calls)
    for _ in range(args.rounds):
        seconds.clear()
        calls.clear()
        bare = bt.cpu_seconds(forward)
        census = bt.cpu_seconds(lambda: analyze(model, data, options=options))
        print(
            f"{args.builtin}: forward {bare:.2f} s, census {census:.2f} s, {census - bare:+.2f} s ({census / bare:.3f}x)"
        )
        for _, _, label in PARTS:
            print(f"  {label:32s} {seconds[label]:7.3f} s  ({calls[label]} calls)")


if __name__ == "__main__":
    main()
