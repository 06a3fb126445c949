"""Shared test helpers: tiny random HF checkpoints and torch ↔ MLX comparisons."""
from __future__ import annotations

import numpy as np


def save_tiny(model_cls, config, path, tokenizer_dir=None):
    """Build a random HF model, save it (safetensors) and, when given, a tokenizer next to it."""
    import torch
    torch.manual_seed(0)
    model = model_cls(config).eval()
    model.save_pretrained(path)
    if tokenizer_dir is not None:
        from transformers import AutoTokenizer
        AutoTokenizer.from_pretrained(str(tokenizer_dir)).save_pretrained(path)
    return model


def padded_batch(vocab_size: int, lengths=(7, 4, 9), seed: int = 0, left: bool = False, start: int = 5):
    """Random ids with padding (pad id 0): returns int32 numpy (ids, mask)."""
    rng = np.random.default_rng(seed)
    T = max(lengths)
    ids = np.zeros((len(lengths), T), np.int32)
    mask = np.zeros_like(ids)
    for b, n in enumerate(lengths):
        sl = slice(T - n, T) if left else slice(0, n)
        ids[b, sl] = rng.integers(start, vocab_size, n)
        mask[b, sl] = 1
    return ids, mask


def torch_out(model, ids, mask, attr=None):
    import torch
    with torch.no_grad():
        out = model(input_ids=torch.tensor(ids, dtype=torch.long),
                    attention_mask=torch.tensor(mask, dtype=torch.long))
    value = out.last_hidden_state if attr == "hidden" else out.logits
    return value.float().numpy()


def max_diff_masked(a, b, mask):
    """Max |a-b| over real (unpadded) token positions; works for [B,T,...] arrays."""
    a, b = np.asarray(a), np.asarray(b)
    sel = np.asarray(mask) > 0
    return float(np.abs(a[sel] - b[sel]).max())
