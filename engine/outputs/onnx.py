"""ONNX export: the engine's weights written as an ONNX graph with ``onnx.helper`` (no torch), checked
with onnxruntime against the live MLX model. BERT, ModernBERT, Gemma3 (EmbeddingGemma) and Qwen3; the
families' encoder graphs live in engine/outputs/onnx_families.py.

    onnx/model.onnx                  encoder → ``last_hidden_state`` [batch, sequence, hidden]
                                     (embedding models: what sentence-transformers' ONNX backend loads, it
                                     pools itself) or the classifier → ``logits`` [batch, labels]
    onnx/model_pipeline.onnx         embedding models: encoder, pooling, Dense layers, normalize →
                                     ``sentence_embedding`` [batch, dim], for onnxruntime alone
    onnx/model*_qint8.onnx           ``--quantize int8``: the same, weights int8 (dynamic quantization)

Inputs are ``input_ids``, ``attention_mask`` and, for BERT, ``token_type_ids`` (int64, dynamic batch and
sequence axes), the names a transformers tokenizer gives.
"""
from __future__ import annotations

import importlib.util
import logging
import re
from pathlib import Path

import numpy as np

import mlx.core as mx
from mlx.utils import tree_flatten

from engine.data.inputs import tokenize_texts
from engine.inference import max_length_of
from engine.models.heads import Classifier, EmbeddingModel, LateInteractionModel, normalize, pool
from engine.outputs.onnx_families import DEFAULT_INPUTS, DOWN_PROJECTIONS, ENCODERS, INPUTS, OPSET, Graph, positions

INSTALL = "pip install 'raclate-tuner[onnx]'"
FAMILIES = tuple(ENCODERS)
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
        return f"The ONNX export supports the {', '.join(FAMILIES)} families, not {family!r}."
    if isinstance(model, LateInteractionModel):
        return "The ONNX export does not cover late-interaction (ColBERT) models."
    if not isinstance(model, EmbeddingModel) and not (
            isinstance(model, Classifier) and model.classifier_pooling is not None):
        return f"The ONNX export covers embedding and text-classification models, not {model.info.task}."
    args = model.info.args
    acts = {getattr(args, k) for k in ("hidden_act", "hidden_activation", "classifier_activation") if hasattr(args, k)}
    if acts - set(ACTIVATIONS):
        return f"The ONNX export has no form of the activation {', '.join(sorted(acts - set(ACTIVATIONS)))}."
    dense = [layer.activation_function for layer in getattr(model, "dense", [])]
    if any(a not in DENSE_ACTIVATIONS for a in dense) or getattr(model, "pooling", "mean") not in POOLING_MODES:
        return f"The ONNX export has no form of this model's pooling or Dense activations ({', '.join(dense)})."
    if quantize not in (None, "int8"):
        return f"The ONNX export quantizes to int8 only, not {quantize}."
    return None


# -- the graph -----------------------------------------------------------------------------------
def _weights(module) -> dict[str, np.ndarray]:
    return {k: np.array(v.astype(mx.float32)) for k, v in tree_flatten(module.parameters())}


def _pool(g: Graph, hidden: str, mode: str) -> str:
    """The engine's `pool` ([B, T, H] → [B, H]) on the graph's attention mask."""
    if mode == "cls":
        return g.op("Gather", hidden, g.const(np.int64(0)), axis=1)
    if mode == "lasttoken":   # argmax of position · mask: right or left padding alike
        last = g.op("ArgMax", g.op("Mul", "attention_mask", positions(g)), axis=1, keepdims=1)    # (B, 1)
        shape = g.op("Concat", g.op("Shape", hidden, start=0, end=1), g.ints(1), g.op("Shape", hidden, start=2),
                     axis=0)                                                                      # (B, 1, H)
        index = g.op("Expand", g.op("Unsqueeze", last, g.ints(-1)), shape)
        return g.op("Squeeze", g.op("GatherElements", hidden, index, axis=1), g.ints(1))
    mask = g.op("Cast", g.op("Unsqueeze", "attention_mask", g.ints(-1)), to=1)                  # (B, T, 1)
    if mode == "mean":
        total = g.op("ReduceSum", g.op("Mul", hidden, mask), g.ints(1), keepdims=0)
        count = g.op("Max", g.op("ReduceSum", mask, g.ints(1), keepdims=0), g.const(np.float32(1e-9)))
        return g.op("Div", total, count)
    if mode == "max":
        masked = g.op("Where", g.op("Greater", mask, g.const(np.float32(0))), hidden, g.const(np.float32(-np.inf)))
        return g.op("ReduceMax", masked, axes=[1], keepdims=0)
    raise ValueError(f"pooling {mode!r} has no ONNX form here")


def input_names(model) -> tuple[str, ...]:
    return INPUTS.get(model.info.config["model_type"], DEFAULT_INPUTS)


def _feed(session, batch: dict) -> dict:
    """The batch's arrays the file reads (a BERT tokenizer also gives token types to other families)."""
    return {i.name: batch[i.name] for i in session.get_inputs()}


def build(model, pipeline: bool = False):
    """The ONNX model of ``model``: embedding → encoder (``pipeline``: the whole embedding pipeline);
    classifier → logits."""
    from onnx import TensorProto, helper
    g = Graph()
    cfg = model.info.config
    w = _weights(model.backbone)
    x = ENCODERS[cfg["model_type"]](g, w, model.info.args)
    if isinstance(model, Classifier):
        if model.classifier_pooling == "pooler":   # BERT's pooler: tanh(dense(h[CLS]))
            x = g.op("Tanh", g.linear(g.op("Gather", x, g.const(np.int64(0)), axis=1), w["pooler.dense.weight"],
                                      w["pooler.dense.bias"], "pooler.dense"))
        else:
            x = _pool(g, x, model.classifier_pooling)
        if "head" in model:   # ModernBERT's prediction head: norm(act(dense(x)))
            hw = _weights(model.head)
            x = g.activation(g.linear(x, hw["dense.weight"], hw.get("dense.bias"), "head.dense"),
                             model.info.args.classifier_activation)
            x = g.layer_norm(x, hw, "norm", model.info.args.norm_eps)
        head = _weights(model[model.out_name])
        logits = g.linear(x, head["weight"], head.get("bias"), model.out_name)
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
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"]) for n in input_names(model)]
    return g.model(inputs, outputs, "raclate_" + cfg["model_type"])


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
                _quantize(built, out / paths[role], out / paths[role + "_int8"], model.info.config["model_type"])


def _quantize(built, src: Path, dst: Path, family: str) -> None:
    """int8 weights (the MatMuls' per output channel, and the embedding tables), activations quantized
    on the fly; the FFN down projections stay fp32: BERT's activation outliers live there
    (all-MiniLM-L6-v2: mean cosine 0.990 with them quantized, 0.994 without; 87 MB → 33 MB)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    down = [n.name for n in built.graph.node
            if n.op_type == "MatMul" and re.search(DOWN_PROJECTIONS[family], n.input[1])]
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
            run = ((lambda b, s=session: _sentence_embeddings(model, s.run(None, _feed(s, b))[0], b))
                   if role == "model_int8" and isinstance(model, EmbeddingModel)
                   else (lambda b, s=session: s.run(None, _feed(s, b))[0]))
            parts[role] = {"file": path, **int8_agreement(model, tokenizer, run, encoded, texts)}
            continue
        pairs = [(_rows(_engine(model, role, b), b), _rows(session.run(None, _feed(session, b))[0], b))
                 for b in encoded]
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
             f"{OPSET}); inputs {', '.join(f'`{n}`' for n in input_names(model))} (int64, dynamic batch and "
             "sequence axes). Tokenize with the tokenizer in this folder.", "", "### onnxruntime", "", "```python",
             "import onnxruntime as ort", "from transformers import AutoTokenizer", "",
             f'tokenizer = AutoTokenizer.from_pretrained("{name}")',
             f'session = ort.InferenceSession("{name}/{files(model, None)["pipeline" if embedding else "model"]}")',
             'enc = tokenizer(["The weather is lovely today."], padding=True, truncation=True, return_tensors="np")',
             "inputs = {i.name: enc[i.name] for i in session.get_inputs()}"]
    if embedding:
        lines += ["(embeddings,) = session.run(None, inputs)  # pooled, Dense, "
                  + ("normalised" if model.normalize else "not normalised"), "```", "",
                  "### sentence-transformers (ONNX backend, needs `pip install sentence-transformers[onnx]`)", "",
                  "It loads `onnx/model.onnx` (the encoder) and pools with this folder's own modules:", "",
                  "```python", "from sentence_transformers import SentenceTransformer", "",
                  f'model = SentenceTransformer("{name}", backend="onnx", '
                  'model_kwargs={"file_name": "onnx/model.onnx"})',
                  'embeddings = model.encode(["The weather is lovely today."])']
    else:
        lines += ["(logits,) = session.run(None, inputs)  # softmax for probabilities", "```", "",
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
