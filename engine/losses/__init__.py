"""Training losses, one per module, and ``select_loss`` which picks one for a task.

Every loss is called as ``loss(model, batch) -> scalar mx.array``: it encodes its inputs with
``model(input_ids, attention_mask)`` and hands the outputs to a pure module-level function
(``mnrl_loss``, ``cosent_loss``, ...) that tests and the cached variant reuse. A loss with a
``loss_and_grads(model, batch)`` method (the cached / GradCache losses) computes its own
gradients: the trainer calls that instead of ``nn.value_and_grad``. Options a loss does not take are
kept in its ``unused_options`` so the trainer can warn about them.
"""
from __future__ import annotations


from engine.errors import UsageError
from engine.tasks import training_task
from engine.losses.bce import BCEWithLogitsLoss, bce_loss
from engine.losses.cached_late_interaction import CachedLateInteractionContrastiveLoss
from engine.losses.cached_mnrl import CachedMultipleNegativesRankingLoss
from engine.losses.cosent import CoSENTLoss, cosent_loss
from engine.losses.cosine_mse import CosineSimilarityLoss, cosine_mse_loss
from engine.losses.cross_entropy import CrossEntropyLoss, auto_class_weights, cross_entropy_loss
from engine.losses.late_interaction import LateInteractionContrastiveLoss, late_interaction_loss
from engine.losses.matryoshka import MatryoshkaLoss, matryoshka_loss
from engine.losses.mnrl import MultipleNegativesRankingLoss, mnrl_loss
from engine.losses.mse import MSELoss, mse_loss
from engine.losses.scores import cos_sim, dot_score, maxsim, maxsim_pairwise, pairwise_cos_sim
from engine.losses.token_cross_entropy import TokenCrossEntropyLoss, token_cross_entropy, token_cross_entropy_sum

LOSSES = {
    "mnrl": MultipleNegativesRankingLoss,
    "cached_mnrl": CachedMultipleNegativesRankingLoss,
    "cosent": CoSENTLoss,
    "cosine": CosineSimilarityLoss,
    "late_interaction": LateInteractionContrastiveLoss,
    "cached_late_interaction": CachedLateInteractionContrastiveLoss,
    "cross_entropy": CrossEntropyLoss,
    "bce": BCEWithLogitsLoss,
    "mse": MSELoss,
    "token_cross_entropy": TokenCrossEntropyLoss,
}

def _fitting_losses(task: str, scored: bool, late: bool, is_regression: bool,
                    is_multi_label: bool = False) -> tuple[str, ...]:
    """Loss names that fit the task, the default first."""
    if task == "sentence-similarity":
        if late:
            if scored:
                raise UsageError("late interaction trains on (query, document[, negatives]) without scores; "
                                 "remove the score column or train a dense model (CoSENT)")
            return ("late_interaction", "cached_late_interaction")
        return ("cosent", "cosine") if scored else ("mnrl", "cached_mnrl")
    if task == "text-classification":
        return ("mse",) if is_regression else ("bce",) if is_multi_label else ("cross_entropy",)
    return ("token_cross_entropy",)


def select_loss(
    task_type: str,
    *,
    scored: bool,
    use_late_interaction: bool,
    num_negatives: int,
    is_regression: bool,
    is_multi_label: bool = False,
    class_weights=None,
    loss_name: str | None = None,
    matryoshka_dims=None,
    matryoshka_weights=None,
    **options,
):
    """The loss for a task; ``loss_name`` overrides the default among the losses that fit it.

    Rules: sentence similarity with (anchor, positive[, negatives]) -> MultipleNegativesRankingLoss
    (``"cached_mnrl"``: its GradCache variant); with float scores -> CoSENTLoss (``"cosine"``:
    CosineSimilarityLoss); ``use_late_interaction`` -> LateInteractionContrastiveLoss
    (``"cached_late_interaction"``: its GradCache variant);
    text classification -> CrossEntropyLoss (``class_weights``), MSELoss when ``is_regression``,
    BCEWithLogitsLoss (``"bce"``) when ``is_multi_label``;
    masked-lm / token-classification -> TokenCrossEntropyLoss. ``matryoshka_dims`` (and
    ``matryoshka_weights``) wrap the chosen dense embedding loss in MatryoshkaLoss. ``options`` go to the loss
    (``scale``, ``symmetric``, ``mini_batch_size``, ``temperature``, ...).
    Raises UsageError (a ValueError) for an unknown task or loss name (listing the valid ones), or a loss that
    does not fit the data.
    """
    late = use_late_interaction or task_type.strip().lower().replace("_", "-") == "late-interaction"
    task = training_task(task_type)
    if num_negatives < 0:
        raise UsageError(f"num_negatives must be >= 0, got {num_negatives}")
    if scored and num_negatives and task == "sentence-similarity":
        raise UsageError("scored pairs take exactly two text columns; drop the negative columns or the score")
    fitting = _fitting_losses(task, scored, late, is_regression, is_multi_label)

    if loss_name is None:
        name = fitting[0]
    else:
        name = loss_name.strip().lower().replace("-", "_")
        by_class = {cls.__name__.lower(): key for key, cls in LOSSES.items()}
        name = by_class.get(name, name)
        if name not in LOSSES:
            raise UsageError(f"unknown loss_name {loss_name!r}; valid names: {', '.join(LOSSES)}")
        if name not in fitting:
            raise UsageError(f"loss {loss_name!r} does not fit task {task_type!r} with this data; "
                             f"valid here: {', '.join(fitting)}")

    if name == "cross_entropy":
        loss = CrossEntropyLoss(class_weights=class_weights, **options)
    elif class_weights is not None:
        raise UsageError(f"class_weights apply to classification with cross-entropy, not to {name!r}")
    else:
        loss = LOSSES[name](**options)
    if matryoshka_dims:  # refused (UsageError) for a loss that is not a dense embedding loss
        return MatryoshkaLoss(loss, matryoshka_dims, matryoshka_weights)
    if matryoshka_weights:
        raise UsageError("matryoshka_weights need matryoshka_dims (one weight per dim)")
    return loss


__all__ = [
    "LOSSES", "select_loss",
    "MultipleNegativesRankingLoss", "CachedMultipleNegativesRankingLoss", "CoSENTLoss", "CosineSimilarityLoss",
    "LateInteractionContrastiveLoss", "CachedLateInteractionContrastiveLoss", "MatryoshkaLoss", "CrossEntropyLoss", "BCEWithLogitsLoss", "MSELoss",
    "TokenCrossEntropyLoss",
    "mnrl_loss", "cosent_loss", "cosine_mse_loss", "late_interaction_loss", "cross_entropy_loss", "bce_loss",
    "mse_loss", "matryoshka_loss",
    "token_cross_entropy", "token_cross_entropy_sum", "auto_class_weights",
    "cos_sim", "dot_score", "pairwise_cos_sim", "maxsim", "maxsim_pairwise",
]
