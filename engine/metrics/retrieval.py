"""Retrieval metrics from a query x corpus score matrix, with sentence-transformers'
``InformationRetrievalEvaluator`` definitions (binary relevance, ranks 1-based):

    ndcg@10    sum_{r<=10, hit} 1/log2(r+1)  /  the same for min(|rel|, 10) hits at the top
    mrr@10     1/r of the first relevant document if r <= 10, else 0
    recall@k   relevant documents in the top k / |rel|   (k = 1, 5, 10; a hit rate for one relevant)
    map        MAP@100: sum_{r<=100, hit} precision@r / min(|rel|, 100)

Each is averaged over the queries that have at least one relevant document. Ties in the scores
rank the lower corpus index first (a stable sort).

    per_query_metrics(scores, relevant)        -> {name: [Q]} plus "gold_rank"
    retrieval_report(score_blocks, relevant)   -> {name: float} from [b, C] blocks in query order
    retrieval_metrics(scores, relevant)        -> {name: float} from one [Q, C] matrix
    worst_queries(scores, relevant, k=5)       -> [{query, gold_rank, top}, ...] worst first
    cosine_score_blocks(queries, corpus)       -> [b, C] blocks of cosine scores
    maxsim_score_blocks(queries, corpus)       -> [b, C] blocks of MaxSim scores (late interaction)

The block generators keep memory at one [b, C] block (and for MaxSim one [b, Tq, b', Td]
intermediate) instead of the full matrix.
"""
from __future__ import annotations

from typing import Iterable, Iterator, Sequence

import numpy as np

import mlx.core as mx

from engine.losses.scores import maxsim

RECALL_AT = (1, 5, 10)
NDCG_AT = MRR_AT = 10
MAP_AT = 100
NAMES = ("ndcg@10", "mrr@10", "recall@1", "recall@5", "recall@10", "map")
_MAXSIM_BUDGET = 1 << 24  # floats in one MaxSim intermediate [bq, Tq, bd, Td] (64 MiB)


def _relevance(relevant: Sequence[Iterable[int]], n_queries: int, n_docs: int) -> np.ndarray:
    if len(relevant) != n_queries:
        raise ValueError(f"{n_queries} score rows but relevant documents for {len(relevant)} queries")
    rel = np.zeros((n_queries, n_docs), dtype=bool)
    for q, docs in enumerate(relevant):
        rel[q, list(docs)] = True
    return rel


def _div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def per_query_metrics(scores: np.ndarray, relevant: Sequence[Iterable[int]]) -> dict[str, np.ndarray]:
    """Every metric of :data:`NAMES` per query, plus ``gold_rank`` (rank of the best-ranked relevant
    document, 0 when the query has none) and ``n_relevant``. scores [Q, C]; relevant[q] = corpus ids."""
    scores = np.asarray(scores)
    q, c = scores.shape
    rel = _relevance(relevant, q, c)
    order = np.argsort(-scores, axis=1, kind="stable")  # (Q, C) best first
    hits = np.take_along_axis(rel, order, axis=1)  # (Q, C) relevance in rank order
    n_rel = rel.sum(axis=1)
    top = hits[:, :MAP_AT]  # (Q, min(C, 100))
    out = {f"recall@{k}": _div(top[:, :k].sum(axis=1), n_rel) for k in RECALL_AT}
    gold = np.where(n_rel > 0, hits.argmax(axis=1) + 1, 0)  # (Q,) 1-based
    out["mrr@10"] = np.where((gold > 0) & (gold <= MRR_AT), 1.0 / np.maximum(gold, 1), 0.0)
    discount = 1.0 / np.log2(np.arange(2, 2 + min(NDCG_AT, c)))  # ranks 1..10
    ideal = np.concatenate([[0.0], np.cumsum(discount)])[np.minimum(n_rel, len(discount))]
    out["ndcg@10"] = _div((top[:, :NDCG_AT] * discount).sum(axis=1), ideal)
    precision = np.cumsum(top, axis=1) / np.arange(1, top.shape[1] + 1)  # (Q, min(C, 100))
    out["map"] = _div((precision * top).sum(axis=1), np.minimum(n_rel, MAP_AT))
    out["gold_rank"], out["n_relevant"] = gold, n_rel
    return out


def retrieval_report(score_blocks: Iterable[np.ndarray], relevant: Sequence[Iterable[int]]) -> dict[str, float]:
    """Mean of each metric over the queries with a relevant document; ``score_blocks`` yields
    [b, C] rows of the score matrix in query order (``relevant`` lines up with all of them)."""
    sums, count, start = dict.fromkeys(NAMES, 0.0), 0, 0
    for block in score_blocks:
        per = per_query_metrics(block, relevant[start:start + len(block)])
        start += len(block)
        keep = per["n_relevant"] > 0
        count += int(keep.sum())
        for name in NAMES:
            sums[name] += float(per[name][keep].sum())
    if start != len(relevant):
        raise ValueError(f"score blocks cover {start} queries but relevant lists {len(relevant)}")
    return {name: sums[name] / count if count else float("nan") for name in NAMES}


def retrieval_metrics(scores: np.ndarray, relevant: Sequence[Iterable[int]]) -> dict[str, float]:
    """:func:`retrieval_report` of one full score matrix [Q, C]."""
    return retrieval_report([np.asarray(scores)], relevant)


def worst_queries(scores: np.ndarray, relevant: Sequence[Iterable[int]], k: int = 5,
                  n: int | None = None) -> list[dict]:
    """Queries sorted worst first (largest gold rank; equal ranks by query id), each as
    ``{"query": i, "gold_rank": r, "top": [k best corpus ids]}``; queries without a relevant
    document are left out; ``n`` keeps only the first ``n``."""
    scores = np.asarray(scores)
    gold = per_query_metrics(scores, relevant)["gold_rank"]
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    worst = [int(i) for i in np.argsort(-gold, kind="stable") if gold[i] > 0]
    return [{"query": i, "gold_rank": int(gold[i]), "top": top[i].tolist()} for i in worst[:n]]


def cosine_score_blocks(queries: np.ndarray, corpus: np.ndarray, block: int = 256) -> Iterator[np.ndarray]:
    """Cosine scores of ``block`` queries at a time: queries [Q, D], corpus [C, D] -> [b, C] float32."""
    def unit(x):
        x = np.asarray(x, dtype=np.float32)
        return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-8)
    queries, corpus = unit(queries), unit(corpus)
    for start in range(0, len(queries), block):
        yield queries[start:start + block] @ corpus.T  # (b, C)


def _blocks(chunks, rows: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Regroup (vectors [n, T, D], mask [n, T]) chunks into ``rows``-row blocks, each padded to its
    longest sequence and without the columns that are padding in every row."""
    pending, count = [], 0
    pieces = [(v[i:i + rows], m[i:i + rows]) for v, m in chunks for i in range(0, len(v), rows)]
    for i, (v, m) in enumerate(pieces):
        pending.append((v, m))
        count += len(v)
        if i + 1 < len(pieces) and count + len(pieces[i + 1][0]) <= rows:
            continue
        t = max(v.shape[1] for v, _ in pending)
        vecs = np.concatenate([np.pad(v, ((0, 0), (0, t - v.shape[1]), (0, 0))) for v, _ in pending])
        mask = np.concatenate([np.pad(m, ((0, 0), (0, t - m.shape[1]))) for _, m in pending])
        real = mask.any(axis=0)
        yield vecs[:, real], mask[:, real]
        pending, count = [], 0


def maxsim_score_blocks(queries, corpus, block: int = 64) -> Iterator[np.ndarray]:
    """MaxSim scores (``engine.losses.scores.maxsim``) of ``block`` queries at a time -> [b, C].

    ``queries`` and ``corpus`` are sequences of ``(vectors [n, T, D], mask [n, T])`` numpy chunks
    (e.g. one per collated batch, each padded to its own length); rows keep their order.
    """
    docs = [(mx.array(v), mx.array(m)) for v, m in _blocks(corpus, block)]
    for qv, qm in _blocks(queries, block):
        q, q_mask = mx.array(qv), mx.array(qm)
        cols = [np.zeros((len(qv), 0), dtype=np.float32)]
        for d, d_mask in docs:
            step = max(1, _MAXSIM_BUDGET // (q.shape[1] * d.shape[0] * d.shape[1]))
            parts = []
            for i in range(0, q.shape[0], step):
                part = maxsim(q[i:i + step], d, q_mask[i:i + step], d_mask)  # (step, bd)
                mx.eval(part)  # one intermediate [step, Tq, bd, Td] alive at a time
                parts.append(np.array(part))
            cols.append(np.concatenate(parts, axis=0))  # (b, bd)
        yield np.concatenate(cols, axis=1)  # (b, C)
