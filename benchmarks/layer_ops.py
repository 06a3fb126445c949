"""Where a BERT layer's time goes, MLX (this engine's backend) vs PyTorch, op by op, in one run: the
profile behind the speed table's floor.

    python benchmarks/layer_ops.py [--shapes 64x16,32x64] [--repeats 30]

One all-MiniLM-L6-v2-sized layer (hidden 384, 12 heads, MLP 1536) in inference, float32, at each
batch×tokens shape: its dense products, exact GELU, residual add + LayerNorm, masked attention, and the
whole layer. MLX runs each op compiled (``mx.compile``, as the engine's training step and ``encode`` do;
the GELU is the engine's own, engine/models/activations.py); PyTorch runs them eagerly with all cores,
and again with one thread. Each side runs in its own process (the engine's import loads OpenBLAS
globally, which must not touch PyTorch). Columns: median milliseconds per call, and MLX's time over
PyTorch's.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

H, HEADS, MLP = 384, 12, 1536


def timed(run, sync, repeats: int) -> float:
    for _ in range(3):
        sync(run())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        sync(run())
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def mlx_ops(b: int, t: int, repeats: int) -> dict:
    import engine  # noqa: F401  (fast BLAS before mlx.core)
    import mlx.core as mx
    import mlx.nn as nn
    from engine.models.activations import gelu
    from engine.models.attention import attention
    from engine.models.bert import Layer, ModelArgs
    mx.random.seed(0)
    layer = Layer(ModelArgs(hidden_size=H, num_attention_heads=HEADS, intermediate_size=MLP, num_hidden_layers=1,
                            vocab_size=8))
    layer.eval()
    mx.eval(layer.parameters())
    x, res = mx.random.normal((b, t, H)), mx.random.normal((b, t, H))
    wide = mx.random.normal((b, t, MLP))
    q = mx.random.normal((b, HEADS, t, H // HEADS))
    mask = mx.ones((b, 1, 1, t), dtype=mx.bool_)
    up, down, square, norm = nn.Linear(H, MLP), nn.Linear(MLP, H), nn.Linear(H, H), nn.LayerNorm(H, eps=1e-12)
    mx.eval(up.parameters(), down.parameters(), square.parameters(), norm.parameters())
    # Arrays are arguments and weights declared inputs: a compiled function that captures arrays it was
    # not told about is traced again on every call (measured: ~9 ms for an RMSNorm).
    weights = [layer.state, up.state, down.state, square.state, norm.state]
    compile_ = lambda f: mx.compile(f, inputs=weights)   # noqa: E731
    compiled = {
        "linear 384→384": (compile_(lambda a: square(a)), x),
        "linear 384→1536": (compile_(lambda a: up(a)), x),
        "linear 1536→384": (compile_(lambda a: down(a)), wide),
        "GELU (exact)": (mx.compile(gelu), wide),
        "add + LayerNorm": (compile_(lambda a, r: norm(a + r)), x, res),
        "attention (12 heads)": (mx.compile(lambda a, m: attention(a, a, a, m, scale=(H // HEADS) ** -0.5)), q, mask),
        "whole layer": (compile_(lambda a, m: layer(a, m)), x, mask),
    }
    ops = {name: (lambda f=f, args=args: f(*args)) for name, (f, *args) in compiled.items()}
    return {name: timed(op, mx.eval, repeats) for name, op in ops.items()}


def torch_ops(b: int, t: int, repeats: int, threads: int) -> dict:
    import torch
    from transformers import BertConfig
    from transformers.models.bert.modeling_bert import BertLayer
    assert "engine" not in sys.modules
    torch.set_num_threads(threads)
    torch.set_grad_enabled(False)
    torch.manual_seed(0)
    layer = BertLayer(BertConfig(hidden_size=H, num_attention_heads=HEADS, intermediate_size=MLP,
                                 attn_implementation="sdpa")).eval()
    x, res, wide = torch.randn(b, t, H), torch.randn(b, t, H), torch.randn(b, t, MLP)
    q = torch.randn(b, HEADS, t, H // HEADS)
    up, down, square = torch.nn.Linear(H, MLP), torch.nn.Linear(MLP, H), torch.nn.Linear(H, H)
    norm, act = torch.nn.LayerNorm(H, eps=1e-12), torch.nn.GELU()
    mask = torch.ones(b, 1, 1, t, dtype=torch.bool)
    sdpa = torch.nn.functional.scaled_dot_product_attention
    ops = {
        "linear 384→384": lambda: square(x),
        "linear 384→1536": lambda: up(x),
        "linear 1536→384": lambda: down(wide),
        "GELU (exact)": lambda: act(wide),
        "add + LayerNorm": lambda: norm(x + res),
        "attention (12 heads)": lambda: sdpa(q, q, q, attn_mask=mask),
        "whole layer": lambda: layer(x, attention_mask=None)[0],
    }
    return {name: timed(op, lambda _: None, repeats) for name, op in ops.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="64x16,32x64", help="BATCHxTOKENS, comma-separated.")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)   # side b t threads
    a = ap.parse_args()
    if a.child:
        side, b, t, threads = a.child[0], *map(int, a.child[1:])
        result = mlx_ops(b, t, a.repeats) if side == "mlx" else torch_ops(b, t, a.repeats, threads)
        print(json.dumps(result))
        return
    cores = os.cpu_count() or 1
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    for shape in a.shapes.split(","):
        b, t = map(int, shape.split("x"))
        runs = {}
        for side, threads in (("mlx", cores), ("torch", cores), ("torch", 1)):
            out = subprocess.run([sys.executable, __file__, "--repeats", str(a.repeats), "--child", side, str(b),
                                  str(t), str(threads)], capture_output=True, text=True, env=env)
            if out.returncode:
                sys.exit(f"{side} failed:\n{out.stderr[-3000:]}")
            runs[(side, threads)] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"\nbatch {b} × {t} tokens, {cores} cores (ms per call, median of {a.repeats})")
        print(f"{'op':<22} {'MLX':>8} {f'torch {cores}t':>9} {'torch 1t':>9} {'MLX / torch':>12}")
        mine, theirs, single = runs[("mlx", cores)], runs[("torch", cores)], runs[("torch", 1)]
        for name in mine:
            print(f"{name:<22} {mine[name]:>8.2f} {theirs[name]:>9.2f} {single[name]:>9.2f} "
                  f"{mine[name] / theirs[name]:>11.2f}x", flush=True)


if __name__ == "__main__":
    main()
