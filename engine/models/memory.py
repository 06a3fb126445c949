"""How much memory a model needs, from its config.json alone, and the guard `load_model` runs before
anything is built: sizes no real checkpoint has are refused by name, and a model (or a training run:
weights + gradients + AdamW state + activations) that cannot fit in this machine's memory is refused
with the estimate. Rough by design: it is meant to warn before a run, not to replace measuring.
The app's Model page shows the same estimate."""
from __future__ import annotations

import os
import resource
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from engine.errors import ModelError
from engine.tasks import CACHED_LOSSES

BYTES = 4          # float32 weights, gradients and activations
FIT_FRACTION = 0.8  # leave room for the OS, the app and allocator slack
OVERHEAD = 400 * 2 ** 20   # interpreter, MLX, tokenizer, datasets
BUDGET_SHARE = 0.6  # --batch-size auto: the share of RAM a training step may use by default

# Whole-number sizes and the largest value a real checkpoint has (the largest published models
# stay well inside); anything else is a damaged or hand-edited config.json.
SIZE_LIMITS = {"vocab_size": 10_000_000, "hidden_size": 65_536, "num_hidden_layers": 1024,
               "num_attention_heads": 1024, "num_key_value_heads": 1024, "head_dim": 4096,
               "intermediate_size": 1_000_000, "block_ff_dim": 1_000_000, "max_position_embeddings": 2 ** 24}
PLAIN_MLP = ("bert",)   # up and down projections; the other families' MLPs are gated (three matrices)


@dataclass
class Estimate:
    weights: int
    gradients: int
    optimizer: int
    activations: int

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations + OVERHEAD


# -- the guard -----------------------------------------------------------------------------------
def check_config(config: dict, path: Path) -> None:
    """Refuse a size that is not a whole number in its range, or heads that do not divide the hidden
    size, naming the file and the field (an encoder-decoder's sizes sit under ``encoder``)."""
    def fail(field: str, problem: str):
        raise ModelError(f"{path}: {field} {problem}. The file is damaged or was edited by hand; restore "
                         "config.json from the original checkpoint.")

    scopes = [("", config)] + [(f"{k}.", v) for k, v in config.items() if isinstance(v, dict)]
    for prefix, scope in scopes:
        for key, limit in SIZE_LIMITS.items():
            value = scope.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
                fail(prefix + key, f"is {value!r}; expected a whole number from 1 to {limit:,}")
        hidden, heads, kv = (scope.get(k) for k in ("hidden_size", "num_attention_heads", "num_key_value_heads"))
        if hidden and heads and scope.get("head_dim") is None and hidden % heads:
            fail(prefix + "num_attention_heads", f"is {heads}, which does not divide hidden_size {hidden}")
        if heads and kv and heads % kv:
            fail(prefix + "num_key_value_heads", f"is {kv}, which does not divide num_attention_heads {heads}")


def check_fits(config: dict, path: Path, parameters: int | None, training: dict | None = None) -> None:
    """Refuse a model whose weights (or, with ``training`` = `estimate` keyword arguments, a whole
    training step) need more memory than this machine has. ``parameters``: the safetensors count."""
    count = max(parameters or 0, formula_parameters(config) or 0)  # building allocates what the config says
    est = estimate(config, count, **training) if training else Estimate(count * BYTES, 0, 0, 0)
    available, source = machine_memory()
    if not available or est.total <= available:
        return
    what = "loading it"
    fix = "Use a smaller model."
    if training:
        what = (f"training it at batch {training.get('batch_size')} × {training.get('max_length')} tokens "
                f"(weights, gradients, AdamW state and activations)")
        fix = ("Lower --batch-size (use --grad-accum to keep the effective batch) or --max-length, pass "
               "--grad-checkpoint, or use a smaller model.")
    raise ModelError(f"{path} describes a model of {_count(count)} parameters; {what} needs ≈ "
                     f"{human_bytes(est.total)}, more than the {human_bytes(available)} of this machine "
                     f"({source}). {fix}")


def _count(n: int) -> str:
    return f"{n / 1e9:.1f} billion" if n >= 1e9 else f"{n / 1e6:.1f} million"


# -- parameters ----------------------------------------------------------------------------------
def formula_parameters(config: dict) -> int | None:
    """What a model built from ``config`` holds, from its sizes alone (embeddings + layers × attention
    and MLP matrices); None without usable sizes. Grouped-query attention and gated MLPs are counted."""
    h, n = config.get("hidden_size"), config.get("num_hidden_layers")
    sizes = [config.get(k) for k in SIZE_LIMITS]
    if not h or not n or any(v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1) for v in sizes):
        return None
    heads = config.get("num_attention_heads") or 1
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or h // heads
    inter = config.get("block_ff_dim") or config.get("intermediate_size") or 4 * h
    plain = config.get("model_type") in PLAIN_MLP
    positions = (config.get("max_position_embeddings") or 0) + (config.get("type_vocab_size") or 0) if plain else 0
    attention = h * head_dim * 2 * (heads + kv_heads)          # q and o; k and v
    mlp = (2 if plain else 3) * h * inter
    return int(((config.get("vocab_size") or 0) + positions) * h + n * (attention + mlp + 6 * h))


def _embedding_parameters(config: dict) -> int:
    h = config.get("hidden_size") or 0
    pos = config.get("max_position_embeddings") or 0 if config.get("model_type") == "bert" else 0
    return ((config.get("vocab_size") or 0) + pos) * h


# -- a training run ------------------------------------------------------------------------------
def activation_bytes_per_sequence(config: dict, length: int, *, grad_checkpoint: bool = False,
                                  vocab_logits: bool = False) -> int:
    """Activations kept for the backward pass, per sequence of ``length`` tokens (float32).

    Per layer and token: Q, K, V, attention output, two norms (≈6h), the MLP input and its two
    intermediate tensors (h + 2i), and attention probabilities before/after softmax (2·heads·T).
    With checkpointing only each layer's input stays, plus one layer recomputed at a time.
    """
    h = config.get("hidden_size") or 0
    layers = config.get("num_hidden_layers") or 0
    inter = config.get("intermediate_size") or 4 * h
    heads = config.get("num_attention_heads") or 1
    per_layer = length * (7 * h + 2 * inter + 2 * heads * length) * BYTES
    kept = layers * length * h * BYTES + per_layer if grad_checkpoint else layers * per_layer
    if vocab_logits:   # masked LM: logits and their gradient over the vocabulary
        kept += 2 * length * (config.get("vocab_size") or 0) * BYTES
    return kept + 2 * length * h * BYTES   # embedding output and final hidden states


def lora_parameters(config: dict, rank: int) -> int:
    """Adapter weights of rank ``rank`` on the default targets, per layer at most: attention q, k, v, o
    (rank × (h + h) each) and three MLP matrices (rank × (h + i) each). The head is not counted."""
    h = config.get("hidden_size") or 0
    inter = config.get("intermediate_size") or 4 * h
    return (config.get("num_hidden_layers") or 0) * rank * (8 * h + 3 * (h + inter))


def estimate(config: dict, parameters: int, batch_size: int, max_length: int, *, texts_per_example: int = 1,
             grad_checkpoint: bool = False, freeze_embeddings: bool = False, vocab_logits: bool = False,
             lora_rank: int = 0, quantize_base: int | None = None) -> Estimate:
    trainable = parameters - (_embedding_parameters(config) if freeze_embeddings else 0)
    trainable = max(trainable, 0)
    weights = parameters * BYTES
    if quantize_base:   # QLoRA: the layers' weights at bits/8 bytes, plus a float scale and offset per group of 64
        layers = max(parameters - _embedding_parameters(config), 0)
        weights -= layers * BYTES - int(layers * (quantize_base / 8 + 2 * BYTES / 64))
    if lora_rank:   # frozen base: gradients and AdamW state for the adapters only
        trainable = lora_parameters(config, lora_rank)
        weights += trainable * BYTES
    per_seq = activation_bytes_per_sequence(config, max_length, grad_checkpoint=grad_checkpoint,
                                            vocab_logits=vocab_logits)
    return Estimate(weights=weights, gradients=trainable * BYTES, optimizer=2 * trainable * BYTES,
                    activations=batch_size * texts_per_example * per_seq)


def training_memory(args, task: str) -> dict:
    """`estimate`'s keyword arguments for a run's TrainingArgs, as `load_model(training=)` takes them.
    One text per example: the guard refuses only what surely cannot fit. The GradCache losses keep the
    activations of one mini-batch at a time."""
    cached = args.loss in CACHED_LOSSES
    batch = 1 if args.batch_size == "auto" else args.batch_size   # auto: the planner measures what fits
    return {"batch_size": min(batch, args.mini_batch_size) if cached else batch,
            "max_length": args.max_length, "grad_checkpoint": args.grad_checkpoint,
            "freeze_embeddings": args.freeze_embeddings, "vocab_logits": task == "masked-lm",
            "lora_rank": args.lora_rank}   # no quantize_base: the float weights are read before they are quantized


def largest_batch(config: dict, parameters: int, max_length: int, available: int, *, limit: int = 1024,
                  **kw) -> int:
    """The largest batch size whose estimate stays within FIT_FRACTION of ``available`` (0: none fits);
    a multiple of 8 from 8 up, since batches are padded to few shapes anyway."""
    fixed = estimate(config, parameters, 0, max_length, **kw).total
    per_example = estimate(config, parameters, 1, max_length, **kw).total - fixed
    budget = FIT_FRACTION * available - fixed
    if budget < per_example:
        return 0
    best = min(int(budget // max(per_example, 1)), limit)
    return best - best % 8 if best >= 8 else best


# -- this machine --------------------------------------------------------------------------------
def machine_memory() -> tuple[int | None, str]:
    """(bytes available for training, where the number comes from)."""
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/meminfo") as fh:
                for line in fh:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024, "available memory (/proc/meminfo)"
        except OSError:
            pass
    if sys.platform == "darwin":
        try:
            import mlx.core as mx
            info = mx.metal.device_info() if mx.metal.is_available() else {}
            size = info.get("max_recommended_working_set_size")
            if size:
                return int(size), "Metal recommended working set"
        except Exception:  # noqa: BLE001 — older MLX, no Metal
            pass
    ram = physical_memory()
    return (ram, "physical memory") if ram else (None, "unknown")


def physical_memory() -> int | None:
    """This machine's RAM in bytes (None where the OS does not say)."""
    if sys.platform == "darwin":
        try:
            out = subprocess.run(["sysctl", "-n", "hw.memsize"], capture_output=True, text=True, timeout=2)
            return int(out.stdout.strip())
        except (OSError, ValueError, subprocess.SubprocessError):
            pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def process_memory() -> int:
    """Bytes this process holds now: its resident set (Linux); elsewhere its peak so far, an upper bound."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024   # bytes on macOS, KiB elsewhere


def memory_budget(gigabytes: float | None = None, outside: int = 0) -> tuple[int, str]:
    """(bytes a training step's MLX memory may reach, how that was decided): ``gigabytes`` when given,
    else BUDGET_SHARE of the RAM (the rest stays for the desktop) less ``outside``, what this process
    holds beyond MLX's arrays (interpreter, tokenizer, data)."""
    if gigabytes is not None:
        return int(gigabytes * 2 ** 30), f"--memory-budget {gigabytes:g} GB"
    ram = physical_memory()
    if not ram:
        return 0, "unknown: this machine does not say how much memory it has; pass --memory-budget"
    return max(int(BUDGET_SHARE * ram) - outside, 0), (f"{BUDGET_SHARE:.0%} of {human_bytes(ram)} RAM less "
                                                       f"{human_bytes(outside)} this process already holds")


def human_bytes(n: int | None) -> str:
    if n is None:
        return "unknown"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit in ("B", "KB") else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"
