"""Qwen3 (`qwen3`) — matches transformers.models.qwen3.modeling_qwen3 (checked against transformers 5.24)."""
from __future__ import annotations

from dataclasses import dataclass, fields

import mlx.core as mx
import mlx.nn as nn

from engine.models.activations import silu
from engine.models.attention import attention, make_mask
from engine.errors import ModelError
from engine.models.base import run_layer
from engine.models.dropout import override
from engine.models.heads import Classifier
from engine.models.spec import FamilySpec, Recommended

SPEC = FamilySpec(
    model_type="qwen3", name="Qwen3", base_prefix="model",
    architectures={"base": "Qwen3Model", "text-classification": "Qwen3ForSequenceClassification",
                   "token-classification": "Qwen3ForTokenClassification"},
    presets={"batch_size": 8, "learning_rate": 2e-5, "max_length": 512},
    default_pooling="lasttoken",  # as Qwen3-Embedding's sentence-transformers config (then normalised)
    padding_side="left",          # Qwen3-Embedding's tokenizer pads on the left
    # Checkpoint keys of other heads (a causal-LM head, another task's classifier): skipped on load.
    ignored_keys=("lm_head.", "score."),
    embedding_weights=("embed_tokens.",),
    lora_targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    recommended=(
        Recommended("Qwen/Qwen3-Embedding-0.6B", 595_776_512, "multilingual retrieval, strong but slow to train"),
    ),
)
# Attention-probability dropout (HF default 0) and the token classifier's (GenericForTokenClassification).
DROPOUT_KEYS = ("attention_dropout", "classifier_dropout")
ACTIVATIONS = {"silu": silu, "swish": silu, "gelu": nn.gelu, "gelu_pytorch_tanh": nn.gelu_approx}
ROPE_TYPES = ("default", "linear")


@dataclass
class ModelArgs:
    vocab_size: int = 151936
    hidden_size: int = 4096
    intermediate_size: int = 22016
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int | None = None
    head_dim: int = 128  # HF's Qwen3Config default (not hidden_size // heads)
    hidden_act: str = "silu"
    max_position_embeddings: int = 32768
    rms_norm_eps: float = 1e-6
    rope_parameters: dict | None = None  # transformers 5 layout: {"rope_type", "rope_theta", ...}
    rope_theta: float = 10000.0          # older configs keep the base (and rope_scaling) at top level
    rope_scaling: dict | None = None
    attention_bias: bool = False
    use_sliding_window: bool = False
    sliding_window: int | None = 4096
    max_window_layers: int = 28
    layer_types: list | None = None
    tie_word_embeddings: bool = False
    pad_token_id: int | None = None
    initializer_range: float = 0.02
    token_classification_bias: bool = True
    attention_dropout: float = 0.0
    classifier_dropout: float | None = None

    def __post_init__(self):
        if self.classifier_dropout is None:  # GenericForTokenClassification's default
            self.classifier_dropout = 0.1
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if not self.use_sliding_window:  # HF's Qwen3Config drops the window unless it is switched on
            self.sliding_window = None
        if self.layer_types is None:
            self.layer_types = ["sliding_attention" if self.sliding_window is not None and i >= self.max_window_layers
                                else "full_attention" for i in range(self.num_hidden_layers)]
        rope = self.rope_parameters or self.rope_scaling or {}
        self.rope_type = rope.get("rope_type", rope.get("type", "default"))
        self.rope_base = float(rope.get("rope_theta", self.rope_theta))
        # mx.fast.rope scales positions; HF's "linear" divides the inverse frequencies by the factor.
        self.rope_scale = 1.0 / float(rope.get("factor", 1.0)) if self.rope_type == "linear" else 1.0

    @classmethod
    def from_config(cls, config: dict) -> "ModelArgs":
        args = cls(**{f.name: config[f.name] for f in fields(cls) if config.get(f.name) is not None})
        if args.hidden_act not in ACTIVATIONS:
            raise ModelError(f"hidden_act {args.hidden_act!r} is not supported ({', '.join(ACTIVATIONS)}).")
        if args.rope_type not in ROPE_TYPES:
            raise ModelError(f"RoPE type {args.rope_type!r} is not supported (supported: {', '.join(ROPE_TYPES)}).")
        return args


class Attention(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = args.num_attention_heads, args.num_key_value_heads, args.head_dim
        bias = args.attention_bias
        self.q_proj = nn.Linear(args.hidden_size, self.n_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(args.hidden_size, self.n_kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(args.hidden_size, self.n_kv_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, args.hidden_size, bias=bias)
        # RMSNorm over each head's vector (nn.RMSNorm is mx.fast.rms_norm with a `weight`).
        self.q_norm = nn.RMSNorm(self.head_dim, eps=args.rms_norm_eps)
        self.k_norm = nn.RMSNorm(self.head_dim, eps=args.rms_norm_eps)
        self.rope_base, self.rope_scale = args.rope_base, args.rope_scale
        self.attention_dropout = args.attention_dropout

    def rope(self, x):
        # HF's rotate_half layout is traditional=False; positions 0..T-1 for every row, as HF's
        # default position_ids (left padding only shifts them, and RoPE scores are relative).
        return mx.fast.rope(x, self.head_dim, traditional=False, base=self.rope_base, scale=self.rope_scale, offset=0)

    def __call__(self, x, mask):
        B, T, _ = x.shape
        q = self.q_norm(self.q_proj(x).reshape(B, T, self.n_heads, -1)).transpose(0, 2, 1, 3)  # (B, nh, T, hd)
        k = self.k_norm(self.k_proj(x).reshape(B, T, self.n_kv_heads, -1)).transpose(0, 2, 1, 3)  # (B, nkv, T, hd)
        v = self.v_proj(x).reshape(B, T, self.n_kv_heads, -1).transpose(0, 2, 1, 3)
        return self.o_proj(attention(self.rope(q), self.rope(k), v, mask, scale=self.head_dim ** -0.5,
                                     dropout=self.attention_dropout if self.training else 0.0))


class MLP(nn.Module):
    """SwiGLU: down(act(gate(x)) * up(x))."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.gate_proj = nn.Linear(args.hidden_size, args.intermediate_size, bias=False)
        self.up_proj = nn.Linear(args.hidden_size, args.intermediate_size, bias=False)
        self.down_proj = nn.Linear(args.intermediate_size, args.hidden_size, bias=False)
        self.act = ACTIVATIONS[args.hidden_act]

    def __call__(self, x):
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, args: ModelArgs, layer_type: str):
        super().__init__()
        self.self_attn = Attention(args)
        self.mlp = MLP(args)
        self.input_layernorm = nn.RMSNorm(args.hidden_size, eps=args.rms_norm_eps)
        self.post_attention_layernorm = nn.RMSNorm(args.hidden_size, eps=args.rms_norm_eps)
        self.sliding = layer_type == "sliding_attention" and args.sliding_window is not None

    def __call__(self, x, mask):
        x = x + self.self_attn(self.input_layernorm(x), mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class Model(nn.Module):
    """HF ``Qwen3Model``: the last hidden state [B, T, H], after the final norm."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.embed_tokens = nn.Embedding(args.vocab_size, args.hidden_size)
        self.layers = [DecoderLayer(args, args.layer_types[i]) for i in range(args.num_hidden_layers)]
        self.norm = nn.RMSNorm(args.hidden_size, eps=args.rms_norm_eps)
        self.sliding_window = args.sliding_window
        self.grad_checkpoint = False

    def __call__(self, input_ids, attention_mask):
        x = self.embed_tokens(input_ids)
        masks = {False: make_mask(attention_mask, causal=True)}
        if any(layer.sliding for layer in self.layers):  # HF band: keys with 0 <= i - j < window
            masks[True] = make_mask(attention_mask, causal=True, window=self.sliding_window)
        for layer in self.layers:
            x = run_layer(layer, self.grad_checkpoint, x, masks[layer.sliding])
        return self.norm(x)


def sequence_classifier(args: ModelArgs, num_labels: int) -> Classifier:
    """HF ``Qwen3ForSequenceClassification``: ``score`` (no bias) on the last real token. HF finds that
    token by ``pad_token_id``; the attention mask is used here (the same unless pad == a real token)."""
    return Classifier(SPEC.base_prefix, Model(args), "score", nn.Linear(args.hidden_size, num_labels, bias=False),
                      pooling="lasttoken")


def token_classifier(args: ModelArgs, num_labels: int) -> Classifier:
    """HF ``Qwen3ForTokenClassification`` (GenericForTokenClassification): dropout, then ``score`` on
    every token."""
    return Classifier(SPEC.base_prefix, Model(args), "score",
                      nn.Linear(args.hidden_size, num_labels, bias=args.token_classification_bias),
                      dropout=args.classifier_dropout)


TASK_MODELS = {"text-classification": sequence_classifier, "token-classification": token_classifier}


def task_error(task: str, config: dict) -> str:
    if task == "masked-lm":
        return ("Qwen3 is a causal (decoder-only) model, so it has no masked-LM task: masked-language "
                "modelling needs bidirectional attention. Pick an encoder (bert, modernbert) or a Gemma3 "
                "checkpoint trained with --bidirectional (use_bidirectional_attention).")
    return f"qwen3 models do not support the {task} task."


def configure(config: dict, bidirectional: bool | None = None, dropout: float | None = None,
              **overrides) -> dict:
    """Qwen3 attention is causal only: refuse a request for bidirectional attention. Apply the dropout
    override."""
    if bidirectional:
        raise ModelError("Qwen3 has no bidirectional attention switch (its attention is always causal). "
                         "Leave bidirectional unset, or use a Gemma3 checkpoint for bidirectional attention.")
    return override(config, DROPOUT_KEYS, dropout)


def sanitize(weights: dict) -> dict:
    """HF names are this file's names; nothing to rename."""
    return weights


def to_hf(weights: dict, config: dict) -> dict:
    return weights
