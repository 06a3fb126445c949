"""The floor under the speed table: how much faster than PyTorch this engine could be on this machine if
everything but the dense matrix products took no time at all.

    python benchmarks/matmul_floor.py [--models minilm,mbert] [--batch 32] [--lengths 16,32,64] [--repeats 7]

For each model shape and token length (batch × length, no padding, random weights and ids), in one run:
- PyTorch (transformers' own model, both cores, its config's dropout): one MNRL training step (two columns,
  mean pooling, scale 20, AdamW) and one inference forward pass (``no_grad``), and the time of the dense
  products those contain (every linear layer forward, and in training its two backward products, plus the
  attention products), each timed alone at its shape;
- MLX (this engine's backend, one stream, OpenBLAS with both cores): the same products, and this engine's
  own training step (``build_step``, compiled) and compiled inference forward on the same shapes.

"ceiling" = PyTorch's step / MLX's products alone: the largest speed-up over PyTorch any MLX program can
reach here while its products run at OpenBLAS's speed. "now" = PyTorch's step / the engine's step. Where
the ceiling is under a target, the target cannot be met on this machine by work outside the products.
Each side runs in its own process (the engine's import loads OpenBLAS globally, which must not touch
PyTorch). Median milliseconds of ``--repeats`` calls after 2 warm-up calls.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# (layers, hidden, heads, linear layers' (in, out) per layer); MiniLM's MLP is 1536 wide, the random
# ModernBERT 6L/384 of benchmarks/train_throughput.py has fused QKV and a GLU input of 2 × 576.
SHAPES = {
    "minilm": (6, 384, 12, [(384, 384)] * 4 + [(384, 1536), (1536, 384)]),
    "mbert": (6, 384, 6, [(384, 1152), (384, 384), (384, 1152), (576, 384)]),
}
VOCAB = 30522


def timed(run, repeats: int) -> float:
    for _ in range(2):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def product_shapes(model: str, b: int, t: int, training: bool) -> list[tuple]:
    """(count, batch dims, m, k, n): the products of one forward pass (one column), and in training the
    two backward products of each (dX = dY·W, dW = dYᵀ·X; attention: four)."""
    layers, hidden, heads, linears = SHAPES[model]
    n_tok, d = b * t, hidden // heads
    out = []
    for i, o in linears:
        out.append((layers, (), n_tok, i, o))
        if training:
            out += [(layers, (), n_tok, o, i), (layers, (), o, n_tok, i)]
    out += [(layers, (b, heads), t, d, t), (layers, (b, heads), t, t, d)]
    if training:
        out += [(2 * layers, (b, heads), t, t, d), (2 * layers, (b, heads), t, d, t)]
    return out


def products_ms(model, b, t, training, make, matmul, sync, repeats) -> float:
    total = 0.0
    for count, batch, m, k, n in product_shapes(model, b, t, training):
        x, w = make((*batch, m, k)), make((*batch, k, n))
        total += count * timed(lambda: sync(matmul(x, w)), repeats)
    return total * (2 if training else 1)   # training: two columns (anchor, positive)


def child_torch(a) -> dict:
    import torch
    import torch.nn.functional as F
    from transformers import BertConfig, BertModel, ModernBertConfig, ModernBertModel
    torch.manual_seed(0)
    layers, hidden, heads, _ = SHAPES[a.model]
    if a.model == "minilm":   # all-MiniLM-L6-v2's config, its dropout 0.1
        net = BertModel(BertConfig(vocab_size=VOCAB, hidden_size=hidden, num_hidden_layers=layers,
                                   num_attention_heads=heads, intermediate_size=1536), add_pooling_layer=False)
    else:
        net = ModernBertModel(ModernBertConfig(vocab_size=VOCAB, hidden_size=hidden, intermediate_size=576,
                                               num_hidden_layers=layers, num_attention_heads=heads,
                                               pad_token_id=0))
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-5)
    results = {}
    for t in a.lengths:
        ids = [torch.randint(1000, VOCAB, (a.batch, t)) for _ in range(2)]
        mask = torch.ones(a.batch, t, dtype=torch.long)

        def embed(x):
            return F.normalize(net(input_ids=x, attention_mask=mask).last_hidden_state.mean(dim=1), dim=-1)

        def step():
            net.train()
            scores = embed(ids[0]) @ embed(ids[1]).T * 20.0
            loss = F.cross_entropy(scores, torch.arange(a.batch))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        def forward():
            net.eval()
            with torch.no_grad():
                embed(ids[0])

        products = lambda training: products_ms(a.model, a.batch, t, training, torch.randn, torch.matmul,  # noqa: E731
                                                lambda r: r, a.repeats)
        results[t] = {"step": timed(step, a.repeats), "forward": timed(forward, a.repeats),
                      "step_products": products(True), "forward_products": products(False)}
    assert "engine" not in sys.modules
    return results


def child_mlx(a) -> dict:
    import engine  # noqa: F401  (fast BLAS before mlx.core)
    import mlx.core as mx
    import mlx.optimizers as optim
    from engine.inference.encode import _forward
    from engine.losses.mnrl import MultipleNegativesRankingLoss
    from engine.models import load_model
    from engine.training.step import build_step
    from train_throughput import random_model
    engine.backend.keep_freed_memory()
    with tempfile.TemporaryDirectory() as tmp:
        path = "default" if a.model == "minilm" else random_model(Path(tmp), "mbert")
        model, _ = load_model(path, "sentence-similarity")
        mx.eval(model.parameters())
    optimizer = optim.AdamW(learning_rate=1e-5)
    step, _, _ = build_step(model, MultipleNegativesRankingLoss(), optimizer, 1.0)
    results = {}
    for t in a.lengths:
        cols = [{"input_ids": mx.random.randint(1000, VOCAB, (a.batch, t)),
                 "attention_mask": mx.ones((a.batch, t), dtype=mx.int32)} for _ in range(2)]
        batch = {"inputs": cols}
        model.train()
        train = timed(lambda: mx.eval(step(batch), model.parameters(), optimizer.state), a.repeats)
        model.eval()
        forward = _forward(model, True, None, compiled=True)
        infer = timed(lambda: mx.eval(forward(cols[0]["input_ids"], cols[0]["attention_mask"])), a.repeats)
        make = lambda shape: mx.random.normal(shape)   # noqa: E731
        results[t] = {"step": train, "forward": infer,
                      "step_products": products_ms(a.model, a.batch, t, True, make, mx.matmul, mx.eval, a.repeats),
                      "forward_products": products_ms(a.model, a.batch, t, False, make, mx.matmul, mx.eval,
                                                      a.repeats)}
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="minilm,mbert")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lengths", default="16,32,64")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    a = ap.parse_args()
    a.lengths = [int(x) for x in str(a.lengths).split(",")]
    if a.child:
        print(json.dumps((child_torch if a.child == "torch" else child_mlx)(a)))
        return
    print(f"batch {a.batch}, random ids, no padding, {os.cpu_count()} cores; milliseconds (median of {a.repeats})")
    print(f"{'model':<7} {'tokens':>6} {'pass':<9} {'torch':>8} {'its prod.':>9} {'MLX prod.':>9} {'engine':>8} "
          f"{'ceiling':>8} {'now':>6}")
    for model in a.models.split(","):
        runs = {}
        for side in ("torch", "mlx"):
            cmd = [sys.executable, __file__, "--child", side, "--model", model, "--batch", str(a.batch),
                   "--lengths", ",".join(map(str, a.lengths)), "--repeats", str(a.repeats)]
            done = subprocess.run(cmd, capture_output=True, text=True, cwd=os.path.dirname(os.path.abspath(__file__)))
            if done.returncode:
                sys.exit(f"{side} failed:\n{done.stderr[-3000:]}")
            runs[side] = json.loads(done.stdout.strip().splitlines()[-1])
        for t in map(str, a.lengths):
            p, m = runs["torch"][t], runs["mlx"][t]
            for name, key in (("training", "step"), ("inference", "forward")):
                prods = f"{key}_products"
                print(f"{model:<7} {t:>6} {name:<9} {p[key]:>8.1f} {p[prods]:>9.1f} {m[prods]:>9.1f} {m[key]:>8.1f} "
                      f"{p[key] / m[prods]:>7.2f}x {p[key] / m[key]:>5.2f}x", flush=True)


if __name__ == "__main__":
    main()
