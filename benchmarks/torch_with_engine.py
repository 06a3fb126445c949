"""PyTorch's speed in a process that imported the engine (README "PyTorch in the same process").

    python benchmarks/torch_with_engine.py

The engine loads OpenBLAS with RTLD_GLOBAL before ``mlx.core`` (MLX needs its symbols); PyTorch's BLAS calls
made later in the same process then resolve to it instead of PyTorch's own. Each row is its own process:
nothing loaded; ``import engine``; the OpenBLAS the engine picks loaded globally without the engine's other
settings; the same loaded locally (RTLD_LOCAL, which leaves PyTorch alone). One BERT layer (hidden 384,
12 heads, MLP 1536) on a [64, 16, 384] batch and a [1024, 384] × [384, 1536] product, median of 30 calls.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

CHILD = r"""
import ctypes, json, os, statistics, sys, time
mode, root, blas = sys.argv[1], sys.argv[2], sys.argv[3]
if mode == "import engine":
    sys.path.insert(0, root)
    import engine  # noqa: F401
elif mode.startswith("OpenBLAS"):
    ctypes.CDLL(blas, mode=ctypes.RTLD_GLOBAL if "global" in mode else ctypes.RTLD_LOCAL)
import torch
from transformers import BertConfig
from transformers.models.bert.modeling_bert import BertLayer
torch.set_grad_enabled(False)
torch.manual_seed(0)
layer = BertLayer(BertConfig(hidden_size=384, num_attention_heads=12, intermediate_size=1536)).eval()
x, a, w = torch.randn(64, 16, 384), torch.randn(1024, 384), torch.randn(1536, 384)
def median_ms(f):
    for _ in range(3):
        f()
    times = []
    for _ in range(30):
        t = time.perf_counter(); f(); times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3
print(json.dumps({"layer": median_ms(lambda: layer(x)[0]), "linear": median_ms(lambda: a @ w.T)}))
"""


def main() -> None:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    blas = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); from engine import "
                           "backend; print(backend.info().get('path') or '')", root],
                          capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1:]
    blas = blas[0] if blas else ""
    modes = ["nothing", "import engine"] + (["OpenBLAS, global", "OpenBLAS, local"] if blas else [])
    print(f"PyTorch in one process, {os.cpu_count()} cores; OpenBLAS: {blas or 'none loaded by the engine'}")
    print(f"{'loaded first':<20} {'BERT layer':>11} {'linear':>9}")
    for mode in modes:
        out = subprocess.run([sys.executable, "-c", CHILD, mode, root, blas], capture_output=True, text=True,
                             env={k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"})
        if out.returncode:
            sys.exit(f"{mode} failed:\n{out.stderr[-2000:]}")
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{mode:<20} {r['layer']:>8.2f} ms {r['linear']:>6.2f} ms", flush=True)


if __name__ == "__main__":
    main()
