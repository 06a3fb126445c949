"""The one attention helper every model uses: boolean masks + mx.fast.scaled_dot_product_attention (GPU)
or the written-out product with an arithmetic softmax (CPU).

Masks are boolean (True = may attend). No additive -1e4/-1e9 masks: they are wrong in bf16.
Grouped-query attention needs no K/V repetition: the fused kernel broadcasts KV heads.
"""
from __future__ import annotations

import mlx.core as mx

from engine.models.activations import softmax
from engine.models.dropout import dropout as drop


def make_mask(attention_mask: mx.array, *, causal: bool = False,
              window: int | None = None, symmetric_window: bool = False) -> mx.array:
    """Boolean mask [B, 1, T, T] from a padding mask [B, T] (1 = real token).

    causal: query i sees keys j <= i. window: keys with 0 <= i - j < window (causal band), or
    |i - j| <= window when ``symmetric_window`` (bidirectional band, e.g. ModernBERT local layers).
    Padded rows see the real keys only, as in transformers (ColBERT query expansion reads those
    [MASK] rows, so they must match PyLate exactly); a row that sees no key at all (a left-padded row
    under a causal mask, a [MASK] row beyond a sliding band) stays all False: `attention` gives it zeros.
    """
    T = attention_mask.shape[1]
    keys = attention_mask.astype(mx.bool_)[:, None, None, :]  # (B, 1, 1, T)
    i = mx.arange(T)[:, None]
    j = mx.arange(T)[None, :]
    allowed = mx.ones((T, T), dtype=mx.bool_)
    if causal:
        allowed = allowed & (j <= i)
    if window is not None:
        allowed = allowed & ((mx.abs(i - j) <= window) if symmetric_window else (i - j < window))
    return keys & allowed[None, None]  # (B, 1, T, T)


def attention(q: mx.array, k: mx.array, v: mx.array, mask: mx.array | None, scale: float,
              softcap: float | None = None, dropout: float = 0.0) -> mx.array:
    """q [B, Hq, T, D], k/v [B, Hkv, T, D] → [B, T, Hq*D].

    ``softcap`` (Gemma 2 / T5Gemma): scores become softcap·tanh(scores/softcap) before masking.
    ``dropout``: attention-probability dropout, as transformers' eager attention (softmax, dropout,
    then the value product); callers pass it in training only. The fused kernel has neither option, so
    that path is written out, with KV heads broadcast over their query groups (a reshape, never a copy
    of K/V). On the GPU, inference and dropout-free training keep the fused kernel; on the CPU the
    written-out path is faster (2–2.5× at 64–128 tokens, forward and backward; ``benchmarks/layer_ops.py``
    times the forward): its softmax computes exp with arithmetic (engine/models/activations.py), where the
    fused kernel's CPU fallback spends most of its time in ``exp``.

    A query row whose mask sees no key (padding outside a causal or sliding band) is what transformers
    gives it: zeros from torch's SDPA, its default attention; with ``softcap``, which only HF's eager
    attention implements, the mean of every value (eager's additive mask leaves all its scores equal).
    Never a fully masked softmax: NaN × 0 in the value product would leak into real tokens' gradients.
    """
    sees = mx.any(mask, axis=-1, keepdims=True) if mask is not None else None  # (B, 1, T, 1)
    on_cpu = mx.default_device() == mx.cpu
    if softcap is None and not dropout and not on_cpu:
        if mask is not None:   # such a row attends to itself, then is zeroed
            mask = mask | (~sees & mx.eye(mask.shape[-1], dtype=mx.bool_))
        out = mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, mask=mask)  # (B, Hq, T, D)
    else:
        B, Hq, T, D = q.shape
        Hkv = k.shape[1]
        q = q.reshape(B, Hkv, Hq // Hkv, T, D)  # (B, Hkv, G, T, D)
        scores = (q * scale) @ k[:, :, None].swapaxes(-1, -2)  # (B, Hkv, G, T, T)
        if softcap is not None:
            scores = mx.tanh(scores / softcap) * softcap
        if mask is not None:   # masked: -inf, except in a row that sees no key: 0 everywhere (uniform)
            scores = mx.where(mask[:, :, None], scores, mx.where(sees[:, :, None], -mx.inf, 0.0).astype(scores.dtype))
        weights = softmax(scores) if on_cpu else mx.softmax(scores, axis=-1, precise=True)
        probs = drop(weights, dropout)  # (B, Hkv, G, T, T)
        out = (probs @ v[:, :, None]).reshape(B, Hq, T, -1)
    if mask is not None and softcap is None:
        out = out * sees.astype(out.dtype)  # rows that see no key: zeros, as SDPA
    B, H, T, D = out.shape
    return out.transpose(0, 2, 1, 3).reshape(B, T, H * D)
