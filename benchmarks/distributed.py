"""Data-parallel throughput: `raclate launch -n N` with per-rank batch b vs one process with batch N×b,
same data, model, global batch and steps. Reports training examples/s from the step events, after a
warm-up (compilation) and excluding loading and saving.

    python benchmarks/distributed.py [--model default] [--task mnrl|clf] [--processes 2] [--batch-size 16]
        [--steps 30] [--warmup 5] [--max-length 64]

On one machine the N processes share its cores, so expect ≤ 1×: this measures the overhead of the
gradient all-reduce (and of splitting the BLAS threads), not the gain of adding a Mac.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DEMO = ROOT / "resources" / "demo"


def data_args(task: str, tmp: Path) -> list[str]:
    if task == "mnrl":
        rows = [json.loads(line) for line in (DEMO / "pairs.jsonl").read_text().splitlines() if line.strip()]
        path = tmp / "pairs.jsonl"
        path.write_text("".join(json.dumps({"question": r["question"], "answer": r["answer"]}) + "\n" for r in rows * 4))
        return ["--task", "sentence-similarity", "--data", str(path), "--column", "text=question",
                "--column", "text_pair=answer"]
    return ["--task", "text-classification", "--data", str(DEMO / "reviews.csv")]


def run(ns, processes: int, tmp: Path) -> dict:
    out = tmp / f"out-{processes}"
    train = ["train", "--model", ns.model, *data_args(ns.task, tmp), "--output", str(out),
             "--batch-size", str(ns.batch_size * (ns.processes // processes)), "--max-steps", str(ns.steps),
             "--max-length", str(ns.max_length), "--logging-steps", "1", "--save-steps", "0", "--events", "-",
             "--validation-split", "0"]
    cmd = ([str(BIN / "raclate"), "launch", "-n", str(processes), "--", *train] if processes > 1
           else [str(BIN / "raclate"), *train])
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    steps = [json.loads(line) for line in done.stdout.splitlines() if line.startswith('{"event": "step"')]
    rates = [s["examples_per_s"] for s in steps[ns.warmup:]]
    return {"processes": processes, "examples_per_s": statistics.median(rates), "steps": len(steps)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default")
    p.add_argument("--task", default="mnrl", choices=("mnrl", "clf"))
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=16, help="per process; the single process gets N× this")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--max-length", type=int, default=64)
    ns = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        one = run(ns, 1, Path(tmp))
        many = run(ns, ns.processes, Path(tmp))
    global_batch = ns.batch_size * ns.processes
    print(f"{ns.task} on {ns.model}, global batch {global_batch}, max length {ns.max_length}, {ns.steps} steps "
          f"(median examples/s after {ns.warmup} warm-up steps)")
    print(f"  1 process  × batch {global_batch:3d}: {one['examples_per_s']:8.1f} examples/s")
    print(f"  {ns.processes} processes × batch {ns.batch_size:3d}: {many['examples_per_s']:8.1f} examples/s "
          f"({many['examples_per_s'] / one['examples_per_s']:.2f}×)")


if __name__ == "__main__":
    main()
