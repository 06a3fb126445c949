"""Time to the first step: a 3-step `raclate train` of the default model on the demo pairs, timed from
the command's start to each phase event, the first step and the exit. "fresh" runs with an empty MLX
kernel cache and user cache (a new TMPDIR and XDG_CACHE_HOME: every compiled kernel is built again, as
on a new machine), "second" with the caches the fresh run left.

    python benchmarks/first_step.py [--runs 1] [--model default] [--profile FILE] [--kernels DIR]

--profile writes a cProfile of one second run to FILE (read it with python -m pstats FILE). --kernels
keeps the kernel cache in DIR and times second runs only (DIR warmed by a first run if empty): use it
to compare two checkouts without paying for a fresh compile each time.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAIRS = ROOT / "resources" / "demo" / "pairs.jsonl"


def one_run(model: str, kernel_dir: Path, work: Path, profile: str | None = None) -> dict:
    """{phase or 'first_step' or 'exit': seconds since the command started} of one 3-step run."""
    events, out = work / "events.jsonl", work / "out"
    prefix = [sys.executable] + (["-m", "cProfile", "-o", profile] if profile else []) + ["-m", "engine.cli"]
    cmd = prefix + ["train", "--model", model, "--task", "sentence-similarity", "--data", str(PAIRS),
                    "--column", "text=question", "--column", "text_pair=answer", "--max-steps", "3",
                    "--batch-size", "16", "--max-length", "128", "--output", str(out), "--events", str(events)]
    start = time.time()
    # The kernel cache (TMPDIR) and the user cache (XDG_CACHE_HOME: the kernel compiler shim, datasets' cache)
    # start empty for a fresh run and are the fresh run's for a second one; no other process shares them.
    env = {**os.environ, "TMPDIR": str(kernel_dir), "XDG_CACHE_HOME": str(kernel_dir / "cache")}
    subprocess.run(cmd, check=True, cwd=ROOT, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.time()
    marks = {}
    for line in events.read_text().splitlines():
        e = json.loads(line)
        key = e["name"] if e["event"] == "phase" else "first_step" if e["event"] == "step" else e["event"]
        marks.setdefault(key, e["time"] - start)
    marks["exit"] = end - start
    return marks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--model", default="default")
    parser.add_argument("--profile")
    parser.add_argument("--kernels")
    ns = parser.parse_args()
    results = {"second": []} if ns.kernels else {"fresh": [], "second": []}
    if ns.kernels and not any(Path(ns.kernels).glob("mlx/*/cpu/*.so")):
        with tempfile.TemporaryDirectory() as work:
            one_run(ns.model, Path(ns.kernels), Path(work))
    for _ in range(ns.runs):
        with tempfile.TemporaryDirectory() as temp:
            kernels = ns.kernels or temp
            for kind in results:
                with tempfile.TemporaryDirectory() as work:
                    results[kind].append(one_run(ns.model, Path(kernels), Path(work)))
            if ns.profile:
                with tempfile.TemporaryDirectory() as work:
                    one_run(ns.model, Path(kernels), Path(work), ns.profile)
    for kind, runs in results.items():
        keys = list(runs[0])
        shown = ", ".join(f"{k} {statistics.median(r.get(k, float('nan')) for r in runs):.1f}s" for k in keys)
        print(f"{kind}: {shown}")


if __name__ == "__main__":
    main()
