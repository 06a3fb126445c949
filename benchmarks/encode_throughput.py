"""Inference throughput: ``engine.encode`` vs ``SentenceTransformer.encode`` on the same texts, model and batch
size, in one run — what evaluation, the Playground and hard-negative mining spend their time on.

    python benchmarks/encode_throughput.py [--texts 10000] [--batch-sizes 32,64] [--max-length 128]

Texts: the Python standard library's names and docstring summaries (benchmarks/public_data.py: short,
3–60 tokens), cycled to ``--texts``. Model: the embedded all-MiniLM-L6-v2 on both sides. Both sort by length
before batching (sentence-transformers does it inside ``encode``). Each side runs in its own process, once
untimed on 500 texts (imports, caches, kernel compilation), then timed on all texts. Columns: texts/s, the
ratio to sentence-transformers, the process's peak RSS, and the lowest cosine between the two sides'
vectors of the same text (a check that both computed the same thing). "one lane" is the engine with
``RACLATE_INFERENCE_LANES=1``: each batch on one stream instead of its rows split over two (engine/backend.py).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np


def texts(n: int) -> list[str]:
    import public_data
    pool = [t for r in public_data.pairs() for t in (r["text"], r["text_pair"])]
    return [pool[i % len(pool)] for i in range(n)]


def child(kind: str, a, out_path: str) -> None:
    data = texts(a.texts)
    if kind.startswith("ours"):
        from engine import encode
        from engine.models import load_model
        model, tok = load_model(a.model, "sentence-similarity")
        run = lambda items: encode(model, tok, items, batch_size=a.batch_size, max_length=a.max_length)
    else:
        import torch
        from sentence_transformers import SentenceTransformer
        model = SentenceTransformer(a.model, device="cpu")
        model.max_seq_length = a.max_length
        torch.set_grad_enabled(False)
        run = lambda items: model.encode(items, batch_size=a.batch_size, convert_to_numpy=True)
    run(data[:500])
    start = time.perf_counter()
    vectors = np.asarray(run(data), dtype=np.float32)
    seconds = time.perf_counter() - start
    np.save(out_path, vectors)
    # the engine's import loads OpenBLAS globally and tunes malloc: it must not slow the peer down
    assert kind != "peer" or "engine" not in sys.modules, "the sentence-transformers peer imported the engine"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    print(json.dumps({"texts_per_s": len(data) / seconds, "peak_rss_bytes": rss}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--texts", type=int, default=10_000)
    ap.add_argument("--batch-sizes", default="32,64")
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=64, help=argparse.SUPPRESS)
    ap.add_argument("--child", nargs=2, metavar=("KIND", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child(a.child[0], a, a.child[1])
    env = dict(os.environ, TOKENIZERS_PARALLELISM="true")   # before the engine's import below changes it
    from engine.defaults import default_model_dir
    model = str(default_model_dir())   # resolved here: a peer never imports the engine
    print(f"{a.texts} texts (Python stdlib names and docstring summaries), all-MiniLM-L6-v2, max length {a.max_length}, "
          f"{os.cpu_count()} cores")
    print(f"{'encode':<34} {'batch':>5} {'texts/s':>9} {'vs peer':>8} {'peak RSS':>9} {'min cos':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for batch in map(int, a.batch_sizes.split(",")):
            results = {}
            for kind in ("peer", "ours-1", "ours"):
                out = os.path.join(tmp, f"{kind}-{batch}.npy")
                cmd = [sys.executable, __file__, "--texts", str(a.texts), "--batch-size", str(batch),
                       "--max-length", str(a.max_length), "--model", model, "--child", kind, out]
                lanes = {"RACLATE_INFERENCE_LANES": "1"} if kind == "ours-1" else {}
                done = subprocess.run(cmd, capture_output=True, text=True, env=env | lanes)
                if done.returncode:
                    sys.exit(f"{kind} failed:\n{done.stderr[-3000:]}")
                results[kind] = json.loads(done.stdout.strip().splitlines()[-1]) | {"vectors": np.load(out)}
            p, o = results["peer"]["vectors"], results["ours"]["vectors"]
            cos = float(np.min(np.sum(p * o, axis=1) / (np.linalg.norm(p, axis=1) * np.linalg.norm(o, axis=1))))
            for kind, name in (("peer", "SentenceTransformer.encode"), ("ours-1", "RACLATE engine.encode, one lane"),
                               ("ours", "RACLATE engine.encode")):
                r = results[kind]
                ratio = r["texts_per_s"] / results["peer"]["texts_per_s"]
                print(f"{name:<34} {batch:>5} {r['texts_per_s']:>9.1f} {ratio:>7.2f}x "
                      f"{r['peak_rss_bytes'] / 2**20:>7.0f}MB {cos:>8.5f}", flush=True)


if __name__ == "__main__":
    main()
