"""Similarity scores between embeddings: cosine, dot product and late-interaction MaxSim.

Pure functions of arrays, shared by the losses, the evaluator and the playground. Every score is
returned in float32 whatever the embedding dtype: a bfloat16 sum over 32 query tokens (MaxSim) or a
cosine multiplied by a scale of 20 keeps only two or three significant digits.

    cos_sim(a, b)                        a [Ba, D], b [Bb, D]            -> [Ba, Bb]
    dot_score(a, b)                      a [Ba, D], b [Bb, D]            -> [Ba, Bb]
    pairwise_cos_sim(a, b)               a [B, D],  b [B, D]             -> [B]
    maxsim(q, d, q_mask, d_mask)         q [Bq, Tq, D], d [Bd, Td, D]    -> [Bq, Bd]
    maxsim_pairwise(q, d, q_mask, d_mask) q [B, Tq, D],  d [B, Td, D]    -> [B]
"""
from __future__ import annotations

from typing import Callable

import mlx.core as mx

_EPS = 1e-8  # as torch.nn.functional.normalize / sentence-transformers' cos_sim (1e-8 there too)


def _normalize(x: mx.array) -> mx.array:
    x = x.astype(mx.float32)
    sq = mx.sum(x * x, axis=-1, keepdims=True)
    return x * mx.rsqrt(mx.maximum(sq, _EPS * _EPS))  # a zero vector stays zero, never NaN


def cos_sim(a: mx.array, b: mx.array) -> mx.array:
    """Cosine similarity of every row of ``a`` with every row of ``b``.

    >>> import mlx.core as mx
    >>> a = mx.array([[1.0, 0.0]])
    >>> b = mx.array([[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0], [1.0, 1.0]])
    >>> [round(v, 4) for v in cos_sim(a, b)[0].tolist()]
    [1.0, 0.0, -1.0, 0.7071]
    """
    return _normalize(a) @ _normalize(b).T  # (Ba, Bb)


def dot_score(a: mx.array, b: mx.array) -> mx.array:
    """Dot product of every row of ``a`` with every row of ``b``.

    >>> import mlx.core as mx
    >>> dot_score(mx.array([[1.0, 2.0]]), mx.array([[3.0, 4.0], [-1.0, 0.0]])).tolist()
    [[11.0, -1.0]]
    """
    return a.astype(mx.float32) @ b.astype(mx.float32).T  # (Ba, Bb)


def pairwise_cos_sim(a: mx.array, b: mx.array) -> mx.array:
    """Cosine similarity of aligned rows: ``out[i] = cos(a[i], b[i])``.

    >>> import mlx.core as mx
    >>> pairwise_cos_sim(mx.array([[1.0, 0.0], [0.0, 2.0]]), mx.array([[5.0, 0.0], [0.0, -1.0]])).tolist()
    [1.0, -1.0]
    """
    return mx.sum(_normalize(a) * _normalize(b), axis=-1)  # (B,)


def maxsim(q: mx.array, d: mx.array, q_mask: mx.array, d_mask: mx.array) -> mx.array:
    """Late-interaction score of every query with every document (ColBERT, Khattab & Zaharia 2020).

    ``S(Q, D) = sum_i max_j q_i . d_j`` over the real query tokens ``i`` and the real document
    tokens ``j``. Padded document tokens are set to ``-inf`` *before* the max (a padded token that
    scores 0 would otherwise beat a real negative similarity; a large negative finite number is
    not safe in bfloat16); padded query tokens contribute 0.

    q [Bq, Tq, D], d [Bd, Td, D], q_mask [Bq, Tq], d_mask [Bd, Td] (1 = real token) -> [Bq, Bd].

    The second document's last token is padding: its huge score 9 is ignored, and the real
    negative -1 wins the max. The query's padded second token adds nothing.

    >>> import mlx.core as mx
    >>> q = mx.array([[[1.0, 0.0], [5.0, 5.0]]])
    >>> d = mx.array([[[1.0, 0.0], [0.0, 1.0]], [[-1.0, 0.0], [9.0, 0.0]]])
    >>> maxsim(q, d, mx.array([[1, 0]]), mx.array([[1, 1], [1, 0]])).tolist()
    [[1.0, -1.0]]
    """
    bq, tq, dim = q.shape
    bd, td, _ = d.shape
    q32, d32 = q.astype(mx.float32), d.astype(mx.float32)
    s = (q32.reshape(bq * tq, dim) @ d32.reshape(bd * td, dim).T).reshape(bq, tq, bd, td)  # (Bq, Tq, Bd, Td)
    s = mx.where(d_mask.astype(mx.bool_)[None, None], s, -mx.inf)  # (Bq, Tq, Bd, Td)
    best = mx.max(s, axis=-1)  # (Bq, Tq, Bd)
    best = mx.where(q_mask.astype(mx.bool_)[:, :, None], best, 0.0)  # (Bq, Tq, Bd)
    return mx.sum(best, axis=1)  # (Bq, Bd)


def maxsim_pairwise(q: mx.array, d: mx.array, q_mask: mx.array, d_mask: mx.array) -> mx.array:
    """MaxSim of aligned pairs: ``out[i] = S(q[i], d[i])``; same masking rules as :func:`maxsim`.

    q [B, Tq, D], d [B, Td, D], q_mask [B, Tq], d_mask [B, Td] -> [B].

    >>> import mlx.core as mx
    >>> q = mx.array([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 0.0]]])
    >>> d = mx.array([[[1.0, 0.0], [0.0, 0.5]], [[-2.0, 0.0], [7.0, 0.0]]])
    >>> maxsim_pairwise(q, d, mx.array([[1, 1], [1, 0]]), mx.array([[1, 1], [1, 0]])).tolist()
    [1.5, -2.0]
    """
    s = q.astype(mx.float32) @ d.astype(mx.float32).transpose(0, 2, 1)  # (B, Tq, Td)
    s = mx.where(d_mask.astype(mx.bool_)[:, None, :], s, -mx.inf)  # (B, Tq, Td)
    best = mx.where(q_mask.astype(mx.bool_), mx.max(s, axis=-1), 0.0)  # (B, Tq)
    return mx.sum(best, axis=-1)  # (B,)


SIMILARITIES: dict[str, Callable[[mx.array, mx.array], mx.array]] = {"cos": cos_sim, "dot": dot_score}


def get_similarity(similarity: str | Callable) -> Callable[[mx.array, mx.array], mx.array]:
    """``"cos"`` / ``"dot"`` (or ``"cos_sim"`` / ``"dot_score"``) or a callable ``(a, b) -> [Ba, Bb]``."""
    if callable(similarity):
        return similarity
    name = {"cos_sim": "cos", "cosine": "cos", "dot_score": "dot", "dot_product": "dot"}.get(similarity, similarity)
    if name not in SIMILARITIES:
        raise ValueError(f"unknown similarity {similarity!r}; expected one of {sorted(SIMILARITIES)} or a callable")
    return SIMILARITIES[name]
