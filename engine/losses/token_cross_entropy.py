"""Per-token cross-entropy for masked LM and token classification, ignoring label -100."""
from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

IGNORE_INDEX = -100  # transformers' convention for positions without a label


def token_cross_entropy_sum(logits: mx.array, labels: mx.array, ignore_index: int = IGNORE_INDEX
                            ) -> tuple[mx.array, mx.array]:
    """(sum of the per-token losses, number of labelled tokens) over tokens whose label != -100.

    logits [B, T, V] (or [N, V]), labels int [B, T] (or [N]). For gradient accumulation by tokens:
    add the sums and counts of the micro-batches, then divide once.
    """
    if logits.shape[:-1] != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} do not match labels {tuple(labels.shape)}")
    valid = labels != ignore_index  # (B, T)
    targets = mx.where(valid, labels, 0).astype(mx.int32)  # (B, T): any in-range id; masked below
    if mx.default_device() != mx.gpu:
        # The CPU reduces in the logits' dtype; the GPU's fused kernel accumulates in float32 anyway,
        # and upcasting [B, T, V] there would cost B*T*V*4 bytes.
        logits = logits.astype(mx.float32)
    per_token = nn.losses.cross_entropy(logits, targets).astype(mx.float32)  # (B, T)
    per_token = mx.where(valid, per_token, 0.0)  # (B, T)
    return mx.sum(per_token), mx.sum(valid).astype(mx.float32)


def token_cross_entropy(logits: mx.array, labels: mx.array, ignore_index: int = IGNORE_INDEX) -> mx.array:
    """Mean cross-entropy over labelled tokens; 0 when no token has a label."""
    total, count = token_cross_entropy_sum(logits, labels, ignore_index)
    return total / mx.maximum(count, 1.0)


class TokenCrossEntropyLoss:
    r"""Cross-entropy over tokens that carry a label, averaged over those tokens.

    With ``M = {(b, t): y_{b,t} != -100}``::

        L = 1/|M| sum_{(b,t) in M} ( logsumexp(z_{b,t}) - z_{b,t,y_{b,t}} )

    Masked LM: ``z`` are vocabulary logits [B, T, V] and only the masked positions have labels.
    Token classification: ``z`` are tag logits [B, T, L]; sub-word continuations and special
    tokens carry -100. Same as transformers' ``CrossEntropyLoss(ignore_index=-100)``. For gradient
    accumulation weighted by tokens use :func:`token_cross_entropy_sum` (or :meth:`sum_and_count`).

    Paper: Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional Transformers" (MLM);
    Lample et al. 2016 / Devlin et al. 2019 (token tagging, first sub-token labelled).

    Inputs:

        ====================  ======  ==========================================
        task                  role    labels
        ====================  ======  ==========================================
        masked-lm             text    token ids at masked positions, else -100
        token-classification  tokens  tag id per word, aligned to sub-tokens by
                              labels  the collator, -100 elsewhere; [B, T]
        ====================  ======  ==========================================

    Related: CrossEntropyLoss (one label per text).
    """

    def __init__(self, ignore_index: int = IGNORE_INDEX, **options):
        self.ignore_index = int(ignore_index)
        self.unused_options = dict(options)  # meant for other losses; the trainer warns about them

    def sum_and_count(self, model, batch: dict) -> tuple[mx.array, mx.array]:
        logits = model(batch["input_ids"], batch["attention_mask"])  # (B, T, V)
        return token_cross_entropy_sum(logits, batch["labels"], self.ignore_index)

    def __call__(self, model, batch: dict) -> mx.array:
        total, count = self.sum_and_count(model, batch)
        return total / mx.maximum(count, 1.0)
