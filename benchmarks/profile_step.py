"""Where one training step's time goes, per task, on the embedded MiniLM and a small random ModernBERT.

    python benchmarks/profile_step.py [--only minilm-mnrl,minilm-clf,mbert-mnrl,mbert-clf]
        [--batch-size 16] [--max-length 128] [--repeat 7]

Uses the trainer's own data path (tokenize once, length-grouped sampler, collator) on the demo data of
benchmarks/train_throughput.py, then on one typical batch (the median padded size) times, with an
``mx.eval`` barrier after each part: data (collation per batch), forward, backward, optimizer
(clip + AdamW + non-finite guard), the whole eager step and the compiled step. The ops' share comes
from timing every op the forward recorded (dense matmuls, attention, norms, activations, RoPE,
embedding lookups) alone at its recorded shape, forward and backward; what is left of the measured
forward/backward is "other" (residual adds, reshapes, pooling, loss, graph overhead). The matmul
peak is a 1024² float32 matmul; the step's GFLOP/s counts the dense matmuls and attention products.
It also counts the distinct padded shapes one epoch feeds the compiled step (each costs a trace).
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

from benchmarks.train_throughput import rows_for, small_modernbert  # noqa: E402


def median_ms(fn, repeat: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        mx.eval(fn())
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        mx.eval(fn())  # barrier: the part's time only
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


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

        def attention(q, k, v, mask, scale, softcap=None):
            rec.append(("attention", (tuple(q.shape), tuple(k.shape), None if mask is None else tuple(mask.shape))))
            return att(q, k, v, mask, scale, softcap)

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


def op_shares(ops, repeat):
    """{kind: (forward ms, backward ms, flops)} summed over the recorded calls."""
    counts = defaultdict(int)
    for op in ops:
        counts[(op[0], op[1])] += 1
    out = defaultdict(lambda: [0.0, 0.0, 0])
    for (kind, spec), n in counts.items():
        fn, inputs, flops = op_function(kind, spec)
        mx.eval(inputs)
        cot = mx.random.normal(fn(*inputs).shape)
        fwd = median_ms(lambda: fn(*inputs), repeat)
        both = median_ms(lambda: mx.vjp(fn, inputs, [cot]), repeat)
        out[kind][0] += n * fwd
        out[kind][1] += n * max(both - fwd, 0.0)
        out[kind][2] += n * flops * 3  # backward: two matmuls of the forward's size
    return dict(out)


# -- the step's parts ----------------------------------------------------------------------------
def setup(model_name, task, a, tmp):
    from datasets import Dataset
    from engine.data.labels import LabelInfo
    from engine.defaults import default_model_dir
    from engine.models import load_model
    from engine.trainer import Trainer
    from engine.training_args import TrainingArgs
    path = str(default_model_dir()) if model_name == "minilm" else small_modernbert(tmp)
    rows = rows_for(task)
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
    from engine.train_step import build_step, make_optimizer
    trainer, args = setup(model_name, task, a, tmp)
    engine.backend.keep_freed_memory()  # as Trainer.train() does
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
    shape = lambda b: tuple(x["input_ids"].shape for x in b["inputs"]) if "inputs" in b else (b["input_ids"].shape,)
    shapes = [shape(b) for b in batches]
    size = [sum(int(np.prod(s)) for s in sh) for sh in shapes]
    batch = batches[int(np.argsort(size)[len(size) // 2])]
    real = sum(int(m.sum().item()) for m in ([x["attention_mask"] for x in batch["inputs"]] if "inputs" in batch
                                                else [batch["attention_mask"]]))

    model.train()
    loss_fn = trainer._loss(ds)
    value_and_grad = nn.value_and_grad(model, loss_fn)
    fwd = median_ms(lambda: loss_fn(model, batch), a.repeat)
    fwd_bwd = median_ms(lambda: value_and_grad(model, batch), a.repeat)

    optimizer = make_optimizer(args, 1000, 0)
    optimizer.init(model.trainable_parameters())
    eager_step, _, _ = build_step(model, loss_fn, optimizer, args.max_grad_norm, compile=False)
    step_eager = median_ms(lambda: (eager_step(batch), model.state, optimizer.state), a.repeat)
    compiled_step, _, _ = build_step(model, loss_fn, optimizer, args.max_grad_norm, compile=True)
    t = time.perf_counter()
    mx.eval(compiled_step(batch), model.state, optimizer.state)
    trace_ms = 1000 * (time.perf_counter() - t)
    step_compiled = median_ms(lambda: (compiled_step(batch), model.state, optimizer.state), a.repeat)
    trace_ms -= step_compiled
    optim_ms = step_eager - fwd_bwd

    with Recorder() as rec:
        rec.wrap_activations(model)
        mx.eval(loss_fn(model, batch))
    shares = op_shares(rec.ops, a.repeat)
    x = mx.random.normal((1024, 1024))
    peak = 2 * 1024 ** 3 / median_ms(lambda: x @ x, a.repeat) / 1e6  # GFLOP/s
    flops = sum(v[2] for v in shares.values())
    n_params = sum(v.size for _, v in tree_flatten(model.trainable_parameters()))

    name = ("MiniLM-L6" if model_name == "minilm" else "ModernBERT-small") + " " + task.upper()
    bwd = fwd_bwd - fwd
    lines = [f"== {name}: batch {a.batch_size}, padded shape {shape(batch)}, {real} real tokens, "
             f"{n_params / 1e6:.1f}M trainable parameters",
             f"data: tokenize {1000 * tokenize_s / max(len(batches), 1):.1f} ms/step (once, before training), "
             f"collate {np.median(collate_ms):.1f} ms/batch; {len(set(shapes))} distinct padded shapes "
             f"in {len(shapes)} batches of one epoch",
             f"step (eager): forward {fwd:.0f} ms, backward {bwd:.0f} ms, optimizer (clip+AdamW+guard) "
             f"{optim_ms:.0f} ms = {step_eager:.0f} ms; compiled step {step_compiled:.0f} ms "
             f"(+{trace_ms:.0f} ms to trace a new shape)",
             f"{'op':<12}{'forward ms':>11}{'backward ms':>12}{'share of eager step':>21}"]
    rows = [(k, *shares[k][:2]) for k in ("matmul", "attention", "norm", "activation", "rope", "embedding") if k in shares]
    rows.append(("other", max(fwd - sum(r[1] for r in rows), 0.0), max(bwd - sum(r[2] for r in rows), 0.0)))
    rows.append(("optimizer", 0.0, optim_ms))
    for k, f_ms, b_ms in rows:
        lines.append(f"{k:<12}{f_ms:>11.1f}{b_ms:>12.1f}{100 * (f_ms + b_ms) / step_eager:>20.0f}%")
    lines.append(f"matmul peak (1024² float32): {peak:.0f} GFLOP/s; the step's matmuls+attention "
                 f"{flops / 1e9:.1f} GFLOP → {flops / 1e6 / step_compiled:.0f} GFLOP/s compiled "
                 f"= {100 * flops / 1e6 / step_compiled / peak:.0f}% of peak; matmuls alone run at "
                 f"{shares['matmul'][2] / 1e6 / (shares['matmul'][0] + shares['matmul'][1]):.0f} GFLOP/s")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="minilm-mnrl,minilm-clf,mbert-mnrl,mbert-clf")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=7)
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
