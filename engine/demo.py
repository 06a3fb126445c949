"""The headless demo: what the embedded model does on the bundled demo data.

Fine-tuning joins this demo once the trainer lands; until then it says so and shows the
base model's retrieval on the demo pairs."""
from __future__ import annotations

import json
import sys
import time

import numpy as np

from engine import backend, encode, load_model
from engine.defaults import RESOURCES_DIR


def main(argv: list[str]) -> int:
    print(f"RACLATE Tuner demo — BLAS: {backend.info()['blas']}")
    t0 = time.perf_counter()
    model, tok = load_model("default")
    pairs_file = RESOURCES_DIR / "demo" / "pairs.jsonl"
    rows = [json.loads(line) for line in pairs_file.read_text().splitlines() if line.strip()]
    queries = [r["question"] for r in rows]
    docs = [r["answer"] for r in rows]
    q, d = encode(model, tok, queries), encode(model, tok, docs)
    ranks = (q @ d.T).argsort(axis=1)[:, ::-1]
    hits = float(np.mean(ranks[:, 0] == np.arange(len(rows))))
    print(f"Embedded all-MiniLM-L6-v2 on {len(rows)} demo question/answer pairs: "
          f"accuracy@1 = {hits:.3f} ({time.perf_counter() - t0:.1f}s)")
    print("Fine-tuning is not available yet in this build (the trainer is being written); "
          "this run only measured the base model.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
