"""MLX export for mlx-embeddings: a folder that ``mlx_embeddings.load(folder)`` reads, optionally with
4- or 8-bit weights, checked by loading it with mlx-embeddings and comparing with the live model.

    config.json          the HF config, with what mlx-embeddings reads spelled out (architectures, the
                         RoPE bases at top level, ModernBERT's ``classifier_pooling`` = the embedding pooling,
                         ``quantization`` {group_size, bits} when quantized)
    model.safetensors    the bare encoder's weights under HF names (mlx-embeddings adds its ``model.`` prefix);
                         quantized: ``weight`` / ``scales`` / ``biases`` of each layer, as ``nn.quantize`` keeps them
    tokenizer files      the model's tokenizer

mlx-embeddings 0.1.0 computes ``text_embeds`` one fixed way per family (read from its source): BERT
mean-pools with exact GELU, ModernBERT pools by ``classifier_pooling`` (mean or CLS), Qwen3 takes the last
token, all then L2-normalise and none runs a Dense layer. A model whose own pipeline differs is refused
before any work, so its vectors are never silently pooled another way. Gemma3 and LFM2 need mlx-lm there
(and Gemma3 there applies one full mask to its sliding layers): refused too. Its ModernBERT runs GELU's tanh
approximation where transformers runs the exact one: the check measures that (tiny model: max |Δ| 6e-5).
"""
from __future__ import annotations

import importlib.util
from importlib import metadata
from pathlib import Path

import numpy as np

import mlx.core as mx
from mlx.utils import tree_flatten

from engine.files import read_json, write_json
from engine.models.heads import EmbeddingModel
from engine.models.saving import hf_weights, write_safetensors
from engine.outputs.onnx import EXTRA_TEXTS, batches, cosines, top10_overlap

INSTALL = "pip install 'raclate-tuner[mlx]'"
WITH_LIBRARY_FILES = False     # the folder is mlx-embeddings' own: config, weights, tokenizer
COSINE_MIN = 0.9999            # fp32: per row of text_embeds
BITS = {"int8": 8, "int4": 4}  # --quantize → bits of mlx's affine quantization
# values per scale: 4-bit needs the smaller groups (all-MiniLM-L6-v2: mean cosine 0.948 / top-10 overlap 0.80
# with 64, 0.960 / 0.88 with 32); where it does not divide every matrix's input size, 32
GROUP_SIZE = {"int8": 64, "int4": 32}
# Quantized: mean and worst per-row cosine to the engine's fp32 embeddings, and mean top-10 overlap of a
# small corpus search (engine/outputs/onnx.py CORPUS); 4-bit loses more, so it is held to less.
QUANTIZED_MIN = {"int8": {"mean_cosine": 0.99, "min_cosine": 0.95, "top10_overlap": 0.8},
                 "int4": {"mean_cosine": 0.95, "min_cosine": 0.85, "top10_overlap": 0.7}}
# family → (pooling modes mlx-embeddings offers, its HF architecture); all normalise, none has Dense layers
FAMILIES = {"bert": (("mean",), "BertModel"), "modernbert": (("mean", "cls"), "ModernBertModel"),
            "qwen3": (("lasttoken",), "Qwen3Model")}


# -- before any work -----------------------------------------------------------------------------
def missing() -> str | None:
    """The check loads the folder with mlx-embeddings: without it nothing could be verified."""
    return None if importlib.util.find_spec("mlx_embeddings") else \
        f"The MLX export is checked with mlx-embeddings, which is not installed: {INSTALL}"


def refusal(model, quantize: str | None) -> str | None:
    cfg = model.info.config
    family = cfg.get("model_type")
    if family not in FAMILIES:
        return (f"The MLX export (mlx-embeddings) supports the {', '.join(FAMILIES)} families, not {family!r} "
                "(mlx-embeddings runs Gemma3 and LFM2 only through mlx-lm, and Gemma3 there without its sliding window).")
    if not isinstance(model, EmbeddingModel) or model.info.late_interaction:
        return ("The MLX export covers dense embedding models (mlx-embeddings computes pooled, normalised "
                f"text_embeds), not {'late interaction' if model.info.late_interaction else model.info.task}.")
    modes, _ = FAMILIES[family]
    if model.pooling not in modes or model.dense or not model.normalize:
        what = f"{model.pooling} pooling" + (", Dense layers" if model.dense else "") + \
            ("" if model.normalize else ", no normalisation")
        return (f"mlx-embeddings computes {family} embeddings by {' or '.join(modes)} pooling then L2 "
                f"normalisation, without Dense layers; this model uses {what}, so its vectors would differ.")
    if family == "bert" and cfg.get("hidden_act", "gelu") != "gelu":
        return f"mlx-embeddings' BERT runs exact GELU, not {cfg['hidden_act']}."
    if family == "modernbert" and cfg.get("hidden_activation", "gelu") != "gelu":
        return f"mlx-embeddings' ModernBERT runs GELU, not {cfg['hidden_activation']}."
    if family == "qwen3":
        args = model.info.family.ModelArgs.from_config(cfg)
        if args.rope_type != "default" or args.sliding_window is not None:
            return "mlx-embeddings' Qwen3 has plain RoPE and full attention only (no RoPE scaling, no sliding window)."
    if quantize not in (None, *BITS):
        return f"The MLX export quantizes to {' or '.join(BITS)}, not {quantize}."
    return None


# -- writing -------------------------------------------------------------------------------------
def mlx_config(model) -> dict:
    """The HF config with what mlx-embeddings reads at top level (it knows no ``rope_parameters``)."""
    cfg = model.info.config
    family = cfg["model_type"]
    config = dict(cfg, architectures=[FAMILIES[family][1]])
    config.pop("torch_dtype", None)
    config.pop("dtype", None)
    args = model.info.family.ModelArgs.from_config(cfg)
    if family == "modernbert":
        config.update(classifier_pooling=model.pooling, global_rope_theta=args.rope_theta["full_attention"],
                      local_rope_theta=args.rope_theta["sliding_attention"])
    if family == "qwen3":
        config["rope_theta"] = args.rope_base
    return config


def group_size(weights: dict, quantize: str) -> int:
    """GROUP_SIZE[quantize] when it divides the input size of every matrix, else 32."""
    group = GROUP_SIZE[quantize]
    return group if all(w.shape[-1] % group == 0 for w in weights.values() if w.ndim == 2) else 32


def quantize_weights(weights: dict, bits: int, group: int) -> dict:
    """Matrices (Linear and Embedding weights) whose input size the group divides → mlx's affine
    ``weight`` / ``scales`` / ``biases``; the rest as they are. (mlx-embeddings quantizes a layer when
    its ``scales`` are in the file.)"""
    out = {}
    for name, w in weights.items():
        # mlx-embeddings' loader skips a layer whose weight size is not a multiple of 64
        if w.ndim == 2 and name.endswith(".weight") and w.shape[-1] % group == 0 and w.size % 64 == 0:
            q, scales, biases = mx.quantize(w, group_size=group, bits=bits)
            base = name[: -len(".weight")]
            out.update({name: q, f"{base}.scales": scales, f"{base}.biases": biases})
        else:
            out[name] = w
    return out


def write(model, tokenizer, out: Path, quantize: str | None) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    weights, _ = hf_weights(model)
    weights = {k: v.astype(mx.float32) for k, v in weights.items()}
    config = mlx_config(model)
    if config["model_type"] == "bert" and not any(k.startswith("pooler.") for k in weights):
        # mlx-embeddings' BERT always builds (and strictly loads) a pooler; an embedding model has none:
        # zeros make its pooler_output 0, and text_embeds do not use it
        hidden = config["hidden_size"]
        weights.update({"pooler.dense.weight": mx.zeros((hidden, hidden)), "pooler.dense.bias": mx.zeros((hidden,))})
    if quantize:
        group = group_size(weights, quantize)
        weights = quantize_weights(weights, BITS[quantize], group)
        config["quantization"] = {"group_size": group, "bits": BITS[quantize]}
    write_json(out / "config.json", config)
    write_safetensors(out / "model.safetensors", weights)
    tokenizer.save_pretrained(str(out))
    # mlx-embeddings' Qwen3 masks with -inf: a left-padded row attends to nothing and turns the batch to NaN
    settings = read_json(out / "tokenizer_config.json")
    if settings.get("padding_side", "right") != "right":
        write_json(out / "tokenizer_config.json", dict(settings, padding_side="right"))


# -- the self-check ------------------------------------------------------------------------------
def _runner(loaded):
    """A padded int64 batch → mlx-embeddings' ``text_embeds`` of the loaded model, padded on the right
    as the folder's tokenizer pads (the engine pads Qwen3 on the left)."""
    def run(batch):
        order = np.argsort(-batch["attention_mask"], axis=1, kind="stable")   # real tokens first, in order
        ids, mask = (mx.array(np.take_along_axis(batch[k], order, axis=1).astype(np.int32))
                     for k in ("input_ids", "attention_mask"))
        return np.array(loaded(ids, attention_mask=mask).text_embeds.astype(mx.float32))
    return run


def _engine(model, batch) -> np.ndarray:
    return np.array(model(*(mx.array(batch[k].astype(np.int32)) for k in ("input_ids", "attention_mask"))))


def check(model, tokenizer, out: Path, texts, quantize: str | None = None) -> dict:
    """Load the folder with ``mlx_embeddings.load`` and compare its ``text_embeds`` with the engine's
    embeddings on ``texts`` plus a long (truncated) and a non-ASCII one, batched with padding: fp32 by
    cosine ≥ 0.9999 per row; 4/8-bit by mean and worst cosine and top-10 retrieval overlap."""
    from mlx_embeddings.utils import load
    texts = list(texts) + list(EXTRA_TEXTS)
    loaded, saved_tokenizer = load(str(out))
    run = _runner(loaded)
    (batch,) = batches(model, tokenizer, texts)
    ours, theirs = _engine(model, batch), run(batch)
    rows = cosines(ours, theirs)
    quantized = {n.rsplit(".", 1)[0] for n, _ in tree_flatten(loaded.parameters()) if n.endswith(".scales")}
    report = {"reference": f"mlx-embeddings {metadata.version('mlx-embeddings')} (mlx_embeddings.load, text_embeds)",
              "compared": "sentence embeddings", "max_abs_diff": float(np.abs(ours - theirs).max()),
              "min_cosine": float(rows.min()), "mean_cosine": float(rows.mean()), "pooling": model.pooling,
              "normalize": model.normalize, "quantize": quantize, "quantized_layers": len(quantized),
              "padding_side": saved_tokenizer.padding_side}
    if not quantize:
        report.update(ok=bool(report["min_cosine"] >= COSINE_MIN), tolerance=f"cosine ≥ {COSINE_MIN} per row")
        return report
    report["top10_overlap"] = top10_overlap(model, tokenizer, run, texts)
    report["tolerance"] = tolerance(quantize)
    report["ok"] = bool(quantized) and all(report[k] >= v for k, v in QUANTIZED_MIN[quantize].items())
    if not quantized:
        report["detail"] = "no layer was quantized"
    return report


def tolerance(quantize: str) -> str:
    need = QUANTIZED_MIN[quantize]
    return (f"mean cosine ≥ {need['mean_cosine']}, min cosine ≥ {need['min_cosine']}, top-10 overlap ≥ "
            f"{need['top10_overlap']}")


# -- the README section --------------------------------------------------------------------------
def card_section(model, check: dict, name: str) -> list[str]:
    bits = f", {BITS[check['quantize']]}-bit weights" if check.get("quantize") else ""
    lines = ["## MLX (mlx-embeddings)", "",
             f"An MLX folder for [mlx-embeddings](https://github.com/Blaizzy/mlx-embeddings){bits}: "
             f"{model.info.config['model_type']}, {model.pooling} pooling, L2-normalised `text_embeds`.", "",
             "```python", "import mlx.core as mx", "from mlx_embeddings import load", "",
             f'model, tokenizer = load("{name}")',
             'batch = tokenizer(["The weather is lovely today."], padding=True, truncation=True, return_tensors="np")',
             "out = model(mx.array(batch['input_ids']), attention_mask=mx.array(batch['attention_mask']))",
             "embeddings = out.text_embeds   # (batch, dim), normalised", "```", ""]
    if any((model.info.prompts or {}).values()):
        lines += ["mlx-embeddings applies no prompts: put them before the texts yourself, as in training: "
                  + ", ".join(f"{k}: `{v}`" for k, v in model.info.prompts.items() if v) + ".", ""]
    overlap = f", top-10 overlap {check['top10_overlap']:.2f}" if "top10_overlap" in check else ""
    return lines + [
        "### Check", "",
        f"Loaded with {check['reference']} and compared with the MLX model on {check.get('rows', '?')} texts plus "
        f"a long (truncated) and a non-ASCII one, batched with padding: max abs difference "
        f"{check['max_abs_diff']:.2e}, mean cosine {check['mean_cosine']:.6f}, min cosine "
        f"{check['min_cosine']:.6f}{overlap} (needs {check['tolerance']}).", ""]
