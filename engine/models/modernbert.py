"""ModernBERT (`modernbert`) — matches transformers.models.modernbert.modeling_modernbert (checked against transformers 5.24)."""
from __future__ import annotations

from dataclasses import dataclass, fields

import mlx.core as mx
import mlx.nn as nn

from engine.models.activations import gelu, silu
from engine.models.attention import attention, make_mask
from engine.models.base import run_layer
from engine.models.dropout import Dropout, override
from engine.models.heads import Classifier, HFTaskModel
from engine.models.spec import FamilySpec, Recommended

SPEC = FamilySpec(
    model_type="modernbert", name="ModernBERT", base_prefix="model",
    architectures={"base": "ModernBertModel", "text-classification": "ModernBertForSequenceClassification",
                   "token-classification": "ModernBertForTokenClassification", "masked-lm": "ModernBertForMaskedLM"},
    presets={"batch_size": 16, "learning_rate": 8e-5, "max_length": 512},
    default_pooling="mean",
    # Checkpoint keys of other tasks' heads: skipped on load. A tied MLM checkpoint that still stores
    # `decoder.weight` has it skipped here too (the tied model has no such parameter).
    ignored_keys=("head.", "decoder.", "classifier."),
    embedding_weights=("embeddings.",),
    lora_targets=("Wqkv", "Wo", "Wi"),  # Wo: the attention's and the MLP's
    recommended=(
        Recommended("answerdotai/ModernBERT-base", 149_000_000, "long inputs (8k tokens), classification, tagging"),
        Recommended("Alibaba-NLP/gte-modernbert-base", 149_000_000, "English retrieval over long documents"),
    ),
)
DROPOUT_KEYS = ("embedding_dropout", "attention_dropout", "mlp_dropout", "classifier_dropout")  # HF defaults: 0
# "gelu" is exact GELU with an arithmetic-only erf: mx.erf runs per element on the CPU backend.
ACTIVATIONS = {"gelu": gelu, "gelu_new": nn.gelu_approx, "gelu_pytorch_tanh": nn.gelu_approx,
               "relu": nn.relu, "silu": silu, "swish": silu}
LAYER_TYPES = ("full_attention", "sliding_attention")


@dataclass
class ModelArgs:
    vocab_size: int = 50368
    hidden_size: int = 768
    intermediate_size: int = 1152
    num_hidden_layers: int = 22
    num_attention_heads: int = 12
    hidden_activation: str = "gelu"
    max_position_embeddings: int = 8192
    initializer_range: float = 0.02
    norm_eps: float = 1e-5
    norm_bias: bool = False
    pad_token_id: int = 50283
    attention_bias: bool = False
    layer_types: list | None = None
    rope_parameters: dict | None = None
    global_attn_every_n_layers: int = 3      # pre-5.x configs; layer_types wins when present
    global_rope_theta: float = 160_000.0     # pre-5.x configs; rope_parameters wins when present
    local_rope_theta: float = 10_000.0
    local_attention: int = 128               # the whole band: local_attention // 2 keys each side
    mlp_bias: bool = False
    decoder_bias: bool = True
    classifier_pooling: str = "cls"
    classifier_bias: bool = False
    classifier_activation: str = "gelu"
    tie_word_embeddings: bool = True
    embedding_dropout: float = 0.0
    attention_dropout: float = 0.0  # on the attention probabilities and after Wo
    mlp_dropout: float = 0.0
    classifier_dropout: float = 0.0

    def __post_init__(self):
        if self.layer_types is None:  # HF's rule for the old integer pattern
            self.layer_types = ["sliding_attention" if i % self.global_attn_every_n_layers else "full_attention"
                                for i in range(self.num_hidden_layers)]
        rope = self.rope_parameters or {}
        defaults = {"full_attention": self.global_rope_theta, "sliding_attention": self.local_rope_theta}
        self.rope_theta = {t: (rope.get(t) or {}).get("rope_theta", defaults[t]) for t in LAYER_TYPES}
        unsupported = {(p or {}).get("rope_type", "default") for p in rope.values()} - {"default"}
        if unsupported:
            raise ValueError(f"ModernBERT rope_type {', '.join(sorted(unsupported))} is not supported "
                             "(only 'default').")
        if set(self.layer_types) - set(LAYER_TYPES) or len(self.layer_types) != self.num_hidden_layers:
            raise ValueError(f"layer_types must list {self.num_hidden_layers} entries from "
                             f"{', '.join(LAYER_TYPES)}; got {self.layer_types}.")
        for key in ("hidden_activation", "classifier_activation"):
            if getattr(self, key) not in ACTIVATIONS:
                raise ValueError(f"{key} {getattr(self, key)!r} is not supported ({', '.join(ACTIVATIONS)}).")
        if self.classifier_pooling not in ("cls", "mean"):
            raise ValueError(f"classifier_pooling must be 'cls' or 'mean', got {self.classifier_pooling!r}.")

    @classmethod
    def from_config(cls, config: dict) -> "ModelArgs":
        return cls(**{f.name: config[f.name] for f in fields(cls) if config.get(f.name) is not None})


def layer_norm(args: ModelArgs) -> nn.LayerNorm:
    return nn.LayerNorm(args.hidden_size, eps=args.norm_eps, bias=args.norm_bias)  # mx.fast.layer_norm


class Embeddings(nn.Module):
    """No position embeddings: positions enter through RoPE in every attention layer."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.tok_embeddings = nn.Embedding(args.vocab_size, args.hidden_size)
        self.norm = layer_norm(args)
        self.drop = Dropout(args.embedding_dropout)

    def __call__(self, input_ids):
        return self.drop(self.norm(self.tok_embeddings(input_ids)))


class Attention(nn.Module):
    def __init__(self, args: ModelArgs, layer_type: str):
        super().__init__()
        self.n_heads = args.num_attention_heads
        self.head_dim = args.hidden_size // args.num_attention_heads
        self.rope_theta = args.rope_theta[layer_type]
        self.Wqkv = nn.Linear(args.hidden_size, 3 * args.hidden_size, bias=args.attention_bias)
        self.Wo = nn.Linear(args.hidden_size, args.hidden_size, bias=args.attention_bias)
        self.attention_dropout = args.attention_dropout
        self.out_drop = Dropout(args.attention_dropout)

    def __call__(self, x, mask):
        B, T, _ = x.shape
        # HF's view(B, T, 3, nh, hd): q, k, v are the three thirds of the features. Split so (each then
        # (B, nh, T, hd)): RoPE over slices of one 5-D transpose took 2.5x as long on the CPU (14.2 vs 5.6 ms
        # at 32×64 tokens), the same numbers.
        q, k, v = (t.reshape(B, T, self.n_heads, self.head_dim).transpose(0, 2, 1, 3)
                   for t in mx.split(self.Wqkv(x), 3, axis=-1))
        # HF rotates halves (rotate_half), i.e. the non-traditional layout; positions are 0..T-1.
        rope = lambda t: mx.fast.rope(t, self.head_dim, traditional=False, base=self.rope_theta,
                                      scale=1.0, offset=0)
        out = attention(rope(q), rope(k), v, mask, scale=self.head_dim ** -0.5,
                        dropout=self.attention_dropout if self.training else 0.0)
        return self.out_drop(self.Wo(out))


class MLP(nn.Module):
    """GeGLU: Wi gives [input, gate]; Wo(dropout(act(input) * gate))."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.Wi = nn.Linear(args.hidden_size, 2 * args.intermediate_size, bias=args.mlp_bias)
        self.Wo = nn.Linear(args.intermediate_size, args.hidden_size, bias=args.mlp_bias)
        self.act = ACTIVATIONS[args.hidden_activation]
        self.drop = Dropout(args.mlp_dropout)

    def __call__(self, x):
        x, gate = mx.split(self.Wi(x), 2, axis=-1)
        return self.Wo(self.drop(self.act(x) * gate))


class EncoderLayer(nn.Module):
    def __init__(self, args: ModelArgs, layer_idx: int):
        super().__init__()
        self.attention_type = args.layer_types[layer_idx]
        # Layer 0 has no attn_norm in HF: the embeddings' norm already normalised its input.
        self.attn_norm = layer_norm(args) if layer_idx else nn.Identity()
        self.attn = Attention(args, self.attention_type)
        self.mlp_norm = layer_norm(args)
        self.mlp = MLP(args)

    def __call__(self, x, mask):
        x = x + self.attn(self.attn_norm(x), mask)
        return x + self.mlp(self.mlp_norm(x))


class Model(nn.Module):
    """HF ``ModernBertModel``: returns the last hidden state [B, T, H] (after final_norm)."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.embeddings = Embeddings(args)
        self.layers = [EncoderLayer(args, i) for i in range(args.num_hidden_layers)]
        self.final_norm = layer_norm(args)
        self.half_window = args.local_attention // 2
        self.grad_checkpoint = False

    def __call__(self, input_ids, attention_mask):
        x = self.embeddings(input_ids)
        # HF's bidirectional sliding mask allows |i - j| <= local_attention // 2 (inclusive).
        masks = {"full_attention": make_mask(attention_mask),
                 "sliding_attention": make_mask(attention_mask, window=self.half_window, symmetric_window=True)}
        for layer in self.layers:
            x = run_layer(layer, self.grad_checkpoint, x, masks[layer.attention_type])
        return self.final_norm(x)


class PredictionHead(nn.Module):
    """HF ``ModernBertPredictionHead``: norm(act(dense(x))), shared by every task head."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.dense = nn.Linear(args.hidden_size, args.hidden_size, bias=args.classifier_bias)
        self.act = ACTIVATIONS[args.classifier_activation]
        self.norm = layer_norm(args)

    def __call__(self, x):
        return self.norm(self.act(self.dense(x)))


def sequence_classifier(args: ModelArgs, num_labels: int) -> Classifier:
    """HF ``ModernBertForSequenceClassification``: pools (``classifier_pooling``: first token or
    masked mean), then ``head``, dropout, then ``classifier``."""
    return Classifier(SPEC.base_prefix, Model(args), "classifier", nn.Linear(args.hidden_size, num_labels),
                      pooling=args.classifier_pooling, head=PredictionHead(args), dropout=args.classifier_dropout)


def token_classifier(args: ModelArgs, num_labels: int) -> Classifier:
    """HF ``ModernBertForTokenClassification``: ``head``, dropout, then ``classifier`` on every token."""
    return Classifier(SPEC.base_prefix, Model(args), "classifier", nn.Linear(args.hidden_size, num_labels),
                      head=PredictionHead(args), dropout=args.classifier_dropout)


class Decoder(nn.Module):
    """HF's ``decoder`` Linear. Tied to tok_embeddings (HF's default), so only its bias is a weight;
    an untied checkpoint (``tie_word_embeddings: false``) keeps its own ``weight``."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        if not args.tie_word_embeddings:
            self.weight = mx.zeros((args.vocab_size, args.hidden_size))
        if args.decoder_bias:
            self.bias = mx.zeros((args.vocab_size,))

    def __call__(self, x, embeddings: nn.Embedding):
        x = x @ self.weight.T if "weight" in self else embeddings.as_linear(x)
        return x + self.bias if "bias" in self else x


class ForMaskedLM(HFTaskModel):
    """HF ``ModernBertForMaskedLM``: ``head`` then ``decoder`` on every token."""

    def __init__(self, args: ModelArgs, num_labels: int = 0):
        super().__init__(SPEC.base_prefix, Model(args))
        self.head = PredictionHead(args)
        self.decoder = Decoder(args)

    def __call__(self, input_ids, attention_mask):
        x = self.head(self.model(input_ids, attention_mask))
        return self.decoder(x, self.model.embeddings.tok_embeddings)


TASK_MODELS = {"text-classification": sequence_classifier, "token-classification": token_classifier,
               "masked-lm": ForMaskedLM}


def configure(config: dict, dropout: float | None = None, **overrides) -> dict:
    """Family-specific config adjustments before ModelArgs are built: only the dropout override."""
    return override(config, DROPOUT_KEYS, dropout)


def sanitize(weights: dict) -> dict:
    """HF checkpoint names → this file's names. Names are identical; the decoder weight tied to the
    embeddings is left to SPEC.ignored_keys (skipped when tied, loaded when the config unties it)."""
    return weights


def to_hf(weights: dict, config: dict) -> dict:
    """This file's names → HF names (identical). Like HF's own save, a tied ``decoder.weight`` is
    not written: transformers re-ties it from ``_tied_weights_keys`` on load."""
    return weights
