"""LFM2 (`lfm2`) — matches transformers.models.lfm2.modeling_lfm2 (checked against transformers 5.24).

A causal hybrid: each block is either a gated short convolution or grouped-query attention
(``layer_types``), then a SwiGLU feed-forward. transformers 5.24 has only ``Lfm2Model`` and
``Lfm2ForCausalLM``; the classification heads here follow its generic decoder heads
(``GenericForSequenceClassification``: ``model`` + bias-free ``score`` on the last real token;
``GenericForTokenClassification``: ``model`` + ``score`` with bias). transformers cannot load those
two heads by class (no ``Lfm2For*Classification``); ``Lfm2Model`` loads their backbone.
"""
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
from engine.models.spec import FamilySpec

SPEC = FamilySpec(
    model_type="lfm2", name="LFM2", base_prefix="model",
    architectures={"base": "Lfm2Model", "text-classification": "Lfm2ForSequenceClassification",
                   "token-classification": "Lfm2ForTokenClassification"},
    presets={"batch_size": 8, "learning_rate": 2e-5, "max_length": 512},
    default_pooling="lasttoken",
    # The (usually tied, so absent) LM head and other tasks' heads: skipped on load.
    ignored_keys=("lm_head.", "score."),
    embedding_weights=("embed_tokens.",),  # not embedding_norm: despite its name, the final norm
    # out_proj: the attention's and the short convolution's
    lora_targets=("q_proj", "k_proj", "v_proj", "out_proj", "w1", "w2", "w3"),
    no_transformers_class=("text-classification", "token-classification"),
)
# transformers' LFM2 applies no dropout (its attention passes dropout=0.0); the token classifier follows
# GenericForTokenClassification, whose dropout is ``classifier_dropout`` (default 0.1).
DROPOUT_KEYS = ("classifier_dropout",)


@dataclass
class ModelArgs:
    vocab_size: int = 65536
    hidden_size: int = 2560
    intermediate_size: int = 12288
    block_ff_dim: int | None = None  # older name of intermediate_size; wins when present (as in HF)
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int = 8
    head_dim: int | None = None
    max_position_embeddings: int = 128000
    norm_eps: float = 1e-5
    rope_parameters: dict | None = None
    rope_theta: float = 1000000.0  # older configs keep it outside rope_parameters
    conv_bias: bool = False
    conv_L_cache: int = 3
    block_multiple_of: int = 256
    block_ffn_dim_multiplier: float | None = 1.0
    block_auto_adjust_ff_dim: bool = True
    full_attn_idxs: list | None = None
    layer_types: list | None = None
    initializer_range: float = 0.02
    classifier_dropout: float | None = None

    def __post_init__(self):
        if self.classifier_dropout is None:  # GenericForTokenClassification's default
            self.classifier_dropout = 0.1
        if self.block_ff_dim is not None:
            self.intermediate_size = self.block_ff_dim
        if self.layer_types is None:
            attn = self.full_attn_idxs if self.full_attn_idxs is not None else range(self.num_hidden_layers)
            self.layer_types = ["full_attention" if i in attn else "conv" for i in range(self.num_hidden_layers)]
        self.head_dim = self.head_dim or self.hidden_size // self.num_attention_heads
        rope = self.rope_parameters or {}
        if rope.get("rope_type", "default") != "default":
            raise ValueError(f"rope_type {rope['rope_type']!r} is not supported (only 'default').")
        self.rope_theta = rope.get("rope_theta", self.rope_theta)

    @property
    def ff_dim(self) -> int:
        """HF's Lfm2MLP width: 2/3 of intermediate_size, scaled, rounded up to block_multiple_of."""
        dim = self.intermediate_size
        if self.block_auto_adjust_ff_dim:
            dim = int(2 * dim / 3)
            if self.block_ffn_dim_multiplier is not None:
                dim = int(self.block_ffn_dim_multiplier * dim)
                dim = self.block_multiple_of * ((dim + self.block_multiple_of - 1) // self.block_multiple_of)
        return dim

    @classmethod
    def from_config(cls, config: dict) -> "ModelArgs":
        return cls(**{f.name: config[f.name] for f in fields(cls) if config.get(f.name) is not None})


class Attention(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = args.num_attention_heads, args.num_key_value_heads, args.head_dim
        self.rope_theta = args.rope_theta
        H = args.hidden_size
        self.q_proj = nn.Linear(H, self.n_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(H, self.n_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(H, self.n_kv_heads * self.head_dim, bias=False)
        self.out_proj = nn.Linear(self.n_heads * self.head_dim, H, bias=False)
        self.q_layernorm = nn.RMSNorm(self.head_dim, eps=args.norm_eps)
        self.k_layernorm = nn.RMSNorm(self.head_dim, eps=args.norm_eps)

    def __call__(self, x, attention_mask, mask):
        B, T, _ = x.shape
        heads = lambda t, n: t.reshape(B, T, n, -1).transpose(0, 2, 1, 3)  # (B, n, T, hd)
        q = self.q_layernorm(heads(self.q_proj(x), self.n_heads))  # per-head RMSNorm over hd
        k = self.k_layernorm(heads(self.k_proj(x), self.n_kv_heads))
        v = heads(self.v_proj(x), self.n_kv_heads)
        # HF rotates positions 0..T-1 whatever the padding; RoPE is relative, so real tokens agree.
        q = mx.fast.rope(q, self.head_dim, traditional=False, base=self.rope_theta, scale=1.0, offset=0)
        k = mx.fast.rope(k, self.head_dim, traditional=False, base=self.rope_theta, scale=1.0, offset=0)
        return self.out_proj(attention(q, k, v, mask, scale=self.head_dim ** -0.5))


class ShortConv(nn.Module):
    """in_proj → (B, C, x); y = C · causal_depthwise_conv(B · x); out_proj(y).

    Padded positions of B · x are zeroed before the convolution so left padding cannot reach real
    tokens. HF zeroes the block input instead; that is the same unless ``conv_bias`` (in_proj's bias
    then survives at padded positions and HF leaks it into the first real tokens).
    """

    def __init__(self, args: ModelArgs):
        super().__init__()
        H, K = args.hidden_size, args.conv_L_cache
        # MLX depthwise weight is [C, K, 1]; HF's torch weight is [C, 1, K] (sanitize / to_hf).
        self.conv = nn.Conv1d(H, H, K, groups=H, bias=args.conv_bias)
        self.in_proj = nn.Linear(H, 3 * H, bias=args.conv_bias)
        self.out_proj = nn.Linear(H, H, bias=args.conv_bias)
        self.kernel_size = K

    def __call__(self, x, attention_mask, mask):
        b, c, h = mx.split(self.in_proj(x), 3, axis=-1)  # each (B, T, H)
        bx = b * h * attention_mask[..., None].astype(h.dtype)
        bx = mx.pad(bx, [(0, 0), (self.kernel_size - 1, 0), (0, 0)])  # causal: only past inputs
        return self.out_proj(c * self.conv(bx))


class MLP(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.w1 = nn.Linear(args.hidden_size, args.ff_dim, bias=False)
        self.w3 = nn.Linear(args.hidden_size, args.ff_dim, bias=False)
        self.w2 = nn.Linear(args.ff_dim, args.hidden_size, bias=False)

    def __call__(self, x):
        return self.w2(silu(self.w1(x)) * self.w3(x))


class DecoderLayer(nn.Module):
    def __init__(self, args: ModelArgs, layer_type: str):
        super().__init__()
        self.is_attention_layer = layer_type != "conv"
        if self.is_attention_layer:
            self.self_attn = Attention(args)
        else:
            self.conv = ShortConv(args)
        self.feed_forward = MLP(args)
        self.operator_norm = nn.RMSNorm(args.hidden_size, eps=args.norm_eps)
        self.ffn_norm = nn.RMSNorm(args.hidden_size, eps=args.norm_eps)

    def __call__(self, x, attention_mask, mask):
        op = self.self_attn if self.is_attention_layer else self.conv
        x = x + op(self.operator_norm(x), attention_mask, mask)
        return x + self.feed_forward(self.ffn_norm(x))


class Model(nn.Module):
    """HF ``Lfm2Model``: returns the last hidden state [B, T, H] (after ``embedding_norm``, which
    despite its name is the final norm)."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.embed_tokens = nn.Embedding(args.vocab_size, args.hidden_size)
        self.layers = [DecoderLayer(args, t) for t in args.layer_types[:args.num_hidden_layers]]
        self.embedding_norm = nn.RMSNorm(args.hidden_size, eps=args.norm_eps)
        self.grad_checkpoint = False

    def __call__(self, input_ids, attention_mask):
        x = self.embed_tokens(input_ids)
        mask = make_mask(attention_mask, causal=True)
        for layer in self.layers:
            x = run_layer(layer, self.grad_checkpoint, x, attention_mask, mask)
        return self.embedding_norm(x)


def sequence_classifier(args: ModelArgs, num_labels: int) -> Classifier:
    """``score`` (no bias) on the last real token, as transformers' generic decoder classifiers."""
    return Classifier(SPEC.base_prefix, Model(args), "score", nn.Linear(args.hidden_size, num_labels, bias=False),
                      pooling="lasttoken")


def token_classifier(args: ModelArgs, num_labels: int) -> Classifier:
    """Dropout, then ``score`` (with bias) on every token, as transformers' GenericForTokenClassification.
    Causal: a token's label sees only the tokens before it."""
    return Classifier(SPEC.base_prefix, Model(args), "score", nn.Linear(args.hidden_size, num_labels),
                      dropout=args.classifier_dropout)


TASK_MODELS = {"text-classification": sequence_classifier, "token-classification": token_classifier}


def task_error(task: str, config: dict) -> str:
    if task == "masked-lm":
        return ("LFM2 is a causal (left-to-right) model and has no masked-LM head, so masked-lm is not "
                "available for lfm2. Pick an encoder for masked-lm (BERT, ModernBERT).")
    return f"lfm2 models do not support the {task} task."


def configure(config: dict, bidirectional: bool | None = None, dropout: float | None = None,
              **overrides) -> dict:
    """LFM2 is causal only: its short convolutions look at past tokens by construction. Then the
    dropout override (the token classifier's: the backbone has none)."""
    if bidirectional:
        raise ModelError("LFM2 is causal only (its short convolutions see past tokens); it has no "
                         "bidirectional mode. Pick an encoder for bidirectional attention.")
    return override(config, DROPOUT_KEYS, dropout)


def sanitize(weights: dict) -> dict:
    """torch depthwise conv weights [C, 1, K] → MLX [C, K, 1] (already-MLX ones are kept)."""
    return {k: v.swapaxes(1, 2) if k.endswith("conv.conv.weight") and v.shape[1] == 1 and v.shape[2] != 1
            else v for k, v in weights.items()}


def to_hf(weights: dict, config: dict) -> dict:
    """MLX conv weights [C, K, 1] → torch [C, 1, K]."""
    return {k: v.swapaxes(1, 2) if k.endswith("conv.conv.weight") else v for k, v in weights.items()}
