"""The one table of tasks: names, aliases, the data roles each reads, the losses that fit, and the
output layout each writes. Every other module (data, models, losses, export, CLI, app) reads it.

A task name is canonical (``sentence-similarity``) or an alias (``embedding``, ``ner``, ...).
``feature-extraction`` is the bare encoder with pooling: it trains like sentence similarity but is
written as a plain transformers ``AutoModel`` folder.
"""
from __future__ import annotations

from dataclasses import dataclass

from engine.errors import UsageError


@dataclass(frozen=True)
class Task:
    name: str
    title: str                        # what the app shows
    aliases: tuple[str, ...]
    required_roles: tuple[str, ...]   # data roles a training file must map ("negative" = negative, negative_1, ...)
    optional_roles: tuple[str, ...]
    losses: tuple[str, ...]           # every loss that can fit this task (engine.losses.select_loss picks by data)
    output: str                       # folder layout: "sentence-transformers" (PyLate when late interaction) | "transformers"
    auto_class: str                   # the transformers class that loads the output's weights
    pipeline_tag: str                 # the Hub's pipeline tag for the model card
    embedding: bool = False           # the model's output is a vector (or token vectors) per text
    trains_as: str | None = None      # a task that trains as another one (its data and losses)

    @property
    def roles(self) -> tuple[str, ...]:
        return self.required_roles + self.optional_roles

    @property
    def training(self) -> "Task":
        return TASKS[self.trains_as] if self.trains_as else self


_SIMILARITY_ROLES = (("text", "text_pair"), ("negative", "label"))
_EMBEDDING_LOSSES = ("mnrl", "cached_mnrl", "cosent", "cosine", "late_interaction", "cached_late_interaction")
# GradCache losses: they take mini_batch_size and keep one mini-batch's activations at a time.
CACHED_LOSSES = ("cached_mnrl", "cached_late_interaction")

TASKS: dict[str, Task] = {t.name: t for t in (
    Task("sentence-similarity", "Sentence similarity", ("sentence-transformers", "sentence_similarity", "embedding",
                                                        "late-interaction", "retrieval"),
         *_SIMILARITY_ROLES, _EMBEDDING_LOSSES, "sentence-transformers", "AutoModel", "sentence-similarity",
         embedding=True),
    Task("feature-extraction", "Feature extraction (bare encoder)", ("feature_extraction",),
         *_SIMILARITY_ROLES, _EMBEDDING_LOSSES, "transformers", "AutoModel", "feature-extraction",
         embedding=True, trains_as="sentence-similarity"),
    Task("text-classification", "Classification", ("classification", "text_classification", "sequence-classification"),
         ("text", "label"), ("text_pair",), ("cross_entropy", "mse", "bce"), "transformers",
         "AutoModelForSequenceClassification", "text-classification"),
    Task("masked-lm", "Masked language model", ("masked_lm", "fill-mask", "mlm"),
         ("text",), (), ("token_cross_entropy",), "transformers", "AutoModelForMaskedLM", "fill-mask"),
    Task("token-classification", "Token classification (NER)", ("token_classification", "ner"),
         ("tokens", "labels"), (), ("token_cross_entropy",), "transformers",
         "AutoModelForTokenClassification", "token-classification"),
)}
ALIASES = {alias: t.name for t in TASKS.values() for alias in t.aliases}
EMBEDDING_TASKS = tuple(name for name, t in TASKS.items() if t.embedding)
TRAINING_TASKS = tuple(name for name, t in TASKS.items() if t.trains_as is None)
# Roles whose values are text the model encodes, in batch order (anchor, positive, negatives).
TEXT_ROLES = ("text", "text_pair", "negative")


def task_names(with_aliases: bool = False) -> tuple[str, ...]:
    return tuple(TASKS) + (tuple(ALIASES) if with_aliases else ())


def normalize_task(name: str, error: type[Exception] = UsageError) -> str:
    """The canonical task name for ``name`` or an alias; ``error`` (with a message that lists the
    valid names) for anything else. Callers pass their own error type (DataError, ModelError)."""
    key = str(name or "").strip().lower()
    key = ALIASES.get(key, ALIASES.get(key.replace("_", "-"), key))
    if key not in TASKS:
        message = (f"Unknown task {name!r}. Use one of: {', '.join(TASKS)} "
                   f"(aliases: {', '.join(a for a in ALIASES if '_' not in a)}).")
        raise error(message)
    return key


def get_task(name: str, error: type[Exception] = UsageError) -> Task:
    return TASKS[normalize_task(name, error)]


def training_task(name: str, error: type[Exception] = UsageError) -> str:
    """The task whose data and losses a run of ``name`` uses (feature-extraction → sentence-similarity)."""
    return get_task(name, error).training.name
