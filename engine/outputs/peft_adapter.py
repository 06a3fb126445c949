"""The ``peft`` export: a LoRA / DoRA run's adapter alone, as peft saves one.

    adapter_config.json          r, lora_alpha, use_dora, target_modules, modules_to_save (the head),
                                 base_model_name_or_path (the model the run started from)
    adapter_model.safetensors    base_model.model.<module>.lora_A.weight / lora_B.weight
                                 (DoRA: .lora_magnitude_vector; the head's own weights under its name)

``peft.PeftModel.from_pretrained(AutoModel….from_pretrained(base), folder)`` loads it. The export needs a
model that still has its adapters: a checkpoint of a LoRA run (``RUN/checkpoints/step-N``), or an adapter
folder; a run's output folder holds the merged weights. The self-check loads the folder in peft on the
base model and compares with the engine (a runtime module of engine/outputs/export.py: missing, refusal,
write, check, card_section). An adapter trained on a quantized base (--quantize-base) goes on the float
base like any QLoRA adapter: the check then compares peft with the engine's own float base + adapter,
since the quantized model that trained differs from it by the quantization error.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

import mlx.core as mx

from engine.data.inputs import tokenize_texts
from engine.models import load_model
from engine.models.adapters import adapter_layers
from engine.models.peft_format import PEFT_WEIGHTS, peft_weights, save_adapter
from engine.models.saving import is_embedding

WITH_LIBRARY_FILES = False     # the adapter alone: the base model comes from base_model_name_or_path
COSINE_MIN = 0.9999            # per row of logits, per real token of hidden states


def missing() -> str | None:
    return None   # writing needs nothing; the check uses peft when it is installed


def refusal(model, quantize: str | None) -> str | None:
    if quantize:
        return "--quantize does not apply to a PEFT adapter."
    if not adapter_layers(model):
        return ("This model has no LoRA adapters (a run's output folder holds merged weights). Export a checkpoint "
                "of a run trained with --lora-rank (--model RUN/checkpoints/step-N), or train with --save-adapter.")
    if is_embedding(model) and (model.dense or model.info.late_interaction):
        return "A PEFT adapter holds the encoder's layers only, and this model also trains a Dense projection."
    return None


def write(model, tokenizer, out: Path, quantize: str | None) -> None:
    save_adapter(model, out, model.info.source, is_embedding(model))
    tokenizer.save_pretrained(str(out))


def _peft_outputs(model, out: Path, arrays: dict) -> tuple[np.ndarray, str]:
    """The outputs of ``out`` loaded by peft on the base model, and what loaded it."""
    import peft
    import torch
    import transformers
    name = "AutoModel" if is_embedding(model) else model.info.family.SPEC.auto_class(model.info.task)
    kw = {} if is_embedding(model) else {"num_labels": len(model.info.config.get("id2label") or {}) or 1}
    base = getattr(transformers, name).from_pretrained(model.info.source, dtype=torch.float32, **kw)
    ref = peft.PeftModel.from_pretrained(base, str(out)).eval()
    with torch.no_grad():
        res = ref(**{k: torch.tensor(v, dtype=torch.long) for k, v in arrays.items()})
    theirs = res.last_hidden_state if is_embedding(model) else res.logits
    return theirs.float().numpy(), f"peft {peft.__version__} ({name} + adapter)"


def _check_file(model, out: Path) -> dict:
    """Without peft (or torch): the written tensors against the live adapter's."""
    saved = mx.load(str(out / PEFT_WEIGHTS))
    ours, _ = peft_weights(model, is_embedding(model))
    diff = max(float(mx.abs(saved[k] - v).max()) if k in saved else float("inf") for k, v in ours.items())
    return {"reference": "the adapter file (peft not installed)", "compared": "adapter tensors", "max_abs_diff": diff,
            "min_cosine": None, "tolerance": "equal", "ok": diff == 0 and saved.keys() == ours.keys()}


def check(model, tokenizer, out: Path, texts, quantize: str | None = None) -> dict:
    out = Path(out)
    if not (importlib.util.find_spec("peft") and importlib.util.find_spec("torch")):
        return _check_file(model, out)
    embedding = is_embedding(model)
    bits = model.info.adapter.get("quantize_base")
    if bits:   # peft puts the adapter on the float base: compare with the engine's float base + this adapter
        model, _ = load_model(str(out), model.info.task)
    enc = tokenize_texts(tokenizer, list(texts), padding=True, return_tensors="np", max_length=128)
    keys = ("input_ids", "attention_mask") + (("token_type_ids",) if getattr(model, "token_types", False) else ())
    arrays = {k: enc[k].astype(np.int32) for k in keys if k in enc}
    fn = model.hidden_states if embedding else model
    ours = np.array(fn(*(mx.array(v) for v in arrays.values())).astype(mx.float32))
    theirs, reference = _peft_outputs(model, out, arrays)
    if bits:
        reference += f" vs the engine's float base + the adapter (trained on a {bits}-bit base)"
    mask = arrays["attention_mask"] > 0
    a, b = (ours[mask], theirs[mask]) if ours.ndim == 3 else (ours, theirs)   # hidden states: real tokens only
    cos = (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)
    return {"reference": reference, "compared": "hidden states" if embedding else "logits",
            "max_abs_diff": float(np.abs(a - b).max()), "min_cosine": float(cos.min()),
            "tolerance": f"cosine ≥ {COSINE_MIN}", "ok": bool(cos.min() >= COSINE_MIN)}


def card_section(model, check: dict, name: str) -> list[str]:
    embedding = is_embedding(model)
    auto = "AutoModel" if embedding else model.info.family.SPEC.auto_class(model.info.task)
    a = model.info.adapter
    return ["A " + ("DoRA" if a["use_dora"] else "LoRA") + f" adapter (r = {a['r']}, alpha = {a['lora_alpha']}) "
            f"for `{model.info.source}`, in peft's format.", "", "```python", "from peft import PeftModel",
            f"from transformers import {auto}", "", f'base = {auto}.from_pretrained("{model.info.source}")',
            f'model = PeftModel.from_pretrained(base, "{name}")', "```", "",
            f"Checked with {check['reference']}: {check['compared']}, max |Δ| {check['max_abs_diff']:.2e}"
            + (f", min cosine {check['min_cosine']:.6f}" if check.get("min_cosine") is not None else "") + "."] + (
        ["", f"The adapter was trained on a {a['quantize_base']}-bit quantized copy of the base (QLoRA-style). On the "
         "float base its outputs differ from the trained model's by that quantization error."]
        if a.get("quantize_base") else [])
