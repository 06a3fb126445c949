"""The Data page's data check on a 200,000-row `text,category` CSV: the sample check that lets Start
go on, and the full check that runs on in the background (the one `raclate train` also runs).

    python benchmarks/validation.py [--rows 200000] [--repeat 1] [--keep big.csv]

Writes review-like texts (5–60 words) with 6 categories to a temporary folder, then times, each
with an empty datasets cache (a file opened for the first time): the sample check
(``raclate_app.checks.check_sample``, the first rows) and the full check (``check_data``: read,
split, validate with the embedded model's tokenizer, plan labels). Prints the median of
``--repeat`` runs, the slowest parts of the last full check, and the process's peak memory.
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv

CATEGORIES = ("electronics", "books", "kitchen", "toys", "garden", "clothing")
OPENERS = ("I bought this", "Got this for my son and", "After two weeks of use", "Honestly", "For the price",
           "This is my second one and", "The delivery was quick and", "My wife says")
WORDS = ("great terrible decent solid flimsy sturdy cheap lovely awful excellent reliable noisy quiet soft battery "
         "screen handle cover pages story blade lid wheels seams fabric zipper hose motor colour size works broke "
         "arrived fits lasted failed feels looks charges cleans cuts smells and but so it the was is really very "
         "quite not too also just still with after for on in of my would buy again return").split()


def make_csv(path: Path, n: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    vocab = np.array(WORDS)
    lengths = rng.integers(5, 61, size=n)
    words = vocab[rng.integers(0, len(vocab), size=int(lengths.sum()))]
    ends = np.cumsum(lengths)
    texts = [f"{OPENERS[i % len(OPENERS)]} {' '.join(words[e - k:e - 2])}." for i, (e, k) in enumerate(zip(ends, lengths))]
    labels = np.array(CATEGORIES)[rng.integers(0, len(CATEGORIES), size=n)]
    pcsv.write_csv(pa.table({"text": texts, "category": labels}), path)
    return path


def timed(fn, *args, **kw):
    t = time.perf_counter()
    result = fn(*args, **kw)
    return time.perf_counter() - t, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--keep", type=Path, help="also write the generated CSV here")
    args = ap.parse_args()
    import datasets

    from engine.data import DatasetArgs
    from raclate_app import checks
    datasets.disable_progress_bars()
    tokenizer = checks.load_tokenizer("default")
    with tempfile.TemporaryDirectory() as tmp:
        data = make_csv(args.keep or Path(tmp) / "big.csv", args.rows)
        print(f"{data}: {args.rows:,} rows, {data.stat().st_size / 1e6:.1f} MB")
        dargs = DatasetArgs(data=str(data), task_type="text-classification", columns={"text": "text", "label": "category"},
                            validation_split=0.1, max_length=256)
        times: dict[str, list[float]] = {"sample": [], "full": []}
        for i in range(args.repeat):
            cache = str(Path(tmp) / f"cache{i}")   # cold: nothing of this file cached yet
            datasets.config.HF_DATASETS_CACHE = Path(cache)
            sample = getattr(checks, "check_sample", None)
            if sample is not None:
                seconds, result = timed(sample, dargs, tokenizer)
                assert result.report.ok, [str(f) for f in result.report.fatal]
                times["sample"].append(seconds)
            profile = cProfile.Profile()
            profile.enable()
            seconds, result = timed(checks.check_data, dargs, tokenizer)
            profile.disable()
            assert result.report.ok, [str(f) for f in result.report.fatal]
            times["full"].append(seconds)
        for name, values in times.items():
            if values:
                print(f"{name:6} check: median {statistics.median(values):6.2f} s over {len(values)} run(s)")
        print(f"rows checked: {result.report.num_rows}; findings: {[f.code for f in result.report.findings]}")
        print(f"peak memory (process RSS): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1 << 20 if sys.platform == 'darwin' else 1 << 10):,.0f} MB")
        pstats.Stats(profile).sort_stats("cumulative").print_stats(r"engine|checks|tokenizers|encode_batch", 12)


if __name__ == "__main__":
    main()
