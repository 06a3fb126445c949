"""The one attention helper every model uses: boolean masks + mx.fast.scaled_dot_product_attention.

Masks are boolean (True = may attend). No additive -1e4/-1e9 masks: they are wrong in bf16.
Grouped-query attention needs no K/V repetition: the fused kernel broadcasts KV heads.
"""
from __future__ import annotations

import mlx.core as mx


def make_mask(attention_mask: mx.array, *, causal: bool = False,
              window: int | None = None, symmetric_window: bool = False) -> mx.array:
    """Boolean mask [B, 1, T, T] from a padding mask [B, T] (1 = real token).

    causal: query i sees keys j <= i. window: keys with 0 <= i - j < window (causal band), or
    |i - j| <= window when ``symmetric_window`` (bidirectional band, e.g. ModernBERT local layers).
    A row that would see no key at all (a left-padded row under a causal mask) may attend to
    itself: a fully masked row gives NaN, and NaN × 0 in the value product would leak into real
    tokens' gradients. Other padded rows see the real keys only, as in transformers (ColBERT query
    expansion reads those [MASK] rows, so they must match PyLate exactly).
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
    mask = keys & allowed[None, None]  # (B, 1, T, T)
    empty = ~mx.any(mask, axis=-1, keepdims=True)  # (B, 1, T, 1)
    return mask | (empty & mx.eye(T, dtype=mx.bool_)[None, None])


def attention(q: mx.array, k: mx.array, v: mx.array, mask: mx.array | None, scale: float,
              softcap: float | None = None) -> mx.array:
    """q [B, Hq, T, D], k/v [B, Hkv, T, D] → [B, T, Hq*D].

    ``softcap`` (Gemma 2 / T5Gemma): scores become softcap·tanh(scores/softcap) before masking. The
    fused kernel has no such option, so that path is written out, with KV heads broadcast over
    their query groups (a reshape, never a copy of K/V).
    """
    if softcap is None:
        out = mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, mask=mask)  # (B, Hq, T, D)
    else:
        B, Hq, T, D = q.shape
        Hkv = k.shape[1]
        q = q.reshape(B, Hkv, Hq // Hkv, T, D)  # (B, Hkv, G, T, D)
        scores = (q * scale) @ k[:, :, None].swapaxes(-1, -2)  # (B, Hkv, G, T, T)
        scores = mx.tanh(scores / softcap) * softcap
        if mask is not None:
            scores = mx.where(mask[:, :, None], scores, -mx.inf)  # every row keeps its diagonal
        out = (mx.softmax(scores, axis=-1, precise=True) @ v[:, :, None]).reshape(B, Hq, T, -1)
    B, H, T, D = out.shape
    return out.transpose(0, 2, 1, 3).reshape(B, T, H * D)
