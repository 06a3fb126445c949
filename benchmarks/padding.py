"""Share of tokens spent on padding: random batches vs LengthGroupedBatchSampler.

    python benchmarks/padding.py [--rows 20000] [--batch-sizes 16 32 64]
    python benchmarks/padding.py --data resources/demo/pairs.jsonl --task sentence-similarity

Lengths come from the embedded BERT tokenizer, either on generated short-text data shaped like real
sentence pairs (most texts 5–30 words, a long tail; the regime where a peer MLX trainer was measured
spending ~57% of its tokens on padding with random batches) or on a data file (a row's length = its longest text, as the trainer
sorts). Batches are padded as the collators pad: to the longest, or rounded up to a multiple of 8.
"""
from __future__ import annotations

import argparse

import numpy as np
from transformers import AutoTokenizer

from engine.data import DatasetArgs, LengthGroupedBatchSampler, load_dataset, tokenize_dataset
from engine.defaults import default_model_dir

WORDS = ("model training data query answer document passage sentence vector embedding similarity search "
         "retrieval ranking transformer attention layer token batch gradient loss optimizer learning rate "
         "evaluation metric precision recall accuracy classification label entity definition term").split()


def texts(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    lens = np.clip(rng.lognormal(mean=2.6, sigma=0.7, size=n).astype(int), 1, 200)
    return [" ".join(rng.choice(WORDS, k)) for k in lens]


def pc_lengths(column) -> np.ndarray:
    import pyarrow.compute as pc
    return pc.list_value_length(column).to_numpy()


def padded_tokens(batches, lengths, multiple=8) -> int:
    return sum(len(b) * (-(-int(lengths[b].max()) // multiple) * multiple) for b in batches)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 32, 64])
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--data", help="a data file or folder instead of generated texts")
    ap.add_argument("--task", default="sentence-similarity")
    args = ap.parse_args()
    tok = AutoTokenizer.from_pretrained(str(default_model_dir()))
    if args.data:
        data = load_dataset(DatasetArgs(data=args.data, task_type=args.task, validation_split=0,
                                        max_length=args.max_length))
        ds = tokenize_dataset(data.train, tok, data.task, args.max_length).with_format("arrow")[:]
        ids = [c for c in ds.column_names if c.endswith("input_ids")]
        lengths = np.max([pc_lengths(ds[c]) for c in ids], axis=0)
    else:
        lengths = np.array([len(ids) for ids in tok(texts(args.rows), truncation=True,
                                                    max_length=args.max_length)["input_ids"]])
    print(f"{len(lengths):,} rows, tokens per row: median {np.median(lengths):.0f}, mean {lengths.mean():.1f}, "
          f"p95 {np.percentile(lengths, 95):.0f}, max {lengths.max()}")
    print("padding % of all tokens in the batches (x1: to the longest; x8: rounded up to a multiple of 8)")
    print(f"{'batch':>5} {'random x1':>10} {'grouped x1':>11} {'random x8':>10} {'grouped x8':>11} {'saved x8':>9}")
    real = int(lengths.sum())
    for bs in args.batch_sizes:
        order = np.random.default_rng(0).permutation(len(lengths))
        random = [order[i:i + bs] for i in range(0, len(order), bs)]
        grouped = [np.array(b) for b in LengthGroupedBatchSampler(lengths, bs, seed=0)]
        row = []
        for multiple in (1, 8):
            r, g = padded_tokens(random, lengths, multiple), padded_tokens(grouped, lengths, multiple)
            row += [100 * (1 - real / r), 100 * (1 - real / g)]
        print(f"{bs:5d} {row[0]:10.1f} {row[1]:11.1f} {row[2]:10.1f} {row[3]:11.1f} {100 * (1 - g / r):9.1f}")


if __name__ == "__main__":
    main()
