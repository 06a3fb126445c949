"""The headless demo behind `make run` (no display): fine-tune the embedded all-MiniLM-L6-v2 on the
bundled demo data and print the held-out metrics before and after, and where the models went.

1. sentiment classification on resources/demo/reviews.csv (300 hand-written reviews, 3 classes);
2. question → answer retrieval on resources/demo/pairs.jsonl (320 hand-written pairs, MNRL).

    python -m engine.demo [--output runs/demo] [--only classification|retrieval] [--quick]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from engine import backend
from engine.defaults import RESOURCES_DIR
from engine.training.config import RunConfig, build_run_config
from engine.training.run import train_run

# job: (file, task, metrics shown, batch size, learning rate, epochs)
JOBS = {
    "classification": ("reviews.csv", "text-classification", ("accuracy", "macro_f1", "eval_loss"), 16, 1e-4, 5.0),
    "retrieval": ("pairs.jsonl", "sentence-similarity", ("ndcg@10", "mrr@10", "recall@1", "eval_loss"), 32, 5e-5, 1.0),
}


def demo_config(job: str, output: str, max_steps: int = -1) -> RunConfig:
    file, task, _, batch, lr, epochs = JOBS[job]
    return build_run_config(model="default", task=task, data=str(RESOURCES_DIR / "demo" / file),
                            validation_split=0.2, output_dir=output, batch_size=batch, learning_rate=lr,
                            num_train_epochs=epochs, max_steps=max_steps, warmup_ratio=0.1, logging_steps=5,
                            save_steps=0, save_total_limit=1, max_length=128, seed=13)


def run_job(job: str, output: Path, quick: bool) -> None:
    file, task, shown = JOBS[job][:3]
    print(f"\n== {job}: fine-tune on resources/demo/{file} ({task}, 20% held out)", flush=True)
    evals: list[dict] = []

    def show(event):
        if event["event"] == "eval":
            evals.append(event["metrics"])
        elif event["event"] == "step" and event["loss"] is not None:
            print(f"  step {event['step']:>3}/{total[0]}  loss {event['loss']:.4f}  "
                  f"{event['examples_per_s']:.1f} examples/s", flush=True)
        elif event["event"] == "run_started":
            total[0] = event["total_steps"]

    total = [0]
    t0 = time.perf_counter()
    record = train_run(demo_config(job, str(output), max_steps=3 if quick else -1), [show], overwrite=True)
    before, after = (evals[0], evals[-1]) if evals else ({}, {})
    print(f"  {'metric':<10} {'before':>8} {'after':>8} {'change':>8}")
    for name in shown:
        if name in before and name in after:
            print(f"  {name:<10} {before[name]:>8.4f} {after[name]:>8.4f} {after[name] - before[name]:>+8.4f}")
    print(f"  {record['final_step']} steps in {time.perf_counter() - t0:.0f}s; model saved to {output.resolve()}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output", default="runs/demo", help="Parent folder of the models (replaced if they exist).")
    ap.add_argument("--quick", action="store_true", help="Only 3 steps per job (used by the tests).")
    ap.add_argument("--only", choices=tuple(JOBS), help="Run one of the two jobs.")
    args = ap.parse_args(argv)
    print(f"RACLATE Tuner headless demo — embedded all-MiniLM-L6-v2, BLAS: {backend.info()['blas']}")
    for job in [args.only] if args.only else JOBS:
        run_job(job, Path(args.output) / job, args.quick)
    out = Path(args.output).resolve()
    print(f"\nLoad the models with SentenceTransformer('{out / 'retrieval'}') or "
          f"AutoModelForSequenceClassification.from_pretrained('{out / 'classification'}'), "
          f"or engine.load_model(path, task=...).")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
