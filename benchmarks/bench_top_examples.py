"""The cost of keeping each neuron's top-k examples in the census: census with ``top_k=20`` over
census without, on a BERT-ish token model built from a config (random weights, no download), one thread,
interleaved rounds; prints the median ratio and its spread.

    python benchmarks/bench_top_examples.py [--layers 4] [--hidden 256] [--sequences 64] [--length 64] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def main() -> None:
    import transformers

    from inspector.analysis.activations import activation_census

    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--sequences", type=int, default=64)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--k", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=2000,
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=max(1, args.hidden // 64),
        intermediate_size=4 * args.hidden,
        max_position_embeddings=args.length,
    )
    model = transformers.BertModel(config).eval()
    g = torch.Generator().manual_seed(1)
    batches = []
    for start in range(0, args.sequences, args.batch):
        n = min(args.batch, args.sequences - start)
        ids = torch.randint(5, 2000, (n, args.length), generator=g)
        lengths = torch.randint(args.length // 2, args.length + 1, (n,), generator=g)
        mask = (torch.arange(args.length)[None, :] < lengths[:, None]).long()
        batches.append({"input_ids": ids, "attention_mask": mask})
    activation_census(model, batches, top_k=args.k)  # warm up

    def timed(k: int) -> float:
        start = time.perf_counter()
        activation_census(model, batches, top_k=k)
        return time.perf_counter() - start

    ratios, plain, with_top = [], [], []
    for _ in range(args.rounds):
        a = timed(0)
        b = timed(args.k)
        plain.append(a)
        with_top.append(b)
        ratios.append(b / a)
    sites = sum(1 for m in model.modules() if isinstance(m, torch.nn.Linear))
    print(
        f"BERT {args.layers} x {args.hidden} -> {4 * args.hidden}, {sites} dense sites, {args.sequences} sequences "
        f"of {args.length} tokens, one thread"
    )
    print(f"census alone      median {statistics.median(plain):.3f} s")
    print(f"census + top-{args.k}   median {statistics.median(with_top):.3f} s")
    spread = f"{min(ratios):.3f}-{max(ratios):.3f}"
    print(
        f"ratio (with / without top-k): median {statistics.median(ratios):.3f}, spread {spread} over {args.rounds} rounds"
    )


if __name__ == "__main__":
    main()
