"""ONNX export: the engine's weights written as an ONNX graph with ``onnx.helper`` (no torch), checked
with onnxruntime against the live MLX model.

    onnx/model.onnx                  BERT encoder → ``last_hidden_state`` [batch, sequence, hidden]
                                     (embedding models: what sentence-transformers' ONNX backend loads, it
                                     pools itself) or the classifier → ``logits`` [batch, labels]
    onnx/model_pipeline.onnx         embedding models: encoder, pooling, Dense layers, normalize →
                                     ``sentence_embedding`` [batch, dim], for onnxruntime alone
    onnx/model*_qint8.onnx           ``--quantize int8``: the same, weights int8 (dynamic quantization)

Inputs are ``input_ids``, ``attention_mask`` and ``token_type_ids`` (int64, dynamic batch and sequence
axes), the names a transformers tokenizer gives, so ``session.run(None, dict(tokenizer(...)))`` works.
"""
from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np

import mlx.core as mx
from mlx.utils import tree_flatten

from engine.data.inputs import tokenize_texts
from engine.inference import max_length_of
from engine.models.heads import Classifier, EmbeddingModel, LateInteractionModel, normalize, pool

INSTALL = "pip install 'raclate-tuner[onnx]'"
OPSET = 17                      # LayerNormalization is a standard op from 17 on
FAMILIES = ("bert",)
FLOAT_MIN = float(np.finfo(np.float32).min)   # transformers' additive mask value in fp32
MAX_ABS = 1e-4                  # fp32: |Δ| ≤ 1e-4 · max(1, largest |output|)
COSINE_MIN = 0.9999             # fp32: per row (per real token for hidden states)
INT8_COSINE = 0.99              # int8: mean per-row cosine to the engine's outputs …
INT8_MIN_COSINE = 0.95          # … and the worst row's (a 3-token text quantizes worst)
INT8_TOP10 = 0.8                # int8 embeddings: mean top-10 overlap of a small corpus search
ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu", "swish")   # config hidden_act
DENSE_ACTIVATIONS = {"torch.nn.modules.linear.Identity": "identity", "torch.nn.modules.activation.Tanh": "tanh",
                     "torch.nn.modules.activation.ReLU": "relu", "torch.nn.modules.activation.GELU": "gelu"}
POOLING_MODES = ("mean", "cls", "max", "lasttoken")
WITH_LIBRARY_FILES = True       # the folder also holds the sentence-transformers / transformers files
LONG_TEXT = "A long text that the tokenizer truncates to the model's maximum length. " * 80
EXTRA_TEXTS = (LONG_TEXT, "Zürich, Ελλάδα, 東京 and naïve café déjà vu — ünïcödé 🙂")
CORPUS = ("The cat sleeps on the warm windowsill.", "Stock markets fell sharply after the announcement.",
          "A recipe for bread needs flour, water, salt and yeast.", "The football match ended in a draw.",
          "Photosynthesis turns light into chemical energy.", "The train to Paris leaves at nine.",
          "She plays the violin in an orchestra.", "Rain is expected for the whole weekend.",
          "The new phone has a larger battery.", "Volcanoes erupt when magma reaches the surface.",
          "He repaired the bicycle's flat tyre.", "The museum opens a new exhibition on Monday.",
          "Interest rates were raised by the central bank.", "Dogs need a walk at least twice a day.",
          "The spacecraft entered orbit around Mars.", "Fresh tomatoes make the best sauce.",
          "The election results were announced at midnight.", "Glaciers are melting faster than expected.",
          "Learning a language takes daily practice.", "The concert was cancelled because of the storm.",
          "Le chat dort sur le rebord de la fenêtre.", "Der Zug nach Berlin hat Verspätung.",
          "Quantum computers use qubits instead of bits.", "A good night's sleep improves memory.")


# -- before any work -----------------------------------------------------------------------------
def missing() -> str | None:
    """The message when onnx / onnxruntime are not installed, else None."""
    absent = [n for n in ("onnx", "onnxruntime") if importlib.util.find_spec(n) is None]
    return f"The ONNX export needs {' and '.join(absent)}: {INSTALL}" if absent else None


def refusal(model, quantize: str | None) -> str | None:
    """Why this model cannot be exported to ONNX here, or None."""
    family = model.info.config.get("model_type")
    if family not in FAMILIES:
        return f"The ONNX export supports the {', '.join(FAMILIES)} family only, not {family!r}."
    if isinstance(model, LateInteractionModel):
        return "The ONNX export does not cover late-interaction (ColBERT) models."
    if not isinstance(model, EmbeddingModel) and not (
            isinstance(model, Classifier) and model.classifier_pooling == "pooler"):
        return f"The ONNX export covers embedding and text-classification models, not {model.info.task}."
    if model.info.config.get("hidden_act", "gelu") not in ACTIVATIONS:
        return f"The ONNX export has no form of the activation {model.info.config['hidden_act']!r}."
    dense = [layer.activation_function for layer in getattr(model, "dense", [])]
    if any(a not in DENSE_ACTIVATIONS for a in dense) or getattr(model, "pooling", "mean") not in POOLING_MODES:
        return f"The ONNX export has no form of this model's pooling or Dense activations ({', '.join(dense)})."
    if quantize not in (None, "int8"):
        return f"The ONNX export quantizes to int8 only, not {quantize}."
    return None


# -- the graph -----------------------------------------------------------------------------------
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

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attrs) -> str:
        out = out or self.name(op_type.lower())
        self.nodes.append(self.helper.make_node(op_type, list(inputs), [out], name=out, **attrs))
        return out

    def linear(self, x: str, weight: np.ndarray, bias: np.ndarray | None, hint: str) -> str:
        """x @ W.T + b (MatMul with a constant weight: what dynamic quantization rewrites)."""
        y = self.op("MatMul", x, self.const(np.ascontiguousarray(weight.T), hint + ".weight"))
        return y if bias is None else self.op("Add", y, self.const(bias, hint + ".bias"))

    def layer_norm(self, x: str, w: dict, prefix: str, eps: float) -> str:
        return self.op("LayerNormalization", x, self.const(w[prefix + ".weight"], prefix + ".weight"),
                       self.const(w[prefix + ".bias"], prefix + ".bias"), axis=-1, epsilon=eps)

    def activation(self, x: str, name: str) -> str:
        half = self.const(np.float32(0.5))
        if name == "gelu":   # exact: 0.5·x·(1 + erf(x/√2))
            erf = self.op("Erf", self.op("Div", x, self.const(np.float32(np.sqrt(2.0)))))
            return self.op("Mul", self.op("Mul", x, half), self.op("Add", erf, self.const(np.float32(1.0))))
        if name in ("gelu_new", "gelu_pytorch_tanh"):   # 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
            cube = self.op("Mul", self.op("Mul", x, x), x)
            inner = self.op("Add", x, self.op("Mul", cube, self.const(np.float32(0.044715))))
            t = self.op("Tanh", self.op("Mul", inner, self.const(np.float32(np.sqrt(2.0 / np.pi)))))
            return self.op("Mul", self.op("Mul", x, half), self.op("Add", t, self.const(np.float32(1.0))))
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


def _weights(module) -> dict[str, np.ndarray]:
    return {k: np.array(v.astype(mx.float32)) for k, v in tree_flatten(module.parameters())}


def _bert_encoder(g: Graph, w: dict, cfg: dict) -> str:
    """transformers' BertModel (no pooler) on the three inputs → last hidden state [B, T, H]."""
    heads, hidden, eps = cfg["num_attention_heads"], cfg["hidden_size"], cfg.get("layer_norm_eps", 1e-12)
    act = cfg.get("hidden_act", "gelu")
    length = g.op("Gather", g.op("Shape", "input_ids"), g.const(np.int64(1)), axis=0)
    positions = g.op("Range", g.const(np.int64(0)), length, g.const(np.int64(1)))          # (T,)
    x = g.op("Add", g.op("Gather", g.const(w["embeddings.word_embeddings.weight"], "word_embeddings"), "input_ids"),
             g.op("Gather", g.const(w["embeddings.position_embeddings.weight"], "position_embeddings"), positions))
    x = g.op("Add", x, g.op("Gather", g.const(w["embeddings.token_type_embeddings.weight"], "token_type_embeddings"),
                            "token_type_ids"))
    x = g.layer_norm(x, w, "embeddings.LayerNorm", eps)                                      # (B, T, H)
    # additive key mask: 0 where attended, float32 min at padding, (B, 1, 1, T)
    keep = g.op("Cast", g.op("Unsqueeze", "attention_mask", g.const(np.array([1, 2], np.int64))), to=1)
    mask = g.op("Mul", g.op("Sub", g.const(np.float32(1.0)), keep), g.const(np.float32(FLOAT_MIN)))
    split = g.const(np.array([0, 0, heads, hidden // heads], np.int64))
    merge = g.const(np.array([0, 0, hidden], np.int64))
    scale = g.const(np.float32((hidden // heads) ** -0.5))
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        proj = lambda n: g.op("Reshape", g.linear(x, w[p + f"attention.self.{n}.weight"],  # noqa: E731
                                                  w[p + f"attention.self.{n}.bias"], p + n), split)  # (B, T, nh, hd)
        q = g.op("Transpose", proj("query"), perm=[0, 2, 1, 3])                               # (B, nh, T, hd)
        k = g.op("Transpose", proj("key"), perm=[0, 2, 3, 1])                                 # (B, nh, hd, T)
        v = g.op("Transpose", proj("value"), perm=[0, 2, 1, 3])
        scores = g.op("Add", g.op("Mul", g.op("MatMul", q, k), scale), mask)                  # (B, nh, T, T)
        ctx = g.op("MatMul", g.op("Softmax", scores, axis=-1), v)
        ctx = g.op("Reshape", g.op("Transpose", ctx, perm=[0, 2, 1, 3]), merge)               # (B, T, H)
        out = g.linear(ctx, w[p + "attention.output.dense.weight"], w[p + "attention.output.dense.bias"],
                       p + "attention.output.dense")
        x = g.layer_norm(g.op("Add", out, x), w, p + "attention.output.LayerNorm", eps)
        mid = g.activation(g.linear(x, w[p + "intermediate.dense.weight"], w[p + "intermediate.dense.bias"],
                                    p + "intermediate.dense"), act)
        out = g.linear(mid, w[p + "output.dense.weight"], w[p + "output.dense.bias"], p + "output.dense")
        x = g.layer_norm(g.op("Add", out, x), w, p + "output.LayerNorm", eps)
    return x


def _pool(g: Graph, hidden: str, mode: str) -> str:
    """The engine's `pool` ([B, T, H] → [B, H]) on the graph's attention mask."""
    if mode == "cls":
        return g.op("Gather", hidden, g.const(np.int64(0)), axis=1)
    mask = g.op("Cast", g.op("Unsqueeze", "attention_mask", g.const(np.array([-1], np.int64))), to=1)  # (B, T, 1)
    axis = g.const(np.array([1], np.int64))
    if mode == "mean":
        total = g.op("ReduceSum", g.op("Mul", hidden, mask), axis, keepdims=0)
        count = g.op("Max", g.op("ReduceSum", mask, axis, keepdims=0), g.const(np.float32(1e-9)))
        return g.op("Div", total, count)
    if mode == "max":
        masked = g.op("Where", g.op("Greater", mask, g.const(np.float32(0))), hidden, g.const(np.float32(-np.inf)))
        return g.op("ReduceMax", masked, axes=[1], keepdims=0)
    if mode == "lasttoken":   # argmax of position · mask: right or left padding alike
        length = g.op("Gather", g.op("Shape", "input_ids"), g.const(np.int64(1)), axis=0)
        positions = g.op("Range", g.const(np.int64(0)), length, g.const(np.int64(1)))
        last = g.op("ArgMax", g.op("Mul", "attention_mask", positions), axis=1, keepdims=1)   # (B, 1)
        shape = g.op("Concat", g.op("Shape", hidden, start=0, end=1), g.const(np.array([1], np.int64)),
                     g.op("Shape", hidden, start=2), axis=0)                                   # (B, 1, H)
        index = g.op("Expand", g.op("Unsqueeze", last, g.const(np.array([-1], np.int64))), shape)
        return g.op("Squeeze", g.op("GatherElements", hidden, index, axis=1), g.const(np.array([1], np.int64)))
    raise ValueError(f"pooling {mode!r} has no ONNX form here")


def _inputs(helper, TensorProto):
    return [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"])
            for n in ("input_ids", "attention_mask", "token_type_ids")]


def build(model, pipeline: bool = False):
    """The ONNX model of ``model``: embedding → encoder (``pipeline``: the whole embedding pipeline);
    classifier → logits."""
    from onnx import TensorProto, helper
    g = Graph()
    cfg = model.info.config
    w = _weights(model.backbone)
    x = _bert_encoder(g, w, cfg)
    if isinstance(model, Classifier):   # BERT's pooler: tanh(dense(h[CLS])), then the classifier
        pooled = g.op("Tanh", g.linear(g.op("Gather", x, g.const(np.int64(0)), axis=1), w["pooler.dense.weight"],
                                       w["pooler.dense.bias"], "pooler.dense"))
        head = _weights(model[model.out_name])
        logits = g.linear(pooled, head["weight"], head.get("bias"), model.out_name)
        g.nodes.append(helper.make_node("Identity", [logits], ["logits"]))
        outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", head["weight"].shape[0]])]
    elif not pipeline:
        g.nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"]))
        outputs = [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT,
                                                 ["batch", "sequence", cfg["hidden_size"]])]
    else:
        x = _pool(g, x, model.pooling)
        for i, layer in enumerate(model.dense):
            dw = _weights(layer.linear)
            x = g.activation(g.linear(x, dw["weight"], dw.get("bias"), f"dense.{i}"),
                             DENSE_ACTIVATIONS[layer.activation_function])
        if model.normalize:
            norm = g.op("Sqrt", g.op("ReduceSum", g.op("Mul", x, x), g.const(np.array([-1], np.int64)), keepdims=1))
            x = g.op("Div", x, g.op("Max", norm, g.const(np.float32(1e-12))))
        g.nodes.append(helper.make_node("Identity", [x], ["sentence_embedding"]))
        outputs = [helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", "dim"])]
    return g.model(_inputs(helper, TensorProto), outputs, "raclate_" + cfg["model_type"])


# -- writing -------------------------------------------------------------------------------------
def files(model, quantize: str | None) -> dict[str, str]:
    """{role: path inside the folder} of the ONNX files this export writes."""
    names = {"model": "onnx/model.onnx"}
    if isinstance(model, EmbeddingModel):
        names["pipeline"] = "onnx/model_pipeline.onnx"
    if quantize == "int8":
        names.update({f"{k}_int8": v.replace(".onnx", "_qint8.onnx") for k, v in list(names.items())})
    return names


def write(model, tokenizer, out: Path, quantize: str | None) -> None:
    """The ONNX files into ``out/onnx`` (the library files are already there)."""
    import onnx
    out = Path(out)
    (out / "onnx").mkdir(parents=True, exist_ok=True)
    paths = files(model, quantize)
    for role in ("model", "pipeline"):
        if role in paths:
            built = build(model, pipeline=role == "pipeline")
            onnx.checker.check_model(built, full_check=True)
            onnx.save(built, str(out / paths[role]))
            if quantize == "int8":
                _quantize(built, out / paths[role], out / paths[role + "_int8"])


def _quantize(built, src: Path, dst: Path) -> None:
    """int8 weights (the MatMuls' per output channel, and the embedding tables), activations quantized
    on the fly; the FFN down projections stay fp32: BERT's activation outliers live there
    (all-MiniLM-L6-v2: mean cosine 0.990 with them quantized, 0.994 without; 87 MB → 33 MB)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    down = [n.name for n in built.graph.node if n.op_type == "MatMul"
            and ".output.dense.weight" in n.input[1] and ".attention." not in n.input[1]]
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)   # its root-logger advice to "run pre-processing" is not for our users
    try:
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul", "Gather"], nodes_to_exclude=down,
                         extra_options={"MatMulConstBOnly": True})
    finally:
        logging.disable(previous)


# -- the self-check ------------------------------------------------------------------------------
def _session(path: Path):
    import onnxruntime as ort
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def batches(model, tokenizer, texts) -> list[dict]:
    """Padded int64 batches as the engine reads them: the texts, and a classifier's pairs too."""
    embedding = isinstance(model, EmbeddingModel)
    kw = dict(use_chat_template=model.info.use_chat_template, max_length=max_length_of(model, tokenizer),
              padding=True, return_tensors="np")
    encs = [tokenize_texts(tokenizer, texts, strip=embedding, **kw)]
    if not embedding:
        encs.append(tokenize_texts(tokenizer, texts, texts[::-1], **kw))
    return [{"input_ids": e["input_ids"].astype(np.int64), "attention_mask": e["attention_mask"].astype(np.int64),
             "token_type_ids": e.get("token_type_ids", np.zeros_like(e["input_ids"])).astype(np.int64)}
            for e in encs]


def _engine(model, role: str, batch: dict) -> np.ndarray:
    ids, mask, types = (mx.array(batch[k].astype(np.int32)) for k in ("input_ids", "attention_mask", "token_type_ids"))
    if isinstance(model, Classifier):
        out = model(ids, mask, types)
    else:
        out = model.backbone(ids, mask) if role == "model" else model(ids, mask)
    return np.array(out.astype(mx.float32))


def _rows(outputs: np.ndarray, batch: dict) -> np.ndarray:
    """Token-level outputs: the real positions only (padding rows are whatever)."""
    return outputs[batch["attention_mask"] > 0] if outputs.ndim == 3 else outputs


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)


def _sentence_embeddings(model, hidden: np.ndarray, batch: dict) -> np.ndarray:
    """What sentence-transformers makes of the encoder file's hidden states: the model's own pooling,
    Dense layers and normalisation."""
    mask = mx.array(batch["attention_mask"].astype(np.int32))
    x = pool(mx.array(hidden), mask, model.pooling)
    for layer in model.dense:
        x = layer(x)
    return np.array(normalize(x) if model.normalize else x)


def int8_agreement(model, tokenizer, run, encoded: list[dict], texts) -> dict:
    """Quantized outputs (``run``: a padded batch → embeddings or logits) against the engine's: mean
    and worst cosine per row, and for embeddings the top-10 overlap of a small corpus search."""
    rows = np.concatenate([cosines(_engine(model, "pipeline", b), run(b)) for b in encoded])
    part = {"mean_cosine": float(rows.mean()), "min_cosine": float(rows.min())}
    part["ok"] = part["mean_cosine"] >= INT8_COSINE and part["min_cosine"] >= INT8_MIN_COSINE
    if isinstance(model, EmbeddingModel):
        part["top10_overlap"] = top10_overlap(model, tokenizer, run, texts)
        part["ok"] = part["ok"] and part["top10_overlap"] >= INT8_TOP10
    return part


def int8_tolerance(model) -> str:
    return (f"mean cosine ≥ {INT8_COSINE}, min cosine ≥ {INT8_MIN_COSINE}"
            + (f", top-10 overlap ≥ {INT8_TOP10} ({len(CORPUS)}-sentence corpus)"
               if isinstance(model, EmbeddingModel) else ""))


def top10_overlap(model, tokenizer, run, queries) -> float:
    """Mean share of each query's top-10 corpus hits (cosine) by the engine that ``run`` (a padded
    batch → embeddings) finds too."""
    def embed(texts, run):
        (batch,) = batches(model, tokenizer, list(texts))
        vectors = run(batch)
        return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)
    ours = [embed(t, lambda b: _engine(model, "pipeline", b)) for t in (queries, CORPUS)]
    theirs = [embed(t, run) for t in (queries, CORPUS)]
    top = lambda q, c: np.argsort(-(q @ c.T), axis=1, kind="stable")[:, :10]  # noqa: E731
    a, b = top(*ours), top(*theirs)
    return float(np.mean([len(set(x) & set(y)) / 10 for x, y in zip(a, b)]))


def check(model, tokenizer, out: Path, texts, quantize: str | None = None) -> dict:
    """Run each ONNX file with onnxruntime on ``texts`` plus a long (truncated) and a non-ASCII one,
    batched with padding, and compare with the engine: fp32 within |Δ| ≤ 1e-4 (relative to the
    largest output) and cosine ≥ 0.9999; int8 by cosine and, for embeddings, top-10 retrieval overlap."""
    import onnxruntime
    texts = list(texts) + list(EXTRA_TEXTS)
    encoded = batches(model, tokenizer, texts)
    paths = files(model, quantize)
    parts = {}
    for role, path in paths.items():
        session = _session(Path(out) / path)
        if role.endswith("_int8"):   # compared as used: an encoder file's hidden states pooled as ST pools them
            run = ((lambda b, s=session: _sentence_embeddings(model, s.run(None, b)[0], b)) if role == "model_int8"
                   and isinstance(model, EmbeddingModel) else (lambda b, s=session: s.run(None, b)[0]))
            parts[role] = {"file": path, **int8_agreement(model, tokenizer, run, encoded, texts)}
            continue
        pairs = [(_rows(_engine(model, role, b), b), _rows(session.run(None, b)[0], b)) for b in encoded]
        diff = max(float(np.abs(a - b).max()) for a, b in pairs)
        scale = max(1.0, max(float(np.abs(a).max()) for a, _ in pairs))
        part = {"file": path, "max_abs_diff": diff, "min_cosine": min(float(cosines(a, b).min()) for a, b in pairs)}
        part["ok"] = diff <= MAX_ABS * scale and part["min_cosine"] >= COSINE_MIN
        parts[role] = part
    exact = [p for r, p in parts.items() if not r.endswith("_int8")]
    what = ("logits (texts and pairs)" if isinstance(model, Classifier)
            else "hidden states (onnx/model.onnx) and sentence embeddings (onnx/model_pipeline.onnx)")
    report = {"reference": f"onnxruntime {onnxruntime.__version__}", "compared": what,
              "max_abs_diff": max(p["max_abs_diff"] for p in exact), "min_cosine": min(p["min_cosine"] for p in exact),
              "tolerance": f"abs diff ≤ {MAX_ABS:g} × max(1, largest output), cosine ≥ {COSINE_MIN}",
              "ok": all(p["ok"] for p in parts.values()), "files": parts, "opset": OPSET}
    if isinstance(model, EmbeddingModel):
        report.update(pooling=model.pooling, normalize=model.normalize)
    if quantize:
        report["quantize"] = quantize
        report["int8_tolerance"] = int8_tolerance(model)
    bad = [f"{p['file']}" for p in parts.values() if not p["ok"]]
    if bad:
        report["detail"] = "outside the tolerance: " + ", ".join(bad)
    return report


# -- the README section --------------------------------------------------------------------------
def card_section(model, check: dict, name: str) -> list[str]:
    """How to run the ONNX files, and how well each agreed with the MLX model."""
    embedding = isinstance(model, EmbeddingModel)
    lines = ["## ONNX", "", "Built from the MLX weights with `onnx` (opset "
             f"{OPSET}); inputs `input_ids`, `attention_mask`, `token_type_ids` (int64, dynamic batch and "
             "sequence axes). Tokenize with the tokenizer in this folder.", "", "### onnxruntime", "", "```python",
             "import onnxruntime as ort", "from transformers import AutoTokenizer", "",
             f'tokenizer = AutoTokenizer.from_pretrained("{name}")',
             f'session = ort.InferenceSession("{name}/{files(model, None)["pipeline" if embedding else "model"]}")',
             'inputs = tokenizer(["The weather is lovely today."], padding=True, truncation=True, return_tensors="np")']
    if embedding:
        lines += ["(embeddings,) = session.run(None, dict(inputs))  # pooled, Dense, "
                  + ("normalised" if model.normalize else "not normalised"), "```", "",
                  "### sentence-transformers (ONNX backend, needs `pip install sentence-transformers[onnx]`)", "",
                  "It loads `onnx/model.onnx` (the encoder) and pools with this folder's own modules:", "",
                  "```python", "from sentence_transformers import SentenceTransformer", "",
                  f'model = SentenceTransformer("{name}", backend="onnx", '
                  'model_kwargs={"file_name": "onnx/model.onnx"})',
                  'embeddings = model.encode(["The weather is lovely today."])']
    else:
        lines += ["(logits,) = session.run(None, dict(inputs))  # softmax for probabilities", "```", "",
                  "### sentence-transformers CrossEncoder / optimum (ONNX backend)", "", "```python",
                  "from sentence_transformers import CrossEncoder", "",
                  f'model = CrossEncoder("{name}", backend="onnx", model_kwargs={{"file_name": "onnx/model.onnx"}})']
    lines += ["```", "", "### Agreement with the MLX model", "",
              f"Checked with {check['reference']} on {check.get('rows', '?')} texts plus a long (truncated) and a "
              f"non-ASCII one, batched with padding. fp32 must match within {check['tolerance']}; int8 (dynamic "
              "quantization of the weights and embedding tables; the FFN down projections stay fp32) must keep "
              f"{int8_tolerance(model)}. The int8 encoder file is compared after this folder's pooling.", "",
              "| file | max abs difference | mean cosine | min cosine | top-10 overlap | ok |",
              "|---|---|---|---|---|---|"]
    show = lambda part, key, f: "—" if part.get(key) is None else format(part[key], f)  # noqa: E731
    for part in check.get("files", {}).values():
        lines.append(f"| `{part['file']}` | {show(part, 'max_abs_diff', '.2e')} | {show(part, 'mean_cosine', '.6f')} | "
                     f"{show(part, 'min_cosine', '.6f')} | {show(part, 'top10_overlap', '.2f')} | "
                     f"{'yes' if part['ok'] else 'NO'} |")
    return lines + [""]
