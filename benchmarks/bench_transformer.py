"""Transformers at real size: the census and the default analysis against the bare forward. Prints; asserts nothing.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_transformer.py [--quick] [--text FILE] [--json OUT] [MODEL_DIR ...]

Models built from a config with random weights (nothing is downloaded): ``minilm`` (BertConfig 384
hidden, 6 layers, 12 heads, 1536 intermediate, vocab 30522: all-MiniLM-L6-v2's shape), ``bert-base``
(12 x 768 -> 3072) and ``gpt2`` (GPT2LMHeadModel, GPT2Config 768, 12 layers, 12 heads: GPT-2 small's
shape; its ``Conv1D`` layers are dense sites, of which the census counts the 12 ``mlp.c_fc`` followed by
GELU), plus every Hugging Face folder given as an argument (loaded with
``AutoModel``, offline). The text: ``--text FILE`` (one text a line), or by default the docstrings of
Python's standard library (its modules and their public functions and classes, a paragraph a text),
tokenized by a WordPiece vocabulary trained here on that text with the ``tokenizers`` library.

Measured on one thread (``torch.set_num_threads(1)``), numerator and denominator interleaved
``--rounds`` times, each ratio's median and spread (min..max) over the rounds, on process CPU time, with
glibc's heap held steady (:mod:`steady_heap`: re-executed with heap trimming off, so that page faults
from memory returned to the system do not land at random on either side; ``--system-malloc`` keeps
glibc's defaults):

- ``census / forward``: ``analyze(model, data, options=AnalysisOptions(sections=("activations",)))``
  (the first forwards, site discovery, the census pass and its finish) against the bare forwards
  over the same batches under ``inference_mode``; ``--sequences`` sequences of ``--tokens`` tokens
  (packed from the text), in batches of 32. Target (issue 19): <= 1.10. Where the census's forwards
  end before the model's last module (:mod:`inspector.analysis.cut`: GPT-2's ``lm_head``), also the
  census against the bare forward ending at the same module: the census's own cost.
- the projection solver's time per layer (the census finish's PCA of the 2048 kept rows), from the
  census above; and on a 2048 x 3072 matrix. Target: <= 1 s per layer of 3072 neurons.
- ``analysis / forward``: the default full analysis (``analyze`` with defaults and a ``target=``,
  the pooled output's norm for an encoder, the last position's largest logit for a causal LM) on
  the first 512 texts (sentences, padded per batch), in a child process stopped after
  ``--analysis-timeout`` seconds, with each section's time from ``analysis.timings``. Target: <= 25.

``--json OUT`` writes every number. ``--quick``: minilm only, 32 sequences of 64 tokens, 64 texts
for the analysis, 2 rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import io
import json
import multiprocessing
import os
import re
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from steady_heap import steady_heap  # noqa: E402

HEAP = steady_heap() if __name__ == "__main__" else "as the caller's"  # before torch: a re-execution starts here

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inspector.analysis import activations as census_module  # noqa: E402
from inspector.analysis import analyze  # noqa: E402
from inspector.analysis.cut import ForwardCut, _Cut  # noqa: E402
from inspector.analysis.options import AnalysisOptions  # noqa: E402

BATCH = 32
SKIP_MODULES = {
    "antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "ensurepip", "venv", "lib2to3",
    "pydoc_data", "msilib", "winreg", "winsound", "msvcrt", "nt", "curses", "readline", "xxlimited",
}  # fmt: skip


# --- text and tokens ----------------------------------------------------------------------------


def stdlib_docstrings() -> list[str]:
    """Paragraphs of the standard library's docstrings (modules, their public functions and classes)."""
    texts: list[str] = []
    seen: set[str] = set()
    for name in sorted(getattr(sys, "stdlib_module_names", ())):
        if name.startswith("_") or name in SKIP_MODULES:
            continue
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                module = importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a module this platform lacks
            continue
        docs = [inspect.getdoc(module)]
        for attr, value in sorted(vars(module).items()):
            if not attr.startswith("_") and (inspect.isfunction(value) or inspect.isclass(value)):
                if getattr(value, "__module__", None) == name:
                    docs.append(inspect.getdoc(value))
        for doc in docs:
            for paragraph in re.split(r"\n\s*\n", doc or ""):
                text = " ".join(paragraph.split())
                if len(text.split()) >= 5 and text not in seen:
                    seen.add(text)
                    texts.append(text)
    return texts


def read_texts(path: str | None) -> list[str]:
    if path is None:
        return stdlib_docstrings()
    lines = [" ".join(line.split()) for line in Path(path).read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line]


def train_tokenizer(texts: list[str], vocab_size: int) -> Any:
    from tokenizers import BertWordPieceTokenizer

    tokenizer = BertWordPieceTokenizer(lowercase=True)
    tokenizer.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2, show_progress=False)
    return tokenizer


def packed_batches(tokenizer: Any, texts: list[str], sequences: int, tokens: int) -> list[dict[str, torch.Tensor]]:
    """``sequences`` rows of ``tokens`` ids packed from the text stream, in batches of :data:`BATCH`."""
    stream: list[int] = []
    for encoding in tokenizer.encode_batch(texts):
        stream.extend(encoding.ids[1:-1])  # without [CLS] / [SEP]: one continuous text
        if len(stream) >= sequences * tokens:
            break
    while len(stream) < sequences * tokens:  # a short file: round again
        stream.extend(stream)
    ids = torch.tensor(stream[: sequences * tokens], dtype=torch.long).reshape(sequences, tokens)
    return [
        {"input_ids": ids[i : i + BATCH], "attention_mask": torch.ones_like(ids[i : i + BATCH])}
        for i in range(0, sequences, BATCH)
    ]


def sentence_batches(tokenizer: Any, texts: list[str], count: int, tokens: int) -> list[dict[str, torch.Tensor]]:
    """The first ``count`` texts, each cut to ``tokens``, padded per batch of :data:`BATCH`."""
    tokenizer.enable_truncation(tokens)
    out = []
    for i in range(0, min(count, len(texts)), BATCH):
        encodings = tokenizer.encode_batch(texts[i : i + BATCH])
        width = max(len(e.ids) for e in encodings)
        ids = torch.zeros(len(encodings), width, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, e in enumerate(encodings):
            ids[row, : len(e.ids)] = torch.tensor(e.ids)
            mask[row, : len(e.ids)] = 1
        out.append({"input_ids": ids, "attention_mask": mask})
    tokenizer.no_truncation()
    return out


# --- models ---------------------------------------------------------------------------------------


def build_model(name: str) -> torch.nn.Module:
    from transformers import AutoModel, BertConfig, BertModel, GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    if name == "minilm":
        config = BertConfig(
            hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536, vocab_size=30522
        )
        return BertModel(config).eval()
    if name == "bert-base":
        return BertModel(BertConfig()).eval()  # 12 x 768 -> 3072, vocab 30522
    if name == "gpt2":
        return GPT2LMHeadModel(GPT2Config(n_embd=768, n_layer=12, n_head=12)).eval()
    return AutoModel.from_pretrained(name, local_files_only=True).eval()


def default_target(output: Any, batch: Any = None) -> torch.Tensor:
    """An encoder: the pooled output's norm (the first position's hidden state without a pooler); a
    causal LM: the largest logit at the last position."""
    pooled = getattr(output, "pooler_output", None)
    if pooled is not None:
        return pooled.norm(dim=-1)
    logits = getattr(output, "logits", None)
    if logits is not None:
        return logits[:, -1].max(dim=-1).values
    hidden = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]
    return hidden[:, 0].norm(dim=-1)


# --- timing ---------------------------------------------------------------------------------------


def cpu_seconds(fn: Callable[[], object]) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def interleaved(
    numerator: Callable[[], object], denominators: dict[str, Callable[[], object]], rounds: int
) -> dict[str, dict[str, Any]]:
    """Per denominator, the median and spread of ``numerator / denominator`` over ``rounds`` rounds, each
    timing all of them once (in reversed order every other round; process CPU time)."""
    runs = {"numerator": numerator, **denominators}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(rounds):
        for name in runs if i % 2 == 0 else reversed(runs):
            times[name].append(cpu_seconds(runs[name]))
    out = {}
    for name in denominators:
        ratios = [n / d for n, d in zip(times["numerator"], times[name], strict=True)]
        out[name] = {
            "median": statistics.median(ratios),
            "min": min(ratios),
            "max": max(ratios),
            "numerator_s": statistics.median(times["numerator"]),
            "denominator_s": statistics.median(times[name]),
        }
    return out


@contextlib.contextmanager
def census_cut() -> Iterator[list[str | None]]:
    """Record the module each census's forwards end at (:class:`inspector.analysis.cut.ForwardCut`)."""
    found: list[str | None] = []
    original = ForwardCut._decide

    def decide(self: ForwardCut) -> None:
        original(self)
        found.append(self.at)

    ForwardCut._decide = decide  # type: ignore[method-assign]
    try:
        yield found
    finally:
        ForwardCut._decide = original  # type: ignore[method-assign]


@contextlib.contextmanager
def timed_projection() -> Iterator[list[tuple[int, int, float]]]:
    """Record ``(rows, width, seconds)`` of every projection the census finish solves."""
    records: list[tuple[int, int, float]] = []
    original = census_module._pca_2d

    def wrapped(a: torch.Tensor, *rest: Any) -> tuple[np.ndarray, np.ndarray]:
        start = time.process_time()
        try:
            return original(a, *rest)
        finally:
            records.append((int(a.shape[0]), int(a.shape[1]), time.process_time() - start))

    census_module._pca_2d = wrapped
    try:
        yield records
    finally:
        census_module._pca_2d = original


def projection_2048_by_3072() -> dict[str, float]:
    rng = np.random.default_rng(0)
    out = {}
    # the compiled loops load once per process (numba and its cached machine code, about 0.5 s): not timed
    census_module._pca_2d(torch.from_numpy(rng.standard_normal((1024, 1100))).float())  # >= kernels.MIN_VALUES
    for kind in ("random", "low-rank"):
        if kind == "random":
            a = rng.standard_normal((2048, 3072))
        else:
            a = rng.standard_normal((2048, 8)) @ rng.standard_normal((8, 3072)) + 0.1 * rng.standard_normal(
                (2048, 3072)
            )
        rows = torch.from_numpy(a).float()
        out[kind] = cpu_seconds(lambda: census_module._pca_2d(rows))  # noqa: B023 - called at once
    return out


def _full_analysis(name: str, batches: list[dict[str, torch.Tensor]], queue: Any) -> None:
    """The default analysis; where it fails (conductance with target= on a model returning several
    tensors, before issue 19 part 5), the error and then the same analysis without conductance."""
    torch.set_num_threads(1)
    model = build_model(name)
    failed = None
    for options in (None, AnalysisOptions(conductance=False)):
        try:
            start = time.process_time()
            analysis = analyze(model, batches, target=default_target, options=options)
            seconds = time.process_time() - start
        except Exception as error:  # noqa: BLE001 - said in the output
            failed = f"{type(error).__name__}: {error}".splitlines()[0]
            continue
        queue.put({"seconds": seconds, "timings": dict(analysis.timings), "default_failed": failed})
        return
    queue.put({"error": failed})


def full_analysis(name: str, batches: list[dict[str, torch.Tensor]], timeout: float) -> dict[str, Any]:
    """The default analysis in a child process (CPU seconds and each section's timing), or a timeout."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_full_analysis, args=(name, batches, queue))
    child.start()
    try:
        return queue.get(timeout=timeout)
    except Exception:  # noqa: BLE001 - queue.Empty: still running
        return {"timeout": timeout}
    finally:
        if child.is_alive():
            child.terminate()
        child.join()


def _stop_here(module: torch.nn.Module, args: Any) -> None:
    raise _Cut


# --- main -----------------------------------------------------------------------------------------


def fmt(ratio: dict[str, Any]) -> str:
    return f"{ratio['median']:.2f}x [{ratio['min']:.2f}..{ratio['max']:.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="local Hugging Face model folders (besides the built-in ones)")
    parser.add_argument("--text", help="a text file, one text a line (default: the standard library's docstrings)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--builtin", default=None, help="comma-separated built-in models (minilm,bert-base,gpt2)")
    parser.add_argument("--sequences", type=int, default=None)
    parser.add_argument("--tokens", type=int, default=None)
    parser.add_argument("--sentences", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--analysis-timeout", type=float, default=1800.0)
    parser.add_argument("--no-analysis", action="store_true", help="skip the default full analysis")
    parser.add_argument("--json", help="write every number to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    quick = args.quick
    sequences = args.sequences or (32 if quick else 256)
    tokens = args.tokens or (64 if quick else 128)
    sentences = args.sentences or (64 if quick else 512)
    rounds = args.rounds or (2 if quick else 5)
    builtin = args.builtin.split(",") if args.builtin else (["minilm"] if quick else ["minilm", "gpt2", "bert-base"])
    names = [b for b in builtin if b] + list(args.models)

    texts = read_texts(args.text)
    tokenizer = train_tokenizer(texts, 30522)
    data = packed_batches(tokenizer, texts, sequences, tokens)
    sentence_data = sentence_batches(tokenizer, texts, sentences, 128)
    n_tokens = sum(int(b["attention_mask"].sum()) for b in sentence_data)
    print(
        f"torch {torch.__version__}, 1 thread, {len(texts):,} texts ({'--text' if args.text else 'stdlib docstrings'}), "
        f"vocab {tokenizer.get_vocab_size():,}; census on {sequences} x {tokens} tokens, analysis on "
        f"{len(sentence_data) and sum(len(b['input_ids']) for b in sentence_data)} texts ({n_tokens:,} tokens); "
        f"{rounds} interleaved rounds, CPU time; {HEAP}"
    )
    report: dict[str, Any] = {"sequences": sequences, "tokens": tokens, "rounds": rounds, "models": {}}
    solver = projection_2048_by_3072()
    report["projection_2048x3072_s"] = solver
    print(
        f"projection solver on 2048 x 3072: random {solver['random']:.2f} s, low-rank + noise {solver['low-rank']:.2f} s "
        "(target <= 1 s)"
    )
    census_options = AnalysisOptions(sections=("activations",))
    for name in names:
        model = build_model(name)
        entry: dict[str, Any] = {}

        def forward(model: torch.nn.Module = model) -> None:
            with torch.inference_mode():
                for batch in data:
                    model(**batch)

        def census(model: torch.nn.Module = model) -> None:
            analyze(model, data, options=census_options)

        forward()  # warm-up
        with timed_projection() as solved, census_cut() as cut:
            analysis = analyze(model, data, options=census_options)
        layers = len(analysis.activations or ())
        denominators = {"forward": forward}
        at = cut[0] if cut else None
        if at is not None:  # the census's own cost: against the bare forward ending at the same module

            def to_cut(model: torch.nn.Module = model, at: str = at) -> None:
                handle = model.get_submodule(at).register_forward_pre_hook(_stop_here)
                try:
                    with torch.inference_mode():
                        for batch in data:
                            with contextlib.suppress(_Cut):
                                model(**batch)
                finally:
                    handle.remove()

            denominators["forward_to_cut"] = to_cut
        ratios = interleaved(census, denominators, rounds)
        ratio = ratios["forward"]
        entry["census"] = ratio
        entry["census_cut_at"] = at
        if at is not None:
            entry["census_over_forward_to_cut"] = ratios["forward_to_cut"]
        entry["census_layers"] = layers
        entry["projection_per_layer_s"] = [{"rows": r, "width": w, "seconds": s} for r, w, s in solved]
        per_width: dict[int, list[float]] = {}
        for _, width, seconds in solved:
            per_width.setdefault(width, []).append(seconds)
        solver_text = ", ".join(
            f"{w} wide {statistics.median(s):.3f} s (max {max(s):.3f})" for w, s in sorted(per_width.items())
        )
        print(
            f"{name:10s} census / forward {fmt(ratio)}  (target <= 1.10; forward {ratio['denominator_s']:.2f} s, "
            f"census {ratio['numerator_s']:.2f} s, {layers} counted layers)"
        )
        if at is not None:
            own = ratios["forward_to_cut"]
            print(
                f"{'':10s} the census's forwards end before {at} (nothing after the last site is read); against "
                f"the bare forward ending there too: {fmt(own)} (that forward {own['denominator_s']:.2f} s)"
            )
        print(f"{'':10s} projection per layer: {solver_text or 'none'}")
        if not args.no_analysis:
            with torch.inference_mode():
                bare = [cpu_seconds(lambda: [model(**b) for b in sentence_data]) for _ in range(3)]  # noqa: B023
            forward_s = statistics.median(bare)
            full = full_analysis(name, sentence_data, args.analysis_timeout)
            full["forward_s"] = forward_s
            entry["analysis"] = full
            if "seconds" in full:
                full["ratio"] = full["seconds"] / forward_s
                sections = ", ".join(f"{k} {v:.1f} s" for k, v in full["timings"].items())
                if full.get("default_failed"):
                    print(
                        f"{'':10s} the default analysis failed ({full['default_failed'][:160]}); without conductance:"
                    )
                print(
                    f"{'':10s} analysis / forward {full['ratio']:.1f}x (target <= 25; forward {forward_s:.2f} s, "
                    f"analysis {full['seconds']:.1f} s): {sections}"
                )
            elif "timeout" in full:
                print(
                    f"{'':10s} analysis / forward > {args.analysis_timeout / forward_s:.0f}x "
                    f"(not finished in {args.analysis_timeout:.0f} s; forward {forward_s:.2f} s)"
                )
            else:
                print(f"{'':10s} analysis failed: {full['error']}")
        report["models"][name] = entry
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
