"""CosineSimilarityLoss: regress the cosine similarity of a pair onto its gold score."""
from __future__ import annotations

import mlx.core as mx

from engine.losses.columns import embed_columns
from engine.losses.scores import pairwise_cos_sim


def cosine_mse_loss(a: mx.array, b: mx.array, labels: mx.array) -> mx.array:
    """Mean squared error between cos(a[i], b[i]) and ``labels[i]``; a, b [B, D], labels [B]."""
    cos = pairwise_cos_sim(a, b)  # (B,)
    return mx.mean(mx.square(cos - labels.astype(mx.float32)))


class CosineSimilarityLoss:
    r"""Mean squared error between the cosine similarity of a pair and its float label.

    ::

        L = 1/B sum_i ( cos(u_i, v_i) - y_i )^2

    The labels must be on the cosine's scale: normalise them to [0, 1] (or [-1, 1]) first; a 0-5
    STS score used as is cannot be reached.

    Paper: Reimers & Gurevych 2019, "Sentence-BERT: Sentence Embeddings using Siamese
    BERT-Networks" (regression objective). Mirrors sentence-transformers' CosineSimilarityLoss.

    Inputs:

        ==========  =========  ===========================
        column      role       labels
        ==========  =========  ===========================
        sentence_A  text       float score in [0, 1] or
        sentence_B  text_pair  [-1, 1] (role ``score``), [B]
        ==========  =========  ===========================

    Related: CoSENTLoss (ranking form; the default for scored pairs), AnglE,
    MultipleNegativesRankingLoss (unscored pairs).
    """

    def __init__(self, **options):
        self.unused_options = dict(options)  # meant for other losses; the trainer warns about them

    def loss_from_embeddings(self, embeddings: list[mx.array], batch: dict) -> mx.array:
        """Loss from the column embeddings [text, text_pair], each [B, D]."""
        if len(embeddings) != 2 or batch.get("labels") is None:
            raise ValueError("CosineSimilarityLoss needs (text, text_pair) columns and a float score label")
        return cosine_mse_loss(embeddings[0], embeddings[1], batch["labels"])

    def __call__(self, model, batch: dict) -> mx.array:
        return self.loss_from_embeddings(embed_columns(model, batch["inputs"]), batch)
