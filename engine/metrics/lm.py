"""Masked-LM perplexity: ``exp(sum of token cross-entropy / number of masked tokens)``.

    cross_entropy_sum(logits, labels)  -> (sum of CE over labelled positions, their count)
    perplexity(ce_sum, n_tokens)       -> float

The mean is over tokens, not batches, so batches with more masked tokens weigh more (as HF's
``run_mlm``, which takes exp of the token-mean loss). The evaluator sums the CE of each batch on
the device (gathering only the masked rows of [B, T, V]) and calls :func:`perplexity` once.
"""
from __future__ import annotations

import math

import numpy as np

IGNORE = -100  # labels of positions that are not predicted (HF convention)


def cross_entropy_sum(logits, labels, ignore_index: int = IGNORE) -> tuple[float, int]:
    """Sum of ``-log softmax(logits)[label]`` over positions whose label is not ``ignore_index``.

    logits [..., V], labels [...] -> (sum, count); computed in float64 with a stable log-softmax.

    >>> cross_entropy_sum(np.log([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]]), np.array([0, -100]))[1]
    1
    """
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels).reshape(-1)
    rows = logits.reshape(-1, logits.shape[-1])[labels != ignore_index]  # (N, V)
    if rows.size == 0:
        return 0.0, 0
    targets = labels[labels != ignore_index]
    top = rows.max(axis=-1, keepdims=True)
    log_z = top[:, 0] + np.log(np.exp(rows - top).sum(axis=-1))  # (N,)
    return float(np.sum(log_z - rows[np.arange(len(rows)), targets])), int(len(rows))


def perplexity(ce_sum: float, n_tokens: int) -> float:
    """``exp(ce_sum / n_tokens)``; NaN when nothing was masked, ``inf`` when the mean overflows.

    >>> round(perplexity(2 * math.log(4.0), 2), 6)
    4.0
    """
    if n_tokens <= 0:
        return float("nan")
    mean = ce_sum / n_tokens
    return math.exp(mean) if mean < 709.0 else float("inf")  # exp overflows a float past ~709.78
