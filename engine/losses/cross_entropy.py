"""Cross-entropy for text classification (multi-class, and binary as two logits), with class weights."""
from __future__ import annotations

from typing import Sequence

import mlx.core as mx
import mlx.nn as nn
import numpy as np


def _as_weights(class_weights) -> mx.array:
    if isinstance(class_weights, mx.array):
        return class_weights.astype(mx.float32)
    return mx.array(np.asarray(class_weights, dtype=np.float32))


def model_inputs(batch: dict) -> tuple[mx.array, ...]:
    """A text-classification batch's inputs to the head: ids, mask, and a pair's ``token_type_ids`` when
    the collator gave them (BERT tokenizers; docs/ARCHITECTURE.md)."""
    types = (batch["token_type_ids"],) if "token_type_ids" in batch else ()
    return (batch["input_ids"], batch["attention_mask"]) + types


def cross_entropy_loss(logits: mx.array, labels: mx.array, class_weights: mx.array | None = None) -> mx.array:
    """Weighted mean cross-entropy: ``sum_i w[y_i] * l_i / sum_i w[y_i]`` (PyTorch's ``weight=``).

    logits [B, C] (C >= 2), labels int [B], class_weights [C] or None (plain mean).
    """
    if logits.ndim != 2 or logits.shape[-1] < 2:
        raise ValueError(f"classification logits must be [B, C] with C >= 2, got {tuple(logits.shape)}; "
                         "a single output is regression (MSELoss)")
    per_example = nn.losses.cross_entropy(logits.astype(mx.float32), labels.astype(mx.int32))  # (B,)
    if class_weights is None:
        return mx.mean(per_example)
    w = _as_weights(class_weights)[labels]  # (B,)
    return mx.sum(w * per_example) / mx.sum(w)


def auto_class_weights(label_ids: Sequence[int] | np.ndarray | mx.array, num_labels: int) -> mx.array:
    """Inverse-frequency class weights [num_labels], scaled so that their mean is 1.

    ``w_c = (1 / n_c) * num_labels / sum_k (1 / n_k)``. A class absent from ``label_ids`` is
    counted once (the rarest possible), so it gets the largest finite weight. Labels -100 are
    skipped (the ignore index of token-classification data).

    >>> [round(w, 3) for w in auto_class_weights([0, 0, 0, 1], 2).tolist()]
    [0.5, 1.5]
    """
    ids = np.asarray(label_ids, dtype=np.int64).reshape(-1)
    ids = ids[ids != -100]
    if ids.size and (ids.min() < 0 or ids.max() >= num_labels):
        raise ValueError(f"label ids must be in [0, {num_labels}), got {ids.min()}..{ids.max()}")
    counts = np.maximum(np.bincount(ids, minlength=num_labels), 1).astype(np.float64)
    inv = 1.0 / counts
    return mx.array((inv * num_labels / inv.sum()).astype(np.float32))


class CrossEntropyLoss:
    r"""Softmax cross-entropy over class logits, optionally weighted per class.

    ::

        L = sum_i w_{y_i} * ( logsumexp(z_i) - z_{i, y_i} )  /  sum_i w_{y_i}

    with ``w = 1`` when no weights are given (plain mean). This is PyTorch's
    ``CrossEntropyLoss(weight=w)`` and transformers' ``single_label_classification``. Binary
    classification uses two logits (C = 2), like ``AutoModelForSequenceClassification``.
    ``class_weights="auto"`` is not resolved here: pass ``auto_class_weights(train_labels, C)``.

    Paper: the standard maximum-likelihood objective (e.g. Devlin et al. 2019, BERT fine-tuning).

    Inputs:

        ======  =====  =====================================
        column  role   labels
        ======  =====  =====================================
        text    text   int class id in [0, C) (role
        (pair)  text   ``label``), [B]; text_pair optional
        ======  =====  =====================================

    Related: MSELoss (regression, one output), TokenCrossEntropyLoss (one label per token).
    """

    def __init__(self, class_weights: Sequence[float] | mx.array | None = None, **options):
        self.class_weights = None if class_weights is None else _as_weights(class_weights)
        if self.class_weights is not None and (self.class_weights.ndim != 1 or mx.any(self.class_weights < 0).item()):
            raise ValueError("class_weights must be a 1-D list of non-negative numbers, one per class")
        self.unused_options = dict(options)  # meant for other losses; the trainer warns about them

    def __call__(self, model, batch: dict) -> mx.array:
        logits = model(*model_inputs(batch))  # (B, C)
        if self.class_weights is not None and self.class_weights.shape[0] != logits.shape[-1]:
            raise ValueError(f"{self.class_weights.shape[0]} class weights for {logits.shape[-1]} classes")
        return cross_entropy_loss(logits, batch["labels"], self.class_weights)
