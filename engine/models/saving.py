"""`save_pretrained`: config.json + model.safetensors with HF names (and, for embedding models,
the sentence-transformers or PyLate files), each file written to a temporary name and renamed into
place so an interrupted save never leaves a half-written file behind.

Which layout a model gets follows ``model.info`` (its task, and ``late_interaction``), so this module
needs no model class and `TaskModel.save_pretrained` can call it without an import cycle."""
from __future__ import annotations

from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten

from engine.files import atomic_write, write_json
from engine.models import pylate
from engine.models.adapters import merged_parameters
from engine.tasks import EMBEDDING_TASKS

ST_VERSION = {"sentence_transformers": "5.3.0", "transformers": "5.24.0", "pytorch": "2.13.0"}


def write_safetensors(path: Path, weights: dict) -> None:
    # transformers refuses safetensors whose metadata lacks a known "format".
    atomic_write(path, lambda tmp: mx.save_safetensors(tmp, weights, metadata={"format": "pt"}))


def is_embedding(model) -> bool:
    return model.info.task in EMBEDDING_TASKS


def hf_weights(model) -> tuple[dict, str]:
    """(HF-named weights, HF architecture name) of a task model; an embedding model's backbone. Adapters merged."""
    info = model.info
    family = info.family
    # LoRA/DoRA layers are written merged: the folder holds plain full weights.
    weights = family.to_hf(merged_parameters(model.backbone if is_embedding(model) else model), info.config)
    return weights, family.SPEC.architectures["base" if is_embedding(model) else info.task]


def save_transformers(model, out_dir) -> Path:
    """config.json + model.safetensors: what transformers loads (an embedding model's bare encoder)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights, arch = hf_weights(model)
    config = dict(model.info.config, architectures=[arch], dtype="float32")
    config.pop("torch_dtype", None)
    write_json(out / "config.json", config)
    write_safetensors(out / "model.safetensors", weights)
    return out


def save_pretrained(model, out_dir) -> None:
    out = save_transformers(model, out_dir)
    if is_embedding(model):
        (save_pylate if model.info.late_interaction else save_sentence_transformers)(model, out)


def save_pylate(model, out: Path) -> None:
    """PyLate's ColBERT layout: Transformer + ``pylate.models.Dense.Dense`` (no pooling, no Normalize
    module: PyLate normalises each token itself) and its settings in config_sentence_transformers.json,
    as PyLate writes them."""
    info = model.info
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]
    for i, layer in enumerate(model.dense, 1):
        path = f"{i}_Dense"
        modules.append({"idx": i, "name": str(i), "path": path, "type": pylate.DENSE_TYPE})
        write_json(out / path / "config.json", dict(layer.st_config(), use_residual=False))
        write_safetensors(out / path / "model.safetensors", dict(tree_flatten(layer.parameters())))
    write_json(out / "modules.json", modules)
    write_json(out / "sentence_bert_config.json",
               {"max_seq_length": info.max_seq_length or min(info.config.get("max_position_embeddings", 512), 8192),
                "do_lower_case": False})
    colbert = info.colbert or pylate.read_colbert_config(None)
    write_json(out / "config_sentence_transformers.json", {
        "__version__": ST_VERSION, "prompts": info.prompts or {"query": "", "document": ""},
        "default_prompt_name": info.default_prompt_name, "similarity_fn_name": "MaxSim",
        **{k: colbert[k] for k in pylate.DEFAULTS}})


def save_sentence_transformers(model, out: Path) -> None:
    """modules.json, pooling, Dense, Normalize and prompts, as sentence-transformers lays them out."""
    info = model.info
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]

    def add(kind, folder=None):
        i = len(modules)
        path = f"{i}_{folder or kind}"
        modules.append({"idx": i, "name": str(i), "path": path, "type": f"sentence_transformers.models.{kind}"})
        return out / path

    if model.pooling is not None:
        d = add("Pooling")
        hidden = info.args.hidden_size
        write_json(d / "config.json", {
            "word_embedding_dimension": hidden,
            "pooling_mode_cls_token": model.pooling == "cls",
            "pooling_mode_mean_tokens": model.pooling == "mean",
            "pooling_mode_max_tokens": model.pooling == "max",
            "pooling_mode_mean_sqrt_len_tokens": False,
            "pooling_mode_weightedmean_tokens": False,
            "pooling_mode_lasttoken": model.pooling == "lasttoken",
            "include_prompt": True,
        })
    for layer in model.dense:
        d = add("Dense")
        write_json(d / "config.json", layer.st_config())
        write_safetensors(d / "model.safetensors", dict(tree_flatten(layer.parameters())))
    if model.normalize:
        d = add("Normalize")
        d.mkdir(parents=True, exist_ok=True)
    write_json(out / "modules.json", modules)
    write_json(out / "sentence_bert_config.json",
               {"max_seq_length": info.max_seq_length or min(info.config.get("max_position_embeddings", 512), 8192),
                "do_lower_case": False})
    write_json(out / "config_sentence_transformers.json", {
        "__version__": ST_VERSION, "model_type": "SentenceTransformer",
        "prompts": info.prompts, "default_prompt_name": info.default_prompt_name,
        "similarity_fn_name": "cosine"})
