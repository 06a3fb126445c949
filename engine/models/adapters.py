"""LoRA and DoRA adapters on the ``nn.Linear`` layers of a backbone, and their PEFT format.

LoRA (Hu et al. 2021, arXiv:2106.09685) trains a low-rank update of a frozen weight:

    y = x Wᵀ + b + s · (dropout(x) Aᵀ) Bᵀ           A: [r, in], B: [out, r], s = alpha / r

DoRA (Liu et al. 2024, arXiv:2402.09353) also trains each output row's magnitude m:

    y = m / ‖W + s·BA‖_row · (x (W + s·BA)ᵀ) + b    (the norm is a constant for the gradient, paper §4.3)

Both follow peft's `tuners/lora` (checked against peft 0.21): A starts as kaiming-uniform(a=√5), B as
zeros (the first step starts from the base model), m as ‖W‖_row. `LoRALinear` keeps the base ``weight``
and ``bias`` under their own names, so a checkpoint holds the frozen weights beside the adapter and
`merged_parameters` gives what a plain ``nn.Linear`` would hold: saving writes those, so an output
folder loads anywhere as today. The task head (everything outside ``model.backbone``) stays trainable.
"""
from __future__ import annotations

import fnmatch
import math
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten

from engine.errors import UsageError
from engine.files import atomic_write, write_json
from engine.models.dropout import Dropout

ADAPTER_WEIGHTS = ("lora_a", "lora_b", "lora_magnitude")
PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` (``weight`` [out, in], optional ``bias``) plus a trainable low-rank update."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0, dora: bool = False):
        super().__init__()
        out_dims, in_dims = base.weight.shape
        self.weight = base.weight
        if "bias" in base:
            self.bias = base.bias
        self.scale = alpha / rank   # a float: not a parameter
        self.dropout = Dropout(dropout)
        bound = 1 / math.sqrt(in_dims)  # torch's kaiming_uniform_(a=√5) on [r, in], as peft initialises lora_A
        self.lora_a = mx.random.uniform(-bound, bound, (rank, in_dims)).astype(base.weight.dtype)
        self.lora_b = mx.zeros((out_dims, rank), dtype=base.weight.dtype)
        if dora:
            self.lora_magnitude = mx.linalg.norm(base.weight, axis=1)
        self.freeze(recurse=False, keys=["weight", "bias"] if "bias" in base else ["weight"])

    @property
    def dora(self) -> bool:
        return "lora_magnitude" in self

    def _direction(self) -> mx.array:
        """W + s·BA: the update's full weight [out, in]."""
        return self.weight + self.scale * (self.lora_b @ self.lora_a)

    def _row_scale(self) -> mx.array:
        """DoRA's m / ‖W + s·BA‖_row [out]; the norm is not differentiated (paper §4.3, as peft)."""
        return self.lora_magnitude / mx.stop_gradient(mx.linalg.norm(self._direction(), axis=1))

    def __call__(self, x: mx.array) -> mx.array:
        y = x @ self.weight.T
        xd = self.dropout(x)
        update = self.scale * ((xd @ self.lora_a.T) @ self.lora_b.T)
        if self.dora:  # peft's (g − 1)·base(dropout(x)) + g·s·BA·dropout(x), g = m / ‖W + s·BA‖
            g = self._row_scale()
            y = y + (g - 1) * (y if xd is x else xd @ self.weight.T) + g * update
        else:
            y = y + update
        return y + self.bias if "bias" in self else y

    def merged_weight(self) -> mx.array:
        """The weight of the equivalent plain ``nn.Linear``."""
        w = self._direction()
        return self._row_scale()[:, None] * w if self.dora else w

    def merge(self) -> nn.Linear:
        """A plain ``nn.Linear`` with the adapter folded into its weight."""
        out_dims, in_dims = self.weight.shape
        linear = nn.Linear(in_dims, out_dims, bias="bias" in self)
        linear.weight = self.merged_weight()
        if "bias" in self:
            linear.bias = self.bias
        return linear


def matches(name: str, patterns) -> bool:
    """peft's rule: a module matches a pattern equal to its path or to a dotted suffix of it
    (``query`` matches ``encoder.layer.0.attention.self.query``); a pattern with ``*`` or ``?`` is
    matched against the whole path (``encoder.layer.1*.query``)."""
    for p in patterns:
        if any(c in p for c in "*?["):
            if fnmatch.fnmatchcase(name, p):
                return True
        elif name == p or name.endswith("." + p):
            return True
    return False


def parse_targets(text: str | None) -> tuple[str, ...]:
    """``"q_proj, v_proj"`` → ("q_proj", "v_proj"); empty or None → () (the family's default targets)."""
    return tuple(p.strip() for p in (text or "").split(",") if p.strip())


def apply_adapters(model, rank: int, alpha: float, dropout: float = 0.0, dora: bool = False,
                   targets=None) -> list[str]:
    """Freeze the backbone and wrap each of its ``nn.Linear`` layers whose path matches ``targets``
    (default: the family's ``SPEC.lora_targets``) in a `LoRALinear`. The head stays trainable.
    Returns the wrapped paths (backbone-relative); raises UsageError when nothing matches."""
    if rank < 1:
        raise UsageError(f"lora_rank must be at least 1 to add adapters, got {rank}.")
    patterns = tuple(targets) if targets else model.info.family.SPEC.lora_targets
    backbone = model.backbone
    found = [(path, m) for path, m in backbone.named_modules()
             if isinstance(m, nn.Linear) and matches(path, patterns)]
    if not found:
        linears = sorted({p.rpartition(".")[2] for p, m in backbone.named_modules() if isinstance(m, nn.Linear)})
        raise UsageError(f"No linear layer of the model matches the LoRA targets {', '.join(patterns)}; "
                         f"its linear layers are named {', '.join(linears)}.")
    backbone.freeze()
    backbone.update_modules(tree_unflatten([(path, LoRALinear(m, rank, alpha, dropout, dora)) for path, m in found]))
    model.info.adapter = {"r": rank, "lora_alpha": alpha, "lora_dropout": dropout, "use_dora": dora,
                          "target_modules": sorted(path for path, _ in found)}
    return [path for path, _ in found]


def apply_training_adapters(model, training: dict) -> bool:
    """Add the adapters a run's training settings (``TrainingArgs.to_dict()``, a run record's
    ``training``) ask for, unless the model has them already; False when the run trains every weight."""
    if not training.get("lora_rank") or adapter_layers(model):
        return False
    apply_adapters(model, training["lora_rank"], training["lora_alpha"], training["lora_dropout"],
                   training["dora"], parse_targets(training["lora_targets"]))
    return True


def adapter_layers(module: nn.Module) -> list[tuple[str, LoRALinear]]:
    return [(path, m) for path, m in module.named_modules() if isinstance(m, LoRALinear)]


def merged_parameters(module: nn.Module) -> dict:
    """Flat {name: array} of ``module`` as if every `LoRALinear` in it were its merged ``nn.Linear``."""
    flat = dict(tree_flatten(module.parameters()))
    for path, layer in adapter_layers(module):
        prefix = f"{path}." if path else ""
        for key in ADAPTER_WEIGHTS:
            flat.pop(prefix + key, None)
        flat[prefix + "weight"] = layer.merged_weight()
    return flat


def merge_adapters(model) -> None:
    """Replace every `LoRALinear` of ``model`` by its merged ``nn.Linear``, in place."""
    merged = [(path, layer.merge()) for path, layer in adapter_layers(model)]
    if merged:
        model.update_modules(tree_unflatten(merged))


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
    return {"peft_type": "LORA", "task_type": None, "base_model_name_or_path": base,
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
