"""The headless demo behind `make run` (no display): fine-tune the embedded all-MiniLM-L6-v2 on the
bundled demo data and print the held-out metrics of the base model and of the fine-tuned one, and
where the models went.

1. sentiment classification on resources/demo/reviews.csv (300 hand-written reviews, 3 classes, 20%
   held out);
2. retrieval on resources/demo/commands/: French questions about Linux commands → the English one-line
   descriptions of their Debian manual pages (403 training pairs, MNRL). The held-out questions are
   about 100 other commands. The English-only base model finds few of them; fine-tuning teaches it
   the words the questions and the descriptions do not share.

    python -m engine.demo [--output runs/demo] [--only classification|retrieval] [--quick]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import NamedTuple

from engine import backend
from engine.defaults import RESOURCES_DIR
from engine.training.config import RunConfig, build_run_config
from engine.training.run import train_run


class Job(NamedTuple):
    data: str            # under resources/demo: a file (20% held out) or a folder with its validation file
    task: str
    held_out: str        # what the metrics are measured on, in words
    shown: tuple[str, ...]
    training: dict       # TrainingArgs values; what is not here comes from the model's preset


JOBS = {
    "classification": Job("reviews.csv", "text-classification", "20% of the reviews held out",
                          ("accuracy", "macro_f1", "eval_loss"),
                          {"batch_size": 16, "learning_rate": 1e-4, "num_train_epochs": 5.0, "max_length": 128,
                           "warmup_ratio": 0.1}),
    # The app's demo dataset (raclate_app.state.load_demo) trains with these settings too: none of them
    # is one the Model page's preset sets (batch size, learning rate, max length), so the numbers in the
    # README are the app's as well.
    "retrieval": Job("commands", "sentence-similarity", "100 held-out questions about other commands",
                     ("ndcg@10", "mrr@10", "recall@1", "recall@10", "eval_loss"),
                     {"num_train_epochs": 1.5, "lr_scheduler_type": "constant", "warmup_ratio": 0.1}),
}


def demo_config(job: str, output: str, max_steps: int = -1) -> RunConfig:
    j = JOBS[job]
    return build_run_config(model="default", task=j.task, data=str(RESOURCES_DIR / "demo" / j.data),
                            validation_split=0.2, output_dir=output, max_steps=max_steps, logging_steps=5,
                            save_steps=0, save_total_limit=1, seed=13, **j.training)


def run_job(job: str, output: Path, quick: bool) -> None:
    j = JOBS[job]
    print(f"\n== {job}: fine-tune on resources/demo/{j.data} ({j.task}; measured on {j.held_out})", flush=True)
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
    # the first evaluation runs before any step: the base model; the last one, the fine-tuned model
    before, after = (evals[0], evals[-1]) if evals else ({}, {})
    print(f"  {'metric':<10} {'before':>8} {'after':>8} {'change':>8}   (before: the base model, "
          f"after: fine-tuned)")
    for name in j.shown:
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
