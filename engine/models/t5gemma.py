"""T5Gemma (`t5gemma`) — matches transformers.models.t5gemma.modeling_t5gemma (checked against transformers 5.24).

Only the encoder of the encoder-decoder checkpoint is built: HF's ``T5GemmaEncoderModel`` (weights
``encoder.*``) and its ``T5GemmaFor{Sequence,Token}Classification(is_encoder_decoder=False)`` heads
(``model.encoder.*`` + ``score.out_proj``). Decoder and LM-head weights are skipped on load. The
saved config keeps ``encoder``/``decoder`` as they were and sets ``is_encoder_decoder: false``: that
is what ``T5GemmaEncoderModel``, the classification auto classes and sentence-transformers load.
``AutoModel`` maps t5gemma to the encoder-decoder ``T5GemmaModel`` and refuses such a folder; use
``T5GemmaEncoderModel`` (or ``AutoModelForTextEncoding``).
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import mlx.core as mx
import mlx.nn as nn

from engine.models.activations import silu
from engine.models.attention import attention, make_mask
from engine.errors import ModelError
from engine.models.base import run_layer
from engine.models.dropout import Dropout, override
from engine.models.heads import Classifier
from engine.models.spec import FamilySpec
from engine.tasks import EMBEDDING_TASKS

SPEC = FamilySpec(
    model_type="t5gemma", name="T5Gemma", base_prefix="model",
    architectures={"base": "T5GemmaEncoderModel", "text-classification": "T5GemmaForSequenceClassification",
                   "token-classification": "T5GemmaForTokenClassification"},
    presets={"batch_size": 8, "learning_rate": 3e-5, "max_length": 512},
    default_pooling="mean",
    # The decoder and its LM head (encoder-decoder checkpoints) and other tasks' heads: skipped on load.
    ignored_keys=("decoder.", "lm_head.", "score."),
    embedding_weights=("encoder.embed_tokens.",),
    # AutoModel maps t5gemma to the encoder-decoder T5GemmaModel, which refuses the bare encoder's folder.
    auto_classes=dict.fromkeys(EMBEDDING_TASKS, "AutoModelForTextEncoding"),
    lora_targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
)
# Top-level T5GemmaConfig keys (HF defaults 0): T5GemmaConfig copies the first two into its encoder and
# decoder, whatever those say, so they are read from the top level only (never lifted, see configure).
DROPOUT_KEYS = ("dropout_rate", "attention_dropout", "classifier_dropout_rate")
ACTIVATIONS = {"gelu_pytorch_tanh": nn.gelu_approx, "gelu_new": nn.gelu_approx, "gelu": nn.gelu,
               "silu": silu, "relu": nn.relu}


@dataclass
class ModelArgs:
    vocab_size: int = 256000
    hidden_size: int = 2304
    intermediate_size: int = 9216
    num_hidden_layers: int = 26
    num_attention_heads: int = 8
    num_key_value_heads: int = 4
    head_dim: int = 256
    hidden_activation: str = "gelu_pytorch_tanh"
    max_position_embeddings: int = 8192
    rms_norm_eps: float = 1e-6
    rope_parameters: dict | None = None
    rope_theta: float = 10000.0  # older configs keep it outside rope_parameters
    attention_bias: bool = False
    query_pre_attn_scalar: float = 256
    sliding_window: int | None = 4096
    layer_types: list | None = None
    attn_logit_softcapping: float | None = 50.0
    initializer_range: float = 0.02
    dropout_rate: float = 0.0
    attention_dropout: float = 0.0
    classifier_dropout_rate: float = 0.0

    def __post_init__(self):
        if self.layer_types is None:  # HF's default: sliding, full, sliding, ...
            self.layer_types = ["sliding_attention" if (i + 1) % 2 else "full_attention"
                                for i in range(self.num_hidden_layers)]
        rope = self.rope_parameters or {}
        if rope.get("rope_type", "default") != "default":
            raise ValueError(f"rope_type {rope['rope_type']!r} is not supported (only 'default').")
        self.rope_theta = rope.get("rope_theta", self.rope_theta)

    @classmethod
    def from_config(cls, config: dict) -> "ModelArgs":
        args = cls(**{f.name: config[f.name] for f in fields(cls) if config.get(f.name) is not None})
        if args.hidden_activation not in ACTIVATIONS:
            raise ValueError(f"hidden_activation {args.hidden_activation!r} is not supported "
                             f"({', '.join(ACTIVATIONS)}).")
        return args


class RMSNorm(nn.Module):
    """Gemma's RMSNorm: x / rms(x) · (1 + w), weights stored zero-centred."""

    def __init__(self, dims: int, eps: float):
        super().__init__()
        self.weight = mx.zeros((dims,))
        self.eps = eps

    def __call__(self, x):
        return mx.fast.rms_norm(x, 1.0 + self.weight, self.eps)


class SelfAttention(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = args.num_attention_heads, args.num_key_value_heads, args.head_dim
        self.scale = args.query_pre_attn_scalar ** -0.5
        self.softcap = args.attn_logit_softcapping
        self.rope_theta = args.rope_theta
        H, bias = args.hidden_size, args.attention_bias
        self.q_proj = nn.Linear(H, self.n_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(H, self.n_kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(H, self.n_kv_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, H, bias=bias)
        self.attention_dropout = args.attention_dropout

    def __call__(self, x, mask):
        B, T, _ = x.shape
        heads = lambda t, n: t.reshape(B, T, n, -1).transpose(0, 2, 1, 3)  # (B, n, T, hd)
        q, k = heads(self.q_proj(x), self.n_heads), heads(self.k_proj(x), self.n_kv_heads)
        v = heads(self.v_proj(x), self.n_kv_heads)
        # HF rotates positions 0..T-1 whatever the padding; RoPE is relative, so real tokens agree.
        q = mx.fast.rope(q, self.head_dim, traditional=False, base=self.rope_theta, scale=1.0, offset=0)
        k = mx.fast.rope(k, self.head_dim, traditional=False, base=self.rope_theta, scale=1.0, offset=0)
        return self.o_proj(attention(q, k, v, mask, scale=self.scale, softcap=self.softcap,
                                     dropout=self.attention_dropout if self.training else 0.0))


class MLP(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.gate_proj = nn.Linear(args.hidden_size, args.intermediate_size, bias=False)
        self.up_proj = nn.Linear(args.hidden_size, args.intermediate_size, bias=False)
        self.down_proj = nn.Linear(args.intermediate_size, args.hidden_size, bias=False)
        self.act = ACTIVATIONS[args.hidden_activation]
        self.dropout = Dropout(args.dropout_rate)

    def __call__(self, x):
        return self.down_proj(self.dropout(self.act(self.gate_proj(x)) * self.up_proj(x)))


class EncoderLayer(nn.Module):
    """HF's T5GemmaEncoderLayer: pre- and post-norm around attention and around the MLP, dropout
    before each residual sum."""

    def __init__(self, args: ModelArgs, layer_type: str):
        super().__init__()
        self.is_sliding = layer_type == "sliding_attention"
        self.self_attn = SelfAttention(args)
        self.mlp = MLP(args)
        eps = args.rms_norm_eps
        self.pre_self_attn_layernorm = RMSNorm(args.hidden_size, eps)
        self.post_self_attn_layernorm = RMSNorm(args.hidden_size, eps)
        self.pre_feedforward_layernorm = RMSNorm(args.hidden_size, eps)
        self.post_feedforward_layernorm = RMSNorm(args.hidden_size, eps)
        self.dropout = Dropout(args.dropout_rate)

    def __call__(self, x, mask):
        x = x + self.dropout(self.post_self_attn_layernorm(self.self_attn(self.pre_self_attn_layernorm(x), mask)))
        return x + self.dropout(self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(x))))


class Encoder(nn.Module):
    """HF's T5GemmaEncoder."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.embed_tokens = nn.Embedding(args.vocab_size, args.hidden_size)
        self.layers = [EncoderLayer(args, t) for t in args.layer_types[:args.num_hidden_layers]]
        self.norm = RMSNorm(args.hidden_size, args.rms_norm_eps)
        self.dropout = Dropout(args.dropout_rate)  # after the embeddings and after the final norm


class Model(nn.Module):
    """HF ``T5GemmaEncoderModel``: returns the encoder's last hidden state [B, T, H]."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.encoder = Encoder(args)
        self.sliding_window = args.sliding_window
        self.grad_checkpoint = False

    @property
    def layers(self):
        return self.encoder.layers

    def __call__(self, input_ids, attention_mask):
        x = self.encoder.embed_tokens(input_ids)
        x = x * mx.array(x.shape[-1] ** 0.5, dtype=x.dtype)  # HF rounds the normaliser to the dtype
        x = self.encoder.dropout(x)
        full = make_mask(attention_mask)
        # HF's bidirectional sliding mask: keys with |i - j| <= sliding_window.
        local = (make_mask(attention_mask, window=self.sliding_window, symmetric_window=True)
                 if any(layer.is_sliding for layer in self.layers) else None)
        for layer in self.encoder.layers:
            x = run_layer(layer, self.grad_checkpoint, x, local if layer.is_sliding else full)
        return self.encoder.dropout(self.encoder.norm(x))


class ClassificationHead(nn.Module):
    """HF's T5GemmaClassificationHead: out_proj(dropout(x)), dropout ``classifier_dropout_rate``."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float):
        super().__init__()
        self.dropout = Dropout(dropout)
        self.out_proj = nn.Linear(hidden_size, num_labels)

    def __call__(self, x):
        return self.out_proj(self.dropout(x))


def sequence_classifier(args: ModelArgs, num_labels: int) -> Classifier:
    """HF ``T5GemmaForSequenceClassification`` scores every token and keeps the last non-pad one (pad
    found by id; here by the mask, the same thing for tokenizer output). Pooling first gives the same
    logits for less work."""
    return Classifier(SPEC.base_prefix, Model(args), "score",
                      ClassificationHead(args.hidden_size, num_labels, args.classifier_dropout_rate),
                      pooling="lasttoken")


def token_classifier(args: ModelArgs, num_labels: int) -> Classifier:
    """HF ``T5GemmaForTokenClassification``: ``score`` on every token."""
    return Classifier(SPEC.base_prefix, Model(args), "score",
                      ClassificationHead(args.hidden_size, num_labels, args.classifier_dropout_rate))


TASK_MODELS = {"text-classification": sequence_classifier, "token-classification": token_classifier}


def task_error(task: str, config: dict) -> str:
    if task == "masked-lm":
        return ("T5Gemma's encoder has no masked-LM head (its only LM head belongs to the decoder), so "
                "masked-lm is not available for t5gemma. Pick an encoder with an MLM head (BERT, "
                "ModernBERT), or use t5gemma for embeddings or classification.")
    return f"t5gemma models do not support the {task} task."


def configure(config: dict, bidirectional: bool | None = None, dropout: float | None = None,
              **overrides) -> dict:
    """Lift the encoder sub-config's architecture keys to the top level (ModelArgs reads them there)
    and mark the model encoder-only. ``encoder``/``decoder`` stay as they were, so the saved
    config.json is still a T5GemmaConfig transformers reads; the lifted keys are ignored by it. The
    dropout keys are top-level T5GemmaConfig keys (transformers reads them there): never lifted; the
    dropout override sets them."""
    if bidirectional is False:
        raise ModelError("The T5Gemma encoder is bidirectional; it has no causal mode (bidirectional=False).")
    encoder = config.get("encoder")
    if not isinstance(encoder, dict):
        raise ModelError("This t5gemma config.json has no 'encoder' sub-config; it is not a T5Gemma checkpoint.")
    lifted = {f.name: encoder[f.name] for f in fields(ModelArgs)
              if f.name in encoder and f.name not in DROPOUT_KEYS}
    return override(dict(config, **lifted, is_encoder_decoder=False), DROPOUT_KEYS, dropout)


def sanitize(weights: dict) -> dict:
    """HF names are this file's names (``encoder.*`` or ``model.encoder.*``); nothing to rename.
    Decoder / LM-head keys are left for SPEC.ignored_keys to skip."""
    return weights


def to_hf(weights: dict, config: dict) -> dict:
    """This file's names are HF's."""
    return weights
