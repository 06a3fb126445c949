"""The Data page's data check on a 200,000-row `text,category` CSV: the sample check that lets Start
go on, and the full check that goes on in the background (what `raclate train` checks, plus token lengths).

    python benchmarks/validation.py [--rows 200000] [--repeat 1] [--keep big.csv] [--before HEAD]

Writes review-like texts (5–60 words) in 6 categories to a temporary folder, then times, each with an
empty datasets cache (a file opened for the first time), the sample check
(``raclate_app.checks.check_sample``: the first rows) and the full check (``check_data``: read, split,
validate with the embedded model's tokenizer, plan the labels). ``--before REV`` also times the full
check of that git revision (exported to a temporary folder, run in a child process), interleaved with
this tree's, so both numbers come from the same run. Prints median wall and CPU seconds (CPU time
says more than wall time on a busy machine), the slowest parts of the last full check, and peak memory.
"""
from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv

ROOT = Path(__file__).resolve().parent.parent
CATEGORIES = ("electronics", "books", "kitchen", "toys", "garden", "clothing")
OPENERS = ("I bought this", "Got it for", "After two weeks", "Honestly", "For the price", "Second one and",
           "Delivery was quick", "My wife says")   # at most 4 words, so every text can be 5–60 words
WORDS = ("great terrible decent solid flimsy sturdy cheap lovely awful excellent reliable noisy quiet soft battery "
         "screen handle cover pages story blade lid wheels seams fabric zipper hose motor colour size works broke "
         "arrived fits lasted failed feels looks charges cleans cuts smells and but so it the was is really very "
         "quite not too also just still with after for on in of my would buy again return").split()


def make_csv(path: Path, n: int, seed: int = 0) -> Path:
    """``n`` review-like rows (5–60 words) as a `text,category` CSV with 6 categories."""
    rng = np.random.default_rng(seed)
    vocab = np.array(WORDS)
    opener = np.arange(n) % len(OPENERS)
    rest = rng.integers(5, 61, size=n) - np.array([len(o.split()) for o in OPENERS])[opener]   # words after it
    words = vocab[rng.integers(0, len(vocab), size=int(rest.sum()))]
    ends = np.cumsum(rest)
    texts = [f"{OPENERS[o]} {' '.join(words[end - k:end])}." for o, end, k in zip(opener, ends, rest)]
    labels = np.array(CATEGORIES)[rng.integers(0, len(CATEGORIES), size=n)]
    pcsv.write_csv(pa.table({"text": texts, "category": labels}), path)
    return path


def run_checks(data: Path, cache: Path, with_sample: bool, profile: cProfile.Profile | None = None) -> dict:
    """{"sample": (wall, cpu), "full": (wall, cpu)} of one cold check of ``data`` by the engine on sys.path."""
    import datasets

    from engine.data import DatasetArgs
    from engine.defaults import default_model_dir
    from raclate_app import checks
    datasets.disable_progress_bars()
    datasets.config.HF_DATASETS_CACHE = cache   # cold: nothing of this file cached yet
    tokenizer = checks.load_tokenizer(str(default_model_dir()))
    args = DatasetArgs(data=str(data), task_type="text-classification", columns={"text": "text", "label": "category"},
                       validation_split=0.1, max_length=256)
    out = {}
    for name, check in (("sample", getattr(checks, "check_sample", None)), ("full", checks.check_data)):
        if name == "sample" and not with_sample:
            continue
        if profile is not None and name == "full":
            profile.enable()
        wall, cpu = time.perf_counter(), time.process_time()
        result = check(args, tokenizer)
        out[name] = (time.perf_counter() - wall, time.process_time() - cpu)
        if profile is not None and name == "full":
            profile.disable()
        assert result.report.ok, [str(f) for f in result.report.fatal]
    out["report"] = {"num_rows": result.report.num_rows, "findings": [f.code for f in result.report.findings]}
    return out


def run_revision(tree: Path, data: Path, cache: Path) -> dict:
    """run_checks with the engine and app of an exported revision, in a child process."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.run([sys.executable, __file__, "--child", str(data), str(cache)], env=env, cwd=tree,
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def export(rev: str, folder: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "engine", "raclate_app"], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--keep", type=Path, help="write the generated CSV here (and keep it)")
    ap.add_argument("--before", metavar="REV", help="also time the full check of this git revision, e.g. HEAD")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)   # run_revision's child: DATA CACHE → JSON
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_checks(Path(args.child[0]), Path(args.child[1]), with_sample=False)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = make_csv(args.keep or tmp / "big.csv", args.rows)
        print(f"{data}: {args.rows:,} rows, {data.stat().st_size / 1e6:.1f} MB; load average {os.getloadavg()[0]:.1f}")
        tree = export(args.before, Path(tempfile.mkdtemp(dir=tmp))) if args.before else None
        times: dict[str, list] = {"sample check": [], "full check": [], f"full check at {args.before}": []}
        profile = cProfile.Profile()
        for i in range(args.repeat):
            if tree is not None:   # interleaved, so that both meet the same load
                times[f"full check at {args.before}"].append(run_revision(tree, data, tmp / f"before{i}")["full"])
            got = run_checks(data, tmp / f"after{i}", with_sample=True, profile=profile)
            times["sample check"].append(got["sample"])
            times["full check"].append(got["full"])
        for name, values in times.items():
            if values:
                wall, cpu = (statistics.median(v[k] for v in values) for k in (0, 1))
                print(f"{name:28} median {wall:6.2f} s wall, {cpu:6.2f} s CPU over {len(values)} run(s)")
        print(f"rows checked: {got['report']['num_rows']}; findings: {got['report']['findings']}")
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1 << 20 if sys.platform == "darwin" else 1 << 10)
        print(f"peak memory (this process's RSS): {rss:,.0f} MB")
        pstats.Stats(profile).sort_stats("cumulative").print_stats(r"engine|checks|encode_batch", 10)


if __name__ == "__main__":
    main()
