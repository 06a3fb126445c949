"""`FamilySpec`: what the rest of the tool knows about a model family without building a model.

Each family file declares ``SPEC = FamilySpec(...)``; the registry (engine/models/__init__.py),
the run-config builder, the CLI and the app read it instead of keeping their own tables.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from engine.tasks import EMBEDDING_TASKS, TASKS


@dataclass(frozen=True)
class FamilySpec:
    model_type: str                   # the HF config.json ``model_type``
    name: str                         # what the app and messages show ("Gemma 3")
    architectures: dict[str, str]     # "base" | task → the HF class a saved folder names
    presets: dict                     # starting points: batch_size, learning_rate, max_length
    base_prefix: str = "model"        # the backbone's attribute name in HF task classes
    aliases: tuple[str, ...] = ()     # other model_type values that load as this family
    default_pooling: str = "mean"     # embedding pooling when the folder names none
    padding_side: str | None = None   # forced on the tokenizer (None: the tokenizer's own)
    ignored_keys: tuple[str, ...] = ()   # checkpoint key prefixes of other heads: skipped on load
    optional_keys: tuple[str, ...] = ()  # backbone weights a checkpoint may lack (initialised fresh)
    # Backbone weight-name prefixes (no base_prefix) of the input embeddings, for freezing them.
    embedding_weights: tuple[str, ...] = field(default=())

    @property
    def tasks(self) -> tuple[str, ...]:
        """Every task this family loads for: the embedding tasks (any backbone pools) and the
        tasks it has a head for, in engine.tasks order."""
        return tuple(t for t in TASKS if t in EMBEDDING_TASKS or t in self.architectures)
