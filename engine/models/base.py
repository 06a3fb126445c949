"""What every task model shares: metadata, `hidden_states`, `layers`, `save_pretrained`,
and the per-layer gradient-checkpointing hook the families call in their layer loops."""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx
import mlx.nn as nn

from engine import tasks
from engine.errors import ModelError
from engine.models import saving
from engine.models.dropout import fresh_key, replay


def normalize_task(task: str) -> str:
    return tasks.normalize_task(task, ModelError)


@dataclass
class ModelInfo:
    """Plain-Python metadata (kept off the MLX parameter tree)."""
    family: Any                      # the family module (engine.models.bert, ...)
    config: dict                     # the HF config.json as loaded (updated for the task)
    args: Any                        # the family's ModelArgs
    task: str
    source: str = ""
    prompts: dict = field(default_factory=dict)
    default_prompt_name: str | None = None
    max_seq_length: int | None = None
    use_chat_template: bool = False                  # wrap texts in the chat template (engine/data/inputs.py)
    st_modules: list = field(default_factory=list)   # extra modules.json entries kept as they were
    late_interaction: bool = False
    colbert: dict = field(default_factory=dict)      # PyLate settings of a late-interaction model (prefixes, lengths)
    new_weights: list = field(default_factory=list)  # weights initialised fresh (a new head)
    adapter: dict = field(default_factory=dict)      # LoRA/DoRA settings, once added (engine/models/adapters.py)
    added_rows: int = 0                              # token rows added after loading ([Q]/[D]): the table's last


class TaskModel(nn.Module):
    """Shallow base of every object `load_model` returns."""

    info: ModelInfo

    @property
    def task(self) -> str:
        return self.info.task

    @property
    def config(self) -> dict:
        return self.info.config

    @property
    def layers(self) -> list:
        return self.backbone.layers

    def hidden_states(self, input_ids: mx.array, attention_mask: mx.array) -> mx.array:
        return self.backbone(input_ids, attention_mask)

    def set_grad_checkpoint(self, enabled: bool = True) -> None:
        self.backbone.grad_checkpoint = enabled

    def save_pretrained(self, out_dir) -> None:
        saving.save_pretrained(self, out_dir)


def run_layer(layer: nn.Module, checkpoint: bool, *arrays):
    """Call ``layer(*arrays)``; with ``checkpoint`` its activations are recomputed in the backward
    pass (mx.checkpoint over the layer's parameters, so gradients still reach them).

    In training the layer's dropout draws from one key drawn here (engine/models/dropout.py): the
    recomputation replays the forward pass's masks, and a checkpointed run draws what a plain one does."""
    key = fresh_key() if layer.training else None

    def call(*xs):
        with replay(key) if key is not None else nullcontext():
            return layer(*xs)

    if not checkpoint:
        return call(*arrays)

    def inner(params, *xs):
        layer.update(params)
        return call(*xs)

    return mx.checkpoint(inner)(layer.trainable_parameters(), *arrays)
