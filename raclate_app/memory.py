"""Memory estimate for a training run (weights + AdamW state + activations) against this machine's
memory, and the largest batch that fits. Rough by design: it is meant to warn before a run, not
to replace measuring. Qt-free."""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

BYTES = 4          # float32 weights, gradients and activations
FIT_FRACTION = 0.8  # leave room for the OS, the app and allocator slack
OVERHEAD = 400 * 2 ** 20   # interpreter, MLX, tokenizer, datasets


@dataclass
class Estimate:
    weights: int
    gradients: int
    optimizer: int
    activations: int

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations + OVERHEAD


def _embedding_parameters(config: dict) -> int:
    h = config.get("hidden_size") or 0
    pos = config.get("max_position_embeddings") or 0 if config.get("model_type") == "bert" else 0
    return ((config.get("vocab_size") or 0) + pos) * h


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


def estimate(config: dict, parameters: int, batch_size: int, max_length: int, *, texts_per_example: int = 1,
             grad_checkpoint: bool = False, freeze_embeddings: bool = False, vocab_logits: bool = False) -> Estimate:
    trainable = parameters - (_embedding_parameters(config) if freeze_embeddings else 0)
    trainable = max(trainable, 0)
    per_seq = activation_bytes_per_sequence(config, max_length, grad_checkpoint=grad_checkpoint,
                                            vocab_logits=vocab_logits)
    return Estimate(weights=parameters * BYTES, gradients=trainable * BYTES, optimizer=2 * trainable * BYTES,
                    activations=batch_size * texts_per_example * per_seq)


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


def verdict(total: int, available: int | None) -> str:
    """"ok" | "tight" | "over" | "unknown"."""
    if not available:
        return "unknown"
    ratio = total / available
    return "ok" if ratio <= 0.6 else "tight" if ratio <= FIT_FRACTION else "over"


def suggestion(level: str, *, grad_checkpoint: bool, batch_size: int, fitting_batch: int) -> str:
    if level in ("ok", "unknown"):
        return ""
    tips = []
    if not grad_checkpoint:
        tips.append("turn on gradient checkpointing (less memory, ~30% slower)")
    if fitting_batch and fitting_batch < batch_size:
        k = -(-batch_size // fitting_batch)
        tips.append(f"lower the batch size to {fitting_batch} and set gradient accumulation to {k} "
                    f"to keep an effective batch of {fitting_batch * k}")
    elif batch_size > 1:
        tips.append("lower the batch size and use gradient accumulation")
    tips.append("or lower the max length")
    return "To fit: " + "; ".join(tips) + "."


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
        try:
            out = subprocess.run(["sysctl", "-n", "hw.memsize"], capture_output=True, text=True, timeout=2)
            return int(out.stdout.strip()), "physical memory (hw.memsize)"
        except (OSError, ValueError, subprocess.SubprocessError):
            pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "physical memory"
    except (ValueError, OSError, AttributeError):
        return None, "unknown"


def human_bytes(n: int | None) -> str:
    if n is None:
        return "unknown"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit in ("B", "KB") else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"
