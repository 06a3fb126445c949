"""GGUF export for llama.cpp (LM Studio, Ollama, llama-server --embeddings): BERT embedding models as
llama.cpp's ``bert`` architecture, written with the ``gguf`` package in f32, f16 or q8_0.

The names and keys follow llama.cpp's convert_hf_to_gguf.py (``BertModel``): tensors ``token_embd``,
``token_types``, ``position_embd``, ``token_embd_norm``, ``blk.N.attn_q|k|v|output``,
``blk.N.attn_output_norm``, ``blk.N.ffn_up|down``, ``blk.N.layer_output_norm`` (the pooler is dropped);
``bert.pooling_type`` from the model's pooling; a WordPiece vocabulary (``tokenizer.ggml.model = bert``)
in llama.cpp's "phantom space" form (``▁word``, ``##piece`` → ``piece``).

The self-check reads the file back with ``gguf.GGUFReader``: metadata, tensor names and shapes, and the
dequantized weights put back into the engine's model, whose embeddings are compared with the live ones
(llama-cpp-python has no binary wheel here, so llama.cpp itself does not run in the check).
"""
from __future__ import annotations

import importlib.util
import json
from importlib import metadata
from pathlib import Path

import numpy as np

import mlx.core as mx
from mlx.utils import tree_flatten, tree_unflatten

from engine.models.heads import EmbeddingModel
from engine.outputs.onnx import EXTRA_TEXTS, batches, cosines, int8_agreement, int8_tolerance

INSTALL = "pip install 'raclate-tuner[gguf]'"
FILE = "model.gguf"
TYPES = ("f32", "f16", "q8_0")
COSINE_MIN = 0.9999              # f32 and f16: per row
WITH_LIBRARY_FILES = False       # the folder holds the .gguf file, its README and raclate_run.json
POOLING = {"mean": "MEAN", "cls": "CLS", "lasttoken": "LAST"}   # what llama.cpp pools by
NAMES = {"embeddings.word_embeddings": "token_embd", "embeddings.token_type_embeddings": "token_types",
         "embeddings.position_embeddings": "position_embd", "embeddings.LayerNorm": "token_embd_norm"}
LAYER_NAMES = {"attention.self.query": "attn_q", "attention.self.key": "attn_k", "attention.self.value": "attn_v",
               "attention.output.dense": "attn_output", "attention.output.LayerNorm": "attn_output_norm",
               "intermediate.dense": "ffn_up", "output.dense": "ffn_down", "output.LayerNorm": "layer_output_norm"}


# -- before any work -----------------------------------------------------------------------------
def missing() -> str | None:
    return None if importlib.util.find_spec("gguf") else f"The GGUF export needs the gguf package: {INSTALL}"


def refusal(model, quantize: str | None) -> str | None:
    cfg = model.info.config
    if cfg.get("model_type") != "bert":
        return f"The GGUF export supports the bert family only, not {cfg.get('model_type')!r}."
    if not isinstance(model, EmbeddingModel) or model.info.late_interaction:
        return ("The GGUF export covers dense embedding models (llama.cpp cannot run a ColBERT projection or "
                f"this task's head), not {'late interaction' if model.info.late_interaction else model.info.task}.")
    if model.dense:
        return "llama.cpp's bert architecture has no Dense layers after pooling: this model's vectors would differ."
    if model.pooling not in POOLING:
        return f"llama.cpp pools by {', '.join(POOLING)}, not {model.pooling}."
    if cfg.get("hidden_act", "gelu") != "gelu":
        return f"llama.cpp's bert runs GELU, not {cfg.get('hidden_act')}."
    if quantize not in (None, *TYPES):
        return f"The GGUF export writes {', '.join(TYPES)}, not {quantize}."
    return None


# -- writing -------------------------------------------------------------------------------------
def gguf_name(name: str) -> str:
    """An engine (HF) backbone weight name → llama.cpp's."""
    base, _, kind = name.rpartition(".")
    if base in NAMES:
        return f"{NAMES[base]}.{kind}"
    _, _, i, rest = base.split(".", 3)   # encoder.layer.N.<rest>
    return f"blk.{i}.{LAYER_NAMES[rest]}.{kind}"


def _weights(model) -> dict[str, np.ndarray]:
    """llama.cpp name → float32 weights of the backbone (its pooler, unused for embeddings, left out)."""
    return {gguf_name(k): np.array(v.astype(mx.float32)) for k, v in tree_flatten(model.backbone.parameters())
            if not k.startswith("pooler.")}


def _stored(name: str, w: np.ndarray, quantize: str):
    """(data, raw_dtype) as written: matrices in the asked type (q8_0 needs rows of 32), the rest f32,
    as llama.cpp's converter keeps norms, biases and the small position / token-type tables."""
    import gguf
    matrix = w.ndim == 2 and not name.startswith(("position_embd", "token_types"))
    if quantize == "f16" and matrix:
        return w.astype(np.float16), None
    if quantize == "q8_0" and matrix and w.shape[-1] % 32 == 0:
        return gguf.quants.quantize(w, gguf.GGMLQuantizationType.Q8_0), gguf.GGMLQuantizationType.Q8_0
    return w, None


def _vocab(tokenizer, size: int) -> tuple[list[str], list[int]]:
    """Tokens in llama.cpp's WordPiece form and their types (special tokens are control tokens)."""
    import gguf
    special = set(tokenizer.all_special_ids)
    tokens, types = [], []
    for i in range(size):
        tok = tokenizer.convert_ids_to_tokens(i) if i < len(tokenizer) else None
        if tok is None:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        tokens.append(tok if tok.startswith("[") and tok.endswith("]") else
                      tok[2:] if tok.startswith("##") else "\u2581" + tok)
        types.append(gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL)
    return tokens, types


def write(model, tokenizer, out: Path, quantize: str | None) -> None:
    import gguf
    quantize = quantize or "f32"
    cfg = model.info.config
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(out / FILE), "bert")
    writer.add_name(Path(str(model.info.source or "model")).name)
    writer.add_context_length(int(cfg["max_position_embeddings"]))
    writer.add_embedding_length(int(cfg["hidden_size"]))
    writer.add_feed_forward_length(int(cfg["intermediate_size"]))
    writer.add_block_count(int(cfg["num_hidden_layers"]))
    writer.add_head_count(int(cfg["num_attention_heads"]))
    writer.add_layer_norm_eps(float(cfg.get("layer_norm_eps", 1e-12)))
    writer.add_causal_attention(False)
    writer.add_pooling_type(gguf.PoolingType[POOLING[model.pooling]])
    writer.add_file_type({"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                          "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[quantize])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    tokens, types = _vocab(tokenizer, int(cfg["vocab_size"]))
    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_type_count(int(cfg.get("type_vocab_size", 2)))
    for key, token_id in (("unk", tokenizer.unk_token_id), ("sep", tokenizer.sep_token_id),
                          ("pad", tokenizer.pad_token_id), ("mask", tokenizer.mask_token_id),
                          ("bos", tokenizer.cls_token_id)):   # llama.cpp's bert starts with BOS = [CLS]
        if token_id is not None:
            getattr(writer, f"add_{key}_token_id")(int(token_id))
    for name, w in _weights(model).items():
        data, raw_dtype = _stored(name, w, quantize)
        writer.add_tensor(name, data, raw_dtype=raw_dtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


# -- the self-check ------------------------------------------------------------------------------
def read_back(path: Path) -> tuple[dict, dict[str, np.ndarray], dict[str, str]]:
    """(metadata, dequantized float32 weights by name, stored type by name) of a GGUF file."""
    import gguf
    reader = gguf.GGUFReader(str(path))
    meta = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("tokenizer.ggml.tokens")
            and k != "tokenizer.ggml.token_type"}
    meta["tokens"] = len(reader.fields["tokenizer.ggml.tokens"].data)
    weights = {t.name: gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32) for t in reader.tensors}
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    return meta, weights, types


def _engine_from(model, weights: dict[str, np.ndarray]):
    """A function batch → embeddings of ``model`` with ``weights`` (llama.cpp names) in its backbone."""
    names = {gguf_name(k): k for k, _ in tree_flatten(model.backbone.parameters()) if not k.startswith("pooler.")}
    swapped = tree_unflatten([(names[n], mx.array(w)) for n, w in weights.items()])

    def run(batch):
        original = tree_unflatten([(k, v) for k, v in tree_flatten(model.backbone.parameters())])
        model.backbone.update(swapped)
        try:
            return np.array(model(*(mx.array(batch[k].astype(np.int32)) for k in ("input_ids", "attention_mask"))))
        finally:
            model.backbone.update(original)
    return run


def check(model, tokenizer, out: Path, texts, quantize: str | None = None) -> dict:
    """Read the file back: metadata, names and shapes, weights (f32 exact, f16 / q8_0 within their
    rounding), and the embeddings of the engine running on the read-back weights."""
    import gguf
    quantize = quantize or "f32"
    meta, weights, types = read_back(Path(out) / FILE)
    ours = _weights(model)
    cfg = model.info.config
    problems = []
    expected = {"general.architecture": "bert", "bert.block_count": cfg["num_hidden_layers"],
                "bert.embedding_length": cfg["hidden_size"], "bert.attention.causal": False,
                "bert.pooling_type": int(gguf.PoolingType[POOLING[model.pooling]]),
                "tokenizer.ggml.model": "bert", "tokens": cfg["vocab_size"]}
    problems += [f"{k} = {meta.get(k)!r}, not {v!r}" for k, v in expected.items() if meta.get(k) != v]
    if set(weights) != set(ours):
        problems.append(f"tensors differ: {sorted(set(weights) ^ set(ours))}")
    weight_diff = 0.0
    for name in set(weights) & set(ours):
        if weights[name].shape != ours[name].shape:
            problems.append(f"{name}: shape {weights[name].shape}, not {ours[name].shape}")
            continue
        diff = float(np.abs(weights[name] - ours[name]).max())
        # q8_0: half a step of each 32-block's scale (max|w|/127); f16: its rounding
        bound = {"F32": 0.0, "F16": 1e-3 * float(np.abs(ours[name]).max()),
                 "Q8_0": float(np.abs(ours[name]).max()) / 127}[types[name]]
        if diff > bound:
            problems.append(f"{name}: |Δ| {diff:.3g} > {bound:.3g}")
        weight_diff = max(weight_diff, diff)
    all_texts = list(texts) + list(EXTRA_TEXTS)
    run = _engine_from(model, weights) if not problems else None
    report = {"reference": f"gguf {metadata.version('gguf')} GGUFReader, weights dequantized into the engine",
              "compared": "metadata, tensors and sentence embeddings from the read-back weights",
              "quantize": quantize, "tensor_types": sorted(set(types.values())), "weights_max_abs_diff": weight_diff,
              "pooling": model.pooling, "normalize": model.normalize, "file": FILE}
    if run is None:
        report.update(max_abs_diff=float("inf"), min_cosine=None, ok=False, detail="; ".join(problems[:5]),
                      tolerance="the file reads back as written")
        return report
    encoded = batches(model, tokenizer, all_texts)
    a = np.array(model(*(mx.array(encoded[0][k].astype(np.int32)) for k in ("input_ids", "attention_mask"))))
    b = run(encoded[0])
    report.update(max_abs_diff=float(np.abs(a - b).max()), min_cosine=float(cosines(a, b).min()))
    if quantize == "q8_0":   # judged as the ONNX int8 files are
        report.update(int8_agreement(model, tokenizer, run, encoded, all_texts), tolerance=int8_tolerance(model))
    else:
        report.update(ok=report["min_cosine"] >= COSINE_MIN, tolerance=f"cosine ≥ {COSINE_MIN}")
    return report


def card_section(model, check: dict, name: str) -> list[str]:
    normalised = ("normalises embeddings by default (`--embd-normalize 2`), as this model does." if model.normalize
                  else "normalises by default: pass `--embd-normalize -1` for this model's raw vectors.")
    lines = ["## GGUF (llama.cpp)", "",
             f"`{FILE}`: llama.cpp's `bert` architecture, {check.get('quantize', 'f32')}, pooling {model.pooling} "
             f"(`bert.pooling_type`). llama.cpp {normalised}", "",
             "```sh", f'llama-embedding -m {name}/{FILE} -p "The weather is lovely today." --pooling '
             f"{model.pooling.replace('lasttoken', 'last')}",
             f"llama-server -m {name}/{FILE} --embeddings", "```", "",
             "LM Studio and Ollama load the same file (Ollama: a Modelfile with `FROM ./model.gguf`).", ""]
    if any((model.info.prompts or {}).values()):
        lines += ["llama.cpp applies no prompts: put them before the texts yourself, as in training: "
                  f"`{json.dumps(model.info.prompts, ensure_ascii=False)}`.", ""]
    overlap = f", top-10 overlap {check['top10_overlap']:.2f}" if "top10_overlap" in check else ""
    return lines + [
        "### Check", "",
        "The file was read back with `gguf.GGUFReader` (metadata, tensor names and shapes); its weights, "
        "dequantized, were put into the MLX model and its embeddings compared with the original's on "
        f"{check.get('rows', '?')} texts plus a long (truncated) and a non-ASCII one: max abs difference "
        f"{check['max_abs_diff']:.2e}, min cosine {check.get('min_cosine') or 0:.6f}{overlap} (needs "
        f"{check['tolerance']}). llama.cpp itself did not run: llama-cpp-python has no binary wheel on the "
        "machine that built this, and its GELU and attention kernels differ slightly from MLX's.", ""]
