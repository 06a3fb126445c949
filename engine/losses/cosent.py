"""CoSENT: a ranking loss on the cosine similarities of scored sentence pairs."""
from __future__ import annotations

from typing import Callable

import mlx.core as mx

from engine.losses.columns import embed_columns
from engine.losses.scores import pairwise_cos_sim


def cosent_loss(a: mx.array, b: mx.array, labels: mx.array, scale: float = 20.0,
                pairwise_similarity: Callable = pairwise_cos_sim) -> mx.array:
    """CoSENT loss of pairs (a[i], b[i]) with gold scores ``labels[i]``; a, b [B, D], labels [B]."""
    s = pairwise_similarity(a, b) * scale  # (B,)
    diff = s[None, :] - s[:, None]  # (B, B): diff[i, j] = scale * (cos_j - cos_i)
    y = labels.astype(mx.float32)
    ordered = y[:, None] > y[None, :]  # (B, B): pair i should score above pair j
    diff = mx.where(ordered, diff, -mx.inf).reshape(-1)  # (B*B,)
    # The leading 0 is the "1 +" of the formula; with no ordered pair the loss is log(1) = 0.
    return mx.logsumexp(mx.concatenate([mx.zeros((1,), dtype=diff.dtype), diff]), axis=0)


class CoSENTLoss:
    r"""CoSENT (Cosine Sentence) loss for pairs with a float similarity score.

    With ``cos_i = cos(a_i, b_i)`` and gold scores ``s_i``::

        L = log( 1 + sum_{(i, j): s_i > s_j} exp(scale * (cos_j - cos_i)) )

    Every pair of pairs whose gold order is ``s_i > s_j`` is penalised when the model ranks them
    the other way. Only the order of the labels matters, so any score range works (0-1, 0-5).
    One value per batch (over all ordered pairs of rows), computed with a stable ``logsumexp``.

    Paper: Su Jianlin 2022, "CoSENT: a more efficient sentence vector scheme than Sentence-BERT"
    (https://kexue.fm/archives/8847). Mirrors sentence-transformers' CoSENTLoss (scale 20).

    Inputs:

        ==========  =========  =====================
        column      role       labels
        ==========  =========  =====================
        sentence_A  text       float score (role
        sentence_B  text_pair  ``score``), [B]
        ==========  =========  =====================

    Related: CosineSimilarityLoss (regresses cos onto the score; CoSENT usually trains better),
    AnglE (CoSENT on angle differences), MultipleNegativesRankingLoss (unscored pairs).
    """

    def __init__(self, scale: float = 20.0, **options):
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        self.scale = float(scale)
        self.unused_options = dict(options)  # meant for other losses; the trainer warns about them

    def loss_from_embeddings(self, embeddings: list[mx.array], batch: dict) -> mx.array:
        """Loss from the column embeddings [text, text_pair], each [B, D]."""
        if len(embeddings) != 2 or batch.get("labels") is None:
            raise ValueError("CoSENTLoss needs (text, text_pair) columns and a float score label")
        return cosent_loss(embeddings[0], embeddings[1], batch["labels"], self.scale)

    def __call__(self, model, batch: dict) -> mx.array:
        return self.loss_from_embeddings(embed_columns(model, batch["inputs"]), batch)
