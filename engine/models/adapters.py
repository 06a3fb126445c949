"""LoRA and DoRA adapters on the ``nn.Linear`` layers of a backbone (their PEFT folders: peft_format.py).

LoRA (Hu et al. 2021, arXiv:2106.09685) trains a low-rank update of a frozen weight:

    y = x Wᵀ + b + s · (dropout(x) Aᵀ) Bᵀ           A: [r, in], B: [out, r], s = alpha / r

DoRA (Liu et al. 2024, arXiv:2402.09353) also trains each output row's magnitude m:

    y = m / ‖W + s·BA‖_row · (x (W + s·BA)ᵀ) + b    (the norm is a constant for the gradient, paper §4.3)

Both follow peft's `tuners/lora` (checked against peft 0.21): A starts as kaiming-uniform(a=√5), B as
zeros (the first step starts from the base model), m as ‖W‖_row. `LoRALinear` keeps the base ``weight``
and ``bias`` under their own names, so a checkpoint holds the frozen weights beside the adapter and
`merged_parameters` gives what a plain ``nn.Linear`` would hold: saving writes those, so an output
folder loads anywhere as today. The task head (everything outside ``model.backbone``) stays trainable.

QLoRA-style (Dettmers et al. 2023, arXiv:2305.14314, with MLX's affine quantization instead of NF4): the
frozen base linear layers become ``nn.QuantizedLinear`` (4 or 8 bits, groups of 64 input columns, 32 where
64 does not divide) and the adapters on top train in float. Merging dequantizes: the merged weights are
the quantized base plus the update, the model that trained, not the float base plus the update.
"""
from __future__ import annotations

import fnmatch
import math

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten

from engine.errors import UsageError
from engine.models.dropout import Dropout

ADAPTER_WEIGHTS = ("lora_a", "lora_b", "lora_magnitude")
QUANTIZED_WEIGHTS = ("scales", "biases")   # nn.QuantizedLinear's besides its packed uint32 ``weight``
QUANTIZE_BITS = (4, 8)


def group_size(in_dims: int) -> int | None:
    """The quantization group of a layer with ``in_dims`` inputs: 64, else 32, else None (stays float)."""
    return next((g for g in (64, 32) if in_dims % g == 0), None)


def check_quantization(bits: int) -> None:
    """Refuse --quantize-base where this MLX build cannot run a quantized matmul or its gradient with
    respect to the input (what the adapters below a quantized layer need)."""
    try:
        w, scales, biases = mx.quantize(mx.ones((32, 64)), 64, bits)
        x = mx.ones((2, 64))
        mx.eval(mx.grad(lambda x: mx.quantized_matmul(x, w, scales, biases, True, 64, bits).sum())(x))
    except Exception as exc:  # noqa: BLE001 — any failure means: not on this backend
        raise UsageError(f"--quantize-base {bits} needs MLX's quantized matmul and its gradient, which this MLX "
                         f"({mx.__version__}, {mx.default_device()}) cannot run: {exc}. Train without "
                         "--quantize-base (plain LoRA).") from None


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` (``weight`` [out, in], optional ``bias``) or ``nn.QuantizedLinear`` (packed
    ``weight``, ``scales``, ``biases``) plus a trainable low-rank update."""

    def __init__(self, base, rank: int, alpha: float, dropout: float = 0.0, dora: bool = False):
        super().__init__()
        for key in ("weight", "bias") + QUANTIZED_WEIGHTS:
            if key in base:
                self[key] = base[key]
        if isinstance(base, nn.QuantizedLinear):
            self.group_size, self.bits = base.group_size, base.bits   # ints: not parameters
        self.scale = alpha / rank   # a float: not a parameter
        self.dropout = Dropout(dropout)
        weight = self.base_weight()
        out_dims, in_dims = weight.shape
        bound = 1 / math.sqrt(in_dims)  # torch's kaiming_uniform_(a=√5) on [r, in], as peft initialises lora_A
        self.lora_a = mx.random.uniform(-bound, bound, (rank, in_dims)).astype(weight.dtype)
        self.lora_b = mx.zeros((out_dims, rank), dtype=weight.dtype)
        if dora:   # as peft: the norms of the weight the layer computes with (dequantized under QLoRA)
            self.lora_magnitude = mx.linalg.norm(weight, axis=1)
        self._freeze_base()

    def _freeze_base(self) -> None:
        self.freeze(recurse=False, keys=[k for k in ("weight", "bias") + QUANTIZED_WEIGHTS if k in self])

    @property
    def dora(self) -> bool:
        return "lora_magnitude" in self

    @property
    def quantized(self) -> bool:
        return "scales" in self

    def base_weight(self) -> mx.array:
        """The frozen weight [out, in] in float (dequantized when quantized)."""
        if not self.quantized:
            return self.weight
        return mx.dequantize(self.weight, self.scales, self.biases, self.group_size, self.bits)

    def quantize(self, bits: int) -> None:
        """Quantize the frozen base in place (a float base whose input size has a group; else no-op)."""
        group = group_size(self.weight.shape[1])
        if self.quantized or group is None:
            return
        self.weight, self.scales, self.biases = mx.quantize(self.weight, group, bits)
        self.group_size, self.bits = group, bits
        self._freeze_base()

    def _base(self, x: mx.array) -> mx.array:
        if not self.quantized:
            return x @ self.weight.T
        return mx.quantized_matmul(x, self.weight, self.scales, self.biases, True, self.group_size, self.bits)

    def _direction(self) -> mx.array:
        """W + s·BA: the update's full weight [out, in]."""
        return self.base_weight() + self.scale * (self.lora_b @ self.lora_a)

    def _row_scale(self) -> mx.array:
        """DoRA's m / ‖W + s·BA‖_row [out]; the norm is not differentiated (paper §4.3, as peft)."""
        return self.lora_magnitude / mx.stop_gradient(mx.linalg.norm(self._direction(), axis=1))

    def __call__(self, x: mx.array) -> mx.array:
        y = self._base(x)
        xd = self.dropout(x)
        update = self.scale * ((xd @ self.lora_a.T) @ self.lora_b.T)
        if self.dora:  # peft's (g − 1)·base(dropout(x)) + g·s·BA·dropout(x), g = m / ‖W + s·BA‖
            g = self._row_scale()
            y = y + (g - 1) * (y if xd is x else self._base(xd)) + g * update
        else:
            y = y + update
        return y + self.bias if "bias" in self else y

    def merged_weight(self) -> mx.array:
        """The weight of the equivalent plain ``nn.Linear``."""
        w = self._direction()
        return self._row_scale()[:, None] * w if self.dora else w

    def merge(self) -> nn.Linear:
        """A plain ``nn.Linear`` with the adapter folded into its weight."""
        weight = self.merged_weight()
        linear = nn.Linear(weight.shape[1], weight.shape[0], bias="bias" in self)
        linear.weight = weight
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
    """Freeze the backbone and wrap each of its linear layers (``nn.Linear``, or ``nn.QuantizedLinear`` under
    --quantize-base) whose path matches ``targets`` (default: the family's ``SPEC.lora_targets``) in a
    `LoRALinear`. The head stays trainable. Returns the wrapped paths (backbone-relative); raises
    UsageError when nothing matches."""
    if rank < 1:
        raise UsageError(f"lora_rank must be at least 1 to add adapters, got {rank}.")
    patterns = tuple(targets) if targets else model.info.family.SPEC.lora_targets
    backbone = model.backbone
    linears = [(path, m) for path, m in backbone.named_modules() if isinstance(m, (nn.Linear, nn.QuantizedLinear))]
    found = [(path, m) for path, m in linears if matches(path, patterns)]
    if not found:
        names = sorted({p.rpartition(".")[2] for p, _ in linears})
        raise UsageError(f"No linear layer of the model matches the LoRA targets {', '.join(patterns)}; "
                         f"its linear layers are named {', '.join(names)}.")
    backbone.freeze()
    backbone.update_modules(tree_unflatten([(path, LoRALinear(m, rank, alpha, dropout, dora)) for path, m in found]))
    model.info.adapter = {**model.info.adapter, "r": rank, "lora_alpha": alpha, "lora_dropout": dropout,
                          "use_dora": dora, "target_modules": sorted(path for path, _ in found)}
    return [path for path, _ in found]


def quantize_backbone(model, bits: int) -> None:
    """QLoRA's frozen base: every linear layer of the backbone quantized to ``bits`` and frozen (its adapters,
    if any, stay float and trainable); a layer whose input size has no group of 32 or 64 stays float.
    Idempotent."""
    if bits not in QUANTIZE_BITS:
        raise UsageError(f"quantize_base must be 4 or 8 bits, got {bits}.")
    check_quantization(bits)
    backbone = model.backbone
    plain = []
    for path, m in backbone.named_modules():
        if isinstance(m, LoRALinear):
            m.quantize(bits)
        elif isinstance(m, nn.Linear) and group_size(m.weight.shape[1]):
            plain.append((path, nn.QuantizedLinear.from_linear(m, group_size(m.weight.shape[1]), bits)))
    if plain:   # nn.QuantizedLinear freezes itself
        backbone.update_modules(tree_unflatten(plain))
    mx.eval(backbone.parameters())   # the quantized weights now, so that the float ones they read are freed
    model.info.adapter = {**model.info.adapter, "quantize_base": bits}


class NewRowsEmbedding(nn.Module):
    """A token embedding table whose last rows, tokens added to the tokenizer (ColBERT's [Q]/[D]), train
    while the rows the model came with stay frozen: ``weight`` [V, H] frozen, ``new_rows`` [k, H]."""

    def __init__(self, table: nn.Embedding, added: int):
        super().__init__()
        kept = table.weight.shape[0] - added
        self.weight = table.weight[:kept]
        self.new_rows = table.weight[kept:]
        self.freeze(recurse=False, keys=["weight"])

    def __call__(self, ids: mx.array) -> mx.array:
        kept = self.weight.shape[0]
        new = ids >= kept
        old_rows = self.weight[mx.where(new, 0, ids)]             # (…, H)
        new_rows = self.new_rows[mx.where(new, ids - kept, 0)]    # (…, H)
        return mx.where(new[..., None], new_rows, old_rows)

    def merged_weight(self) -> mx.array:
        return mx.concatenate([self.weight, self.new_rows], axis=0)

    def merge(self) -> nn.Embedding:
        weight = self.merged_weight()
        table = nn.Embedding(*weight.shape)
        table.weight = weight
        return table


def train_new_rows(model) -> bool:
    """Make the embedding rows of tokens added after loading (``model.info.added_rows``) trainable in a
    frozen backbone; False when none were added."""
    added = model.info.added_rows
    rows = int(model.info.config.get("vocab_size") or 0)
    found = [(path, m) for path, m in model.backbone.named_modules()
             if isinstance(m, nn.Embedding) and m.weight.shape[0] == rows]
    if not added or not found:
        return False
    model.backbone.update_modules(tree_unflatten([(path, NewRowsEmbedding(m, added)) for path, m in found[:1]]))
    return True


def apply_training_adapters(model, training: dict) -> bool:
    """Set a model up as a run's training settings (``TrainingArgs.to_dict()``, a run record's ``training``)
    say: the quantized base (``quantize_base``), adapters (``lora_rank``; kept when the model has them
    already, e.g. an adapter folder), trainable new token rows (``train_new_tokens``). Returns whether
    the model trains adapters (False: every weight trains)."""
    if training.get("quantize_base"):   # first: DoRA's magnitudes start from the weights it computes with
        quantize_backbone(model, training["quantize_base"])
    if training.get("lora_rank") and not adapter_layers(model):
        apply_adapters(model, training["lora_rank"], training["lora_alpha"], training["lora_dropout"],
                       training["dora"], parse_targets(training["lora_targets"]))
    if not adapter_layers(model):
        return False
    if training.get("train_new_tokens", True) and not any(isinstance(m, NewRowsEmbedding)
                                                          for _, m in model.backbone.named_modules()):
        train_new_rows(model)
    return True


def adapter_layers(module: nn.Module) -> list[tuple[str, LoRALinear]]:
    return [(path, m) for path, m in module.named_modules() if isinstance(m, LoRALinear)]


def merged_parameters(module: nn.Module) -> dict:
    """Flat {name: array} of ``module`` as if every `LoRALinear` in it were its merged ``nn.Linear``, every
    ``nn.QuantizedLinear`` dequantized and every `NewRowsEmbedding` one table."""
    flat = dict(tree_flatten(module.parameters()))
    for path, layer in module.named_modules():
        prefix = f"{path}." if path else ""
        if isinstance(layer, (LoRALinear, nn.QuantizedLinear, NewRowsEmbedding)):
            for key in ADAPTER_WEIGHTS + QUANTIZED_WEIGHTS + ("new_rows",):
                flat.pop(prefix + key, None)
        if isinstance(layer, (LoRALinear, NewRowsEmbedding)):
            flat[prefix + "weight"] = layer.merged_weight()
        elif isinstance(layer, nn.QuantizedLinear):
            flat[prefix + "weight"] = mx.dequantize(layer.weight, layer.scales, layer.biases, layer.group_size,
                                                    layer.bits)
    return flat


def merge_adapters(model) -> None:
    """Replace every `LoRALinear` of ``model`` by its merged ``nn.Linear`` (and a `NewRowsEmbedding` by one
    table), in place."""
    merged = [(path, layer.merge()) for path, layer in model.named_modules()
              if isinstance(layer, (LoRALinear, NewRowsEmbedding))]
    if merged:
        model.update_modules(tree_unflatten(merged))
