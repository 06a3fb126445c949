"""Contrastive loss over late-interaction (ColBERT MaxSim) scores."""
from __future__ import annotations

import mlx.core as mx

from engine.training.distributed import gather_group, gather_plain, gather_rows
from engine.losses.columns import column_hashes, duplicate_mask
from engine.losses.scores import maxsim


def _pad_tokens(x: mx.array, mask: mx.array, length: int) -> tuple[mx.array, mx.array]:
    """Right-pad token vectors [B, T, D] and mask [B, T] to ``length`` tokens (pads are masked out)."""
    extra = length - x.shape[1]
    if extra == 0:
        return x, mask
    return mx.pad(x, [(0, 0), (0, extra), (0, 0)]), mx.pad(mask, [(0, 0), (0, extra)])


def late_interaction_loss(
    queries: mx.array,
    query_mask: mx.array,
    documents: mx.array,
    document_mask: mx.array,
    temperature: float = 1.0,
    *,
    candidate_hashes: mx.array | None = None,
    positive_hashes: mx.array | None = None,
    offset: int = 0,
) -> mx.array:
    """Mean cross-entropy of each query's MaxSim scores against all in-batch documents.

    queries [B, Tq, D], query_mask [B, Tq]; documents [B*(1+n), Td, D] = positives then each
    negative column, document_mask [B*(1+n), Td]; document ``i`` is query ``i``'s positive.
    Hashes mask duplicates of the positive exactly as in ``mnrl_loss``. Gathered across ranks
    (distributed), documents hold every rank's positives then negatives and query ``i``'s positive
    is document ``offset + i`` (``offset`` = rank * B).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    b = queries.shape[0]
    raw = maxsim(queries, documents, query_mask, document_mask) / temperature  # (B, B*(1+n))
    scores = raw
    if candidate_hashes is not None:
        positive_hashes = candidate_hashes[offset:offset + b] if positive_hashes is None else positive_hashes
        scores = mx.where(duplicate_mask(candidate_hashes, positive_hashes, offset), -mx.inf, scores)  # (B, B*(1+n))
    idx = mx.arange(b)
    return mx.mean(mx.logsumexp(scores, axis=1) - raw[idx, idx + offset])


class LateInteractionContrastiveLoss:
    r"""InfoNCE over ColBERT MaxSim scores, with in-batch and hard negatives.

    With token vectors ``q_i`` (query ``i``) and ``d_j`` (document ``j`` = all positives of the
    batch followed by all hard negatives) and ``S(Q, D) = sum_{q in Q} max_{d in D} q . d`` over
    real tokens (see ``scores.maxsim``)::

        L = -1/B sum_i log( exp(S(q_i, d_i) / t) / sum_{j not dup(i)} exp(S(q_i, d_j) / t) )

    Temperature ``t`` defaults to 1.0 (scores not scaled), as PyLate's ``Contrastive`` loss for
    ColBERT: a MaxSim score is a sum of up to ``Tq`` cosines (normalised token vectors), so its
    logits already span about [-Tq, Tq] (e.g. +-32), the sharpness MNRL gets from scale 20 on a
    single cosine; scaling further would saturate the softmax, and keeping PyLate's default lets
    its recipes (learning rate, batch size) carry over.

    Masks come from the batch attention masks: padded document tokens never win a max, padded
    query tokens add nothing. (ColBERT's query augmentation attends its [MASK] pad tokens; a
    collator that does it marks them 1, and they then count like PyLate.) Duplicate-aware as
    MultipleNegativesRankingLoss: a document whose text hash equals the query's own positive, other
    than the positive itself, is masked out.

    Paper: Khattab & Zaharia 2020, "ColBERT: Efficient and Effective Passage Search via
    Contextualized Late Interaction over BERT"; Santhanam et al. 2022 (ColBERTv2). Mirrors PyLate's
    ``losses.Contrastive``.

    Inputs (model output: normalised token vectors [B, T, D]):

        ====================  ======================  ======
        column                role                    labels
        ====================  ======================  ======
        query                 text                    none
        positive document     text_pair               none
        negative_1..n (opt.)  negative                none
        ====================  ======================  ======

    Related: CachedLateInteractionContrastiveLoss (same loss, GradCache memory),
    MultipleNegativesRankingLoss (same objective on pooled embeddings), PyLate's Distillation loss
    (KL to teacher scores, not implemented here).
    """

    def __init__(self, temperature: float = 1.0, gather_across_ranks: bool = False, **options):
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = float(temperature)
        # Distributed runs: documents from every rank's rows (the global batch). Every rank's
        # columns must then have the same token count (the trainer pads them to the longest).
        self.gather_across_ranks = bool(gather_across_ranks)
        self.unused_options = dict(options)  # meant for other losses; the trainer warns about them

    def __call__(self, model, batch: dict) -> mx.array:
        vectors = [model(x["input_ids"], x["attention_mask"]) for x in batch["inputs"]]  # each (B, T_c, D)
        return self.loss_from_vectors(vectors, batch)

    def loss_from_vectors(self, vectors: list[mx.array], batch: dict, first_query: int = 0) -> mx.array:
        """Loss from each column's token vectors [query, positive, negatives...], each [B, T_c, D]. With
        ``first_query``, ``vectors[0]`` holds only queries ``first_query ..`` of the batch: the mean is over those."""
        inputs = batch["inputs"]
        if len(inputs) < 2:
            raise ValueError(f"{type(self).__name__} needs (query, document[, negatives]) columns, got {len(inputs)}")
        # PyLate's scoring mask when the collator gives one (expansion pads in, skiplist out)
        masks = [x.get("score_mask", x["attention_mask"]) for x in inputs]  # each (B, T_c)
        length = max(v.shape[1] for v in vectors[1:])
        padded = [_pad_tokens(v, m, length) for v, m in zip(vectors[1:], masks[1:])]
        documents = mx.concatenate([v for v, _ in padded], axis=0)  # (B*(1+n), Td, D)
        document_mask = mx.concatenate([m for _, m in padded], axis=0)  # (B*(1+n), Td)
        _, candidate_hashes = column_hashes(batch)
        group, offset = gather_group(self.gather_across_ranks), first_query
        if group is not None:  # column by column, so the layout is the single-process one of the global batch
            documents = mx.concatenate([gather_rows(v, group) for v, _ in padded], axis=0)  # (N*B*(1+n), Td, D)
            document_mask = mx.concatenate([gather_plain(m, group) for _, m in padded], axis=0)  # (N*B*(1+n), Td)
            if candidate_hashes is not None:
                candidate_hashes = mx.concatenate([gather_plain(h, group) for h in batch["hashes"][1:]])
            offset = group.rank() * vectors[1].shape[0] + first_query
        query_mask = masks[0][first_query:first_query + vectors[0].shape[0]]  # (b, Tq)
        return late_interaction_loss(vectors[0], query_mask, documents, document_mask, self.temperature,
                                     candidate_hashes=candidate_hashes, offset=offset)
