"""`raclate predict --model O [--task T] (--text "..." | --data D) [--top-k N] [--output FILE]`

    text-classification   labels with scores (softmax; sigmoid for multi-label; the value for regression)
    token-classification  one tag per word and the entities they form
    masked-lm             the top tokens for each mask ([MASK] or <mask> in the text)
    sentence-similarity   embeddings → --output FILE.npy ([N, D]); late interaction → FILE.npz (one
                          [T_i, D] array per text, keys "0", "1", …; --document encodes documents)

Predictions are JSON lines on stdout (or in --output), readable lines on a terminal.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import engine  # noqa: F401  (fast BLAS before mlx.core)
import mlx.core as mx

from engine.commands import add_common, dumps, guarded, load, on_terminal

MASK_PLACEHOLDERS = ("[MASK]", "<mask>")


def add_parser(sub) -> None:
    p = sub.add_parser("predict", help="Run a model on texts: labels, entities, fill-mask tokens or embeddings.",
                       description=__doc__.split("\n\n", 1)[1], formatter_class=_raw())
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


def _raw():
    import argparse
    return argparse.RawDescriptionHelpFormatter


# -- inputs -------------------------------------------------------------------------------------
def read_inputs(ns, task: str) -> list:
    """Texts (or word lists for token classification, (text, pair) for pair classification)."""
    from engine.cli import CliError, parse_columns
    if ns.text:
        return [t.split() for t in ns.text] if task == "token-classification" else list(ns.text)
    from engine.data.mapping import guess_columns
    from engine.data.reading import read_splits
    splits = read_splits(ns.data)
    name = ns.split or next((s for s in ("test", "validation", "train") if s in splits), next(iter(splits)))
    if name not in splits:
        raise CliError(f"No split {name!r} in {ns.data}; it has {', '.join(splits)}.")
    ds = splits[name][0]
    if ns.max_rows:
        ds = ds.select(range(min(ns.max_rows, len(ds))))
    role = "tokens" if task == "token-classification" else "text"
    mapping = parse_columns(ns.column)
    guess_task = {"feature-extraction": "sentence-similarity"}.get(task, task)
    guessed = {**guess_columns(ds.column_names, guess_task), **mapping}
    if role not in guessed and task == "token-classification" and "text" in guessed:
        role = "text"
    column = guessed.get(role)
    if column is None:
        strings = [c for c, f in ds.features.items() if getattr(f, "dtype", None) in ("string", "large_string")]
        column = strings[0] if len(strings) == 1 else None
    if column is None or column not in ds.column_names:
        raise CliError(f"Which column of {ns.data} holds the {role}? Pass --column {role}=NAME "
                       f"(columns: {', '.join(ds.column_names)}).")
    values = ds[column]
    if task == "token-classification":
        return [v if isinstance(v, list) else str(v).split() for v in values]
    pair = guessed.get("text_pair") if task == "text-classification" else None
    if pair and pair in ds.column_names:
        return list(zip(map(str, values), map(str, ds[pair])))
    return [str(v) for v in values]


def _chunks(items, size):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _max_length(model, tokenizer, ns) -> int:
    from engine.embedding import max_length_of
    return ns.max_length or max_length_of(model, tokenizer)


def _forward(model, enc) -> np.ndarray:
    out = model(mx.array(enc["input_ids"].astype(np.int32)), mx.array(enc["attention_mask"].astype(np.int32)))
    return np.array(out.astype(mx.float32))


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# -- per task -----------------------------------------------------------------------------------
def classify(model, tokenizer, inputs, *, top_k=None, batch_size=32, max_length=512) -> list[dict]:
    config = model.info.config
    names = [config["id2label"][k] for k in sorted(config["id2label"], key=int)]
    problem = config.get("problem_type")
    results = []
    for chunk in _chunks(inputs, batch_size):
        pairs = isinstance(chunk[0], tuple)
        args = ([a for a, _ in chunk], [b for _, b in chunk]) if pairs else (list(chunk),)
        logits = _forward(model, tokenizer(*args, padding=True, truncation=True, max_length=max_length,
                                           return_tensors="np"))
        for text, row in zip(chunk, logits):
            shown = {"text": list(text) if pairs else text}
            if problem == "regression":
                results.append({**shown, "score": float(row[0])})
                continue
            probs = 1 / (1 + np.exp(-row)) if problem == "multi_label_classification" else _softmax(row)
            order = np.argsort(-probs, kind="stable")[:top_k or len(names)]
            labels = [{"label": names[i], "score": float(probs[i])} for i in order]
            results.append({**shown, "label": labels[0]["label"], "labels": labels})
    return results


def tag(model, tokenizer, inputs, *, batch_size=32, max_length=512) -> list[dict]:
    from engine.data import prepare_tokenizer
    from engine.metrics import get_entities
    tok = prepare_tokenizer(tokenizer, "token-classification")
    id2label = model.info.config["id2label"]
    results = []
    for chunk in _chunks(inputs, batch_size):
        words_batch = [[str(w) for w in words] for words in chunk]
        enc = tok(words_batch, is_split_into_words=True, padding=True, truncation=True, max_length=max_length,
                  return_tensors="np")
        probs = _softmax(_forward(model, enc))  # (B, T, L)
        for i, words in enumerate(words_batch):
            tags, scores, seen = ["O"] * len(words), [0.0] * len(words), set()
            for t, w in enumerate(enc.word_ids(i)):
                if w is None or w in seen:  # the first sub-token of each word speaks for it
                    continue
                seen.add(w)
                best = int(np.argmax(probs[i, t]))
                tags[w], scores[w] = id2label[str(best)], float(probs[i, t, best])
            entities = [{"type": kind, "start": s, "end": e + 1, "text": " ".join(words[s:e + 1]),
                         "score": float(np.mean(scores[s:e + 1]))} for kind, s, e in get_entities(tags)]
            results.append({"words": words, "tags": tags, "entities": entities,
                            **({"truncated_words": len(words) - len(seen)} if len(seen) < len(words) else {})})
    return results


def fill_mask(model, tokenizer, texts, *, top_k=None, batch_size=32, max_length=512) -> list[dict]:
    from engine.cli import CliError
    mask = tokenizer.mask_token
    if mask is None:
        raise CliError("This tokenizer has no mask token, so the model cannot fill masks.")
    texts = [_with_mask(t, mask) for t in texts]
    missing = [t for t in texts if mask not in t]
    if missing:
        raise CliError(f"No mask in {missing[0]!r}: write {mask} (or [MASK] / <mask>) where a word should be predicted.")
    k = top_k or 5
    results = []
    for chunk in _chunks(texts, batch_size):
        enc = tokenizer(chunk, padding=True, truncation=True, max_length=max_length, return_tensors="np")
        logits = _forward(model, enc)  # (B, T, V)
        for i, text in enumerate(chunk):
            ids = enc["input_ids"][i]
            masks = []
            for t in np.flatnonzero((ids == tokenizer.mask_token_id) & (enc["attention_mask"][i] > 0)):
                probs = _softmax(logits[i, t])
                filled = []
                for j in np.argsort(-probs, kind="stable")[:k]:
                    seq = ids[enc["attention_mask"][i] > 0].copy()
                    seq[t - int(np.argmax(enc["attention_mask"][i] > 0))] = j
                    filled.append({"token": tokenizer.decode([int(j)]).strip(), "token_id": int(j),
                                   "score": float(probs[j]),
                                   "sequence": tokenizer.decode(seq, skip_special_tokens=True)})
                masks.append(filled)
            results.append({"text": text, "masks": masks})
    return results


def _with_mask(text: str, mask: str) -> str:
    for placeholder in MASK_PLACEHOLDERS:
        text = text.replace(placeholder, mask)
    return text


def embed(model, tokenizer, texts, ns) -> tuple[list[dict], object]:
    from engine.cli import CliError
    from engine.embedding import encode
    late = bool(model.info.colbert)
    vectors = encode(model, tokenizer, list(texts), batch_size=ns.batch_size, max_length=ns.max_length,
                     is_query=not ns.document if late else None)
    if ns.output:
        path = Path(ns.output)
        path.parent.mkdir(parents=True, exist_ok=True)
        if late:
            if path.suffix != ".npz":
                raise CliError("A late-interaction model gives one matrix per text; write them to a .npz file "
                               "(--output vectors.npz).")
            np.savez(path, **{str(i): v for i, v in enumerate(vectors)})
        else:
            if path.suffix != ".npy":
                raise CliError("Embeddings are written as a numpy array: give --output a .npy file.")
            np.save(path, vectors)
    if late:
        rows = [{"text": t, "tokens": int(v.shape[0]), "dim": int(v.shape[1]),
                 **({} if ns.output else {"embedding": v.tolist()})} for t, v in zip(texts, vectors)]
    else:
        rows = [{"text": t, "dim": int(v.shape[0]), **({} if ns.output else {"embedding": v.tolist()})}
                for t, v in zip(texts, vectors)]
    return rows, vectors


# -- the command --------------------------------------------------------------------------------
def run(ns) -> int:
    from engine.cli import CliError
    model, tokenizer, task, _ = load(ns)
    inputs = read_inputs(ns, task)
    if not inputs:
        raise CliError("No texts to predict on.")
    model.eval()
    max_length = _max_length(model, tokenizer, ns)
    written_by_embed = False
    if task in ("sentence-similarity", "feature-extraction"):
        results, vectors = embed(model, tokenizer, inputs, ns)
        written_by_embed = bool(ns.output)
    elif task == "text-classification":
        results = classify(model, tokenizer, inputs, top_k=ns.top_k, batch_size=ns.batch_size, max_length=max_length)
    elif task == "token-classification":
        results = tag(model, tokenizer, inputs, batch_size=ns.batch_size, max_length=max_length)
    else:
        results = fill_mask(model, tokenizer, inputs, top_k=ns.top_k, batch_size=ns.batch_size, max_length=max_length)
    if ns.output and not written_by_embed:
        Path(ns.output).parent.mkdir(parents=True, exist_ok=True)
        Path(ns.output).write_text("".join(dumps(r) + "\n" for r in results), encoding="utf-8")
    if on_terminal(ns):
        for r in results:
            print(readable(task, r))
        if ns.output:
            print(f"wrote {len(results)} predictions to {ns.output}")
    elif not ns.output or written_by_embed:
        for r in results:
            sys.stdout.write(dumps(r) + "\n")
        if written_by_embed:
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
