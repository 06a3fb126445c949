"""GradCache: the loss and gradients of a batch of texts, one mini-batch graph alive at a time.

Shared by the cached losses (CachedMultipleNegativesRankingLoss on pooled embeddings,
CachedLateInteractionContrastiveLoss on token vectors): they differ only in what the model's output
is and which loss of those outputs pass 2 takes.
"""
from __future__ import annotations

from typing import Callable

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_map

from engine.models.dropout import set_global_key


def mini_batches(n: int, size: int) -> list[slice]:
    """Consecutive slices of ``size`` rows (the last one shorter) covering ``n`` rows."""
    return [slice(s, min(s + size, n)) for s in range(0, n, size)]


def grad_cache(model, inputs: list[dict], loss_and_output_grads: Callable[[list[mx.array]], tuple],
               mini_batch_size: int) -> tuple[mx.array, dict]:
    r"""(loss, parameter gradients) of the loss ``L`` of the outputs ``[model(column) for column in inputs]``.

    ``loss_and_output_grads(outputs) -> (L, [dL/d output of each column])``: ``mx.value_and_grad`` of the
    loss, or a function that takes it in pieces to bound pass 2's memory.

    The gradient factorises over the outputs ``E_k`` of the mini-batches ``k`` of every column::

        dL/dtheta = sum_k (dL/dE_k) . (dE_k/dtheta)

    so it runs in three passes (Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size under
    Memory Limited Setup"):

    1. run each mini-batch of ``mini_batch_size`` rows with no graph kept (``stop_gradient``);
    2. the loss of the whole batch's outputs and ``G = dL/dE`` (outputs are small next to activations);
    3. re-run each mini-batch with the graph and back-propagate the surrogate ``sum(E_k * stop_gradient(G_k))``,
       accumulating parameter gradients.

    Peak activation memory is that of one mini-batch; the cost is a second forward pass. Dropout is
    replayed exactly: pass 3 restores the global random key each mini-batch started from in pass 1,
    and at the end the key pass 1 ended with. ``grads`` is a tree like ``model.trainable_parameters()``.
    """
    # Pass 1: outputs without a graph; the random key each mini-batch starts from, for pass 3's dropout.
    outputs, keys = [], []
    for column in inputs:
        parts = []
        for sl in mini_batches(column["input_ids"].shape[0], mini_batch_size):
            keys.append(mx.random.state[0])
            out = mx.stop_gradient(model(column["input_ids"][sl], column["attention_mask"][sl]))  # (m, ...)
            mx.eval(out)  # sync point: frees this mini-batch's activations
            parts.append(out)
        outputs.append(mx.concatenate(parts, axis=0))  # (B, ...)
    after_pass_1 = mx.random.state[0]

    # Pass 2: loss and dL/dE on the cached outputs.
    loss, output_grads = loss_and_output_grads(outputs)
    mx.eval(loss, output_grads)

    # Pass 3: backprop sum(E_k * G_k) per mini-batch; its parameter gradient is G_k . dE_k/dtheta.
    def surrogate(input_ids, attention_mask, grad_out):
        out = model(input_ids, attention_mask)  # (m, ...)
        return mx.sum(out.astype(mx.float32) * mx.stop_gradient(grad_out).astype(mx.float32))

    surrogate_grad = nn.value_and_grad(model, surrogate)
    grads, k = None, 0
    for column, grad_col in zip(inputs, output_grads):
        for sl in mini_batches(column["input_ids"].shape[0], mini_batch_size):
            set_global_key(keys[k])  # the same dropout masks as in pass 1
            k += 1
            _, g = surrogate_grad(column["input_ids"][sl], column["attention_mask"][sl], grad_col[sl])
            grads = g if grads is None else tree_map(mx.add, grads, g)
            mx.eval(grads)  # sync point: one mini-batch graph alive at a time
    set_global_key(after_pass_1)  # the generator goes on as after one forward pass
    return loss, grads
