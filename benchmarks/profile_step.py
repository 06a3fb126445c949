"""Where one training step's time goes, per task, on the embedded MiniLM and a small random ModernBERT.

    python benchmarks/profile_step.py [--only minilm-mnrl,minilm-clf,mbert-mnrl,mbert-clf]
        [--batch-size 16] [--max-length 128] [--rounds 7] [--data demo|stdlib] [--mbert-shape 6x384]

Uses the trainer's own data path (tokenize once, length-grouped sampler, collator) on the training rows of
benchmarks/train_throughput.py and one typical batch (the median padded size). Times, each behind an
``mx.eval`` barrier: the compiled step the Trainer runs, its parts (forward; forward + backward; the
optimizer = global norm, clip, host-side finiteness check, AdamW), the eager step, a 1024² matmul (the
peak), and every op the forward recorded (dense matmuls, attention, norms, activations, RoPE, embedding
lookups), compiled alone at its recorded shape, forward and backward. "other" is what the measured
forward/backward leaves (residual adds, reshapes, masks, pooling, loss); "host" what the step leaves
(graph building, the sync). Each round times every part once and the medians over rounds are reported,
so a load change on a shared machine hits all parts alike; the step's spread says how noisy it was.
Also reported: collation and tokenization per batch, the distinct padded shapes of one epoch (each is
traced once) and the cost of a trace.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import engine  # noqa: E402  (fast BLAS before mlx.core)
import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402

from benchmarks.train_throughput import random_model, rows_for  # noqa: E402


# -- recording the ops of one forward ----------------------------------------------------------
class Recorder:
    """Patches the layer classes / helpers for one forward and keeps (kind, shapes) per call."""

    def __init__(self):
        self.ops = []

    def __enter__(self):
        from engine.models import bert, modernbert
        rec = self.ops
        self._saved = [(nn.Linear, "__call__", nn.Linear.__call__), (nn.LayerNorm, "__call__", nn.LayerNorm.__call__),
                       (nn.Embedding, "__call__", nn.Embedding.__call__), (bert, "attention", bert.attention),
                       (modernbert, "attention", modernbert.attention), (mx.fast, "rope", mx.fast.rope)]
        lin, ln, emb, att, rope = (s[2] for s in (self._saved[0], self._saved[1], self._saved[2], self._saved[3],
                                                  self._saved[5]))

        def linear(m, x):
            rec.append(("matmul", (tuple(x.shape), tuple(m.weight.shape), "bias" in m)))
            return lin(m, x)

        def layer_norm(m, x):
            rec.append(("norm", (tuple(x.shape), "weight" in m, "bias" in m, m.eps)))
            return ln(m, x)

        def embedding(m, ids):
            rec.append(("embedding", (tuple(ids.shape), tuple(m.weight.shape))))
            return emb(m, ids)

        def attention(q, k, v, mask, scale, **kw):   # softcap, dropout: passed on as given
            rec.append(("attention", (tuple(q.shape), tuple(k.shape), None if mask is None else tuple(mask.shape))))
            return att(q, k, v, mask, scale=scale, **kw)

        def rope_(x, dims, **kw):
            rec.append(("rope", (tuple(x.shape), dims, kw["base"])))
            return rope(x, dims, **kw)

        nn.Linear.__call__, nn.LayerNorm.__call__, nn.Embedding.__call__ = linear, layer_norm, embedding
        bert.attention = modernbert.attention = attention
        mx.fast.rope = rope_
        return self

    def wrap_activations(self, model):
        """Activations are plain functions held by the layers (``self.act``): wrap them per instance."""
        rec = self.ops
        for _, m in model.named_modules():
            act = getattr(m, "act", None)
            if callable(act) and not isinstance(act, nn.Module):
                def wrapped(x, _act=act):
                    rec.append(("activation", (tuple(x.shape), _act)))
                    return _act(x)
                m.act = wrapped
                self._saved.append((m, "act", act))

    def __exit__(self, *exc):
        for owner, name, value in self._saved:
            setattr(owner, name, value)


def op_function(kind, spec):
    """(fn(*inputs) -> array, inputs, flops) for one recorded op, with random inputs of its shapes."""
    from engine.models.attention import attention, make_mask
    r = lambda *s: mx.random.normal(s) * 0.5
    if kind == "matmul":
        (xs, ws, bias) = spec
        x, w, b = r(*xs), r(*ws), r(ws[0])
        fn = (lambda x, w, b: mx.addmm(b, x, w.T)) if bias else (lambda x, w, b: x @ w.T)
        return fn, [x, w, b], 2 * int(np.prod(xs)) * ws[0]
    if kind == "norm":
        xs, has_w, has_b, eps = spec
        w, b = r(xs[-1]), r(xs[-1])
        return (lambda x, w, b: mx.fast.layer_norm(x, w if has_w else None, b if has_b else None, eps)), \
            [r(*xs), w, b], 0
    if kind == "embedding":
        ids_shape, ws = spec
        ids = mx.random.randint(0, ws[0], ids_shape)
        return (lambda w: w[ids]), [r(*ws)], 0
    if kind == "attention":
        qs, ks, ms = spec
        B, H, T, D = qs
        mask = make_mask(mx.ones((B, ks[2]), dtype=mx.int32)) if ms else None
        return (lambda q, k, v: attention(q, k, v, mask, D ** -0.5)), [r(*qs), r(*ks), r(*ks)], 4 * B * H * T * ks[2] * D
    if kind == "activation":
        xs, act = spec
        return act, [r(*xs)], 0
    if kind == "rope":
        xs, dims, base = spec
        return (lambda x: mx.fast.rope(x, dims, traditional=False, base=base, scale=1.0, offset=0)), [r(*xs)], 0
    raise ValueError(kind)


def op_parts(ops):
    """{(kind, spec): (count, forward fn, backward fn, flops of one call incl. backward)} for the recorded ops."""
    counts = defaultdict(int)
    for op in ops:
        counts[(op[0], op[1])] += 1
    parts = {}
    for (kind, spec), n in counts.items():
        fn, inputs, flops = op_function(kind, spec)
        cot = mx.random.normal(fn(*inputs).shape)
        mx.eval(inputs, cot)
        # Compiled, as in the train step: elementwise chains fuse, so eager timings would overstate them.
        forward, backward = mx.compile(fn), mx.compile(lambda *xs, fn=fn, cot=cot: mx.vjp(fn, list(xs), [cot]))
        parts[(kind, spec)] = (n, lambda f=forward, i=inputs: f(*i), lambda b=backward, i=inputs: b(*i), 3 * flops)
    return parts


def interleaved(parts: dict, rounds: int) -> dict:
    """{name: ms array}: every part timed once per round, after two untimed calls each."""
    for fn in parts.values():
        for _ in range(2):
            mx.eval(fn())
    out = {name: [] for name in parts}
    for _ in range(rounds):
        for name, fn in parts.items():
            t = time.perf_counter()
            mx.eval(fn())  # barrier: the part's time only
            out[name].append(1000 * (time.perf_counter() - t))
    return {name: np.array(v) for name, v in out.items()}


# -- the step's parts ----------------------------------------------------------------------------
def setup(model_name, task, a, tmp):
    from datasets import Dataset
    from engine.data.labels import LabelInfo
    from engine.defaults import default_model_dir
    from engine.models import load_model
    from engine.training.trainer import Trainer
    from engine.training.args import TrainingArgs
    path = str(default_model_dir()) if model_name == "minilm" else random_model(tmp, "mbert", a.mbert_shape)
    rows = rows_for(task, data=a.data)
    label_info = None
    if task == "clf":
        names = sorted({r["label"] for r in rows})
        rows = [{"text": r["text"], "label": names.index(r["label"])} for r in rows]
        label_info = LabelInfo(names=names, num_labels=len(names), is_regression=False)
        model, tok = load_model(path, "text-classification", id2label=names)
    else:
        model, tok = load_model(path, "sentence-similarity")
    args = TrainingArgs(output_dir="", batch_size=a.batch_size, max_length=a.max_length, learning_rate=5e-5, seed=0)
    task_type = "text-classification" if task == "clf" else "sentence-similarity"
    trainer = Trainer(model, tok, task_type, args, Dataset.from_list(rows), label_info=label_info)
    return trainer, args


def profile(model_name, task, a, tmp) -> list[str]:
    from engine.data import LengthGroupedBatchSampler
    from engine.training.step import build_step, make_optimizer
    trainer, args = setup(model_name, task, a, tmp)
    getattr(engine.backend, "keep_freed_memory", lambda: None)()  # as Trainer.train() does (absent in old checkouts)
    model = trainer.model
    t = time.perf_counter()
    ds = trainer._tokenized(trainer.train_dataset)
    tokenize_s = time.perf_counter() - t
    sampler = LengthGroupedBatchSampler(trainer._lengths(ds), a.batch_size, seed=0)
    collator = trainer._collator(ds)
    batches, collate_ms = [], []
    for indices in sampler:
        t = time.perf_counter()
        batches.append(trainer._collate(collator, ds, indices, 0))
        collate_ms.append(1000 * (time.perf_counter() - t))
    masks_of = lambda b: [x["attention_mask"] for x in b["inputs"]] if "inputs" in b else [b["attention_mask"]]
    shape = lambda b: tuple(tuple(m.shape) for m in masks_of(b))
    shapes = [shape(b) for b in batches]
    size = [sum(int(np.prod(s)) for s in sh) for sh in shapes]
    order = np.argsort(size)
    batch, other = batches[order[len(size) // 2]], next(b for b in batches if shape(b) != shape(batches[order[len(size) // 2]]))
    real = sum(int(np.asarray(m).sum()) for m in masks_of(batch))

    model.train()
    loss_fn = trainer._loss(ds)
    optimizer = make_optimizer(args, 1000, 0)
    optimizer.init(model.trainable_parameters())
    full_step, grads_fn, apply_fn = build_step(model, loss_fn, optimizer, args.max_grad_norm, compile=True)
    t = time.perf_counter()
    mx.eval(full_step(batch), model.state, optimizer.state)
    first_ms = 1000 * (time.perf_counter() - t)  # trace + any kernel the CPU backend compiles the first time
    t = time.perf_counter()
    mx.eval(full_step(other), model.state, optimizer.state)
    new_shape_ms = 1000 * (time.perf_counter() - t)
    eager_step, _, _ = build_step(model, loss_fn, optimizer, args.max_grad_norm, compile=False)
    forward = mx.compile(lambda b: loss_fn(model, b), inputs=model.state)
    loss, grads = grads_fn(batch)
    mx.eval(loss, grads)
    x = mx.random.normal((1024, 1024))
    parts = {"step": lambda: (full_step(batch), model.state, optimizer.state),
             "forward": lambda: forward(batch),
             "forward+backward": lambda: (grads_fn(batch), model.state),
             "optimizer": lambda: (apply_fn(loss, grads, 1.0), model.state, optimizer.state),
             "eager step": lambda: (eager_step(batch), model.state, optimizer.state),
             "matmul 1024²": lambda: x @ x}
    with Recorder() as rec:
        rec.wrap_activations(model)
        mx.eval(loss_fn(model, batch))
    ops = op_parts(rec.ops)
    for key, (_, fwd_fn, bwd_fn, _) in ops.items():
        parts[("f",) + key], parts[("b",) + key] = fwd_fn, bwd_fn
    ms = interleaved(parts, a.rounds)
    med = {k: float(np.median(v)) for k, v in ms.items()}
    step, fwd, fwd_bwd, optim_ms = med["step"], med["forward"], med["forward+backward"], med["optimizer"]
    bwd, host_ms = fwd_bwd - fwd, step - fwd_bwd - optim_ms
    shares = defaultdict(lambda: [0.0, 0.0, 0])
    for key, (n, *_, flops) in ops.items():
        shares[key[0]][0] += n * med[("f",) + key]
        shares[key[0]][1] += n * max(med[("b",) + key] - med[("f",) + key], 0.0)
        shares[key[0]][2] += n * flops
    peak = 2 * 1024 ** 3 / med["matmul 1024²"] / 1e6  # GFLOP/s
    flops = sum(v[2] for v in shares.values())
    n_params = sum(v.size for _, v in tree_flatten(model.trainable_parameters()))

    name = ("MiniLM-L6" if model_name == "minilm" else "ModernBERT-small") + " " + task.upper()
    lines = [f"== {name}: batch {a.batch_size}, padded {shape(batch)}, {real} real tokens, "
             f"{n_params / 1e6:.1f}M trainable parameters",
             f"data: collate {np.median(collate_ms):.1f} ms/batch (in the prefetch thread), tokenize "
             f"{1000 * tokenize_s / max(len(batches), 1):.1f} ms/batch (once, before training); "
             f"{len(set(shapes))} distinct padded shapes in the {len(shapes)} batches of an epoch",
             f"compiled step {step:.0f} ms (median of {a.rounds} rounds, {ms['step'].min():.0f}-{ms['step'].max():.0f}); "
             f"eager step {med['eager step']:.0f} ms; first call {first_ms:.0f} ms (trace + kernels compiled "
             f"once per machine), a new shape {new_shape_ms:.0f} ms",
             f"{'part':<22}{'forward ms':>11}{'backward ms':>12}{'share of step':>15}"]
    rows = [(k, *shares[k][:2]) for k in ("matmul", "attention", "norm", "activation", "rope", "embedding") if k in shares]
    rows.append(("other (rest of f+b)", fwd - sum(r[1] for r in rows), bwd - sum(r[2] for r in rows)))
    rows.append(("optimizer (norm+AdamW)", 0.0, optim_ms))
    rows.append(("host (graph, sync)", 0.0, host_ms))
    for k, f_ms, b_ms in rows:
        lines.append(f"{k:<22}{f_ms:>11.1f}{b_ms:>12.1f}{100 * (f_ms + b_ms) / step:>14.0f}%")
    mm = shares["matmul"]
    mm_rate = mm[2] / 1e6 / (mm[0] + mm[1])
    lines.append(f"matmul peak (1024² float32) {peak:.0f} GFLOP/s; the step's matmuls+attention {flops / 1e9:.1f} GFLOP "
                 f"in {step:.0f} ms = {flops / 1e6 / step:.0f} GFLOP/s = {100 * flops / 1e6 / step / peak:.0f}% of peak "
                 f"(the dense matmuls alone run at {mm_rate:.0f} GFLOP/s, {100 * mm_rate / peak:.0f}%)")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="minilm-mnrl,minilm-clf,mbert-mnrl,mbert-clf")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--data", default="demo", choices=("demo", "stdlib"), help="as benchmarks/train_throughput.py")
    ap.add_argument("--mbert-shape", default="6x384", help="the random ModernBERT's LAYERSxHIDDEN")
    a = ap.parse_args()
    import datasets
    datasets.disable_progress_bars()
    info = engine.backend.info()
    print(f"MLX {mx.__version__}, BLAS {info['blas']}, {os.cpu_count()} cores, "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}")
    tmp = Path(tempfile.mkdtemp())
    for row in a.only.split(","):
        model_name, task = row.split("-")
        mx.random.seed(0)
        print("\n".join(profile(model_name, task, a, tmp)), flush=True)


if __name__ == "__main__":
    main()
