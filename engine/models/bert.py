"""BERT (`bert`) — matches transformers.models.bert.modeling_bert (checked against transformers 5.24)."""
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
    model_type="bert", name="BERT", base_prefix="bert",
    architectures={"base": "BertModel", "text-classification": "BertForSequenceClassification",
                   "token-classification": "BertForTokenClassification", "masked-lm": "BertForMaskedLM"},
    presets={"batch_size": 32, "learning_rate": 5e-5, "max_length": 256},
    default_pooling="mean",
    # Checkpoint keys that belong to other tasks' heads (or non-persistent buffers): skipped on load.
    ignored_keys=("cls.", "classifier.", "qa_outputs.", "pooler.", "embeddings.position_ids"),
    optional_keys=("pooler.",),  # absent from checkpoints saved without the pooling layer
    embedding_weights=("embeddings.",),
    lora_targets=("query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"),
    recommended=(
        Recommended("sentence-transformers/all-MiniLM-L6-v2", 22_713_728, "fast English embeddings"),
        Recommended("BAAI/bge-small-en-v1.5", 33_360_000, "English retrieval, a step up in quality"),
        Recommended("BAAI/bge-base-en-v1.5", 109_480_000, "English retrieval and classification"),
    ),
)
# transformers' BERT dropout probabilities (BertConfig defaults 0.1, 0.1; the classifier's falls back to hidden's).
DROPOUT_KEYS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout")
# "gelu" is exact GELU with an arithmetic-only erf: mx.erf runs per element on the CPU backend.
ACTIVATIONS = {"gelu": gelu, "gelu_new": nn.gelu_approx, "gelu_pytorch_tanh": nn.gelu_approx,
               "relu": nn.relu, "silu": silu, "swish": silu}


@dataclass
class ModelArgs:
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    initializer_range: float = 0.02
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    classifier_dropout: float | None = None

    def __post_init__(self):
        if self.classifier_dropout is None:  # HF's BertFor*Classification: the hidden dropout
            self.classifier_dropout = self.hidden_dropout_prob

    @classmethod
    def from_config(cls, config: dict) -> "ModelArgs":
        args = cls(**{f.name: config[f.name] for f in fields(cls) if config.get(f.name) is not None})
        if args.hidden_act not in ACTIVATIONS:
            raise ValueError(f"hidden_act {args.hidden_act!r} is not supported ({', '.join(ACTIVATIONS)}).")
        return args


class Embeddings(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.word_embeddings = nn.Embedding(args.vocab_size, args.hidden_size)
        self.position_embeddings = nn.Embedding(args.max_position_embeddings, args.hidden_size)
        self.token_type_embeddings = nn.Embedding(args.type_vocab_size, args.hidden_size)
        self.LayerNorm = nn.LayerNorm(args.hidden_size, eps=args.layer_norm_eps)
        self.dropout = Dropout(args.hidden_dropout_prob)

    def __call__(self, input_ids, token_type_ids=None):
        positions = mx.arange(input_ids.shape[1])[None]
        types = mx.zeros_like(input_ids) if token_type_ids is None else token_type_ids  # HF: None = all type 0
        x = (self.word_embeddings(input_ids) + self.position_embeddings(positions)
             + self.token_type_embeddings(types))
        return self.dropout(self.LayerNorm(x))


class SelfAttention(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.n_heads = args.num_attention_heads
        self.query = nn.Linear(args.hidden_size, args.hidden_size)
        self.key = nn.Linear(args.hidden_size, args.hidden_size)
        self.value = nn.Linear(args.hidden_size, args.hidden_size)
        self.attention_dropout = args.attention_probs_dropout_prob

    def __call__(self, x, mask):
        B, T, H = x.shape
        heads = lambda t: t.reshape(B, T, self.n_heads, -1).transpose(0, 2, 1, 3)  # (B, nh, T, hd)
        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        return attention(q, k, v, mask, scale=(H // self.n_heads) ** -0.5,
                         dropout=self.attention_dropout if self.training else 0.0)


class DenseNorm(nn.Module):
    """HF's BertSelfOutput / BertOutput: LayerNorm(dropout(dense(x)) + residual)."""

    def __init__(self, d_in: int, d_out: int, eps: float, dropout: float):
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)
        self.LayerNorm = nn.LayerNorm(d_out, eps=eps)
        self.dropout = Dropout(dropout)

    def __call__(self, x, residual):
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class Attention(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.self = SelfAttention(args)
        self.output = DenseNorm(args.hidden_size, args.hidden_size, args.layer_norm_eps, args.hidden_dropout_prob)

    def __call__(self, x, mask):
        return self.output(self.self(x, mask), x)


class Intermediate(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.dense = nn.Linear(args.hidden_size, args.intermediate_size)
        self.act = ACTIVATIONS[args.hidden_act]

    def __call__(self, x):
        return self.act(self.dense(x))


class Layer(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.attention = Attention(args)
        self.intermediate = Intermediate(args)
        self.output = DenseNorm(args.intermediate_size, args.hidden_size, args.layer_norm_eps, args.hidden_dropout_prob)

    def __call__(self, x, mask):
        x = self.attention(x, mask)
        return self.output(self.intermediate(x), x)


class Encoder(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.layer = [Layer(args) for _ in range(args.num_hidden_layers)]


class Pooler(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.dense = nn.Linear(args.hidden_size, args.hidden_size)

    def __call__(self, hidden):
        return mx.tanh(self.dense(hidden[:, 0]))


class Model(nn.Module):
    """HF ``BertModel``: returns the last hidden state [B, T, H]."""

    def __init__(self, args: ModelArgs, add_pooling_layer: bool = True):
        super().__init__()
        self.embeddings = Embeddings(args)
        self.encoder = Encoder(args)
        if add_pooling_layer:
            self.pooler = Pooler(args)
        self.grad_checkpoint = False

    @property
    def layers(self):
        return self.encoder.layer

    def __call__(self, input_ids, attention_mask, token_type_ids=None):
        """``token_type_ids`` [B, T]: the segment of each token (a pair's second text is 1); None = 0."""
        x = self.embeddings(input_ids, token_type_ids)
        mask = make_mask(attention_mask)
        for layer in self.encoder.layer:
            x = run_layer(layer, self.grad_checkpoint, x, mask)
        return x


def sequence_classifier(args: ModelArgs, num_labels: int) -> Classifier:
    """HF ``BertForSequenceClassification``: ``classifier`` on the pooler's output (after dropout); a
    pair's second text reads token type 1 when the config has two types."""
    return Classifier(SPEC.base_prefix, Model(args, add_pooling_layer=True), "classifier",
                      nn.Linear(args.hidden_size, num_labels), pooling="pooler", dropout=args.classifier_dropout,
                      token_types=args.type_vocab_size > 1)


def token_classifier(args: ModelArgs, num_labels: int) -> Classifier:
    """HF ``BertForTokenClassification``: ``classifier`` on every token (after dropout)."""
    return Classifier(SPEC.base_prefix, Model(args, add_pooling_layer=False), "classifier",
                      nn.Linear(args.hidden_size, num_labels), dropout=args.classifier_dropout)


class PredictionHeadTransform(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.dense = nn.Linear(args.hidden_size, args.hidden_size)
        self.LayerNorm = nn.LayerNorm(args.hidden_size, eps=args.layer_norm_eps)
        self.act = ACTIVATIONS[args.hidden_act]

    def __call__(self, x):
        return self.LayerNorm(self.act(self.dense(x)))


class LMPredictionHead(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.transform = PredictionHeadTransform(args)
        self.bias = mx.zeros((args.vocab_size,))


class OnlyMLMHead(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.predictions = LMPredictionHead(args)


class ForMaskedLM(HFTaskModel):
    """HF ``BertForMaskedLM``. The decoder is tied to the word embeddings (as HF ties it), so only its
    bias is a weight."""

    def __init__(self, args: ModelArgs, num_labels: int = 0):
        super().__init__(SPEC.base_prefix, Model(args, add_pooling_layer=False))
        self.cls = OnlyMLMHead(args)

    def __call__(self, input_ids, attention_mask):
        x = self.cls.predictions.transform(self.bert(input_ids, attention_mask))
        return self.bert.embeddings.word_embeddings.as_linear(x) + self.cls.predictions.bias


TASK_MODELS = {"text-classification": sequence_classifier, "token-classification": token_classifier,
               "masked-lm": ForMaskedLM}


def configure(config: dict, dropout: float | None = None, **overrides) -> dict:
    """Family-specific config adjustments before ModelArgs are built: only the dropout override."""
    return override(config, DROPOUT_KEYS, dropout)


def sanitize(weights: dict) -> dict:
    """HF checkpoint names → this file's names. Older checkpoints use gamma/beta for LayerNorm;
    the decoder copies tied to the embeddings / bias are dropped."""
    out = {}
    for k, v in weights.items():
        k = k.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        if k in ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias"):
            continue
        out[k] = v
    return out


def to_hf(weights: dict, config: dict) -> dict:
    """This file's names → HF names (identical for BERT)."""
    return weights
