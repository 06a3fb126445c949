"""The headless demo behind `make run` (no display): fine-tune the embedded all-MiniLM-L6-v2 on the
bundled question/answer pairs and print retrieval metrics before and after, and where the model went.

    python -m engine.demo [--output runs/demo] [--epochs 1] [--quick]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from engine import backend
from engine.data import DatasetArgs
from engine.defaults import RESOURCES_DIR
from engine.training_args import TrainingArgs

SHOWN = ("ndcg@10", "mrr@10", "recall@1", "recall@5", "eval_loss")


def demo_config(output: str, epochs: float, max_steps: int = -1) -> dict:
    data = DatasetArgs(data=str(RESOURCES_DIR / "demo" / "pairs.jsonl"), task_type="sentence-similarity",
                       validation_split=0.2, max_length=128, seed=13)
    training = TrainingArgs(output_dir=output, batch_size=32, learning_rate=5e-5, num_train_epochs=epochs,
                            max_steps=max_steps, warmup_ratio=0.1, logging_steps=2, save_steps=0,
                            save_total_limit=1, max_length=128, seed=13)
    return {"model": "default", "task": "sentence-similarity", "data": data, "training": training}


def main(argv: list[str] | None = None) -> int:
    from engine.run import train_run
    ap = argparse.ArgumentParser(prog="python -m engine.demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output", default="runs/demo", help="Where the fine-tuned model goes (replaced if it exists).")
    ap.add_argument("--epochs", type=float, default=3.0)
    ap.add_argument("--quick", action="store_true", help="Only 3 steps (used by the tests).")
    args = ap.parse_args(argv)

    print(f"RACLATE Tuner demo: fine-tune the embedded all-MiniLM-L6-v2 on {RESOURCES_DIR / 'demo' / 'pairs.jsonl'}")
    print(f"  (320 hand-written question/answer pairs; 20% held out). BLAS: {backend.info()['blas']}")
    evals: list[dict] = []

    def show(event):
        if event["event"] == "eval":
            evals.append(event["metrics"])
        elif event["event"] == "step":
            print(f"  step {event['step']:>3}  loss {event['loss']:.4f}  {event['examples_per_s']:.1f} examples/s",
                  flush=True)
        elif event["event"] == "phase" and event["name"] in ("tokenizing", "training", "saving"):
            print(f"{event['name']} …", flush=True)

    t0 = time.perf_counter()
    cfg = demo_config(args.output, args.epochs, max_steps=3 if args.quick else -1)
    record = train_run(cfg, [show], overwrite=True)
    before, after = (evals[0], evals[-1]) if evals else ({}, {})
    print(f"\nRetrieval on the held-out pairs (each question against all held-out answers):")
    print(f"  {'metric':<10} {'before':>8} {'after':>8} {'change':>8}")
    for name in SHOWN:
        if name in before and name in after:
            print(f"  {name:<10} {before[name]:>8.4f} {after[name]:>8.4f} {after[name] - before[name]:>+8.4f}")
    out = Path(args.output).resolve()
    print(f"\nDone in {time.perf_counter() - t0:.0f}s ({record['final_step']} steps). The fine-tuned model is in {out}")
    print(f"Load it with: SentenceTransformer('{out}')  or  engine.load_model('{out}')")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
