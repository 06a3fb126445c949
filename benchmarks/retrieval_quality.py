"""Retrieval quality on data nobody on the team wrote: the manual pages installed on this machine.

Each page of /usr/share/man/man1..8 gives a pair: the query is its one-line synopsis (the NAME
section after the dash: "copy files and directories"), the document the start of its DESCRIPTION
section. Pages are kept once per synopsis and per description, and the alpha/beta copies of the
gcloud pages are left out (they repeat the GA pages). The pairs are shuffled with the seed; the
held-out queries are searched among their own documents plus distractor pages no run trains on.

Starting from the embedded all-MiniLM-L6-v2, with the same steps, batch and seed:

  (a) MNRL on the training pairs, against MNRL on triplets whose negatives engine.mining found
      with the base model (rank window and margin guard as the flags say);
  (b) Matryoshka MNRL with dims 384,192,96: its score at 96 dims (1/4) against its full 384.

Every model reads at most --max-length tokens per text, the base model too (mining included). Scores
are recall@1, recall@10 and MRR@10 of the held-out queries. The defaults (1,024 training pairs, 32
steps) took 39 minutes on 2 shared CPU cores (README: the numbers); go bigger with the flags:

    nice -n 10 python benchmarks/retrieval_quality.py [--train 1024 --test 300 --distractors 700]
        [--max-length 64 --batch-size 32 --epochs 1 --range-min 10 --range-max 50 --margin 0.05]
"""
from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from engine import backend
from engine.data import DatasetArgs, load_dataset
from engine.data.inputs import adopt
from engine.inference import encode
from engine.metrics import retrieval_metrics
from engine.mining import mine_hard_negatives
from engine.models import load_model
from engine.training.args import TrainingArgs
from engine.training.trainer import Trainer

MAN_PAGES = "/usr/share/man/man[1-8]/*.gz"
SHOWN = ("recall@1", "recall@10", "mrr@10")
DOC_WORDS = 80   # a description's first words: max_length 64 reads about this many

# roff escapes: font changes and named characters go, a few become their character
ESCAPES = [(r"\\f(\[[^\]]*\]|\(..|.)", ""), (r"\\\*(\[[^\]]*\]|\(..|.)", ""), (r"\\\((em|en|hy)", "-"),
           (r"\\\((aq|oq|cq)", "'"), (r"\\\((dq|lq|rq)", '"'), (r"\\\[[^\]]*\]|\\\(..", ""), (r"\\-", "-"),
           (r"\\e", "\\\\"), (r"\\s[-+]?\d", ""), (r"\\ ", " "), (r"\\.", "")]
TEXT_MACROS = {"B", "I", "BR", "RB", "IR", "RI", "BI", "IB", "SM", "SB", "Nm", "Ar", "Fl", "Nd", "Xr", "Pa", "Cm",
               "Em", "Dq", "Sy", "Li", "Ql"}
ALTERNATING = {"BR", "RB", "IR", "RI", "BI", "IB"}   # font pairs: their words join without a space


def clean(text: str) -> str:
    for pattern, value in ESCAPES:
        text = re.sub(pattern, value, text)
    return re.sub(r"\s+", " ", text).strip()


def sections(roff: str) -> dict[str, str]:
    """{SECTION NAME: its text} of a man or mdoc page, macros dropped but the words they carry kept."""
    out, name, lines = {}, None, []
    for line in roff.splitlines():
        heading = re.match(r'\.(SH|Sh)\s+"?([^"]*)"?', line)
        if heading:
            if name:
                out.setdefault(name, " ".join(lines))
            name, lines = heading.group(2).strip().upper(), []
        elif line.startswith(".") or line.startswith("'"):
            macro, _, rest = line[1:].partition(" ")
            if macro in TEXT_MACROS and rest:
                words = [w.strip('"') for w in re.findall(r'"[^"]*"|\S+', rest)]
                lines.append(("" if macro in ALTERNATING else " ").join(words))
        else:
            lines.append(line)
    if name:
        out.setdefault(name, " ".join(lines))
    return {k: clean(v) for k, v in out.items()}


def man_pairs() -> list[tuple[str, str]]:
    """(synopsis, description) of each installed man page, once per synopsis and per description."""
    pairs, seen = [], set()
    for path in sorted(Path("/").glob(MAN_PAGES.lstrip("/"))):
        if re.search(r"gcloud_(alpha|beta)_", path.name):
            continue
        try:
            roff = gzip.open(path, "rt", errors="replace").read()
        except (OSError, EOFError):
            continue
        if roff.lstrip().startswith(".so"):   # a link to another page
            continue
        parts = sections(roff)
        name = re.match(r"(.+?)\s+-+\s+(.+)", parts.get("NAME", ""))
        words = parts.get("DESCRIPTION", "").split()
        if not name or len(name.group(2).split()) < 3 or len(words) < 12:
            continue
        query, doc = name.group(2).strip(), " ".join(words[:DOC_WORDS])
        if query.lower() in seen or doc.lower() in seen:
            continue
        seen |= {query.lower(), doc.lower()}
        pairs.append((query, doc))
    return pairs


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def scores_at(model, tokenizer, queries, docs, dims) -> dict[int, dict]:
    """{dim: retrieval metrics} with the embeddings cut to their first ``dim`` values (cosine
    re-normalises them)."""
    q = encode(model, tokenizer, queries, is_query=True)
    d = encode(model, tokenizer, docs, is_query=False)
    out = {}
    for dim in dims:
        a, b = q[:, :dim], d[:, :dim]
        a = a / np.linalg.norm(a, axis=1, keepdims=True)
        b = b / np.linalg.norm(b, axis=1, keepdims=True)
        out[dim] = retrieval_metrics(a @ b.T, [{i} for i in range(len(queries))])
    return out


def train(name: str, data: str, args, steps: int, **extra):
    """The embedded model trained in memory by the engine's Trainer on ``data`` (no export: only the
    held-out scores matter here) -> (model, tokenizer)."""
    t0 = time.perf_counter()
    model, tokenizer = load_model("default", "sentence-similarity")
    rows = load_dataset(DatasetArgs(data=data, task_type="sentence-similarity", validation_split=0.0,
                                    max_length=args.max_length, seed=args.seed)).train
    training = TrainingArgs(output_dir=None, max_steps=steps, batch_size=args.batch_size,
                            learning_rate=args.learning_rate, max_length=args.max_length, seed=args.seed,
                            warmup_ratio=0.1, save_steps=0, loss="mnrl", **extra)
    Trainer(model, tokenizer, "sentence-similarity", training, rows).train()
    model.eval()
    print(f"  trained {name}: {steps} steps in {time.perf_counter() - t0:.0f}s", flush=True)
    return model, tokenizer


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=int, default=1024, help="training pairs")
    ap.add_argument("--test", type=int, default=300, help="held-out queries")
    ap.add_argument("--distractors", type=int, default=700, help="extra held-out pages in the search corpus")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--learning-rate", type=float, default=5e-5)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--range-min", type=int, default=10, help="mining: skip the N closest candidates")
    ap.add_argument("--range-max", type=int, default=50)
    ap.add_argument("--margin", type=float, default=0.05, help="mining: a negative scores below positive - margin")
    ap.add_argument("--dims", default="384,192,96", help="Matryoshka dims; the last is the one reported")
    args = ap.parse_args(argv)
    dims = [int(d) for d in args.dims.split(",")]

    t0 = time.perf_counter()
    pairs = man_pairs()
    random.Random(args.seed).shuffle(pairs)
    need = args.train + args.test + args.distractors
    if len(pairs) < need:
        raise SystemExit(f"Only {len(pairs)} man pages with a synopsis and a description; {need} asked for.")
    train_pairs = pairs[:args.train]
    test = pairs[args.train:args.train + args.test]
    queries = [q for q, _ in test]
    docs = [d for _, d in test] + [d for _, d in pairs[args.train + args.test:need]]   # gold doc i = query i
    print(f"RACLATE retrieval quality — BLAS {backend.info()['blas']}; {len(pairs)} man pages read in "
          f"{time.perf_counter() - t0:.0f}s: {len(train_pairs)} training pairs, {len(queries)} held-out queries, "
          f"{len(docs)} documents searched", flush=True)

    tmp = tempfile.TemporaryDirectory(prefix="raclate-quality-")   # the two training files
    out = Path(tmp.name)
    steps = max(1, round(args.epochs * len(train_pairs) / args.batch_size))
    base, tokenizer = load_model("default", "sentence-similarity")
    adopt(base.info, max_length=args.max_length)   # the base model mines and is scored at the trained models' length
    results = {"base": scores_at(base, tokenizer, queries, docs, dims)}

    t1 = time.perf_counter()
    mined = mine_hard_negatives(base, tokenizer, train_pairs, num_negatives=1, range_min=args.range_min,
                                range_max=args.range_max, margin=args.margin)
    s = mined.summary
    print(f"  mined {s['negatives']} negatives for {s['pairs']} pairs in {time.perf_counter() - t1:.0f}s; the margin "
          f"removed {s['removed']['margin']} of {s['candidates']} candidates; mean score positive "
          f"{s['mean_positive_score']:.3f}, negative {s['mean_negative_score']:.3f}", flush=True)
    plain = write_jsonl(out / "pairs.jsonl", [{"anchor": q, "positive": d} for q, d in train_pairs])
    triplets = write_jsonl(out / "triplets.jsonl", mined.rows)

    for name, data, extra in (("mnrl", plain, {}), ("mnrl+mined", triplets, {}),
                              ("matryoshka", plain, {"matryoshka_dims": dims})):
        model, tok = train(name, data, args, steps, **extra)
        results[name] = scores_at(model, tok, queries, docs, dims)

    full, small = dims[0], dims[-1]
    print(f"\n{'model':<14}{'dims':>6}" + "".join(f"{m:>11}" for m in SHOWN))
    for name, by_dim in results.items():
        for dim in (full, small):
            print(f"{name:<14}{dim:>6}" + "".join(f"{by_dim[dim][m]:>11.4f}" for m in SHOWN))
    kept = results["matryoshka"][small]["mrr@10"] / results["matryoshka"][full]["mrr@10"]
    print(f"\nMatryoshka at {small} dims keeps {kept:.1%} of its {full}-dim MRR@10; "
          f"plain MNRL at {small} keeps {results['mnrl'][small]['mrr@10'] / results['mnrl'][full]['mrr@10']:.1%}.")
    print(f"Total {time.perf_counter() - t0:.0f}s.")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
