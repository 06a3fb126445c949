"""Late-interaction (ColBERT MaxSim) contrastive loss with GradCache: large batches in mini-batch memory."""
from __future__ import annotations

import mlx.core as mx

from engine.losses.grad_cache import grad_cache, mini_batches
from engine.losses.late_interaction import LateInteractionContrastiveLoss


class CachedLateInteractionContrastiveLoss(LateInteractionContrastiveLoss):
    r"""LateInteractionContrastiveLoss computed with GradCache; same value and gradients, less memory.

    Same loss as :class:`LateInteractionContrastiveLoss` (MaxSim InfoNCE over in-batch and hard
    negatives, masks, duplicate masking, ``temperature``), ``L = loss_from_vectors(V)`` for the token
    vectors ``V = f_theta(x)`` of every column ([B, T_c, D] each). Its gradient factorises over the
    mini-batches ``k`` of every column::

        dL/dtheta = sum_k (dL/dV_k) . (dV_k/dtheta)

    so the step runs GradCache's three passes (``engine.losses.grad_cache``): token vectors of each
    mini-batch of ``mini_batch_size`` rows without a graph; the loss of the whole batch and
    ``G = dL/dV`` (B x T x D per column: token vectors are small, e.g. 128 values a token); then each
    mini-batch again with its graph, back-propagating ``sum(V_k * G_k)``. Peak encoder activation
    memory is that of one mini-batch, whatever the batch size; the cost is a second forward pass.
    Pass 2 also goes ``mini_batch_size`` queries at a time (the loss is a mean over queries, each
    against every document), so its MaxSim scores take m x Tq x B(1+n) x Td, not B x ... as the
    plain loss's do. Dropout is replayed exactly (pass 3 restores each mini-batch's random key). Every mini-batch keeps
    its column's padded length, so vectors, masks and scores are those of the plain loss.

    Paper: Gao, Zhang, Han, Callan 2021, "Scaling Deep Contrastive Learning Batch Size under Memory
    Limited Setup" (GradCache); Khattab & Zaharia 2020 (ColBERT). Mirrors PyLate's
    ``losses.CachedContrastive``.

    Inputs: as LateInteractionContrastiveLoss (query = text, positive document = text_pair,
    negatives = negative; no labels).

    Trainer contract: ``loss_and_grads(model, batch) -> (loss, grads)``, ``grads`` a tree matching
    ``model.trainable_parameters()``; the trainer calls it instead of ``nn.value_and_grad`` (eagerly:
    it syncs once per mini-batch). ``__call__`` is the plain differentiable loss, for evaluation.
    Matryoshka dims do not apply: they truncate pooled embeddings, not token vectors.

    Related: LateInteractionContrastiveLoss (same result, one graph for the whole batch),
    CachedMultipleNegativesRankingLoss (GradCache over pooled embeddings).
    """

    def __init__(self, temperature: float = 1.0, mini_batch_size: int = 32, **options):
        super().__init__(temperature=temperature, **options)
        if mini_batch_size < 1:
            raise ValueError(f"mini_batch_size must be >= 1, got {mini_batch_size}")
        self.mini_batch_size = int(mini_batch_size)

    def loss_and_grads(self, model, batch: dict) -> tuple[mx.array, dict]:
        """Loss (scalar) and parameter gradients for ``batch``, one mini-batch graph at a time."""
        return grad_cache(model, batch["inputs"], lambda vectors: self._loss_and_vector_grads(vectors, batch),
                          self.mini_batch_size)

    def _loss_and_vector_grads(self, vectors: list[mx.array], batch: dict) -> tuple[mx.array, list[mx.array]]:
        """(L, dL/dV per column), summed over chunks of queries: L = sum_k (m_k / B) * mean loss of chunk k."""
        b = vectors[0].shape[0]
        loss, query_grads, document_grads = mx.array(0.0), [], [mx.zeros_like(v) for v in vectors[1:]]

        def chunk_loss(queries, documents, first):
            return self.loss_from_vectors([queries] + documents, batch, first_query=first) * (queries.shape[0] / b)

        chunk_grad = mx.value_and_grad(chunk_loss, argnums=(0, 1))
        for sl in mini_batches(b, self.mini_batch_size):
            part, (grad_q, grad_docs) = chunk_grad(vectors[0][sl], vectors[1:], sl.start)
            loss = loss + part
            query_grads.append(grad_q)
            document_grads = [total + g for total, g in zip(document_grads, grad_docs)]
            mx.eval(loss, query_grads[-1], document_grads)  # sync point: one chunk's score tensor at a time
        return loss, [mx.concatenate(query_grads, axis=0)] + document_grads
