"""GGUF export for llama.cpp (LM Studio, Ollama, llama-server --embeddings): embedding models as the
llama.cpp architecture of their family, written with the ``gguf`` package in f32, f16 or q8_0.

    bert          → ``bert``             learned positions, token types, GELU; the pooler is dropped
    modernbert    → ``modern-bert``      no biases, GeGLU, global / local layers (``sliding_window_pattern``
                                         per layer, ``rope.freq_base`` / ``rope.freq_base_swa``)
    gemma3_text   → ``gemma-embedding``  EmbeddingGemma: bidirectional, RMSNorm weights stored as 1 + w (what
                                         llama.cpp multiplies by), two Dense layers as ``dense_2`` / ``dense_3``
                                         with their ``*_feat_in`` / ``*_feat_out`` sizes

Architecture names, tensor names (``gguf.get_tensor_name_map``) and metadata keys are the gguf package's,
as llama.cpp's convert_hf_to_gguf.py writes them; ``{arch}.pooling_type`` from the model's pooling. The
vocabulary: WordPiece in llama.cpp's "phantom space" form (``tokenizer.ggml.model = bert``: ``▁word``,
``##piece`` → ``piece``), or byte-level BPE with its merges (``gpt2``, ModernBERT's own tokenizer).

The self-check reads the file back with ``gguf.GGUFReader``: metadata, tensor names and shapes, and the
dequantized weights put back into the engine's model, whose embeddings are compared with the live ones
(llama-cpp-python has no binary wheel here and its source build did not finish, so llama.cpp itself does
not run in the check).
"""
from __future__ import annotations

import importlib.util
import json
from importlib import metadata
from pathlib import Path

import numpy as np

import mlx.core as mx
from mlx.utils import tree_flatten, tree_unflatten

from engine.errors import ExportError
from engine.models.heads import EmbeddingModel
from engine.outputs.onnx import EXTRA_TEXTS, batches, cosines, int8_agreement, int8_tolerance

INSTALL = "pip install 'raclate-tuner[gguf]'"
FILE = "model.gguf"
TYPES = ("f32", "f16", "q8_0")
COSINE_MIN = 0.9999              # f32 and f16: per row
WITH_LIBRARY_FILES = False       # the folder holds the .gguf file, its README and raclate_run.json
ARCHS = {"bert": "BERT", "modernbert": "MODERN_BERT", "gemma3_text": "GEMMA_EMBEDDING"}   # gguf.MODEL_ARCH
POOLING = {"mean": "MEAN", "cls": "CLS", "lasttoken": "LAST"}   # what llama.cpp pools by
DENSE = ("DENSE_2_OUT", "DENSE_3_OUT")    # gguf.MODEL_TENSOR of EmbeddingGemma's two Dense layers
IDENTITY = "torch.nn.modules.linear.Identity"


# -- before any work -----------------------------------------------------------------------------
def missing() -> str | None:
    return None if importlib.util.find_spec("gguf") else f"The GGUF export needs the gguf package: {INSTALL}"


def refusal(model, quantize: str | None) -> str | None:
    family = model.info.config.get("model_type")
    if family not in ARCHS:
        return f"The GGUF export supports the {', '.join(ARCHS)} families, not {family!r}."
    if not isinstance(model, EmbeddingModel) or model.info.late_interaction:
        return ("The GGUF export covers dense embedding models (llama.cpp cannot run a ColBERT projection or "
                f"this task's head), not {'late interaction' if model.info.late_interaction else model.info.task}.")
    if model.pooling not in POOLING:
        return f"llama.cpp pools by {', '.join(POOLING)}, not {model.pooling}."
    if quantize not in (None, *TYPES):
        return f"The GGUF export writes {', '.join(TYPES)}, not {quantize}."
    return {"bert": _bert_refusal, "modernbert": _modernbert_refusal, "gemma3_text": _gemma_refusal}[family](model)


def _bert_refusal(model) -> str | None:
    if model.dense:
        return "llama.cpp's bert architecture has no Dense layers after pooling: this model's vectors would differ."
    if model.info.args.hidden_act != "gelu":
        return f"llama.cpp's bert runs GELU, not {model.info.args.hidden_act}."
    return None


def _modernbert_refusal(model) -> str | None:
    args = model.info.args
    if model.dense:
        return ("llama.cpp's modern-bert architecture has no Dense layers after pooling: this model's vectors "
                "would differ.")
    biases = [k for k in ("attention_bias", "mlp_bias", "norm_bias") if getattr(args, k)]
    if biases:
        return f"llama.cpp's modern-bert has no bias weights, and this model has them ({', '.join(biases)})."
    if args.hidden_activation != "gelu":
        return f"llama.cpp's modern-bert runs GeGLU (gelu), not {args.hidden_activation}."
    return None


def _gemma_refusal(model) -> str | None:
    args = model.info.args
    if not args.use_bidirectional_attention:
        return ("llama.cpp's gemma-embedding architecture attends both ways (EmbeddingGemma); this Gemma3 model "
                "is causal.")
    if args.query_pre_attn_scalar != args.head_dim:
        return (f"llama.cpp's gemma-embedding scales attention by 1/√head_dim, and this model by "
                f"1/√{args.query_pre_attn_scalar}.")
    if args.sliding_window is None or any(scale != 1.0 for _, _, scale in args.rope.values()):
        return "llama.cpp's gemma-embedding needs a sliding window and unscaled RoPE, as EmbeddingGemma has."
    if args.hidden_activation != "gelu_pytorch_tanh":
        return f"llama.cpp's gemma-embedding runs gelu_pytorch_tanh, not {args.hidden_activation}."
    dense = model.dense
    if dense and (len(dense) != 2 or any(d.activation_function != IDENTITY or "bias" in d.linear for d in dense)
                  or dense[0].linear.weight.shape[1] != args.hidden_size
                  or dense[1].linear.weight.shape[0] != args.hidden_size):
        return ("llama.cpp's gemma-embedding applies two Dense layers without bias or activation (hidden → n → "
                "hidden), as EmbeddingGemma's; this model's Dense layers differ.")
    return None


def _vocab_refusal(tokenizer) -> str | None:
    kind = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    if kind["type"] == "WordPiece" or (kind["type"] == "BPE" and not kind.get("byte_fallback")):
        return None
    return (f"The GGUF export writes WordPiece and byte-level BPE vocabularies, and this tokenizer is a "
            f"{'SentencePiece-style BPE' if kind['type'] == 'BPE' else kind['type']} one; nothing was written. "
            "Export the sentence-transformers folder and convert it with llama.cpp's convert_hf_to_gguf.py.")


# -- writing -------------------------------------------------------------------------------------
def _arch(model):
    import gguf
    return gguf.MODEL_ARCH[ARCHS[model.info.config["model_type"]]]


def _shift(model, name: str) -> float:
    """Gemma's RMSNorm weights are stored as w, used as 1 + w: llama.cpp multiplies by what it reads."""
    return 1.0 if model.info.config["model_type"] == "gemma3_text" and name.endswith("norm.weight") else 0.0


def _names(model) -> dict[str, str]:
    """The model's weight names (``backbone.…``, ``dense.N.linear.weight``) → llama.cpp's."""
    import gguf
    tmap = gguf.get_tensor_name_map(_arch(model), model.info.args.num_hidden_layers)
    names = {}
    for key, _ in tree_flatten(model.parameters()):
        if key.startswith("dense."):    # dense.0.linear.weight → dense_2.weight
            names[key] = gguf.TENSOR_NAMES[gguf.MODEL_TENSOR[DENSE[int(key.split(".")[1])]]] + ".weight"
        elif not key.startswith("backbone.pooler."):   # BERT's pooler: unused for embeddings
            names[key] = tmap.get_name(key.removeprefix("backbone."), try_suffixes=(".weight", ".bias"))
    return names


def _weights(model) -> dict[str, np.ndarray]:
    """llama.cpp name → float32 weights as stored (Gemma's norms shifted by 1)."""
    params = dict(tree_flatten(model.parameters()))
    return {gname: np.array(params[key].astype(mx.float32)) + np.float32(_shift(model, gname))
            for key, gname in _names(model).items()}


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


def _vocab(writer, tokenizer, size: int, family: str) -> None:
    """Tokens, their types (special tokens are control tokens) and, for BPE, the merges; special ids as
    the tokenizer adds them (llama.cpp's WordPiece always adds BOS = [CLS] and SEP)."""
    import gguf
    model = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    special = set(tokenizer.all_special_ids)
    added = set(tokenizer.added_tokens_decoder) - special
    tokens, types = [], []
    for i in range(size):
        tok = tokenizer.convert_ids_to_tokens(i) if i < len(tokenizer) else None
        if tok is None:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        if model["type"] == "WordPiece" and not (tok.startswith("[") and tok.endswith("]")):
            tok = tok[2:] if tok.startswith("##") else "\u2581" + tok
        tokens.append(tok)
        types.append(gguf.TokenType.CONTROL if i in special else
                     gguf.TokenType.USER_DEFINED if i in added else gguf.TokenType.NORMAL)
    ids = {"unk": tokenizer.unk_token_id, "pad": tokenizer.pad_token_id, "mask": tokenizer.mask_token_id}
    if model["type"] == "WordPiece":
        writer.add_tokenizer_model("bert")
        writer.add_tokenizer_pre("default")
        ids.update(bos=tokenizer.cls_token_id, sep=tokenizer.sep_token_id)
    else:   # BOS / EOS: the special tokens the tokenizer puts around a text (ModernBERT: [CLS], [SEP])
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre("modern-bert" if family == "modernbert" else "gpt-2")   # the GPT-2 split rule
        writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in model["merges"]])
        sample = tokenizer("a")["input_ids"]
        first, last = (t if t in special else None for t in (sample[0], sample[-1]))
        writer.add_add_bos_token(first is not None)
        writer.add_add_eos_token(last is not None)
        ids.update(bos=first, eos=last, sep=last)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    for key, token_id in ids.items():
        if token_id is not None:
            getattr(writer, f"add_{key}_token_id")(int(token_id))


def _hparams(writer, model) -> None:
    """The architecture's keys, as convert_hf_to_gguf.py writes them."""
    args, cfg, family = model.info.args, model.info.config, model.info.config["model_type"]
    sliding = [t == "sliding_attention" for t in getattr(args, "layer_types", [])]
    writer.add_context_length(int(cfg["max_position_embeddings"]))
    writer.add_embedding_length(int(args.hidden_size))
    writer.add_feed_forward_length(int(args.intermediate_size))
    writer.add_block_count(int(args.num_hidden_layers))
    writer.add_head_count(int(args.num_attention_heads))
    writer.add_causal_attention(False)
    if family == "bert":
        writer.add_layer_norm_eps(float(args.layer_norm_eps))
        writer.add_token_type_count(int(args.type_vocab_size))
    elif family == "modernbert":
        writer.add_layer_norm_eps(float(args.norm_eps))
        writer.add_sliding_window(int(args.local_attention))        # llama.cpp: |i - j| ≤ window / 2
        writer.add_sliding_window_pattern(sliding)                   # per layer: is it a local one
        writer.add_rope_freq_base(float(args.rope_theta["full_attention"]))
        writer.add_rope_freq_base_swa(float(args.rope_theta["sliding_attention"]))
    else:
        writer.add_layer_norm_rms_eps(float(args.rms_norm_eps))
        writer.add_head_count_kv(int(args.num_key_value_heads))
        writer.add_key_length(int(args.head_dim))
        writer.add_value_length(int(args.head_dim))
        writer.add_sliding_window(int(args.sliding_window))         # the config's: llama.cpp halves it
        writer.add_sliding_window_pattern(sliding)
        writer.add_rope_freq_base(float(args.rope["full_attention"][1]))
        writer.add_rope_freq_base_swa(float(args.rope["sliding_attention"][1]))
        for name, layer in zip(("dense_2", "dense_3"), model.dense):
            out_features, in_features = layer.linear.weight.shape
            writer.add_dense_features_dims(name, int(in_features), int(out_features))


def write(model, tokenizer, out: Path, quantize: str | None) -> None:
    import gguf
    problem = _vocab_refusal(tokenizer)
    if problem:
        raise ExportError(problem, "Export it as --format sentence-transformers instead.", refused=True)
    quantize = quantize or "f32"
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(out / FILE), gguf.MODEL_ARCH_NAMES[_arch(model)])
    writer.add_name(Path(str(model.info.source or "model")).name)
    _hparams(writer, model)
    writer.add_pooling_type(gguf.PoolingType[POOLING[model.pooling]])
    writer.add_file_type({"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                          "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[quantize])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _vocab(writer, tokenizer, int(model.info.args.vocab_size), model.info.config["model_type"])
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
            and k not in ("tokenizer.ggml.token_type", "tokenizer.ggml.merges")}
    meta["tokens"] = len(reader.fields["tokenizer.ggml.tokens"].data)
    weights = {t.name: gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32) for t in reader.tensors}
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    return meta, weights, types


def _engine_from(model, weights: dict[str, np.ndarray]):
    """A function batch → embeddings of ``model`` with ``weights`` (llama.cpp names, as stored) in it."""
    swapped = tree_unflatten([(key, mx.array(weights[g] - np.float32(_shift(model, g))))
                              for key, g in _names(model).items()])

    def run(batch):
        original = tree_unflatten(tree_flatten(model.parameters()))
        model.update(swapped)
        try:
            return np.array(model(*(mx.array(batch[k].astype(np.int32)) for k in ("input_ids", "attention_mask"))))
        finally:
            model.update(original)
    return run


def _expected(model) -> dict:
    """Metadata the file must hold."""
    import gguf
    arch, args = gguf.MODEL_ARCH_NAMES[_arch(model)], model.info.args
    keys = {"general.architecture": arch, f"{arch}.block_count": args.num_hidden_layers,
            f"{arch}.embedding_length": args.hidden_size, f"{arch}.attention.causal": False,
            f"{arch}.pooling_type": int(gguf.PoolingType[POOLING[model.pooling]]), "tokens": args.vocab_size}
    if hasattr(args, "layer_types"):
        keys[f"{arch}.attention.sliding_window_pattern"] = [t == "sliding_attention" for t in args.layer_types]
    for name, layer in zip(("dense_2", "dense_3"), model.dense):
        keys[f"{arch}.{name}_feat_out"] = layer.linear.weight.shape[0]
    return keys


def check(model, tokenizer, out: Path, texts, quantize: str | None = None) -> dict:
    """Read the file back: metadata, names and shapes, weights (f32 exact, f16 / q8_0 within their
    rounding), and the embeddings of the engine running on the read-back weights."""
    quantize = quantize or "f32"
    meta, weights, types = read_back(Path(out) / FILE)
    ours = _weights(model)
    problems = [f"{k} = {meta.get(k)!r}, not {v!r}" for k, v in _expected(model).items() if meta.get(k) != v]
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
              "architecture": meta.get("general.architecture"), "quantize": quantize,
              "tensor_types": sorted(set(types.values())), "weights_max_abs_diff": weight_diff,
              "pooling": model.pooling, "normalize": model.normalize, "dense_layers": len(model.dense), "file": FILE}
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
    arch = check.get("architecture") or "bert"
    normalised = ("normalises embeddings by default (`--embd-normalize 2`), as this model does." if model.normalize
                  else "normalises by default: pass `--embd-normalize -1` for this model's raw vectors.")
    dense = (f" Its {len(model.dense)} Dense layers are in the file (`dense_2`, `dense_3`) and llama.cpp applies "
             "them after pooling." if model.dense else "")
    lines = ["## GGUF (llama.cpp)", "",
             f"`{FILE}`: llama.cpp's `{arch}` architecture, {check.get('quantize', 'f32')}, pooling {model.pooling} "
             f"(`{arch}.pooling_type`). llama.cpp {normalised}{dense}", "",
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
