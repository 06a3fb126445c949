"""Gemma3 text (`gemma3_text`; EmbeddingGemma) — matches transformers.models.gemma3.modeling_gemma3
(Gemma3TextModel and its heads; checked against transformers 5.24)."""
from __future__ import annotations

from dataclasses import dataclass, fields

import mlx.core as mx
import mlx.nn as nn

from engine.models.activations import silu
from engine.models.attention import attention, make_mask
from engine.errors import ModelError
from engine.models.base import run_layer
from engine.models.dropout import override
from engine.models.heads import Classifier, HFTaskModel
from engine.models.spec import FamilySpec, Recommended

SPEC = FamilySpec(
    model_type="gemma3_text", name="Gemma 3", base_prefix="model",
    aliases=("gemma3", "embeddinggemma"),  # a multimodal gemma3 config loads its text tower (configure)
    # transformers 5.24 has no Gemma3 token-classification or masked-LM class. Token classification is
    # laid out as GenericForTokenClassification (model.* + score.*) under the name below, which
    # transformers cannot load, so runs of it are refused (no_transformers_class); the masked-LM head
    # is Gemma3ForCausalLM's tied lm_head, saved as Gemma3ForCausalLM with use_bidirectional_attention
    # so AutoModelForCausalLM reloads it with the same attention.
    architectures={"base": "Gemma3TextModel", "text-classification": "Gemma3TextForSequenceClassification",
                   "token-classification": "Gemma3TextForTokenClassification", "masked-lm": "Gemma3ForCausalLM"},
    presets={"batch_size": 8, "learning_rate": 2e-5, "max_length": 512},
    default_pooling="mean",  # EmbeddingGemma's sentence-transformers pooling
    ignored_keys=("lm_head.", "score."),
    embedding_weights=("embed_tokens.",),
    lora_targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    no_transformers_class=("token-classification",),
    auto_classes={"masked-lm": "AutoModelForCausalLM"},
    supports_bidirectional=True,
    recommended=(
        Recommended("google/embeddinggemma-300m", 308_000_000, "multilingual embeddings, small enough for a laptop"),
    ),
)
# Attention-probability dropout (HF default 0) and the token classifier's (GenericForTokenClassification).
DROPOUT_KEYS = ("attention_dropout", "classifier_dropout")
ACTIVATIONS = {"gelu_pytorch_tanh": nn.gelu_approx, "gelu": nn.gelu, "silu": silu}
ROPE_TYPES = ("default", "linear")
BIDIRECTIONAL_KEYS = ("use_bidirectional_attention", "use_bidirectional_attn")  # 5.24 reads the first


@dataclass
class ModelArgs:
    vocab_size: int = 262208
    hidden_size: int = 2304
    intermediate_size: int = 9216
    num_hidden_layers: int = 26
    num_attention_heads: int = 8
    num_key_value_heads: int = 4
    head_dim: int = 256
    hidden_activation: str = "gelu_pytorch_tanh"
    max_position_embeddings: int = 131072
    rms_norm_eps: float = 1e-6
    pad_token_id: int | None = 0
    tie_word_embeddings: bool = True
    rope_parameters: dict | None = None  # transformers 5: {"full_attention": {...}, "sliding_attention": {...}}
    rope_theta: float = 1_000_000.0      # older configs: global base, local base, scaling of global layers
    rope_local_base_freq: float = 10_000.0
    rope_scaling: dict | None = None
    attention_bias: bool = False
    query_pre_attn_scalar: float = 256
    sliding_window: int | None = 4096
    sliding_window_pattern: int = 6      # older configs: every n-th layer is global
    layer_types: list | None = None
    final_logit_softcapping: float | None = None
    attn_logit_softcapping: float | None = None  # stored but unused by HF's Gemma3 attention (5.24)
    use_bidirectional_attention: bool = False
    initializer_range: float = 0.02
    token_classification_bias: bool = True
    attention_dropout: float = 0.0
    classifier_dropout: float | None = None

    def __post_init__(self):
        if self.classifier_dropout is None:  # GenericForTokenClassification's default
            self.classifier_dropout = 0.1
        if self.layer_types is None:
            self.layer_types = ["sliding_attention" if (i + 1) % self.sliding_window_pattern else "full_attention"
                                for i in range(self.num_hidden_layers)]
        params = self.rope_parameters or {}
        full = dict(params.get("full_attention") or {}, **(self.rope_scaling or {}))
        local = params.get("sliding_attention") or {}
        self.rope = {"full_attention": _rope(full, self.rope_theta), "sliding_attention": _rope(local, self.rope_local_base_freq)}

    @classmethod
    def from_config(cls, config: dict) -> "ModelArgs":
        args = cls(**{f.name: config[f.name] for f in fields(cls) if config.get(f.name) is not None})
        if args.hidden_activation not in ACTIVATIONS:
            raise ModelError(f"hidden_activation {args.hidden_activation!r} is not supported "
                             f"({', '.join(ACTIVATIONS)}).")
        for kind, (rope_type, _, _) in args.rope.items():
            if rope_type not in ROPE_TYPES:
                raise ModelError(f"RoPE type {rope_type!r} ({kind}) is not supported ({', '.join(ROPE_TYPES)}).")
        return args


def _rope(params: dict, default_base: float) -> tuple[str, float, float]:
    """(rope_type, base, position scale). mx.fast.rope scales positions; HF's "linear" divides the
    inverse frequencies by the factor, which is the same."""
    rope_type = params.get("rope_type", params.get("type", "default"))
    scale = 1.0 / float(params.get("factor", 1.0)) if rope_type == "linear" else 1.0
    return rope_type, float(params.get("rope_theta", default_base)), scale


class RMSNorm(nn.Module):
    """Gemma's RMSNorm: weights are stored as an offset from 1 (x̂ · (1 + w))."""

    def __init__(self, dims: int, eps: float):
        super().__init__()
        self.weight = mx.zeros((dims,))
        self.eps = eps

    def __call__(self, x):
        # 1 + w in float32 as HF does: in bf16 it would round away small weights (dtype hazard).
        return mx.fast.rms_norm(x, 1.0 + self.weight.astype(mx.float32), self.eps).astype(x.dtype)


class Attention(nn.Module):
    def __init__(self, args: ModelArgs, layer_type: str):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = args.num_attention_heads, args.num_key_value_heads, args.head_dim
        bias = args.attention_bias
        self.q_proj = nn.Linear(args.hidden_size, self.n_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(args.hidden_size, self.n_kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(args.hidden_size, self.n_kv_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, args.hidden_size, bias=bias)
        self.q_norm = RMSNorm(self.head_dim, args.rms_norm_eps)
        self.k_norm = RMSNorm(self.head_dim, args.rms_norm_eps)
        self.scale = args.query_pre_attn_scalar ** -0.5  # not head_dim ** -0.5
        _, self.rope_base, self.rope_scale = args.rope[layer_type]
        self.attention_dropout = args.attention_dropout

    def rope(self, x):
        # HF's rotate_half layout is traditional=False; positions 0..T-1 as HF's default position_ids.
        return mx.fast.rope(x, self.head_dim, traditional=False, base=self.rope_base, scale=self.rope_scale, offset=0)

    def __call__(self, x, mask):
        B, T, _ = x.shape
        q = self.q_norm(self.q_proj(x).reshape(B, T, self.n_heads, -1)).transpose(0, 2, 1, 3)  # (B, nh, T, hd)
        k = self.k_norm(self.k_proj(x).reshape(B, T, self.n_kv_heads, -1)).transpose(0, 2, 1, 3)  # (B, nkv, T, hd)
        v = self.v_proj(x).reshape(B, T, self.n_kv_heads, -1).transpose(0, 2, 1, 3)
        return self.o_proj(attention(self.rope(q), self.rope(k), v, mask, scale=self.scale,
                                     dropout=self.attention_dropout if self.training else 0.0))


class MLP(nn.Module):
    """GeGLU: down(gelu_tanh(gate(x)) * up(x))."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.gate_proj = nn.Linear(args.hidden_size, args.intermediate_size, bias=False)
        self.up_proj = nn.Linear(args.hidden_size, args.intermediate_size, bias=False)
        self.down_proj = nn.Linear(args.intermediate_size, args.hidden_size, bias=False)
        self.act = ACTIVATIONS[args.hidden_activation]

    def __call__(self, x):
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, args: ModelArgs, layer_type: str):
        super().__init__()
        self.self_attn = Attention(args, layer_type)
        self.mlp = MLP(args)
        self.input_layernorm = RMSNorm(args.hidden_size, args.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(args.hidden_size, args.rms_norm_eps)
        self.pre_feedforward_layernorm = RMSNorm(args.hidden_size, args.rms_norm_eps)
        self.post_feedforward_layernorm = RMSNorm(args.hidden_size, args.rms_norm_eps)
        self.sliding = layer_type == "sliding_attention" and args.sliding_window is not None

    def __call__(self, x, mask):
        x = x + self.post_attention_layernorm(self.self_attn(self.input_layernorm(x), mask))
        return x + self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(x)))


class Model(nn.Module):
    """HF ``Gemma3TextModel``: the last hidden state [B, T, H], after the final norm."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.embed_tokens = nn.Embedding(args.vocab_size, args.hidden_size)
        self.layers = [DecoderLayer(args, args.layer_types[i]) for i in range(args.num_hidden_layers)]
        self.norm = RMSNorm(args.hidden_size, args.rms_norm_eps)
        self.embed_scale = args.hidden_size ** 0.5
        self.bidirectional = bool(args.use_bidirectional_attention)
        self.sliding_window = args.sliding_window
        self.grad_checkpoint = False

    def masks(self, attention_mask) -> dict:
        """{is_sliding: mask}. Causal: HF's band 0 <= i - j < window. Bidirectional: HF halves the
        window (window // 2 + 1, exclusive), so |i - j| <= window // 2."""
        if self.bidirectional:
            out = {False: make_mask(attention_mask)}
            if self.sliding_window is not None:
                out[True] = make_mask(attention_mask, window=self.sliding_window // 2, symmetric_window=True)
        else:
            out = {False: make_mask(attention_mask, causal=True)}
            if self.sliding_window is not None:
                out[True] = make_mask(attention_mask, causal=True, window=self.sliding_window)
        return out

    def __call__(self, input_ids, attention_mask):
        x = self.embed_tokens(input_ids)
        x = x * mx.array(self.embed_scale, dtype=x.dtype)  # HF rounds the scale to the embedding dtype
        masks = self.masks(attention_mask)
        for layer in self.layers:
            x = run_layer(layer, self.grad_checkpoint, x, masks[layer.sliding])
        return self.norm(x)


def sequence_classifier(args: ModelArgs, num_labels: int) -> Classifier:
    """HF ``Gemma3TextForSequenceClassification``: ``score`` (no bias) on the last real token (HF
    finds it by ``pad_token_id``; the attention mask is used here)."""
    return Classifier(SPEC.base_prefix, Model(args), "score", nn.Linear(args.hidden_size, num_labels, bias=False),
                      pooling="lasttoken")


def token_classifier(args: ModelArgs, num_labels: int) -> Classifier:
    """transformers' GenericForTokenClassification shape (model + ``score`` with bias); 5.24 has no
    Gemma3 class for it, so transformers cannot load this head by name. Dropout before ``score``."""
    return Classifier(SPEC.base_prefix, Model(args), "score",
                      nn.Linear(args.hidden_size, num_labels, bias=args.token_classification_bias),
                      dropout=args.classifier_dropout)


class ForMaskedLM(HFTaskModel):
    """Gemma3ForCausalLM's head over bidirectional attention: logits at every position from the
    embeddings (tied, as HF ties them) or ``lm_head``, with the final logit soft-capping."""

    def __init__(self, args: ModelArgs, num_labels: int = 0):
        if not args.use_bidirectional_attention:
            raise ModelError(task_error("masked-lm", {}))
        super().__init__(SPEC.base_prefix, Model(args))
        if not args.tie_word_embeddings:
            self.lm_head = nn.Linear(args.hidden_size, args.vocab_size, bias=False)
        self.softcap = args.final_logit_softcapping

    def __call__(self, input_ids, attention_mask):
        x = self.model(input_ids, attention_mask)
        logits = self.lm_head(x) if "lm_head" in self else self.model.embed_tokens.as_linear(x)
        return logits if self.softcap is None else mx.tanh(logits / self.softcap) * self.softcap


TASK_MODELS = {"text-classification": sequence_classifier, "token-classification": token_classifier,
               "masked-lm": ForMaskedLM}


def task_error(task: str, config: dict) -> str:
    if task == "masked-lm":
        return ("This Gemma3 checkpoint uses causal attention, and masked-language modelling needs "
                "bidirectional attention. Train it with --bidirectional (in the app: Attention → "
                "bidirectional on the Model & Task page; in Python: load_model(..., bidirectional=True)), "
                "which also sets use_bidirectional_attention in the saved config.json, or pick an encoder "
                "(bert, modernbert).")
    return f"gemma3_text models do not support the {task} task."


def configure(config: dict, bidirectional: bool | None = None, dropout: float | None = None,
              **overrides) -> dict:
    """Resolve the attention direction (either config spelling; absent = causal; ``bidirectional``
    overrides) and write it back as ``use_bidirectional_attention``, the key transformers 5.24 reads,
    so a saved folder reloads the same way. A multimodal ``gemma3`` config gives its text tower.
    Then the dropout override."""
    if isinstance(config.get("text_config"), dict):
        config = {**config["text_config"], "model_type": "gemma3_text"}
    config = dict(config)
    found = [v for v in (config.pop(k, None) for k in BIDIRECTIONAL_KEYS) if v is not None]
    resolved = bidirectional if bidirectional is not None else bool(found and found[0])
    config["use_bidirectional_attention"] = bool(resolved)
    return override(config, DROPOUT_KEYS, dropout)


def sanitize(weights: dict) -> dict:
    """HF names are this file's names. A multimodal checkpoint's text tower is renamed to the text
    model's names (either transformers layout) and its vision weights are dropped."""
    out = {}
    for k, v in weights.items():
        if k.startswith(("vision_tower.", "multi_modal_projector.", "model.vision_tower.",
                         "model.multi_modal_projector.")):
            continue
        for old, new in (("model.language_model.", "model."), ("language_model.model.", "model."),
                         ("language_model.lm_head.", "lm_head.")):
            if k.startswith(old):
                k = new + k[len(old):]
        out[k] = v
    return out


def to_hf(weights: dict, config: dict) -> dict:
    return weights
