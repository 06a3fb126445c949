"""`FamilySpec`: what the rest of the tool knows about a model family without building a model.

Each family file declares ``SPEC = FamilySpec(...)``; the registry (engine/models/__init__.py),
the run-config builder, the CLI and the app read it instead of keeping their own tables.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from engine.tasks import EMBEDDING_TASKS, TASKS


class Recommended(NamedTuple):
    """A checkpoint of the family the app suggests: its Hub id, size (parameters) and what it is good for."""
    model_id: str
    parameters: int
    good_for: str


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
    # Head tasks whose ``architectures`` class the installed transformers lacks: the engine has the
    # head, but a trained folder would load nowhere else, so training and export refuse them up front
    # (tests/test_fidelity_fixes.py checks this list against transformers).
    no_transformers_class: tuple[str, ...] = ()
    # task → the transformers auto class that reloads the saved head, where it is not the task table's
    # (Gemma3's masked LM is saved as Gemma3ForCausalLM: AutoModelForCausalLM).
    auto_classes: dict[str, str] = field(default_factory=dict)
    # config.json switches the attention between causal and bidirectional (--bidirectional / --causal).
    supports_bidirectional: bool = False
    # Default LoRA/DoRA targets (engine/models/adapters.py): the attention and MLP linear layers, by dotted-suffix name.
    lora_targets: tuple[str, ...] = ()
    # A few checkpoints the app's model box suggests, smallest first.
    recommended: tuple[Recommended, ...] = ()

    @property
    def tasks(self) -> tuple[str, ...]:
        """Every task this family loads for: the embedding tasks (any backbone pools) and the
        tasks it has a head for, in engine.tasks order."""
        return tuple(t for t in TASKS if t in EMBEDDING_TASKS or t in self.architectures)

    @property
    def exportable_tasks(self) -> tuple[str, ...]:
        """The tasks a run may train: those whose output its own library (transformers, ST, PyLate) loads."""
        return tuple(t for t in self.tasks if t not in self.no_transformers_class)

    def auto_class(self, task: str) -> str:
        """The transformers auto class that loads this family's saved ``task`` folder."""
        return self.auto_classes.get(task) or TASKS[task].auto_class
