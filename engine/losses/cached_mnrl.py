"""Multiple negatives ranking loss with GradCache: large contrastive batches in mini-batch memory."""
from __future__ import annotations

from typing import Callable

import mlx.core as mx

from engine.losses.grad_cache import grad_cache
from engine.losses.mnrl import MultipleNegativesRankingLoss


class CachedMultipleNegativesRankingLoss(MultipleNegativesRankingLoss):
    r"""MultipleNegativesRankingLoss computed with GradCache; same value and gradients, less memory.

    Same loss as :class:`MultipleNegativesRankingLoss` (formula, duplicate masking, ``symmetric``),
    ``L = mnrl_loss(E)`` for the column embeddings ``E = f_theta(x)``. Its gradient factorises::

        dL/dtheta = sum_k (dL/dE_k) . (dE_k/dtheta)        k = mini-batches of every column

    so the step runs in three passes (Gao et al. 2021; ``engine.losses.grad_cache``):

    1. embed each mini-batch of ``mini_batch_size`` rows with no graph kept (``stop_gradient``);
    2. compute the loss on the full batch of embeddings and ``G = dL/dE`` (cheap: B x D);
    3. re-embed each mini-batch with the graph and back-propagate the surrogate
       ``sum(E_k * stop_gradient(G_k))``, accumulating parameter gradients.

    Peak activation memory is that of one mini-batch, whatever the batch size; the cost is a second
    forward pass. Dropout is replayed exactly: pass 3 restores the global random key each mini-batch
    started from in pass 1, and at the end the key pass 1 ended with. The masks, loss and gradients are
    those of the plain loss embedding the same mini-batches in order (with one mini-batch per column:
    the plain loss itself).

    Paper: Gao, Zhang, Han, Callan 2021, "Scaling Deep Contrastive Learning Batch Size under Memory
    Limited Setup" (GradCache). Mirrors sentence-transformers' CachedMultipleNegativesRankingLoss.

    Inputs: as MultipleNegativesRankingLoss (anchor = text, positive = text_pair, negatives =
    negative; no labels).

    Trainer contract: this loss drives gradients itself, so it has
    ``loss_and_grads(model, batch) -> (loss, grads)`` with ``grads`` a tree matching
    ``model.trainable_parameters()``; the trainer calls it instead of ``nn.value_and_grad`` when a
    loss has that method (eagerly: it syncs once per mini-batch, so it cannot sit in one compiled
    step). ``__call__`` is the plain differentiable loss, for evaluation.

    Related: MultipleNegativesRankingLoss (same result, one graph for the whole batch).
    """

    def __init__(
        self,
        scale: float = 20.0,
        similarity: str | Callable = "cos",
        symmetric: bool = False,
        mini_batch_size: int = 32,
        **options,
    ):
        super().__init__(scale=scale, similarity=similarity, symmetric=symmetric, **options)
        if mini_batch_size < 1:
            raise ValueError(f"mini_batch_size must be >= 1, got {mini_batch_size}")
        self.mini_batch_size = int(mini_batch_size)

    def loss_and_grads(self, model, batch: dict, loss_from_embeddings=None) -> tuple[mx.array, dict]:
        """Loss (scalar) and parameter gradients for ``batch``, one mini-batch graph at a time.
        ``loss_from_embeddings`` replaces pass 2's loss of the embeddings (MatryoshkaLoss sums truncations)."""
        loss_from_embeddings = loss_from_embeddings or self.loss_from_embeddings
        return grad_cache(model, batch["inputs"], mx.value_and_grad(lambda embs: loss_from_embeddings(embs, batch)),
                          self.mini_batch_size)
