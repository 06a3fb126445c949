"""Multiple negatives ranking loss (InfoNCE with in-batch and hard negatives)."""
from __future__ import annotations

from typing import Callable

import mlx.core as mx

from engine.training.distributed import gather_group, gather_plain, gather_rows
from engine.losses.columns import column_hashes, duplicate_mask, embed_columns
from engine.losses.scores import cos_sim, get_similarity


def mnrl_loss(
    anchor: mx.array,
    candidates: mx.array,
    scale: float = 20.0,
    similarity: str | Callable = cos_sim,
    *,
    symmetric: bool = False,
    candidate_hashes: mx.array | None = None,
    positive_hashes: mx.array | None = None,
    anchor_hashes: mx.array | None = None,
    offset: int = 0,
    anchors: mx.array | None = None,
) -> mx.array:
    """Mean InfoNCE loss of anchors against their positive among all candidates.

    anchor [B, D]; candidates [B*(1+n), D] = positives [B] then each negative column [B];
    candidate ``i`` is the positive of anchor ``i``.

    ``candidate_hashes`` [B*(1+n)] turn on duplicate masking: a candidate whose hash equals
    ``positive_hashes[i]`` (default ``candidate_hashes[:B]``) and is not column ``i`` is removed
    from row ``i`` (score ``-inf``). With ``symmetric`` the positive -> anchor term is averaged in;
    ``anchor_hashes`` [B] mask duplicate anchors there the same way.

    Gathered across N ranks (distributed): candidates [N*B*(1+n), D] are every rank's positives,
    then every rank's negatives; this rank's anchor ``i`` has its positive at ``offset + i``
    (``offset`` = rank * B); ``anchors`` [N*B, D] and ``anchor_hashes`` [N*B] are every rank's
    anchors for the symmetric term. The mean over ranks is the loss of the global batch.
    """
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    b = anchor.shape[0]
    if candidates.shape[0] % b:
        raise ValueError(f"{candidates.shape[0]} candidates is not a multiple of the batch size {b}")
    similarity = get_similarity(similarity)
    raw = similarity(anchor, candidates) * scale  # (B, B*(1+n))
    scores = raw
    if candidate_hashes is not None:
        positive_hashes = candidate_hashes[offset:offset + b] if positive_hashes is None else positive_hashes
        scores = mx.where(duplicate_mask(candidate_hashes, positive_hashes, offset), -mx.inf, scores)  # (B, B*(1+n))
    idx = mx.arange(b)
    positive = raw[idx, idx + offset]  # (B,)
    loss = mx.mean(mx.logsumexp(scores, axis=1) - positive)
    if not symmetric:
        return loss
    if anchors is None:
        back = raw[:, :b].T  # (B, B): positive i against every anchor j
    else:
        back = (similarity(anchors, candidates[offset:offset + b]) * scale).T  # (B, N*B)
    if anchor_hashes is not None:
        own = anchor_hashes[offset:offset + b]
        back = mx.where(duplicate_mask(anchor_hashes, own, offset), -mx.inf, back)  # (B, B) or (B, N*B)
    back_loss = mx.mean(mx.logsumexp(back, axis=1) - positive)
    return (loss + back_loss) / 2


class MultipleNegativesRankingLoss:
    r"""InfoNCE over in-batch negatives plus optional hard negatives.

    For anchor ``a_i`` with positive ``p_i`` and candidates ``c`` = all positives of the batch
    followed by all hard negatives, with ``s(x, y)`` the similarity (cosine by default)::

        L = -1/B sum_i log( exp(scale * s(a_i, p_i)) / sum_{j not dup(i)} exp(scale * s(a_i, c_j)) )

    i.e. cross-entropy over a (B, B*(1+n)) score matrix whose target for row ``i`` is column ``i``.
    ``symmetric=True`` adds the positive -> anchor term ``-1/B sum_i log softmax_j(scale * s(p_i, a_j))_i``
    and averages the two (MultipleNegativesSymmetricRankingLoss in sentence-transformers).

    Duplicate-aware: a candidate with the same text hash as the anchor's own positive (another row
    with the same positive, or a hard negative equal to it) is masked out instead of being counted
    as a negative. Batches without ``hashes`` are taken as free of duplicates.

    Paper: van den Oord et al. 2018, "Representation Learning with Contrastive Predictive Coding"
    (InfoNCE); Henderson et al. 2017, "Efficient Natural Language Response Suggestion for Smart
    Reply" (in-batch negatives). Mirrors sentence-transformers' MultipleNegativesRankingLoss.

    Inputs:

        ====================  ======================  ======
        column                role                    labels
        ====================  ======================  ======
        anchor                text                    none
        positive              text_pair               none
        negative_1..n (opt.)  negative                none
        ====================  ======================  ======

    Options: ``scale`` (20 = temperature 0.05; use ~1 with ``similarity="dot"`` on unnormalised
    embeddings), ``similarity`` ("cos" | "dot" | callable), ``symmetric``, ``gather_across_ranks``
    (distributed runs: negatives from every rank's batch, gradients routed back to their rank).

    Related: CachedMultipleNegativesRankingLoss (same loss, GradCache memory), CoSENTLoss and
    CosineSimilarityLoss (scored pairs), LateInteractionContrastiveLoss (same idea over MaxSim).
    """

    def __init__(self, scale: float = 20.0, similarity: str | Callable = "cos", symmetric: bool = False,
                 gather_across_ranks: bool = False, **options):
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        self.scale = float(scale)
        self.similarity = get_similarity(similarity)
        self.symmetric = bool(symmetric)
        # Distributed runs: candidates from every rank's rows (the global batch), see mnrl_loss.
        self.gather_across_ranks = bool(gather_across_ranks)
        # Options meant for other losses (select_loss forwards one dict); the trainer warns about them.
        self.unused_options = dict(options)

    def loss_from_embeddings(self, embeddings: list[mx.array], batch: dict) -> mx.array:
        """Loss from the column embeddings [anchor, positive, negatives...], each [B, D]."""
        if len(embeddings) < 2:
            raise ValueError(f"{type(self).__name__} needs (anchor, positive[, negatives]) columns, "
                             f"got {len(embeddings)}")
        anchor_hashes, candidate_hashes = column_hashes(batch)
        group = gather_group(self.gather_across_ranks)
        if group is None:
            candidates = mx.concatenate(embeddings[1:], axis=0)  # (B*(1+n), D)
            return mnrl_loss(
                embeddings[0], candidates, self.scale, self.similarity, symmetric=self.symmetric,
                candidate_hashes=candidate_hashes, anchor_hashes=anchor_hashes,
            )
        # Every rank's rows, column by column, so the layout is the single-process one of the global batch.
        candidates = mx.concatenate([gather_rows(e, group) for e in embeddings[1:]], axis=0)  # (N*B*(1+n), D)
        hashes = batch.get("hashes")
        if candidate_hashes is not None:
            candidate_hashes = mx.concatenate([gather_plain(h, group) for h in hashes[1:]])  # (N*B*(1+n),)
            anchor_hashes = gather_plain(hashes[0], group) if self.symmetric else None  # (N*B,)
        anchors = gather_rows(embeddings[0], group) if self.symmetric else None  # (N*B, D)
        return mnrl_loss(
            embeddings[0], candidates, self.scale, self.similarity, symmetric=self.symmetric,
            candidate_hashes=candidate_hashes, anchor_hashes=anchor_hashes,
            offset=group.rank() * embeddings[0].shape[0], anchors=anchors,
        )

    def __call__(self, model, batch: dict) -> mx.array:
        return self.loss_from_embeddings(embed_columns(model, batch["inputs"]), batch)
