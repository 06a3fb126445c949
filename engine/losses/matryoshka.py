"""Matryoshka: train embeddings whose leading dimensions are embeddings too, with any embedding loss."""
from __future__ import annotations

from typing import Sequence

import mlx.core as mx

from engine.errors import UsageError
from engine.losses.columns import embed_columns
from engine.models.heads import normalize


def truncate(embeddings: mx.array, dim: int, renormalize: bool) -> mx.array:
    """The first ``dim`` values of each row [.., D] -> [.., dim], back on the unit sphere when ``renormalize``.

    >>> import mlx.core as mx
    >>> truncate(mx.array([[0.6, 0.0, 0.8]]), 2, True).tolist()
    [[1.0, 0.0]]
    """
    if dim > embeddings.shape[-1]:
        raise UsageError(f"Matryoshka dimension {dim} is larger than the model's embeddings ({embeddings.shape[-1]}).")
    cut = embeddings[..., :dim]
    return normalize(cut) if renormalize else cut


def matryoshka_loss(loss_from_embeddings, embeddings: list[mx.array], batch: dict, dims: Sequence[int],
                    weights: Sequence[float], renormalize: bool) -> mx.array:
    """``sum_k weights[k] * loss_from_embeddings([e[:, :dims[k]] for e in embeddings], batch)``."""
    total = mx.array(0.0)
    for dim, weight in zip(dims, weights):
        total = total + weight * loss_from_embeddings([truncate(e, dim, renormalize) for e in embeddings], batch)
    return total


class MatryoshkaLoss:
    r"""Any embedding loss at several leading-dimension truncations of the same embeddings, summed.

    With ``E`` the column embeddings (anchor, positive, negatives... each [B, D]), dims
    ``d_1 > ... > d_K`` and weights ``w_k`` (default 1)::

        L = sum_k w_k * L_inner( norm(E[:, :d_k]) )

    where ``norm`` re-normalises each truncated row when the model normalises its embeddings (a
    unit vector cut short is no longer one) and is the identity otherwise. The model runs once per
    column and the backward pass runs once: each truncation is a slice of the same graph. A dim equal
    to the model's size trains the full embedding; with that one dim alone the loss is ``L_inner``.

    Wraps a loss with ``loss_from_embeddings(embeddings, batch)``: MultipleNegativesRankingLoss,
    CachedMultipleNegativesRankingLoss (its GradCache passes cache the full embeddings; the truncations
    happen in the embedding-level loss whose gradient pass 2 takes), CoSENTLoss, CosineSimilarityLoss.

    Paper: Kusupati et al. 2022, "Matryoshka Representation Learning". Mirrors sentence-transformers'
    MatryoshkaLoss (n_dims_per_step = all dims), which re-normalises every truncation: the same for
    cosine losses; for dot-product losses on an unnormalised model this one keeps the raw values.

    Inputs: those of the wrapped loss.

    Related: the wrapped losses; evaluation reports retrieval metrics at each dim (``ndcg@10@256``).
    """

    def __init__(self, inner, dims: Sequence[int], weights: Sequence[float] | None = None):
        if hasattr(inner, "loss_from_vectors"):
            raise UsageError("Matryoshka dims truncate pooled embeddings; a late-interaction (ColBERT) model scores "
                             f"token vectors ({type(inner).__name__}): train it without --matryoshka-dims.")
        if not hasattr(inner, "loss_from_embeddings"):
            raise UsageError(f"Matryoshka dims apply to dense embedding losses (MNRL, cached MNRL, CoSENT, cosine), "
                             f"not to {type(inner).__name__}.")
        dims = [int(d) for d in dims]
        if not dims or min(dims) < 1:
            raise UsageError(f"Matryoshka dims must be positive integers, got {dims}.")
        weights = [1.0] * len(dims) if weights is None else [float(w) for w in weights]
        if len(weights) != len(dims):
            raise UsageError(f"{len(weights)} Matryoshka weights for {len(dims)} dims: give one weight per dim.")
        self.inner, self.dims, self.weights = inner, dims, weights
        self.unused_options = getattr(inner, "unused_options", {})
        if hasattr(inner, "loss_and_grads"):  # GradCache: the trainer calls loss_and_grads instead of value_and_grad
            self.loss_and_grads = self._cached_loss_and_grads

    @property
    def gather_across_ranks(self) -> bool:
        return getattr(self.inner, "gather_across_ranks", False)

    @gather_across_ranks.setter
    def gather_across_ranks(self, value: bool) -> None:
        if hasattr(self.inner, "gather_across_ranks"):  # scored-pair losses have no in-batch negatives to gather
            self.inner.gather_across_ranks = value

    def _embedding_loss(self, model):
        """``loss_from_embeddings`` of the Matryoshka sum, re-normalising when ``model`` normalises."""
        renormalize = bool(getattr(model, "normalize", False))
        return lambda embeddings, batch: matryoshka_loss(self.inner.loss_from_embeddings, embeddings, batch,
                                                         self.dims, self.weights, renormalize)

    def _cached_loss_and_grads(self, model, batch: dict):
        return self.inner.loss_and_grads(model, batch, loss_from_embeddings=self._embedding_loss(model))

    def __call__(self, model, batch: dict) -> mx.array:
        return self._embedding_loss(model)(embed_columns(model, batch["inputs"]), batch)
