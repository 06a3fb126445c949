"""PEFT's adapter folder: ``adapter_config.json`` + ``adapter_model.safetensors``, written from a model with
adapters (engine/models/adapters.py) and read back onto its base, ours or one peft wrote.

    adapter_model.safetensors    base_model.model.<module path>.lora_A.weight [r, in] / .lora_B.weight [out, r]
                                 (DoRA: .lora_magnitude_vector [out]); a head in ``modules_to_save`` under its
                                 own names (base_model.model.classifier.weight)

Module paths are transformers' for the class peft wrapped: the bare encoder (AutoModel) for embedding
models, the task class (the backbone under its HF attribute, e.g. ``bert.``) otherwise.
"""
from __future__ import annotations

from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from engine.errors import ModelError, UsageError
from engine.files import atomic_write, read_json, write_json
from engine.models.adapters import adapter_layers, apply_adapters
from engine.tasks import EMBEDDING_TASKS

PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
# peft's task_type for each task it has a class for (masked LM has none: None, peft's base PeftModel)
PEFT_TASK_TYPES = {"feature-extraction": "FEATURE_EXTRACTION", "sentence-similarity": "FEATURE_EXTRACTION",
                   "text-classification": "SEQ_CLS", "token-classification": "TOKEN_CLS"}
# peft's tensor names (after ``base_model.model.<module path>``) → ours
PEFT_NAMES = {".lora_A.weight": "lora_a", ".lora_B.weight": "lora_b", ".lora_magnitude_vector.weight": "lora_magnitude",
              ".lora_magnitude_vector": "lora_magnitude"}


def peft_weights(model, embedding: bool) -> tuple[dict, dict]:
    """(peft's adapter_model.safetensors tensors, the adapter_config.json keys it depends on) for
    ``model`` as transformers' class for it names modules: the bare encoder (``embedding``, loaded by
    AutoModel) or the task class (the backbone under its HF attribute; the head in ``modules_to_save``)."""
    if embedding and (model.dense or model.info.late_interaction):
        raise UsageError("A PEFT adapter holds the encoder's layers only, and this model also trains a Dense "
                         "projection that it would lose. Use the merged output (the default) instead.")
    prefix = "" if embedding else model.backbone_name + "."
    weights, targets = {}, []
    for path, layer in adapter_layers(model.backbone):
        name = f"base_model.model.{prefix}{path}"
        targets.append(prefix + path)
        weights[f"{name}.lora_A.weight"] = layer.lora_a
        weights[f"{name}.lora_B.weight"] = layer.lora_b
        if layer.dora:
            weights[f"{name}.lora_magnitude_vector"] = layer.lora_magnitude
    heads = [] if embedding else [k for k, v in model.children().items()
                                  if k != model.backbone_name and isinstance(v, nn.Module)]
    for head in heads:
        for key, value in tree_flatten(model[head].parameters()):
            weights[f"base_model.model.{head}.{key}"] = value
    return weights, {"target_modules": sorted(targets), "modules_to_save": heads or None}


def peft_config(model, base: str, targets: dict) -> dict:
    """adapter_config.json as peft writes it (the keys peft reads; the rest keep peft's defaults)."""
    a = model.info.adapter
    return {"peft_type": "LORA", "task_type": PEFT_TASK_TYPES.get(model.info.task), "base_model_name_or_path": base,
            "r": a["r"], "lora_alpha": a["lora_alpha"], "lora_dropout": a["lora_dropout"], "use_dora": a["use_dora"],
            "use_rslora": False, "bias": "none", "fan_in_fan_out": False, "init_lora_weights": True,
            "inference_mode": True, **targets}


def save_adapter(model, out_dir, base: str, embedding: bool) -> Path:
    """adapter_config.json + adapter_model.safetensors into ``out_dir``: what
    ``peft.PeftModel.from_pretrained(AutoModel….from_pretrained(base), out_dir)`` loads."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights, targets = peft_weights(model, embedding)
    write_json(out / PEFT_CONFIG, peft_config(model, base, targets))
    atomic_write(out / PEFT_WEIGHTS, lambda tmp: mx.save_safetensors(tmp, weights, metadata={"format": "pt"}))
    return out


def read_adapter_config(folder) -> dict | None:
    """adapter_config.json of a PEFT adapter folder (ours or peft's); None when ``folder`` is not one."""
    path = Path(folder) / PEFT_CONFIG
    return read_json(path) if path.is_file() else None


def adapter_task(config: dict) -> str | None:
    """The task an adapter folder was saved for, from peft's task_type (None: not said)."""
    return {"SEQ_CLS": "text-classification", "TOKEN_CLS": "token-classification",
            "FEATURE_EXTRACTION": "feature-extraction"}.get(config.get("task_type") or "")


def read_adapter_weights(folder) -> tuple[dict, dict]:
    """({layer path: {lora_a, lora_b[, lora_magnitude]}}, {head weight name: array}) of an adapter folder's
    safetensors, with peft's ``base_model.model.`` prefix taken off."""
    folder = Path(folder)
    config = read_adapter_config(folder)
    where = folder / PEFT_CONFIG
    if config.get("peft_type", "LORA") != "LORA":
        raise ModelError(f"{where} holds a {config.get('peft_type')} adapter; only LoRA and DoRA adapters load here.")
    unsupported = [k for k in ("use_rslora", "fan_in_fan_out", "rank_pattern", "alpha_pattern") if config.get(k)]
    if config.get("bias", "none") != "none":
        unsupported.append(f"bias={config['bias']}")
    if unsupported:
        raise ModelError(f"{where} uses {', '.join(unsupported)}, which this engine's adapters do not implement. "
                         "Merge the adapter in peft (merge_and_unload) and pass the merged folder instead.")
    try:
        tensors = mx.load(str(folder / PEFT_WEIGHTS))
    except Exception as exc:  # noqa: BLE001 — missing or damaged
        raise ModelError(f"{folder / PEFT_WEIGHTS} could not be read ({exc}). An adapter folder holds "
                         f"{PEFT_CONFIG} and {PEFT_WEIGHTS}; copy the adapter again.") from None
    layers, heads = {}, {}
    for key, value in tensors.items():
        name = key.removeprefix("base_model.model.")
        suffix = next((s for s in PEFT_NAMES if name.endswith(s)), None)
        if suffix is None:
            heads[name] = value
        else:
            layers.setdefault(name[:-len(suffix)], {})[PEFT_NAMES[suffix]] = value
    if not layers:
        raise ModelError(f"{folder / PEFT_WEIGHTS} holds no LoRA weights (lora_A / lora_B).")
    return layers, heads


def adapter_labels(folder, task: str) -> int | None:
    """The label count of an adapter's classification head: the smallest output size among its 2-D head
    weights (the classifier's [labels, hidden]); None for other tasks or without a head."""
    if task not in ("text-classification", "token-classification"):
        return None
    _, heads = read_adapter_weights(folder)
    sizes = [v.shape[0] for v in heads.values() if v.ndim == 2]
    return min(sizes) if sizes else None


def load_adapter(model, folder) -> None:
    """Put the adapter saved in ``folder`` (PEFT's format: ours or peft's) on ``model``, its base loaded for
    the task: the adapted layers get `LoRALinear`s with the saved weights (trainable, the backbone frozen),
    the head (``modules_to_save``) its saved weights."""
    folder = Path(folder)
    config = read_adapter_config(folder)
    layers, heads = read_adapter_weights(folder)
    prefix = "" if model.info.task in EMBEDDING_TASKS else model.backbone_name + "."
    layers = {path.removeprefix(prefix): w for path, w in layers.items()}
    rank = next(iter(layers.values()))["lora_a"].shape[0]
    dora = any("lora_magnitude" in w for w in layers.values())
    found = apply_adapters(model, rank, float(config.get("lora_alpha", 8)), float(config.get("lora_dropout") or 0),
                           dora, sorted(layers))
    missing = sorted(set(layers) - set(found))
    if missing:
        raise ModelError(f"{folder / PEFT_WEIGHTS} adapts layers this model does not have ({', '.join(missing[:3])}"
                         f"); is {config.get('base_model_name_or_path')} its base model, loaded for the right task?")
    weights = {f"{path}.{key}": value for path, w in layers.items() for key, value in w.items()}
    for module, named, what in ((model.backbone, weights, "adapter"), (model, heads, "head")):
        current = dict(tree_flatten(module.parameters()))
        wrong = [f"{k} {tuple(v.shape)}" for k, v in named.items() if k not in current or current[k].shape != v.shape]
        if wrong:   # load_weights(strict=False) would not check the shapes
            raise ModelError(f"{folder / PEFT_WEIGHTS} holds {what} weights that do not fit this model "
                             f"({', '.join(wrong[:3])}); load it on its base model, for the task it was trained "
                             "for (--task).")
        module.load_weights(list(named.items()), strict=False)
    mx.eval(model.parameters())
    model.info.new_weights = [w for w in model.info.new_weights if w not in heads]
