"""Reading sentence-similarity batches: one entry per text column (anchor, positive, negatives...).

Batch format (docs/ARCHITECTURE.md): ``batch["inputs"]`` is a list of ``{"input_ids", "attention_mask"}``
per column in the order anchor, positive, negative_1..n; ``batch["hashes"]`` the matching list of
int32 [B] text hashes; ``batch["labels"]`` float32 [B] for scored pairs.
"""
from __future__ import annotations

import mlx.core as mx


def embed_columns(model, inputs: list[dict]) -> list[mx.array]:
    """``model(input_ids, attention_mask)`` for each column; each column keeps its own padding."""
    return [model(x["input_ids"], x["attention_mask"]) for x in inputs]


def column_hashes(batch: dict) -> tuple[mx.array | None, mx.array | None]:
    """(anchor hashes [B], candidate hashes [B*(1+n)]: positives then each negative column), or Nones."""
    hashes = batch.get("hashes")
    if not hashes or len(hashes) < 2:
        return None, None
    return hashes[0], mx.concatenate(list(hashes[1:]))


def duplicate_mask(candidate_hashes: mx.array, positive_hashes: mx.array, offset: int = 0) -> mx.array:
    """True where candidate ``j`` has the same text as row ``i``'s own positive but is not column ``offset + i``.

    Column ``offset + i`` is row ``i``'s positive (positives come first among the candidates;
    ``offset`` > 0 when they were gathered from every rank of a distributed run). Such a
    duplicate is a second copy of the right answer, so it must not count as a negative.

    >>> import mlx.core as mx
    >>> duplicate_mask(mx.array([7, 8, 7, 9]), mx.array([7, 8])).tolist()
    [[False, False, True, False], [False, False, False, False]]
    """
    b, n = positive_hashes.shape[0], candidate_hashes.shape[0]
    same = positive_hashes[:, None] == candidate_hashes[None, :]  # (B, N)
    own = (mx.arange(b)[:, None] + offset) == mx.arange(n)[None, :]  # (B, N)
    return mx.logical_and(same, mx.logical_not(own))  # (B, N)
