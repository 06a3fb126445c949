"""`raclate predict --model O [--task T] (--text "..." | --data D) [--top-k N] [--output FILE]`

    text-classification   labels with scores (softmax; sigmoid for multi-label; the value for regression)
    token-classification  one tag per word and the entities they form
    masked-lm             the top tokens for each mask ([MASK] or <mask> in the text)
    sentence-similarity   embeddings → --output FILE.npy ([N, D]); late interaction → FILE.npz (one
                          [T_i, D] array per text, keys "0", "1", …; --document encodes documents)

Predictions are JSON lines on stdout (or in --output), readable lines on a terminal.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from engine import inference
from engine.commands import add_common, dumps, guarded, load, on_terminal
from engine.data.mapping import guess_columns, parse_column_items
from engine.data.reading import read_splits
from engine.errors import UsageError
from engine.tasks import EMBEDDING_TASKS, training_task


def add_parser(sub) -> None:
    p = sub.add_parser("predict", help="Run a model on texts: labels, entities, fill-mask tokens or embeddings.",
                       description=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", action="append", help="A text to run the model on; repeatable.")
    src.add_argument("--data", help="A .jsonl/.json/.csv/.tsv/.parquet file (or folder / Hub id) with the texts.")
    p.add_argument("--split", default=None, help="Split of --data to read when it has several.")
    p.add_argument("--max-rows", type=int, default=None, help="Read at most this many rows of --data.")
    p.add_argument("--top-k", type=int, default=None, help="Labels / tokens to show per prediction "
                   "(default: every label; 5 tokens for fill-mask).")
    p.add_argument("--output", default=None, help="Write predictions here: .npy/.npz for embeddings, JSON lines otherwise.")
    p.add_argument("--document", action="store_true", help="Late interaction: encode the texts as documents, not queries.")
    p.set_defaults(run=guarded(run))


# -- inputs -------------------------------------------------------------------------------------
def read_inputs(ns, task: str) -> list:
    """Texts (or word lists for token classification, (text, pair) for pair classification)."""
    if ns.text:
        return [t.split() for t in ns.text] if task == "token-classification" else list(ns.text)
    splits = read_splits(ns.data)
    name = ns.split or next((s for s in ("test", "validation", "train") if s in splits), next(iter(splits)))
    if name not in splits:
        raise UsageError(f"No split {name!r} in {ns.data}; it has {', '.join(splits)}.")
    ds = splits[name][0]
    if ns.max_rows:
        ds = ds.select(range(min(ns.max_rows, len(ds))))
    role = "tokens" if task == "token-classification" else "text"
    guessed = {**guess_columns(ds.column_names, training_task(task)), **parse_column_items(ns.column)}
    if role not in guessed and task == "token-classification" and "text" in guessed:
        role = "text"
    column = guessed.get(role)
    if column is None:
        strings = [c for c, f in ds.features.items() if getattr(f, "dtype", None) in ("string", "large_string")]
        column = strings[0] if len(strings) == 1 else None
    if column is None or column not in ds.column_names:
        raise UsageError(f"Which column of {ns.data} holds the {role}? Pass --column {role}=NAME "
                         f"(columns: {', '.join(ds.column_names)}).")
    values = ds[column]
    if task == "token-classification":
        return [v if isinstance(v, list) else str(v).split() for v in values]
    pair = guessed.get("text_pair") if task == "text-classification" else None
    if pair and pair in ds.column_names:
        return list(zip(map(str, values), map(str, ds[pair])))
    return [str(v) for v in values]


# -- outputs ------------------------------------------------------------------------------------
def save_vectors(path: Path, vectors, late: bool) -> None:
    """[N, D] embeddings to .npy; late interaction's [T_i, D] matrices to .npz (keys "0", "1", …)."""
    if late and path.suffix != ".npz":
        raise UsageError("A late-interaction model gives one matrix per text; write them to a .npz file "
                         "(--output vectors.npz).")
    if not late and path.suffix != ".npy":
        raise UsageError("Embeddings are written as a numpy array: give --output a .npy file.")
    path.parent.mkdir(parents=True, exist_ok=True)
    if late:
        np.savez(path, **{str(i): v for i, v in enumerate(vectors)})
    else:
        np.save(path, vectors)


def vector_rows(texts, vectors, late: bool, with_vectors: bool) -> list[dict]:
    """One JSON row per text: its shape, and its vector(s) unless they went to a file."""
    rows = []
    for text, v in zip(texts, vectors):
        shape = {"tokens": int(v.shape[0]), "dim": int(v.shape[1])} if late else {"dim": int(v.shape[0])}
        rows.append({"text": text, **shape, **({"embedding": v.tolist()} if with_vectors else {})})
    return rows


# -- the command --------------------------------------------------------------------------------
def run(ns) -> int:
    model, tokenizer, task, _ = load(ns)
    inputs = read_inputs(ns, task)
    if not inputs:
        raise UsageError("No texts to predict on.")
    model.eval()
    kw = {"batch_size": ns.batch_size, "max_length": ns.max_length}
    output = Path(ns.output) if ns.output else None
    if task in EMBEDDING_TASKS:
        late = bool(model.info.colbert)
        vectors = inference.encode(model, tokenizer, list(inputs), is_query=not ns.document if late else None, **kw)
        if output:
            save_vectors(output, vectors, late)
        results = vector_rows(inputs, vectors, late, with_vectors=output is None)
    elif task == "text-classification":
        results = inference.classify(model, tokenizer, inputs, top_k=ns.top_k, **kw)
    elif task == "token-classification":
        results = inference.tag(model, tokenizer, inputs, **kw)
    else:
        results = inference.fill_mask(model, tokenizer, inputs, top_k=ns.top_k, **kw)
    vectors_written = output is not None and task in EMBEDDING_TASKS
    if output and not vectors_written:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text("".join(dumps(r) + "\n" for r in results), encoding="utf-8")
    if on_terminal(ns):
        for r in results:
            print(readable(task, r))
        if output:
            print(f"wrote {len(results)} predictions to {output}")
    elif not output or vectors_written:
        for r in results:
            sys.stdout.write(dumps(r) + "\n")
        if vectors_written:
            print(dumps({"output": ns.output, "rows": len(results)}), file=sys.stderr)
    return 0


def readable(task: str, r: dict) -> str:
    if "labels" in r:
        return f"{r['text']!s}\n  " + "  ".join(f"{x['label']} {x['score']:.3f}" for x in r["labels"])
    if "score" in r:
        return f"{r['text']!s}\n  score {r['score']:.4f}"
    if "entities" in r:
        ents = ", ".join(f"{e['text']} [{e['type']} {e['score']:.2f}]" for e in r["entities"]) or "no entities"
        return " ".join(r["words"]) + f"\n  {ents}"
    if "masks" in r:
        return r["text"] + "".join("\n  " + "  ".join(f"{x['token']} {x['score']:.3f}" for x in m) for m in r["masks"])
    shape = f"{r['tokens']}×{r['dim']}" if "tokens" in r else str(r["dim"])
    return f"{r['text']}\n  embedding [{shape}]" + ("" if "embedding" not in r else
                                                  f" {np.round(np.asarray(r['embedding']).ravel()[:6], 4).tolist()} …")
