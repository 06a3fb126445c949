"""Rank documents for queries with an embedding model, scored as the trainer's evaluator scores them:
cosine for dense models, MaxSim for late interaction (PyLate's query/document encodings).

    score_blocks(model, tokenizer, queries, docs)        -> [b, C] blocks of the [Q, C] scores
    score_matrix(model, tokenizer, queries, docs)        -> [Q, C]
    search(model, tokenizer, queries, corpus, top_k)     -> the top_k documents of each query
    maxsim_map(model, tokenizer, query, document)        -> the token similarities behind a MaxSim score

Scores come one block of queries at a time (``engine.metrics`` score blocks), so a large query set
never holds the whole matrix. Long work takes ``progress(done, total, text)``, called between chunks
of ``ENCODE_CHUNK`` texts; it may raise to cancel.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

import mlx.core as mx

from engine.data.args import base_role
from engine.errors import UsageError
from engine.inference.encode import encode
from engine.metrics import cosine_score_blocks, maxsim_score_blocks
from engine.models import pylate

ENCODE_CHUNK = 64    # texts per progress report while encoding


def no_progress(done, total, text=""):
    return None


def _encode(model, tokenizer, texts: list[str], is_query: bool, progress, done: int, total: int) -> list:
    """Vectors of ``texts`` in chunks, reporting progress between them; late interaction encodes queries
    and documents differently, dense models alike (no query/document prompt, as in evaluation)."""
    late = model.info.late_interaction
    out = []
    for start in range(0, len(texts), ENCODE_CHUNK):
        progress(done + start, total, "Encoding queries" if is_query else "Encoding documents")
        out += list(encode(model, tokenizer, texts[start:start + ENCODE_CHUNK], is_query=is_query if late else None))
    return out


def _padded_chunks(vectors: list, size: int = 64) -> list[tuple[np.ndarray, np.ndarray]]:
    """[T_i, D] token matrices → (vectors [n, T, D], mask [n, T]) chunks for maxsim_score_blocks."""
    chunks = []
    for start in range(0, len(vectors), size):
        part = vectors[start:start + size]
        t = max(v.shape[0] for v in part)
        vecs = np.zeros((len(part), t, part[0].shape[1]), np.float32)
        mask = np.zeros((len(part), t), np.int32)
        for i, v in enumerate(part):
            vecs[i, :len(v)], mask[i, :len(v)] = v, 1
        chunks.append((vecs, mask))
    return chunks


def score_blocks(model, tokenizer, queries: list[str], docs: list[str], progress=None) -> Iterator[np.ndarray]:
    """The [Q, C] query × document scores as [b, C] blocks in query order."""
    progress = progress or no_progress
    total = len(queries) + len(docs)
    q = _encode(model, tokenizer, queries, True, progress, 0, total)
    d = _encode(model, tokenizer, docs, False, progress, len(queries), total)
    progress(total, total, "Scoring")
    if model.info.late_interaction:
        return maxsim_score_blocks(_padded_chunks(q), _padded_chunks(d))
    return cosine_score_blocks(np.stack(q), np.stack(d))


def score_matrix(model, tokenizer, queries: list[str], docs: list[str], progress=None) -> np.ndarray:
    """[Q, C] scores: cosine for dense models, MaxSim for late interaction."""
    return np.concatenate(list(score_blocks(model, tokenizer, queries, docs, progress)), axis=0)


def search(model, tokenizer, queries: list[str], corpus: list[str], top_k: int = 10, progress=None) -> list[list[dict]]:
    """Per query, its ``top_k`` documents best first: [{rank, index, text, score}]; equal scores keep
    the corpus order."""
    results = []
    for block in score_blocks(model, tokenizer, queries, corpus, progress):   # (b, C)
        top = np.argsort(-block, axis=1, kind="stable")[:, :top_k]           # (b, k)
        results += [[{"rank": r + 1, "index": int(i), "text": corpus[i], "score": float(scores[i])}
                     for r, i in enumerate(row)] for row, scores in zip(top, block)]
    return results


def token_vectors(model, tokenizer, text: str, is_query: bool) -> tuple[list[str], np.ndarray]:
    """(tokens, vectors [T, D]) of the positions MaxSim scores (PyLate's score mask)."""
    config = model.info.colbert
    special = pylate.token_ids(tokenizer, config)
    ids, attention, score = pylate.tokenize(tokenizer, [text], config, is_query=is_query, ids=special)
    out = model(mx.array(ids), mx.array(attention))   # (1, T, D), normalised per token
    vectors = np.array(out.astype(mx.float32))[0]
    keep = score[0] > 0
    names = {special["query"]: "[Q]", special["document"]: "[D]"}   # the prefixes as PyLate names them
    tokens = [names.get(i) or tokenizer.convert_ids_to_tokens(i).strip() for i in ids[0][keep].tolist()]
    return tokens, vectors[keep]


def maxsim_map(model, tokenizer, query: str, document: str) -> dict:
    """The query × document token similarities behind a MaxSim score: ``sim`` [Tq, Td], each query
    token's best document token (``best``), its similarity (``row_max``: its contribution) and the
    total (their sum, the MaxSim score)."""
    if not model.info.late_interaction:
        raise UsageError("The MaxSim map is for late-interaction (ColBERT) models.")
    q_tokens, q = token_vectors(model, tokenizer, query, True)
    d_tokens, d = token_vectors(model, tokenizer, document, False)
    sim = q @ d.T                                           # (Tq, Td)
    best = sim.argmax(axis=1)                               # (Tq,)
    row_max = sim[np.arange(len(q_tokens)), best]           # (Tq,)
    return {"query_tokens": q_tokens, "doc_tokens": d_tokens, "sim": sim, "best": best, "row_max": row_max,
            "total": float(row_max.sum())}


def corpus_from_rows(rows: list[dict], columns: dict[str, str], limit: int = 200) -> list[str]:
    """Distinct documents (the text-pair column, then negatives; the text column when there are
    neither) of some data rows ({role: column} mapping), to search in."""
    names = [c for r, c in columns.items() if c and base_role(r) in ("text_pair", "negative")]
    if not names:
        names = [c for r, c in columns.items() if c and r == "text"]
    seen: dict[str, None] = {}
    for row in rows:
        for name in names:
            value = row.get(name)
            if isinstance(value, str) and value.strip():
                seen.setdefault(value.strip(), None)
        if len(seen) >= limit:
            break
    return list(seen)[:limit]
