"""Tiny engine models of every family, built in memory from config dicts (no checkpoint, no torch): for
tests of what every family shares (dropout, freezing)."""
from __future__ import annotations

import mlx.core as mx

from engine.models import get_family
from engine.models.base import ModelInfo
from engine.models.heads import EmbeddingModel
from engine.tasks import EMBEDDING_TASKS

_DECODER = dict(vocab_size=100, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                num_key_value_heads=1, head_dim=8, max_position_embeddings=64)
TINY = {
    "bert": dict(vocab_size=100, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                 max_position_embeddings=64),
    "modernbert": dict(vocab_size=100, hidden_size=16, intermediate_size=24, num_hidden_layers=3,
                       num_attention_heads=2, max_position_embeddings=64, local_attention=4),
    "qwen3": dict(_DECODER),
    "gemma3_text": dict(_DECODER, query_pre_attn_scalar=8, sliding_window=4, sliding_window_pattern=2),
    "t5gemma": {"encoder": dict(_DECODER, query_pre_attn_scalar=8, sliding_window=4)},
    "lfm2": dict(_DECODER, layer_types=["conv", "full_attention"], block_multiple_of=8),
}
FAMILIES = tuple(TINY)


def build(model_type: str, task: str = "feature-extraction", seed: int = 0, dropout: float | None = None,
          **config):
    """A random ``model_type`` model for ``task`` (3 labels for classifiers), in eval mode as load_model
    returns it; ``config`` adds top-level config keys, ``dropout`` is load_model's override."""
    family = get_family(model_type)
    cfg = family.configure({**TINY[model_type], "model_type": model_type, **config}, dropout=dropout)
    args = family.ModelArgs.from_config(cfg)
    mx.random.seed(seed)
    if task in EMBEDDING_TASKS:
        model = EmbeddingModel(family.Model(args), family.SPEC.default_pooling)
    else:
        model = family.TASK_MODELS[task](args, 3)
    model.info = ModelInfo(family=family, config=cfg, args=args, task=task)
    mx.eval(model.parameters())
    model.eval()
    return model

