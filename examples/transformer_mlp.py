"""A small BERT-style classifier: its MLP blocks' activation sparsity and per-token attributions.

The model is built from ``transformers.BertConfig`` (random weights, nothing is
downloaded) and trained briefly on a generated task: does the sentence contain the
word "red"? Batches are tokenizer-style dicts (``input_ids``, ``attention_mask``,
``labels``) padded to a common length. ``inspector.analyze`` finds the dense layers
inside every encoder block; this example prints

- every MLP block's activation sparsity: for ``bert.encoder.layer.N.intermediate.dense``
  (GELU), the share of (neuron, token) pairs whose pre-activation is positive (fire
  rate) and whose output is nearly zero (zero rate), counted over real tokens only;
- the per-token attributions (integrated gradients on the input embeddings) of one
  padded sentence, token by token: padding gets exactly zero, and "red" should
  stand out in a sentence that contains it;
- the words with the largest mean |attribution| over the data.

Then it writes the HTML report (with the highlighted text) and, with ``--dashboard``,
opens the dashboard (the Text view) on it.

    python examples/transformer_mlp.py [--small] [--out DIR] [--dashboard] [--port 8050]

It needs ``transformers`` (``pip install transformers``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

import inspector
from inspector.analysis import AnalysisOptions

WORDS = "the a cat dog sat red on mat big small ran blue green bird tree sun under over fast slow".split()
VOCABULARY = ("[PAD]", "[CLS]", *WORDS)  # id 0 pads, id 1 starts every sentence
PAD, CLS = 0, 1
NEEDLE = VOCABULARY.index("red")
WIDTH = 12  # tokens per padded sentence, [CLS] included


def make_batches(n: int, *, seed: int, batch_size: int = 32) -> list[dict[str, torch.Tensor]]:
    """``n`` sentences of 4..``WIDTH`` tokens in dict batches: ``input_ids`` ``(b, WIDTH)`` ([CLS], words,
    then padding), ``attention_mask`` ``(b, WIDTH)`` (1 real, 0 padding) and ``labels`` ``(b,)``, 1 when
    the sentence contains "red" (half of them). The first sentence contains "red" and is padded."""
    rng = np.random.default_rng(seed)
    others = np.array([i for i in range(2, len(VOCABULARY)) if i != NEEDLE])
    labels = np.arange(n) % 2
    rng.shuffle(labels)
    labels[0] = 1
    ids = np.full((n, WIDTH), PAD, dtype=np.int64)
    mask = np.zeros((n, WIDTH), dtype=np.int64)
    for i in range(n):
        length = int(rng.integers(4, WIDTH + 1)) if i else WIDTH - 3
        words = rng.choice(others, length - 1)
        if labels[i]:
            words[rng.integers(0, length - 1)] = NEEDLE
        ids[i, 0], ids[i, 1:length], mask[i, :length] = CLS, words, 1
    return [
        {
            "input_ids": torch.from_numpy(ids[s : s + batch_size]),
            "attention_mask": torch.from_numpy(mask[s : s + batch_size]),
            "labels": torch.from_numpy(labels[s : s + batch_size].astype(np.int64)),
        }
        for s in range(0, n, batch_size)
    ]


def build_model(transformers: object) -> nn.Module:
    """A 2-block BERT (hidden 32, 2 heads, MLP 32 -> 64 -> 32, GELU) with a 2-class head, dropout off."""
    config = transformers.BertConfig(  # type: ignore[attr-defined]
        vocab_size=len(VOCABULARY),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        hidden_act="gelu",
        max_position_embeddings=WIDTH,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        pad_token_id=PAD,
        num_labels=2,
    )
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(config)  # type: ignore[attr-defined,no-any-return]


def train(model: nn.Module, batches: list[dict[str, torch.Tensor]], steps: int) -> None:
    """Adam on the training batches in turn; the model computes its own cross-entropy from ``labels``."""
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for step in range(steps):
        optimiser.zero_grad()
        model(**batches[step % len(batches)]).loss.backward()
        optimiser.step()
    model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="fewer training steps and IG steps (for CI)")
    parser.add_argument("--out", type=Path, default=Path("transformer-mlp-output"), help="folder for the report")
    parser.add_argument("--dashboard", action="store_true", help="open the dashboard on the analysis")
    parser.add_argument("--port", type=int, default=8050)
    args = parser.parse_args()
    try:
        import transformers
    except ImportError:
        sys.exit("this example needs the transformers package: pip install transformers")

    model = build_model(transformers)
    train(model, make_batches(1024, seed=0, batch_size=64), steps=30 if args.small else 200)
    data = make_batches(64 if args.small else 256, seed=1)

    if args.small:
        options = AnalysisOptions(
            methods=("integrated_gradients",), n_steps=8, max_importance_samples=32, conductance=False,
            sparsities=(0.0, 0.5),
        )  # fmt: skip
    else:
        options = AnalysisOptions(n_steps=32, max_importance_samples=256)
    analysis = inspector.analyze(model, data, vocabulary=VOCABULARY, options=options)
    assert analysis.data is not None and analysis.activations is not None and analysis.importance is not None
    real_tokens = int(sum(int(b["attention_mask"].sum()) for b in data))
    print(f"accuracy {analysis.data.metric:.2%} on {analysis.data.n_samples} sentences, {real_tokens} real tokens")

    # MLP blocks: GELU never outputs exactly zero, so "sparse" means a negative pre-activation (not
    # firing) and an output near zero; every rate counts real tokens, never padding.
    print("MLP blocks (intermediate.dense, GELU):")
    for census in analysis.activations:
        if not census.layer.endswith("intermediate.dense"):
            continue
        assert census.fire_rate is not None and census.zero_rate is not None
        never = int((census.fire_rate == 0).sum())
        print(
            f"  {census.layer}: {census.width} neurons over {census.n_positions} tokens, "
            f"fire rate {census.fire_rate.mean():.3f}, zero rate {census.zero_rate.mean():.3f}, "
            f"{never} never fire"
        )

    # One sentence, token by token.
    ig = analysis.importance.method("integrated_gradients")
    report = analysis.importance
    ids, scores = report.example_inputs[0].astype(int), ig.examples[0]
    assert report.example_mask is not None
    real = report.example_mask[0]
    label = int(report.example_labels[0]) if report.example_labels is not None else "?"
    print(f"sample 0 (label {label}), per-token attribution (integrated gradients):")
    for token_id, score, is_real in zip(ids, scores, real, strict=True):
        print(f"  {VOCABULARY[token_id]:<7} {score:+.4f}{'' if is_real else '  (padding)'}")

    top = ig.ranking[:5]
    print("words with the largest mean |attribution|: " + ", ".join(report.feature_label(int(i)) for i in top))

    args.out.mkdir(parents=True, exist_ok=True)
    analysis.save(args.out / "analysis", force=True)  # for `inspector dashboard DIR` later
    path = args.out / "transformer-mlp.html"
    inspector.to_html(analysis, path, force=True)  # force replaces only a report this tool wrote
    print(f"wrote {path} and {args.out / 'analysis'}")

    if args.dashboard:
        from dashboards.app import create_app, serve

        serve(create_app(analysis, model=model, data=data, vocabulary=VOCABULARY), port=args.port)


if __name__ == "__main__":
    try:
        main()
    except inspector.InspectorError as error:  # e.g. --out holds a file dense-inspector did not write
        sys.exit(f"error: {error}")
