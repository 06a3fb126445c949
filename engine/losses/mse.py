"""Mean squared error for regression heads (text classification with a float label)."""
from __future__ import annotations

import mlx.core as mx

from engine.losses.cross_entropy import model_inputs


def mse_loss(predictions: mx.array, labels: mx.array) -> mx.array:
    """Mean of ``(prediction - label)^2`` over all elements.

    predictions [B, 1] (or [B, K]) and labels [B] (or [B, K]): a single output column is matched
    with a [B] label vector, as transformers squeezes both for ``num_labels == 1``.
    """
    y = labels.astype(mx.float32)
    p = predictions.astype(mx.float32)
    if p.ndim == y.ndim + 1 and p.shape[-1] == 1:
        p = p.squeeze(-1)  # (B,)
    if p.shape != y.shape:
        raise ValueError(f"regression outputs {tuple(predictions.shape)} do not match labels {tuple(labels.shape)}")
    return mx.mean(mx.square(p - y))


class MSELoss:
    r"""Mean squared error between the regression output and the float label.

    ::

        L = 1/B sum_i ( f(x_i) - y_i )^2

    transformers' ``problem_type="regression"`` objective (``num_labels=1``). Scale the labels to a
    small range (e.g. standardise them) for a stable start; the head outputs ~0 at initialisation.

    Paper: Gauss/Legendre least squares; as used for STS-B regression in Devlin et al. 2019 (BERT).

    Inputs:

        ======  =====  =====================================
        column  role   labels
        ======  =====  =====================================
        text    text   float target (role ``label`` or
        (pair)  text   ``score``), [B]; text_pair optional
        ======  =====  =====================================

    Related: CrossEntropyLoss (classes), CosineSimilarityLoss (MSE on a pair's cosine instead of a
    head's output).
    """

    def __init__(self, **options):
        self.unused_options = dict(options)  # meant for other losses; the trainer warns about them

    def __call__(self, model, batch: dict) -> mx.array:
        predictions = model(*model_inputs(batch))  # (B, 1)
        return mse_loss(predictions, batch["labels"])
