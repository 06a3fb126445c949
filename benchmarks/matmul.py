"""float32 matmul GFLOP/s: MLX with the wheel's own BLAS vs MLX with the BLAS engine.backend loads
vs PyTorch, measured in one run (each MLX variant in its own process, since the BLAS is chosen
before `import mlx.core`).

    python benchmarks/matmul.py [--sizes 256 512 1024 2048]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CHILD = r"""
import json, os, statistics, sys, time
import engine.backend as backend
import mlx.core as mx
out = {"blas": backend.info()["blas"], "results": {}}
for n in map(int, sys.argv[1:]):
    a, b = mx.random.normal((n, n)), mx.random.normal((n, n)); mx.eval(a, b)
    for _ in range(2): mx.eval(a @ b)
    times = []
    reps = max(3, int(2e9 / (2 * n ** 3)) + 1)
    for _ in range(min(reps, 30)):
        t = time.perf_counter(); mx.eval(a @ b); times.append(time.perf_counter() - t)
    out["results"][n] = 2 * n ** 3 / statistics.median(times) / 1e9
print(json.dumps(out))
"""


def mlx_gflops(sizes, blas_env):
    env = {k: v for k, v in os.environ.items() if k != "RACLATE_BLAS"}
    if blas_env is not None:
        env["RACLATE_BLAS"] = blas_env
    out = subprocess.run([sys.executable, "-c", CHILD, *map(str, sizes)], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def torch_gflops(sizes):
    try:
        import torch
    except ImportError:
        return None
    res = {}
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        for _ in range(2):
            a @ b
        times = []
        for _ in range(min(max(3, int(2e9 / (2 * n ** 3)) + 1), 30)):
            t = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t)
        res[n] = 2 * n ** 3 / statistics.median(times) / 1e9
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048])
    args = ap.parse_args()
    shipped = mlx_gflops(args.sizes, "none")
    loaded = mlx_gflops(args.sizes, None)
    torch_res = torch_gflops(args.sizes)
    print(f"float32 matmul, GFLOP/s (median), {os.cpu_count()} cores")
    head = f"{'n':>6} | {'MLX wheel BLAS':>15} | {'MLX + ' + loaded['blas']:>15} | {'speed-up':>8}"
    head += f" | {'torch':>8} | {'MLX/torch':>9}" if torch_res else ""
    print(head)
    print("-" * len(head))
    for n in args.sizes:
        s, l = shipped["results"][str(n)], loaded["results"][str(n)]
        row = f"{n:>6} | {s:>15.1f} | {l:>15.1f} | {l / s:>7.1f}x"
        if torch_res:
            row += f" | {torch_res[n]:>8.1f} | {l / torch_res[n]:>8.2f}x"
        print(row)


if __name__ == "__main__":
    main()
