"""Model-independent heads: pooling, sentence-transformers Dense/Normalize, embedding and
late-interaction models, and the classifiers laid out as HF's task classes.

Backbones return hidden states only; everything task-shaped lives here or in the family file
(HF's own head classes, whose weight names must match HF's).
"""
from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from engine.models.base import TaskModel
from engine.models.dropout import dropout as drop

POOLING_MODES = ("mean", "cls", "max", "lasttoken")


def last_token_index(attention_mask: mx.array) -> mx.array:
    """Index of the last real token per row; right or left padding alike. [B, T] → [B]."""
    T = attention_mask.shape[1]
    return mx.argmax(mx.arange(T)[None, :] * (attention_mask > 0), axis=1)


def pool(hidden: mx.array, attention_mask: mx.array, mode: str) -> mx.array:
    """[B, T, H] → [B, H] (no softmax, no normalisation)."""
    if mode == "cls":
        return hidden[:, 0]
    if mode == "lasttoken":
        idx = last_token_index(attention_mask)
        return mx.take_along_axis(hidden, idx[:, None, None], axis=1)[:, 0]
    mask = attention_mask[..., None].astype(hidden.dtype)  # (B, T, 1)
    if mode == "mean":
        return (hidden * mask).sum(axis=1) / mx.maximum(mask.sum(axis=1), 1e-9)
    if mode == "max":
        return mx.where(mask > 0, hidden, -mx.inf).max(axis=1)
    raise ValueError(f"Unknown pooling {mode!r}; choose one of {', '.join(POOLING_MODES)}.")


def normalize(x: mx.array, eps: float = 1e-12) -> mx.array:
    return x / mx.maximum(mx.linalg.norm(x, axis=-1, keepdims=True), eps)


ACTIVATIONS = {
    "torch.nn.modules.linear.Identity": lambda x: x,
    "torch.nn.modules.activation.Tanh": mx.tanh,
    "torch.nn.modules.activation.ReLU": nn.relu,
    "torch.nn.modules.activation.GELU": nn.gelu,
}


class Dense(nn.Module):
    """sentence-transformers ``models.Dense``: activation(linear(x)); weights named ``linear.*``."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 activation_function: str = "torch.nn.modules.linear.Identity"):
        super().__init__()
        if activation_function not in ACTIVATIONS:
            raise ValueError(f"Dense activation {activation_function!r} is not supported; "
                             f"supported: {', '.join(ACTIVATIONS)}.")
        self.linear = nn.Linear(in_features, out_features, bias=bias)
        self.activation_function = activation_function

    def __call__(self, x):
        return ACTIVATIONS[self.activation_function](self.linear(x))

    def st_config(self) -> dict:
        out_features, in_features = self.linear.weight.shape
        return {"in_features": in_features, "out_features": out_features,
                "bias": "bias" in self.linear, "activation_function": self.activation_function}


class EmbeddingModel(TaskModel):
    """Sentence embeddings: backbone → pooling → Dense* → (normalize). ``__call__`` → [B, D]."""

    def __init__(self, backbone: nn.Module, pooling: str = "mean", dense: list | None = None,
                 normalize: bool = True):
        super().__init__()
        self.backbone = backbone
        self.dense = list(dense or [])
        self.pooling = pooling
        self.normalize = normalize

    def __call__(self, input_ids, attention_mask):
        x = pool(self.backbone(input_ids, attention_mask), attention_mask, self.pooling)
        for layer in self.dense:
            x = layer(x)
        return normalize(x) if self.normalize else x


class LateInteractionModel(TaskModel):
    """ColBERT-style token vectors: backbone → Dense projection (no bias) → L2 per token.
    ``__call__`` → [B, T, D]; rows at padding positions are not meaningful (mask them)."""

    def __init__(self, backbone: nn.Module, hidden_size: int, dim: int = 128, dense: list | None = None):
        super().__init__()
        self.backbone = backbone
        self.dense = list(dense) if dense else [Dense(hidden_size, dim, bias=False)]
        self.pooling = None
        self.normalize = True

    def __call__(self, input_ids, attention_mask):
        x = self.backbone(input_ids, attention_mask)
        for layer in self.dense:
            x = layer(x)
        return normalize(x)


class HFTaskModel(TaskModel):
    """A task model laid out as an HF task class: the backbone sits under HF's attribute name
    (``bert``, ``model``: the family's ``SPEC.base_prefix``), so weights save and load by HF's names."""

    def __init__(self, backbone_name: str, backbone: nn.Module):
        super().__init__()
        self.backbone_name = backbone_name
        setattr(self, backbone_name, backbone)

    @property
    def backbone(self) -> nn.Module:
        return self[self.backbone_name]


class Classifier(HFTaskModel):
    """HF ``*ForSequenceClassification`` (``pooling`` set: logits [B, C]) and
    ``*ForTokenClassification`` (``pooling=None``: logits [B, T, C]):
    backbone → pooling → optional ``head`` transform → dropout (the HF class's classifier dropout, in
    training only) → output layer ``out_name`` (``classifier``, ``score``).

    ``pooling`` is a `pool` mode, or ``"pooler"`` for the backbone's own pooler (BERT's
    tanh(dense(h[CLS])), whose weights live in the backbone). ``token_types``: the backbone has a
    token-type table (BERT) and reads a pair's ``token_type_ids``; other backbones have none (nor
    does their HF class), so they ignore them.
    """

    def __init__(self, backbone_name: str, backbone: nn.Module, out_name: str, out: nn.Module, *,
                 pooling: str | None = None, head: nn.Module | None = None, dropout: float = 0.0,
                 token_types: bool = False):
        super().__init__(backbone_name, backbone)
        self.token_types = token_types
        if head is not None:
            self.head = head
        self.classifier_dropout = dropout  # a float, not a Dropout child: the top level holds weights only
        self.out_name = out_name
        setattr(self, out_name, out)
        self.classifier_pooling = pooling  # not `pooling`: that attribute marks an embedding model

    def __call__(self, input_ids, attention_mask, token_type_ids=None):
        if self.token_types and token_type_ids is not None:
            x = self.backbone(input_ids, attention_mask, token_type_ids)
        else:
            x = self.backbone(input_ids, attention_mask)
        if self.classifier_pooling == "pooler":
            x = self.backbone.pooler(x)
        elif self.classifier_pooling is not None:
            x = pool(x, attention_mask, self.classifier_pooling)  # (B, H)
        if "head" in self:
            x = self.head(x)
        if self.training:
            x = drop(x, self.classifier_dropout)
        return self[self.out_name](x)
