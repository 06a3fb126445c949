"""MLX's compiled CPU kernels with and without the engine's vectorising g++ flags (engine/backend.py).

    python benchmarks/kernel_flags.py [--rounds 15]

Each side runs in its own process with its own kernel cache (TMPDIR), so neither reuses the other's
kernels: ``RACLATE_KERNEL_FLAGS=0`` (MLX's own ``g++ -O3``) vs the default (the g++ wrapper adding
``-fno-math-errno --param vect-max-version-for-alias-checks=64``). Timed, medians after 3 untimed calls:
the compiled AdamW update (bias correction, weight decay, the clip factor folded in, as the train step
does) of a 30522×256 embedding matrix, and a compiled GELU MLP's forward + backward (ModernBERT-small's
MLP shape, batch 16 × 32 tokens). The checksums must be equal: the flags change no result.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def child(rounds: int) -> dict:
    sys.path.insert(0, str(ROOT))
    import engine  # noqa: F401  (OpenBLAS and the kernel flags before mlx.core)
    from engine import backend
    import mlx.core as mx
    import mlx.nn as nn
    import mlx.optimizers as optim
    from mlx.utils import tree_map
    backend.keep_freed_memory()  # as the Trainer does
    mx.random.seed(0)

    def median_ms(fn) -> float:
        for _ in range(3):
            mx.eval(fn())
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            mx.eval(fn())
            times.append(time.perf_counter() - start)
        return 1000 * sorted(times)[len(times) // 2]

    holder = {"p": {"embedding": mx.random.normal((30522, 256))}}
    grads = {"embedding": mx.random.normal((30522, 256)) * 1e-3}
    opt = optim.AdamW(learning_rate=1e-4, weight_decay=0.01, bias_correction=True)
    opt.init(holder["p"])
    factor = mx.array(0.5)
    update = mx.compile(lambda g, p: opt.apply_gradients(tree_map(lambda x: x * factor, g), p),
                        inputs=[opt.state], outputs=[opt.state])

    def adamw():
        holder["p"] = update(grads, holder["p"])
        return holder["p"], opt.state

    mlp = {"wi": mx.random.normal((256, 1024)) * 0.05, "wo": mx.random.normal((512, 256)) * 0.05}
    x, cot = mx.random.normal((16, 32, 256)), mx.random.normal((16, 32, 256))

    def mlp_loss(params):
        h, gate = mx.split(x @ params["wi"], 2, axis=-1)
        return mx.sum((nn.gelu(h) * gate) @ params["wo"] * cot)

    mlp_grad = mx.compile(mx.value_and_grad(mlp_loss))
    result = {"adamw_ms": median_ms(adamw), "mlp_ms": median_ms(lambda: mlp_grad(mlp)),
              "flags": backend.info().get("kernel_flags")}
    value, g = mlp_grad(mlp)
    result["checksum"] = [float(mx.sum(holder["p"]["embedding"])), float(value), float(mx.sum(g["wi"]))]
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.rounds)))
        return
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, flag in (("MLX's g++ -O3", "0"), ("with the engine's flags", "1")):
            cache = Path(tmp, name.replace(" ", "_").replace("'", ""))
            cache.mkdir()
            env = dict(os.environ, RACLATE_KERNEL_FLAGS=flag, TMPDIR=str(cache))
            out = subprocess.run([sys.executable, __file__, "--child", "--rounds", str(a.rounds)], env=env,
                                 capture_output=True, text=True, check=True)
            results[name] = json.loads(out.stdout.strip().splitlines()[-1])
    plain, flagged = results.values()
    print(f"compiled CPU kernels, median of {a.rounds} (flags: {flagged['flags']})")
    print(f"{'':<26}{'AdamW 30522x256':>17}{'GELU MLP f+b':>15}")
    for name, r in results.items():
        print(f"{name:<26}{r['adamw_ms']:>14.2f} ms{r['mlp_ms']:>12.2f} ms")
    print(f"{'speed-up':<26}{plain['adamw_ms'] / flagged['adamw_ms']:>16.2f}x{plain['mlp_ms'] / flagged['mlp_ms']:>14.2f}x")
    print("identical results:", plain["checksum"] == flagged["checksum"])


if __name__ == "__main__":
    main()
