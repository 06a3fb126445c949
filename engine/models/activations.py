"""Activations that are fast on MLX's CPU backend, with the same values as the exact ones.

On the Linux CPU backend ``mx.erf`` and ``mx.exp`` run element by element (~20 ns and ~12 ns per
value), while multiply, add and divide are vectorised and fuse under ``mx.compile``. Exact GELU
(``nn.gelu``, erf-based) was a quarter of a MiniLM training step (benchmarks/profile_step.py).
Here erf is a rational function of x² (Eigen/XLA's float32 erf; |error| ≤ 4e-7, like ``mx.erf``'s
5e-7) and the gradient is written out, so forward and backward use only arithmetic. Measured on
[16, 32, 1536]: forward 22 → 3 ms, backward 30 → 5 ms (2 cores, compiled).
"""
from __future__ import annotations

import math

import mlx.core as mx

# erf(x) ≈ x·P(x²)/Q(x²) on [-4, 4]; beyond it erf is ±1 in float32. Highest power first.
_ERF_P = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06, -5.69250639462346e-05,
          -7.34990630326855e-04, -2.95459980854025e-03, -1.60960333262415e-02)
_ERF_Q = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03,
          -1.42647390514189e-02)
_SQRT_HALF = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _clip(x: mx.array, bound: float) -> mx.array:
    """x held to [-bound, bound] as ½(|x + bound| − |x − bound|): MLX's compiled CPU kernels vectorise
    abs but not maximum/minimum (their NaN checks), which made ``mx.clip`` ~9 of GELU's 14 ms on
    [32, 64, 1536]. Exact to float32 rounding of x ± bound; ±inf gives NaN."""
    return 0.5 * (mx.abs(x + bound) - mx.abs(x - bound))


def erf(x: mx.array) -> mx.array:
    """erf with only arithmetic ops (float32 accuracy); the polynomials in Estrin's form, so a compiled
    graph stays shallow enough for MLX to fuse.

    >>> [round(v, 6) for v in erf(mx.array([-1.0, 0.0, 0.5, 5.0])).tolist()]
    [-0.842701, 0.0, 0.5205, 1.0]
    """
    x = _clip(x, 4.0)
    y = x * x
    y2 = y * y
    p, q = _ERF_P, _ERF_Q
    num = (p[5] * y + p[6]) + (p[3] * y + p[4]) * y2 + ((p[1] * y + p[2]) + p[0] * y2) * (y2 * y2)
    den = (q[3] * y + q[4]) + (q[1] * y + q[2]) * y2 + q[0] * (y2 * y2)
    return x * num / den


def _exp_neg(y: mx.array, halvings: int = 4) -> mx.array:
    """exp(y) for y in [-2**halvings, 0] from arithmetic alone: Taylor at y/2**halvings (error < 3e-8),
    squared ``halvings`` times (relative error ≤ ~2**halvings × float32's rounding)."""
    u = y * (1.0 / 2 ** halvings)
    p = 1.0 / math.factorial(10)
    for k in range(9, -1, -1):
        p = p * u + 1.0 / math.factorial(k)
    for _ in range(halvings):
        p = p * p
    return p


_SOFTMAX_FLOOR = -32.0   # exp(-32) ≈ 1e-14 of the row's largest weight: below it a weight is 0


@mx.compile
def _softmax_values(x: mx.array) -> mx.array:
    y = x - x.max(axis=-1, keepdims=True)
    keep = y > _SOFTMAX_FLOOR   # -inf (masked) included: one select, no maximum (neither vectorises)
    e = _exp_neg(mx.where(keep, y, _SOFTMAX_FLOOR), halvings=5) * keep.astype(x.dtype)
    return e / e.sum(axis=-1, keepdims=True)


@mx.custom_function
def softmax(x: mx.array) -> mx.array:
    """Softmax over the last axis with exp written as arithmetic (``mx.exp`` runs element by element on the
    CPU backend, ~20 ns a value: the softmax was most of an attention layer at 64 tokens). -inf entries get
    weight 0; a row needs one finite entry. |error| ≤ 3e-6 against ``mx.softmax(precise=True)``; the
    gradient is written out from the output (p · (g − Σ g·p)). ``benchmarks/layer_ops.py`` shows the gain.

    >>> [round(v, 6) for v in softmax(mx.array([[0.0, 1.0, -mx.inf]])).tolist()[0]]
    [0.268941, 0.731059, 0.0]
    """
    if x.dtype == mx.float32:
        return _softmax_values(x)
    return _softmax_values(x.astype(mx.float32)).astype(x.dtype)   # the squarings need float32's precision


@softmax.vjp
def _softmax_vjp(primals, cotangent, output):
    return (output * (cotangent - (cotangent * output).sum(axis=-1, keepdims=True)),)


@mx.compile
def sigmoid(x: mx.array) -> mx.array:
    """1 / (1 + exp(−x)) from arithmetic: ½ + ½·sign(x)·tanh(|x|/2), tanh from e = exp(−|x|) with |x| held
    at 32 (beyond it the result is 0 or 1 in float32). |error| ≤ 7e-7 against ``mx.sigmoid``. Compiled, so
    an eager caller gets fused loops too."""
    ax = mx.abs(x)
    e = _exp_neg(-_clip(ax, 32.0), halvings=5)
    return 0.5 + 0.5 * ((1.0 - e) / (1.0 + e)) * (x / (ax + 1e-30))


@mx.custom_function
def silu(x: mx.array) -> mx.array:
    """SiLU x·σ(x) (Qwen3's and LFM2's MLP), as ``nn.silu`` (|error| ≤ 2e-6) at a ninth of its cost on the
    CPU backend, where ``mx.sigmoid`` runs exp element by element: [16, 20, 2048] 19.1 → 2.2 ms compiled.
    The gradient σ(x)·(1 + x·(1 − σ(x))) is written out."""
    return x * sigmoid(x)


@silu.vjp
def _silu_vjp(primals, cotangent, output):
    x = primals[0] if isinstance(primals, (tuple, list)) else primals
    s = sigmoid(x)
    return (cotangent * (s * (1.0 + x * (1.0 - s))),)


@mx.custom_function
def gelu(x: mx.array) -> mx.array:
    """Exact (erf) GELU, as ``nn.gelu`` and PyTorch's ``GELU()``: x·Φ(x)."""
    return 0.5 * x * (1.0 + erf(x * _SQRT_HALF))


@gelu.vjp
def _gelu_vjp(primals, cotangent, output):
    x = primals[0] if isinstance(primals, (tuple, list)) else primals
    # d/dx x·Φ(x) = Φ(x) + x·φ(x); x·φ(x) < 1e-6 beyond |x| = 5.6, where the clip holds it.
    xc = _clip(x, 5.6)
    pdf = _INV_SQRT_2PI * _exp_neg(-0.5 * xc * xc)
    return (cotangent * (0.5 * (1.0 + erf(x * _SQRT_HALF)) + x * pdf),)
