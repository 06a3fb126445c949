"""Dropout as transformers applies it (training only), with masks a recomputed layer can replay.

Each family lists the config keys of its dropout probabilities (``DROPOUT_KEYS``); ``--dropout`` sets
them all through `override` at load time, so the saved config.json says what was trained (as an HF
``from_pretrained(..., hidden_dropout_prob=p)`` would).

MLX draws masks from the global generator. A gradient-checkpointed layer runs again in the backward
pass and would draw new masks, so its gradient would belong to other masks than its loss. `run_layer`
(engine/models/base.py) therefore draws one key per layer call and runs the layer inside `replay(key)`:
every draw in it then comes from that key, split in call order, the same both times.
"""
from __future__ import annotations

from contextlib import contextmanager

import mlx.core as mx
import mlx.nn as nn

_keys: list[mx.array] = []  # the keys of the `replay` blocks being run, innermost last


def fresh_key() -> mx.array:
    """A new key (2 × uint32): split off the innermost `replay` key, else from the global generator. MLX
    has no random-bits function and randint goes through float32, so each word is two exact 16-bit draws."""
    key = next_key()
    if key is not None:
        return key
    half = mx.random.randint(0, 1 << 16, (2, 2)).astype(mx.uint32)
    return (half[:, 0] << 16) | half[:, 1]


def set_global_key(key: mx.array) -> None:
    """Make ``key`` the global generator's key again (GradCache replays a mini-batch's masks with it; a
    resumed run and the ranks of a distributed one restore theirs).
    ``mx.random.state`` cannot be assigned to; seeding with s sets the key [s >> 32, s & 0xffffffff]. Syncs."""
    hi, lo = (int(x) for x in key.tolist())
    mx.random.seed((hi << 32) | lo)


def next_key() -> mx.array | None:
    """A key for one draw: split off the innermost `replay` key; None (the global generator) outside."""
    if not _keys:
        return None
    _keys[-1], key = mx.random.split(_keys[-1])
    return key


@contextmanager
def replay(key: mx.array):
    _keys.append(key)
    try:
        yield
    finally:
        _keys.pop()


def dropout(x: mx.array, p: float) -> mx.array:
    """Zero each element with probability ``p`` and scale the rest by 1/(1-p) (torch's dropout)."""
    if not p:
        return x
    keep = mx.random.bernoulli(1.0 - p, x.shape, key=next_key())
    return mx.where(keep, x * (1.0 / (1.0 - p)), 0)


class Dropout(nn.Module):
    """``nn.Dropout`` drawing through `next_key`; off in eval mode (``model.eval()``)."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"The dropout probability {p} is not in [0, 1).")
        self.p = p

    def __call__(self, x: mx.array) -> mx.array:
        return dropout(x, self.p) if self.training else x


def override(config: dict, keys: tuple[str, ...], p: float | None) -> dict:
    """``config`` with every dropout key in ``keys`` set to ``p`` (None: the config's own values)."""
    if p is None:
        return config
    if not 0 <= p < 1:
        raise ValueError(f"dropout must be in [0, 1), got {p}.")
    return dict(config, **dict.fromkeys(keys, float(p)))


def dropout_values(model) -> dict[str, float]:
    """{config key: probability} the model trains with: the config's values (HF defaults where it has
    none, resolved as transformers resolves them), or the override it was loaded with."""
    args = model.info.args
    return {key: float(getattr(args, key)) for key in model.info.family.DROPOUT_KEYS}
