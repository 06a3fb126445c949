"""The encoder graphs of the ONNX export (engine/outputs/onnx.py), one function per family, built with
``onnx.helper`` from the engine's weights. Each matches the family's engine file (and so transformers):

    bert          post-norm LayerNorm blocks, learned positions and token types
    modernbert    pre-norm, fused Wqkv, RoPE (global / local theta), local layers' symmetric band, GeGLU
    gemma3_text   RMSNorm (1 + w), q/k norms, GQA, RoPE, embeddings × √hidden, sliding band, GeGLU
    qwen3         RMSNorm, q/k norms, GQA, RoPE, causal mask, SwiGLU

Each takes the graph, the backbone's float32 weights by engine name and the family's ModelArgs, reads
the graph inputs ``input_ids`` / ``attention_mask`` (and BERT's ``token_type_ids``) and returns the
last hidden state [batch, sequence, hidden].
"""
from __future__ import annotations

import numpy as np

OPSET = 17                      # LayerNormalization is a standard op from 17 on
FLOAT_MIN = float(np.finfo(np.float32).min)   # transformers' additive mask value in fp32
BOOL, FLOAT = 9, 1              # onnx.TensorProto.BOOL / FLOAT, for Cast


class Graph:
    """Nodes and initializers under fresh names; ``op`` returns the (first) output's name."""

    def __init__(self):
        from onnx import helper, numpy_helper
        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes, self.inits, self.count = [], [], 0

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{hint}_{self.count}"

    def const(self, value, hint: str = "c") -> str:
        name = self.name(hint)
        self.inits.append(self.numpy_helper.from_array(np.asarray(value), name))
        return name

    def ints(self, *values: int) -> str:
        return self.const(np.array(values, np.int64))

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attrs) -> str:
        out = out or self.name(op_type.lower())
        self.nodes.append(self.helper.make_node(op_type, list(inputs), [out], name=out, **attrs))
        return out

    def linear(self, x: str, weight: np.ndarray, bias: np.ndarray | None, hint: str) -> str:
        """x @ W.T + b (MatMul with a constant weight: what dynamic quantization rewrites)."""
        y = self.op("MatMul", x, self.const(np.ascontiguousarray(weight.T), hint + ".weight"))
        return y if bias is None else self.op("Add", y, self.const(bias, hint + ".bias"))

    def layer_norm(self, x: str, w: dict, prefix: str, eps: float) -> str:
        """LayerNorm, its bias optional (ModernBERT has none)."""
        bias = [self.const(w[prefix + ".bias"], prefix + ".bias")] if prefix + ".bias" in w else []
        return self.op("LayerNormalization", x, self.const(w[prefix + ".weight"], prefix + ".weight"), *bias,
                       axis=-1, epsilon=eps)

    def rms_norm(self, x: str, weight: np.ndarray, eps: float) -> str:
        """x / √(mean(x²) + eps) · weight over the last axis (opset 17 has no RMSNormalization)."""
        ms = self.op("ReduceMean", self.op("Mul", x, x), axes=[-1], keepdims=1)
        return self.op("Mul", self.op("Div", x, self.op("Sqrt", self.op("Add", ms, self.const(np.float32(eps))))),
                       self.const(weight.astype(np.float32), "norm.weight"))

    def last(self, x: str, start: int, end: int) -> str:
        """x[..., start:end]."""
        return self.op("Slice", x, self.ints(start), self.ints(end), self.ints(-1))

    def activation(self, x: str, name: str) -> str:
        half = lambda: self.const(np.float32(0.5))  # noqa: E731
        if name == "gelu":   # exact: 0.5·x·(1 + erf(x/√2))
            erf = self.op("Erf", self.op("Div", x, self.const(np.float32(np.sqrt(2.0)))))
            return self.op("Mul", self.op("Mul", x, half()), self.op("Add", erf, self.const(np.float32(1.0))))
        if name in ("gelu_new", "gelu_pytorch_tanh"):   # 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
            cube = self.op("Mul", self.op("Mul", x, x), x)
            inner = self.op("Add", x, self.op("Mul", cube, self.const(np.float32(0.044715))))
            t = self.op("Tanh", self.op("Mul", inner, self.const(np.float32(np.sqrt(2.0 / np.pi)))))
            return self.op("Mul", self.op("Mul", x, half()), self.op("Add", t, self.const(np.float32(1.0))))
        if name == "relu":
            return self.op("Relu", x)
        if name in ("silu", "swish"):
            return self.op("Mul", x, self.op("Sigmoid", x))
        if name == "tanh":
            return self.op("Tanh", x)
        if name == "identity":
            return x
        raise ValueError(f"activation {name!r} has no ONNX form here")

    def model(self, inputs, outputs, name: str):
        graph = self.helper.make_graph(self.nodes, name, inputs, outputs, self.inits)
        return self.helper.make_model(graph, opset_imports=[self.helper.make_opsetid("", OPSET)],
                                      producer_name="raclate-tuner")


# -- shared pieces -------------------------------------------------------------------------------
def positions(g: Graph) -> str:
    """0 … T-1 (int64) for the batch's sequence length."""
    length = g.op("Gather", g.op("Shape", "input_ids"), g.const(np.int64(1)), axis=0)
    return g.op("Range", g.const(np.int64(0)), length, g.const(np.int64(1)))


def additive_mask(g: Graph, *, causal: bool = False, window: int | None = None, symmetric: bool = False) -> str:
    """0 where query i may attend key j, float32 min elsewhere: [B, 1, 1, T] (padding only) or
    [B, 1, T, T] — `make_mask`'s rule (padded keys; causal j ≤ i; band i - j < window, or |i - j| ≤
    window when ``symmetric``). A row that sees no key (padding outside a band) gets a uniform mix of
    values instead of the engine's zeros: only padding rows, which no real token reads."""
    allowed = g.op("Cast", g.op("Unsqueeze", "attention_mask", g.ints(1, 2)), to=BOOL)       # (B, 1, 1, T)
    if causal or window is not None:
        pos = positions(g)
        diff = g.op("Sub", g.op("Unsqueeze", pos, g.ints(1)), g.op("Unsqueeze", pos, g.ints(0)))   # (T, T): i - j
        if causal:
            allowed = g.op("And", allowed, g.op("GreaterOrEqual", diff, g.const(np.int64(0))))
        if window is not None:
            near = (g.op("LessOrEqual", g.op("Abs", diff), g.const(np.int64(window))) if symmetric
                    else g.op("Less", diff, g.const(np.int64(window))))
            allowed = g.op("And", allowed, near)                                                  # (B, 1, T, T)
    return g.op("Where", allowed, g.const(np.float32(0.0)), g.const(np.float32(FLOAT_MIN)))


def rope_tables(g: Graph, head_dim: int, base: float, scale: float = 1.0) -> tuple[str, str]:
    """cos, sin [T, 1, head_dim] of HF's rotate-half RoPE (mx.fast.rope traditional=False): angle
    position·scale·base^(-2i/d), each half repeated."""
    inv_freq = (1.0 / base ** (np.arange(0, head_dim, 2) / head_dim) * scale).astype(np.float32)   # (hd/2,)
    angles = g.op("Mul", g.op("Unsqueeze", g.op("Cast", positions(g), to=FLOAT), g.ints(1)), g.const(inv_freq[None]))
    angles = g.op("Unsqueeze", g.op("Concat", angles, angles, axis=-1), g.ints(1))           # (T, 1, hd)
    return g.op("Cos", angles), g.op("Sin", angles)


def rope(g: Graph, x: str, tables: tuple[str, str], head_dim: int) -> str:
    """x·cos + rotate_half(x)·sin on x [B, T, heads, hd]."""
    cos, sin = tables
    half = head_dim // 2
    rotated = g.op("Concat", g.op("Neg", g.last(x, half, head_dim)), g.last(x, 0, half), axis=-1)
    return g.op("Add", g.op("Mul", x, cos), g.op("Mul", rotated, sin))


def attend(g: Graph, q: str, k: str, v: str, mask: str, scale: float, heads: int, kv_heads: int,
           head_dim: int) -> str:
    """softmax(q·kᵀ·scale + mask)·v with K/V heads shared by their query groups (broadcast, no copy).
    q [B, T, heads, hd], k/v [B, T, kv_heads, hd] → [B, T, heads·hd]."""
    q = g.op("Reshape", g.op("Transpose", q, perm=[0, 2, 1, 3]), g.ints(0, kv_heads, heads // kv_heads, -1, head_dim))
    k = g.op("Unsqueeze", g.op("Transpose", k, perm=[0, 2, 3, 1]), g.ints(2))               # (B, kv, 1, hd, T)
    v = g.op("Unsqueeze", g.op("Transpose", v, perm=[0, 2, 1, 3]), g.ints(2))               # (B, kv, 1, T, hd)
    scores = g.op("Add", g.op("Mul", g.op("MatMul", q, k), g.const(np.float32(scale))),
                  g.op("Unsqueeze", mask, g.ints(1)))                                        # (B, kv, G, T, T)
    ctx = g.op("MatMul", g.op("Softmax", scores, axis=-1), v)                                # (B, kv, G, T, hd)
    ctx = g.op("Transpose", g.op("Reshape", ctx, g.ints(0, heads, -1, head_dim)), perm=[0, 2, 1, 3])
    return g.op("Reshape", ctx, g.ints(0, 0, heads * head_dim))                              # (B, T, H)


def split_heads(g: Graph, x: str, heads: int, head_dim: int) -> str:
    return g.op("Reshape", x, g.ints(0, 0, heads, head_dim))                                 # (B, T, nh, hd)


# -- the families --------------------------------------------------------------------------------
def bert(g: Graph, w: dict, args) -> str:
    """transformers' BertModel (no pooler)."""
    heads, hidden, eps = args.num_attention_heads, args.hidden_size, args.layer_norm_eps
    hd = hidden // heads
    x = g.op("Add", g.op("Gather", g.const(w["embeddings.word_embeddings.weight"], "word_embeddings"), "input_ids"),
             g.op("Gather", g.const(w["embeddings.position_embeddings.weight"], "position_embeddings"), positions(g)))
    x = g.op("Add", x, g.op("Gather", g.const(w["embeddings.token_type_embeddings.weight"], "token_type_embeddings"),
                            "token_type_ids"))
    x = g.layer_norm(x, w, "embeddings.LayerNorm", eps)                                      # (B, T, H)
    mask = additive_mask(g)
    for i in range(args.num_hidden_layers):
        p = f"encoder.layer.{i}."
        q, k, v = (split_heads(g, g.linear(x, w[p + f"attention.self.{n}.weight"], w[p + f"attention.self.{n}.bias"],
                                           p + n), heads, hd) for n in ("query", "key", "value"))
        out = g.linear(attend(g, q, k, v, mask, hd ** -0.5, heads, heads, hd), w[p + "attention.output.dense.weight"],
                       w[p + "attention.output.dense.bias"], p + "attention.output.dense")
        x = g.layer_norm(g.op("Add", out, x), w, p + "attention.output.LayerNorm", eps)
        mid = g.activation(g.linear(x, w[p + "intermediate.dense.weight"], w[p + "intermediate.dense.bias"],
                                    p + "intermediate.dense"), args.hidden_act)
        out = g.linear(mid, w[p + "output.dense.weight"], w[p + "output.dense.bias"], p + "output.dense")
        x = g.layer_norm(g.op("Add", out, x), w, p + "output.LayerNorm", eps)
    return x


def modernbert(g: Graph, w: dict, args) -> str:
    """transformers' ModernBertModel: layer 0 has no attn_norm; local layers see |i - j| ≤ window/2."""
    heads, hidden, eps = args.num_attention_heads, args.hidden_size, args.norm_eps
    hd, ff = hidden // heads, args.intermediate_size
    x = g.op("Gather", g.const(w["embeddings.tok_embeddings.weight"], "tok_embeddings"), "input_ids")
    x = g.layer_norm(x, w, "embeddings.norm", eps)
    masks = {"full_attention": additive_mask(g),
             "sliding_attention": additive_mask(g, window=args.local_attention // 2, symmetric=True)}
    tables = {t: rope_tables(g, hd, theta) for t, theta in args.rope_theta.items()}
    for i, kind in enumerate(args.layer_types):
        p = f"layers.{i}."
        h = g.layer_norm(x, w, p + "attn_norm", eps) if i else x
        qkv = g.op("Reshape", g.linear(h, w[p + "attn.Wqkv.weight"], w.get(p + "attn.Wqkv.bias"), p + "attn.Wqkv"),
                   g.ints(0, 0, 3, heads, hd))                                               # (B, T, 3, nh, hd)
        q, k, v = (g.op("Gather", qkv, g.const(np.int64(n)), axis=2) for n in range(3))
        out = attend(g, rope(g, q, tables[kind], hd), rope(g, k, tables[kind], hd), v, masks[kind],
                     hd ** -0.5, heads, heads, hd)
        x = g.op("Add", x, g.linear(out, w[p + "attn.Wo.weight"], w.get(p + "attn.Wo.bias"), p + "attn.Wo"))
        h = g.linear(g.layer_norm(x, w, p + "mlp_norm", eps), w[p + "mlp.Wi.weight"], w.get(p + "mlp.Wi.bias"),
                     p + "mlp.Wi")                                                   # (B, T, 2·ff): input, gate
        h = g.op("Mul", g.activation(g.last(h, 0, ff), args.hidden_activation), g.last(h, ff, 2 * ff))
        x = g.op("Add", x, g.linear(h, w[p + "mlp.Wo.weight"], w.get(p + "mlp.Wo.bias"), p + "mlp.Wo"))
    return g.layer_norm(x, w, "final_norm", eps)


def _decoder_layers(g: Graph, w: dict, args, x: str, masks: dict, tables: dict, kinds: list, norm, act: str,
                    scale: float, sandwich: bool) -> str:
    """Gemma3 / Qwen3 blocks: q/k RMSNorm per head, RoPE, GQA, gated MLP; Gemma3 (``sandwich``) also
    norms each sub-block's output."""
    heads, kv, hd = args.num_attention_heads, args.num_key_value_heads, args.head_dim
    for i, kind in enumerate(kinds):
        p = f"layers.{i}."
        h = norm(x, p + "input_layernorm.weight")
        proj = lambda n, count: split_heads(g, g.linear(h, w[p + f"self_attn.{n}.weight"],  # noqa: E731
                                                        w.get(p + f"self_attn.{n}.bias"), p + n), count, hd)
        q = rope(g, norm(proj("q_proj", heads), p + "self_attn.q_norm.weight"), tables[kind], hd)
        k = rope(g, norm(proj("k_proj", kv), p + "self_attn.k_norm.weight"), tables[kind], hd)
        out = g.linear(attend(g, q, k, proj("v_proj", kv), masks[kind], scale, heads, kv, hd),
                       w[p + "self_attn.o_proj.weight"], w.get(p + "self_attn.o_proj.bias"), p + "o_proj")
        x = g.op("Add", x, norm(out, p + "post_attention_layernorm.weight") if sandwich else out)
        h = norm(x, p + ("pre_feedforward_layernorm.weight" if sandwich else "post_attention_layernorm.weight"))
        gate = g.activation(g.linear(h, w[p + "mlp.gate_proj.weight"], None, p + "mlp.gate_proj"), act)
        out = g.linear(g.op("Mul", gate, g.linear(h, w[p + "mlp.up_proj.weight"], None, p + "mlp.up_proj")),
                       w[p + "mlp.down_proj.weight"], None, p + "mlp.down_proj")
        x = g.op("Add", x, norm(out, p + "post_feedforward_layernorm.weight") if sandwich else out)
    return norm(x, "norm.weight")


def gemma3_text(g: Graph, w: dict, args) -> str:
    """transformers' Gemma3TextModel, causal or bidirectional (EmbeddingGemma: window/2 each side)."""
    norm = lambda x, name: g.rms_norm(x, 1.0 + w[name], args.rms_norm_eps)  # noqa: E731  Gemma stores w - 1
    x = g.op("Gather", g.const(w["embed_tokens.weight"], "embed_tokens"), "input_ids")
    x = g.op("Mul", x, g.const(np.float32(args.hidden_size ** 0.5)))
    bidirectional, window = bool(args.use_bidirectional_attention), args.sliding_window
    masks = {"full_attention": additive_mask(g, causal=not bidirectional)}
    if window is not None:
        masks["sliding_attention"] = additive_mask(g, causal=not bidirectional, window=window // 2 if bidirectional
                                                   else window, symmetric=bidirectional)
    kinds = [k if window is not None else "full_attention" for k in args.layer_types]
    tables = {k: rope_tables(g, args.head_dim, base, scale) for k, (_, base, scale) in args.rope.items()}
    return _decoder_layers(g, w, args, x, masks, tables, kinds, norm, args.hidden_activation,
                           args.query_pre_attn_scalar ** -0.5, sandwich=True)


def qwen3(g: Graph, w: dict, args) -> str:
    """transformers' Qwen3Model (causal; a sliding band on the layers that have one)."""
    norm = lambda x, name: g.rms_norm(x, w[name], args.rms_norm_eps)  # noqa: E731
    x = g.op("Gather", g.const(w["embed_tokens.weight"], "embed_tokens"), "input_ids")
    masks = {"full_attention": additive_mask(g, causal=True)}
    if args.sliding_window is not None:
        masks["sliding_attention"] = additive_mask(g, causal=True, window=args.sliding_window)
    kinds = [k if args.sliding_window is not None else "full_attention" for k in args.layer_types]
    table = rope_tables(g, args.head_dim, args.rope_base, args.rope_scale)
    return _decoder_layers(g, w, args, x, masks, {k: table for k in masks}, kinds, norm, args.hidden_act,
                           args.head_dim ** -0.5, sandwich=False)


ENCODERS = {"bert": bert, "modernbert": modernbert, "gemma3_text": gemma3_text, "qwen3": qwen3}
INPUTS = {"bert": ("input_ids", "attention_mask", "token_type_ids")}   # the others: no token types
DEFAULT_INPUTS = ("input_ids", "attention_mask")
# The FFN down projections, which int8 leaves in fp32 (activation outliers live in their inputs).
DOWN_PROJECTIONS = {"bert": r"layer\.\d+\.output\.dense\.weight", "modernbert": r"mlp\.Wo\.weight",
                    "gemma3_text": r"mlp\.down_proj\.weight", "qwen3": r"mlp\.down_proj\.weight"}
