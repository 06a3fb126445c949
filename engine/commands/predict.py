"""`raclate predict --model O [--task T] (--text "..." | --data D) [--top-k N] [--output FILE]`

    text-classification   labels with scores (softmax; sigmoid for multi-label; the value for regression)
    token-classification  one tag per word and the entities they form
    masked-lm             the top tokens for each mask ([MASK] or <mask> in the text)
    sentence-similarity   embeddings → --output FILE.npy ([N, D]); late interaction → FILE.npz (one
                          [T_i, D] array per text, keys "0", "1", …; --document encodes documents)

Texts reach the model as they did in training: its prompts (--query / --document / --prompt-name pick
one, as sentence-transformers' encode_query / encode_document / prompt_name do), its chat template and
max length.

Predictions are JSON lines on stdout (or in --output), readable lines on a terminal, written block
by block as they are made; --output is checked before the model loads.
"""
from __future__ import annotations

import argparse
import os
import sys
import zipfile
from pathlib import Path

import numpy as np

from engine import inference
from engine.commands import add_common, add_input_options, dumps, guarded, load, on_terminal
from engine.data.mapping import guess_columns, parse_column_items
from engine.data.reading import read_splits
from engine.errors import ModelError, UsageError
from engine.files import atomic_write
from engine.tasks import EMBEDDING_TASKS, normalize_task, training_task


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
    side = p.add_mutually_exclusive_group()
    side.add_argument("--query", action="store_true", help="Embeddings: encode the texts as queries (the model's "
                      "query prompt; late interaction does this by default).")
    side.add_argument("--document", action="store_true", help="Embeddings: encode the texts as documents (the "
                      "model's document prompt; late interaction: [D] documents, not queries).")
    p.add_argument("--prompt-name", default=None, help="Embeddings: put the model's prompt of this name before each "
                   "text (sentence-transformers' prompt_name).")
    add_input_options(p)
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
STREAM_BATCHES = 16   # batches per block: texts are length-sorted within a block; only a block's results are held


def check_output(ns) -> Path | None:
    """--output, checked before the model loads: a file in a folder this user may write, with the
    suffix the model's results need (.npy embeddings, .npz late interaction, JSON lines otherwise)."""
    if not ns.output:
        return None
    path = Path(ns.output).expanduser()
    if path.is_dir():
        raise UsageError(f"--output {path} is a folder; give a file name in it (e.g. {path / 'predictions.jsonl'}).")
    folder = next(p for p in path.absolute().parents if p.exists())   # where the missing folders would go
    if not (folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)):
        raise UsageError(f"Cannot write --output {path}: {folder} is not a folder this user may write to.")
    detected, late, _ = inference.folder_kind(ns.model)   # config files only, no weights
    task = normalize_task(ns.task or detected, ModelError)
    if task in EMBEDDING_TASKS and late and path.suffix != ".npz":
        raise UsageError("A late-interaction model gives one matrix per text; write them to a .npz file "
                         "(--output vectors.npz).")
    if task in EMBEDDING_TASKS and not late and path.suffix != ".npy":
        raise UsageError("Embeddings are written as a numpy array: give --output a .npy file.")
    if task not in EMBEDDING_TASKS and path.suffix in (".npy", ".npz"):
        raise UsageError(f"{task} predictions are JSON lines: give --output a .jsonl file.")
    return path


def vector_rows(texts, vectors, late: bool, with_vectors: bool) -> list[dict]:
    """One JSON row per text: its shape, and its vector(s) unless they went to a file."""
    rows = []
    for text, v in zip(texts, vectors):
        shape = {"tokens": int(v.shape[0]), "dim": int(v.shape[1])} if late else {"dim": int(v.shape[0])}
        rows.append({"text": text, **shape, **({"embedding": v.tolist()} if with_vectors else {})})
    return rows


def predict_blocks(model, tokenizer, task: str, inputs: list, ns, with_vectors: bool):
    """Yield (rows, vectors or None) block by block, each computed when the previous one has been
    written: however many inputs, only one block's results are in memory."""
    kw = {"batch_size": ns.batch_size, "max_length": ns.max_length}
    late = bool(model.info.colbert)
    is_query = False if ns.document else True if ns.query or late else None
    size = max(ns.batch_size, 1) * STREAM_BATCHES
    for start in range(0, len(inputs), size):
        chunk = inputs[start:start + size]
        if task in EMBEDDING_TASKS:
            vectors = inference.encode(model, tokenizer, chunk, is_query=is_query, prompt_name=ns.prompt_name, **kw)
            yield vector_rows(chunk, vectors, late, with_vectors), vectors
        elif task == "text-classification":
            yield inference.classify(model, tokenizer, chunk, top_k=ns.top_k, **kw), None
        elif task == "token-classification":
            yield inference.tag(model, tokenizer, chunk, **kw), None
        else:
            yield inference.fill_mask(model, tokenizer, chunk, top_k=ns.top_k, **kw), None


def write_vectors(path, blocks, count: int, late: bool):
    """Write each block's vectors into ``path`` as it comes, yielding its rows: [N, D] float32 through
    a .npy memory map; late interaction's [T_i, D] matrices one by one into a .npz (keys "0", "1", …,
    as np.savez names them)."""
    if late:
        with zipfile.ZipFile(path, "w", allowZip64=True) as archive:
            done = 0
            for rows, vectors in blocks:
                for v in vectors:
                    with archive.open(f"{done}.npy", "w", force_zip64=True) as f:
                        np.lib.format.write_array(f, np.asarray(v))
                    done += 1
                yield rows
        return
    array, done = None, 0
    for rows, vectors in blocks:
        if array is None:   # the width is known from the first block
            array = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(count, vectors.shape[1]))
        array[done:done + len(vectors)] = vectors
        done += len(vectors)
        yield rows
    array.flush()


def show(task: str, rows: list[dict], terminal: bool, lines=None) -> None:
    """Rows as JSON lines into ``lines`` (the --output file) or on stdout; readable on a terminal."""
    for r in rows:
        if lines is not None:
            lines.write(dumps(r) + "\n")
        if terminal:
            print(readable(task, r))
        elif lines is None:
            sys.stdout.write(dumps(r) + "\n")
    sys.stdout.flush()   # a reader of the pipe sees each block as it is done


# -- the command --------------------------------------------------------------------------------
def run(ns) -> int:
    output = check_output(ns)   # refused now, not after all inference
    model, tokenizer, task, _ = load(ns)
    inputs = read_inputs(ns, task)
    if not inputs:
        raise UsageError("No texts to predict on.")
    model.eval()
    terminal = on_terminal(ns)
    vectors_to_file = output is not None and task in EMBEDDING_TASKS
    blocks = predict_blocks(model, tokenizer, task, inputs, ns, with_vectors=output is None)

    def write(tmp) -> None:
        if vectors_to_file:
            for rows in write_vectors(tmp, blocks, len(inputs), bool(model.info.colbert)):
                show(task, rows, terminal)
        else:
            with open(tmp, "w", encoding="utf-8") as lines:
                for rows, _ in blocks:
                    show(task, rows, terminal, lines)

    if output is None:
        for rows, _ in blocks:
            show(task, rows, terminal)
    else:
        atomic_write(output, write)   # the file appears whole when all is done, or not at all
    if output is not None and terminal:
        print(f"wrote {len(inputs)} predictions to {output}")
    elif vectors_to_file:
        print(dumps({"output": ns.output, "rows": len(inputs)}), file=sys.stderr)
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
