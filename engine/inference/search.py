"""Rank documents for queries with an embedding model, scored as the trainer's evaluator scores them:
cosine for dense models, MaxSim for late interaction (PyLate's query/document encodings).

    score_blocks(model, tokenizer, queries, docs)        -> [b, C] blocks of the [Q, C] scores
    score_matrix(model, tokenizer, queries, docs)        -> [Q, C]
    build_index(model, tokenizer, corpus)                -> CorpusIndex: the corpus encoded once
    search_index(model, tokenizer, index, queries, top_k) -> the top_k documents of each query
    search(model, tokenizer, queries, corpus, top_k)     -> the same, encoding the corpus on the way
    nearest(queries, corpus, k)                          -> exact top-k of unit vectors by blocked products
    maxsim_map(model, tokenizer, query, document)        -> the token similarities behind a MaxSim score

Scores come one block at a time, so a large query set or corpus never holds the whole [Q, C]
matrix: search keeps a running top-k over [q_block, c_block] products (100k documents × 384 dims are
150 MB of vectors; one block of scores is 16 MB). Long work takes ``progress(done, total,
text)``, called between batches; it may raise to cancel.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

import mlx.core as mx

from engine.data.args import base_role
from engine.errors import UsageError
from engine.inference.encode import encode
from engine.metrics import cosine_score_blocks, maxsim_score_blocks
from engine.models import pylate

def no_progress(done, total, text=""):
    return None


def _encode(model, tokenizer, texts: list[str], is_query: bool, progress, done: int, total: int) -> list:
    """Vectors of ``texts``, reporting progress between batches: queries and documents as the
    trainer's evaluation reads them (PyLate's query/document encodings; a dense model's query/document
    prompts)."""
    text = "Encoding queries" if is_query else "Encoding documents"
    return list(encode(model, tokenizer, texts, is_query=is_query,
                       progress=lambda n, _: progress(done + n, total, text)))


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


@dataclass
class CorpusIndex:
    """A corpus encoded once by ``model``, searched many times: unit vectors [C, D] (dense models) or
    padded token-vector chunks (late interaction, scored by MaxSim)."""
    texts: list[str]
    model: object
    vectors: np.ndarray | None = None
    chunks: list | None = None

    def __len__(self) -> int:
        return len(self.texts)


def _unit(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-8)   # as engine.metrics' cosine


def build_index(model, tokenizer, corpus: list[str], progress=None) -> CorpusIndex:
    """Encode ``corpus`` as documents (progress between chunks; it may raise to cancel)."""
    progress = progress or no_progress
    corpus = list(corpus)
    vectors = _encode(model, tokenizer, corpus, False, progress, 0, len(corpus))
    progress(len(corpus), len(corpus), "Encoding documents")
    if model.info.late_interaction:
        return CorpusIndex(corpus, model, chunks=_padded_chunks(vectors))
    return CorpusIndex(corpus, model, vectors=_unit(np.stack(vectors)) if vectors else np.zeros((0, 1), np.float32))


def _best(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best of each row of ``scores`` [b, n] (``ids`` [n]: their corpus indices), best first,
    equal scores by index (np.argsort(-scores, kind="stable")'s order) -> (scores, ids) [b, k]."""
    if scores.shape[1] > k:
        cut = np.argpartition(-scores, k - 1, axis=1)[:, :k]                         # (b, k), unordered
        kth = np.take_along_axis(scores, cut, 1).min(axis=1)                         # (b,)
        tied = (scores >= kth[:, None]).sum(axis=1) > k    # a tie at the k-th: the partition picked any of them
        for row in np.flatnonzero(tied):
            cut[row] = np.argsort(-scores[row], kind="stable")[:k]
        scores, ids = np.take_along_axis(scores, cut, 1), ids[cut]
    else:
        ids = np.broadcast_to(ids, scores.shape)
    order = np.lexsort((ids, -scores), axis=1)                                       # score, then index
    return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)


def nearest(queries: np.ndarray, corpus: np.ndarray, k: int, *, q_block: int = 256,
            c_block: int = 16_384) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` by dot product of ``queries`` [Q, D] against ``corpus`` [C, D] (unit vectors:
    cosine) -> (scores, indices) [Q, k], best first, equal scores in corpus order. Only one
    [q_block, c_block] block of scores exists at a time; a running top-k merges the blocks."""
    k = min(k, len(corpus))
    if k <= 0:
        return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
    out_scores = np.zeros((len(queries), k), np.float32)
    out_ids = np.zeros((len(queries), k), np.int64)
    for qs in range(0, len(queries), q_block):
        q = queries[qs:qs + q_block]
        best_s, best_i = np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        for cs in range(0, len(corpus), c_block):
            block = q @ corpus[cs:cs + c_block].T                                    # (b, c)
            s, i = _best(block, np.arange(cs, cs + block.shape[1]), k)
            # the earlier blocks' indices are smaller, so the merge keeps ties in corpus order
            best_s, best_i = _merge(best_s, best_i, s, i, k)
        out_scores[qs:qs + len(q)], out_ids[qs:qs + len(q)] = best_s, best_i
    return out_scores, out_ids


def _merge(s1, i1, s2, i2, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores, ids = np.concatenate([s1, s2], axis=1), np.concatenate([i1, i2], axis=1)   # (b, 2k)
    order = np.lexsort((ids, -scores), axis=1)[:, :k]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)


def search_index(model, tokenizer, index: CorpusIndex, queries: list[str], top_k: int = 10) -> list[list[dict]]:
    """Per query, its ``top_k`` documents of ``index`` best first: [{rank, index, text, score}]; equal
    scores keep the corpus order."""
    if index.model is not model:   # another model's vectors live in another space
        raise UsageError("This corpus index was built with another model: build it again with this one.")
    q = _encode(model, tokenizer, queries, True, no_progress, 0, len(queries))
    k = min(top_k, len(index))
    if k <= 0:
        return [[] for _ in queries]
    if index.chunks is not None:   # MaxSim: [b, C] blocks of queries against the token vectors
        scores, ids = [], []
        for block in maxsim_score_blocks(_padded_chunks(q), index.chunks):
            s, i = _best(block, np.arange(block.shape[1]), k)
            scores.append(s)
            ids.append(i)
        scores, ids = np.concatenate(scores), np.concatenate(ids)
    else:
        scores, ids = nearest(_unit(np.stack(q)), index.vectors, k)
    return [[{"rank": r + 1, "index": int(i), "text": index.texts[i], "score": float(v)}
             for r, (i, v) in enumerate(zip(row_ids, row_scores))] for row_ids, row_scores in zip(ids, scores)]


def search(model, tokenizer, queries: list[str], corpus: list[str], top_k: int = 10, progress=None) -> list[list[dict]]:
    """Per query, its ``top_k`` documents best first: [{rank, index, text, score}]; equal scores keep
    the corpus order. Searching one corpus again: :func:`build_index` once, then :func:`search_index`."""
    return search_index(model, tokenizer, build_index(model, tokenizer, corpus, progress), queries, top_k)


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
