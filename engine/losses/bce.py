"""Binary cross-entropy on logits for multi-label text classification (one sigmoid per label)."""
from __future__ import annotations

import mlx.core as mx

from engine.losses.cross_entropy import model_inputs


def bce_loss(logits: mx.array, labels: mx.array) -> mx.array:
    """Mean over labels and batch of ``softplus(z) - y * z`` (= -y log σ(z) - (1 - y) log(1 - σ(z))).

    logits [B, C], labels float [B, C] (multi-hot 0/1, or soft targets in [0, 1]). ``logaddexp(0, z)``
    is softplus without overflow for large ``z``.
    """
    z, y = logits.astype(mx.float32), labels.astype(mx.float32)
    if z.shape != y.shape:
        raise ValueError(f"multi-label logits {tuple(logits.shape)} do not match labels {tuple(labels.shape)}")
    return mx.mean(mx.logaddexp(0.0, z) - y * z)  # (B, C) → scalar


class BCEWithLogitsLoss:
    r"""Binary cross-entropy with a sigmoid per label: each label is its own yes/no question.

    ::

        L = -1/(B C) sum_i sum_c [ y_ic log σ(z_ic) + (1 - y_ic) log(1 - σ(z_ic)) ]

    PyTorch's ``BCEWithLogitsLoss()`` (mean reduction) and transformers'
    ``problem_type="multi_label_classification"`` objective. A row may have any number of labels,
    none included; at prediction a label is on when σ(z) ≥ a threshold (0.5, or the per-label best
    threshold the evaluation reports).

    Paper: the standard binary-relevance objective (e.g. Nam et al. 2014, "Large-scale Multi-label
    Text Classification — Revisiting Neural Networks").

    Inputs:

        ======  =====  =====================================
        column  role   labels
        ======  =====  =====================================
        text    text   list of label names per row (role
        (pair)  text   ``label``), collated multi-hot
                       float [B, C]; text_pair optional
        ======  =====  =====================================

    Related: CrossEntropyLoss (exactly one class per row), MSELoss (regression).
    """

    def __init__(self, **options):
        self.unused_options = dict(options)  # meant for other losses; the trainer warns about them

    def __call__(self, model, batch: dict) -> mx.array:
        logits = model(*model_inputs(batch))  # (B, C)
        return bce_loss(logits, batch["labels"])
