"""Training throughput and quality: this trainer vs its PyTorch peers, in one run, on the same rows, batch
size, max length, number of steps and hyperparameters. Each configuration runs in its own process
(clean peak RSS), one after the other.

    python benchmarks/train_throughput.py [--steps 40] [--warmup 5] [--batch-size 16] [--max-length 128]
        [--data demo|stdlib] [--only mnrl,clf,mbert-mnrl,mbert-clf,qwen-mnrl,qwen-lora]
        [--kinds peer,ours,ours-eager] [--seeds 0]

Data: ``demo`` = question/answer pairs (resources/demo/pairs.jsonl) for MNRL and 3-class review
classification (resources/demo/reviews.csv); ``stdlib`` = short term/definition pairs nobody on the team
wrote (the Python standard library's names and docstring summaries, benchmarks/public_data.py) for MNRL, and
summary → module (8 classes) for classification. Models: the embedded all-MiniLM-L6-v2; a random ModernBERT
(``--mbert-shape``, default 6 layers × hidden 384); a random Qwen3-shaped model (8 layers, hidden 768, 12 query
/ 4 key-value heads of 64, MLP 2048, last-token pooling) trained fully (``qwen-mnrl``) and with LoRA r=16 on
every attention and MLP projection (``qwen-lora``; the peer: sentence-transformers + peft, same targets).
Every 5th row is held out for evaluation; training cycles over the other rows in epochs (no row twice in a
batch). Peers: sentence-transformers' trainer (MNRL) and the transformers Trainer (classification), PyTorch
on the CPU. Ours compiled (the default) and eager.

Same for all: AdamW lr 5e-5, betas (0.9, 0.999), eps 1e-8, weight decay 0.01, linear schedule with 10%
warmup, clip 1.0, seed. Differences by design: the peers draw random batches padded to their longest,
ours length-grouped batches padded to a multiple of 8; the peers tokenize in the data loader, ours once
before training. Dropout: both sides train with each model's config values (MiniLM 0.1 hidden, attention
and classifier dropout; the small ModernBERT 0), each drawing its own masks; the header says which. Kinds
``peer-nodrop`` / ``ours-nodrop`` run either side with dropout 0.

Columns: examples/s over the steps after ``--warmup`` (first compilations, caches); "vs peer"; peak RSS
of the process; final loss = mean of the last 10 steps' training losses (each trainer's own batches, so
not comparable across batching schemes); train s = the whole train() call (tokenizing and compiling
included); held-out, after training: MRR@10 and accuracy@1 of each question's answer among all held-out
answers (MNRL), accuracy and macro-F1 (classification), and "loss", the task loss of the held-out rows in
the same fixed batches for every trainer (the comparable loss). With several seeds: means, and the
standard deviation of the first metric.
``--base-root DIR`` adds a row for the engine of another checkout (e.g. before a change).
Kind ``ours-plain-kernels``: this trainer with MLX's compiled CPU kernels built without the vectorising
flags (``RACLATE_KERNEL_FLAGS=0``, engine/backend.py), in a kernel cache of its own. Before the timed
runs, each of this trainer's kinds runs 20 untimed steps once per row, so every padded shape's kernels
are in the cache (a one-time cost per machine, as for a user's second run; ``--warm-steps``).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))   # public_data, also when imported as benchmarks.train_throughput
DEMO = ROOT / "resources" / "demo"
LR, WEIGHT_DECAY, WARMUP = 5e-5, 0.01, 0.1
# "peer-nodrop": the PyTorch peer with dropout off, like "ours-nodrop" (--dropout 0); BERT's config has 0.1.
NO_DROPOUT = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0, "classifier_dropout": 0.0}


def rows_for(task: str, split: str = "train", data: str = "demo") -> list[dict]:
    """The rows of ``task`` ("mnrl" pairs, else classification); every 5th row is the "eval" split."""
    if data == "stdlib":
        import public_data   # benchmarks/public_data.py
        rows = ([{"text": r["text"], "text_pair": r["text_pair"]} for r in public_data.pairs()] if task == "mnrl"
                else public_data.labelled())
    elif task == "mnrl":
        rows = [json.loads(l) for l in (DEMO / "pairs.jsonl").read_text().splitlines() if l.strip()]
        rows = [{"text": r["question"], "text_pair": r["answer"]} for r in rows]
    else:
        with open(DEMO / "reviews.csv", newline="") as f:
            rows = [{"text": r["text"], "label": r["label"]} for r in csv.DictReader(f)]
    if split == "all":
        return rows
    return [r for i, r in enumerate(rows) if (i % 5 == 4) == (split == "eval")]


def random_model(tmp: Path, kind: str, shape: str = "6x384") -> str:
    """A random-weight ModernBERT (``shape`` = LAYERSxHIDDEN) or Qwen3-shaped model with the bundled
    tokenizer (its ids fit the vocabulary), saved by transformers so both sides load the same weights."""
    from transformers import AutoTokenizer, ModernBertConfig, ModernBertModel, Qwen3Config, Qwen3Model
    from engine.defaults import default_model_dir
    import torch
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(str(default_model_dir()))
    if kind == "mbert":
        layers, hidden = map(int, shape.split("x"))
        model = ModernBertModel(ModernBertConfig(
            vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 3 // 2, num_hidden_layers=layers,
            num_attention_heads=hidden // 64, max_position_embeddings=512, pad_token_id=tok.pad_token_id,
            bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id, cls_token_id=tok.cls_token_id,
            sep_token_id=tok.sep_token_id))
    else:
        model = Qwen3Model(Qwen3Config(
            vocab_size=len(tok), hidden_size=768, intermediate_size=2048, num_hidden_layers=8,
            num_attention_heads=12, num_key_value_heads=4, head_dim=64, max_position_embeddings=4096,
            pad_token_id=tok.pad_token_id, tie_word_embeddings=True))
    path = tmp / f"{kind}-{shape}"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


# -- held-out metrics: one implementation for every row ------------------------------------------
def _cross_entropy(logits, targets) -> float:
    import numpy as np
    logits = logits - logits.max(axis=1, keepdims=True)
    return float(np.mean(np.log(np.exp(logits).sum(axis=1)) - logits[np.arange(len(targets)), targets]))


def retrieval_metrics(queries, documents, batch_size: int = 16) -> dict:
    """Question i's answer is document i; cosine ranking among all held-out answers. "loss": the MNRL loss
    (scale 20) of the held-out rows in file-order batches, the same batches for every trainer."""
    import numpy as np
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    d = documents / np.linalg.norm(documents, axis=1, keepdims=True)
    scores = q @ d.T
    rank = (scores > scores[np.arange(len(q)), np.arange(len(q))][:, None]).sum(axis=1)  # 0 = first
    loss = np.mean([_cross_entropy(20 * scores[i:i + batch_size, i:i + batch_size], np.arange(len(scores[i:i + batch_size])))
                    for i in range(0, len(q), batch_size)])
    return {"mrr@10": float(np.mean(np.where(rank < 10, 1.0 / (rank + 1), 0.0))),
            "acc@1": float(np.mean(rank == 0)), "loss": float(loss)}


def classification_metrics(logits, labels) -> dict:
    import numpy as np
    pred, labels = np.argmax(logits, axis=1), np.asarray(labels)
    f1 = []
    for c in range(logits.shape[1]):
        tp, fp, fn = np.sum((pred == c) & (labels == c)), np.sum((pred == c) & (labels != c)), np.sum((pred != c) & (labels == c))
        f1.append(2 * tp / max(2 * tp + fp + fn, 1))
    return {"accuracy": float(np.mean(pred == labels)), "macro_f1": float(np.mean(f1)),
            "loss": _cross_entropy(logits.astype(np.float64), labels)}


def label_names(task, data) -> list[str]:
    return sorted({r["label"] for r in rows_for(task, "all", data)}) if task == "clf" else []


# -- the children --------------------------------------------------------------------------------
def dropout_of(model_path) -> dict:
    """The dropout keys of a model's config.json, as both sides read them."""
    config = json.loads((Path(model_path) / "config.json").read_text())
    return {k: v for k, v in config.items() if "dropout" in k}


LORA_RANK = 16
QWEN_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def batches(rows: list, size: int) -> list[list]:
    """Held-out rows in batches of ``size`` (both sides evaluate the same way, as they train)."""
    return [rows[i:i + size] for i in range(0, len(rows), size)]


def child_ours(task, model_path, a, compile_, group_by_length=True, dropout=None, lora=False):
    import numpy as np
    from datasets import Dataset
    import mlx.core as mx
    from engine import encode
    from engine.data.labels import LabelInfo
    from engine.models import load_model
    from engine.training.trainer import Trainer
    from engine.training.args import TrainingArgs
    rows, names, label_info = rows_for(task, data=a.data), label_names(task, a.data), None
    override = {} if dropout is None else {"dropout": dropout}  # an older --base-root engine has no such setting
    adapters = {"lora_rank": LORA_RANK, "lora_alpha": LORA_RANK} if lora else {}
    mx.random.seed(a.seed)  # a new classifier head's initial weights follow the seed (as `raclate train`)
    if task == "clf":
        rows = [{"text": r["text"], "label": names.index(r["label"])} for r in rows]
        label_info = LabelInfo(names=names, num_labels=len(names), is_regression=False)
        model, tok = load_model(model_path, "text-classification", id2label=names, **override)
    else:
        model, tok = load_model(model_path, "sentence-similarity", **override)
    times, losses = [], []

    def on_event(e):
        if e["event"] == "step":
            times.append(time.perf_counter())
            losses.append(e["loss"])

    args = TrainingArgs(output_dir="", batch_size=a.batch_size, max_steps=a.steps, learning_rate=LR,
                        weight_decay=WEIGHT_DECAY, warmup_ratio=WARMUP, logging_steps=1, save_steps=0,
                        max_length=a.max_length, compile=compile_, seed=a.seed, group_by_length=group_by_length,
                        **override, **adapters)
    task_type = "text-classification" if task == "clf" else "sentence-similarity"
    start = time.perf_counter()
    Trainer(model, tok, task_type, args, Dataset.from_list(rows), callbacks=[on_event], label_info=label_info).train()
    train_s = time.perf_counter() - start
    held = rows_for(task, "eval", a.data)
    if task == "clf":
        def logits(texts):
            enc = tok(texts, padding=True, truncation=True, max_length=a.max_length, return_tensors="np")
            return np.array(model(mx.array(enc["input_ids"].astype(np.int32)),
                                  mx.array(enc["attention_mask"].astype(np.int32))))
        metrics = classification_metrics(np.concatenate([logits([r["text"] for r in part]) for part in
                                                         batches(held, 32)]), [names.index(r["label"]) for r in held])
    else:
        embed = lambda texts: np.asarray(encode(model, tok, texts, batch_size=32, max_length=a.max_length))
        metrics = retrieval_metrics(embed([r["text"] for r in held]), embed([r["text_pair"] for r in held]))
    return times, losses, train_s, metrics


def child_peer(task, model_path, a, dropout=True, lora=False):
    import numpy as np
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    times, losses = [], []

    class Timer(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            times.append(time.perf_counter())

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                losses.append(logs["loss"])

    rows, names, held = rows_for(task, data=a.data), label_names(task, a.data), rows_for(task, "eval", a.data)
    common = dict(per_device_train_batch_size=a.batch_size, max_steps=a.steps, learning_rate=LR,
                  weight_decay=WEIGHT_DECAY, warmup_steps=WARMUP, lr_scheduler_type="linear", max_grad_norm=1.0,
                  logging_steps=1, save_strategy="no", report_to=[], use_cpu=True, seed=a.seed,
                  dataloader_drop_last=True)
    with tempfile.TemporaryDirectory() as out:
        if task == "mnrl":
            from sentence_transformers import (SentenceTransformer, SentenceTransformerTrainer,
                                               SentenceTransformerTrainingArguments, losses as st_losses)
            from sentence_transformers.models import Normalize, Pooling, Transformer
            config = {} if dropout else {"config_kwargs": NO_DROPOUT}
            if (Path(model_path) / "modules.json").exists():
                model = SentenceTransformer(model_path, device="cpu", **config)
            else:
                t = Transformer(model_path, config_args=config.get("config_kwargs"))
                pooling = "lasttoken" if "qwen" in Path(model_path).name else "mean"   # each family's default
                model = SentenceTransformer(modules=[t, Pooling(t.get_word_embedding_dimension(), pooling), Normalize()],
                                            device="cpu")
            if lora:
                from peft import LoraConfig, get_peft_model
                model[0].auto_model = get_peft_model(model[0].auto_model, LoraConfig(
                    r=LORA_RANK, lora_alpha=LORA_RANK, lora_dropout=0.0, target_modules=QWEN_TARGETS))
            model.max_seq_length = a.max_length
            ds = Dataset.from_list([{"anchor": r["text"], "positive": r["text_pair"]} for r in rows])
            trainer = SentenceTransformerTrainer(
                model=model, args=SentenceTransformerTrainingArguments(output_dir=out, **common), train_dataset=ds,
                loss=st_losses.MultipleNegativesRankingLoss(model, scale=20.0), callbacks=[Timer()])
        else:
            from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding,
                                      Trainer, TrainingArguments)
            tok = AutoTokenizer.from_pretrained(model_path)
            model = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=len(names),
                                                                       **({} if dropout else NO_DROPOUT))
            ds = Dataset.from_list([{"text": r["text"], "label": names.index(r["label"])} for r in rows])
            ds = ds.map(lambda b: tok(b["text"], truncation=True, max_length=a.max_length), batched=True,
                        remove_columns=["text"])
            trainer = Trainer(model=model, args=TrainingArguments(output_dir=out, **common), train_dataset=ds,
                              data_collator=DataCollatorWithPadding(tok), callbacks=[Timer()])
        start = time.perf_counter()
        trainer.train()
        train_s = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        if task == "mnrl":
            embed = lambda texts: model.encode(texts, batch_size=32, convert_to_numpy=True)
            metrics = retrieval_metrics(embed([r["text"] for r in held]), embed([r["text_pair"] for r in held]))
        else:
            def logits(texts):
                enc = tok(texts, padding=True, truncation=True, max_length=a.max_length, return_tensors="pt")
                return model(**enc).logits.float().numpy()
            metrics = classification_metrics(np.concatenate([logits([r["text"] for r in part]) for part in
                                                             batches(held, 32)]), [names.index(r["label"]) for r in held])
    return times, losses, train_s, metrics


def child(a):
    kind, task, model_name = a.child.split(":", 2)
    lora = task == "lora"
    task = "mnrl" if lora else task
    model_path = model_name   # a folder the parent resolved: a peer never imports the engine
    if kind.startswith("peer"):
        times, losses, train_s, metrics = child_peer(task, model_path, a, dropout=(kind == "peer"), lora=lora)
        # the engine's import loads OpenBLAS globally and tunes malloc: it must not slow the peer down
        assert "engine" not in sys.modules, "the PyTorch peer imported the engine"
    else:
        import engine  # noqa: F401
        times, losses, train_s, metrics = child_ours(task, model_path, a, compile_=(kind != "ours-eager"),
                                                     group_by_length=(kind != "ours-random"),
                                                     dropout=0.0 if kind == "ours-nodrop" else None, lora=lora)
    w = a.warmup
    rate = a.batch_size * (len(times) - 1 - w) / (times[-1] - times[w]) if len(times) > w + 1 else float("nan")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    tail = [x for x in losses[-10:] if x is not None]
    print(json.dumps({"examples_per_s": rate, "peak_rss_bytes": rss, "final_loss": statistics.mean(tail) if tail else None,
                      "train_s": train_s, "metrics": metrics}))


# -- the parent ----------------------------------------------------------------------------------
CHILD_KIND = {"base": "ours", "ours-plain-kernels": "ours"}


def machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} cores, {mem:.0f} GiB"


def run_child(kind, task, model, seed, a, env, steps=None):
    cmd = [sys.executable, __file__, "--child", f"{kind}:{task}:{model}", "--steps", str(steps or a.steps),
           "--warmup", str(a.warmup), "--batch-size", str(a.batch_size), "--max-length", str(a.max_length),
           "--seed", str(seed), "--data", a.data]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        print(f"{kind} {task} {model}: failed\n{out.stderr[-3000:]}", flush=True)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5, help="Steps excluded from timing (compilation, caches).")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--only", default="mnrl,clf,mbert-mnrl,mbert-clf",
                    help="Rows, comma-separated; also qwen-mnrl and qwen-lora (Qwen3-shaped, ~0.1B parameters).")
    ap.add_argument("--data", default="demo", choices=("demo", "stdlib"))
    ap.add_argument("--mbert-shape", default="6x384", help="The random ModernBERT's LAYERSxHIDDEN.")
    ap.add_argument("--kinds", default="peer,ours,ours-eager",
                    help="Also: ours-random (group_by_length off), ours-plain-kernels, peer-nodrop and ours-nodrop "
                         "(dropout 0 on either side; MiniLM only: ModernBERT's dropout is 0 already).")
    ap.add_argument("--warm-steps", type=int, default=20,
                    help="Untimed steps run once per row and kind of this trainer first (kernel caches); 0 = none.")
    ap.add_argument("--seeds", default="0", help="Comma-separated seeds; each row runs once per seed.")
    ap.add_argument("--base-root", help="Also run the engine of this checkout (PYTHONPATH), compiled, as 'base'.")
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child(a)
    pristine = dict(os.environ)   # before this process imports the engine (it sets OpenBLAS's kernels and PATH)
    wanted, kinds, seeds = a.only.split(","), a.kinds.split(","), [int(s) for s in a.seeds.split(",")]
    if a.base_root:
        kinds.append("base")
    tmp = Path(tempfile.mkdtemp())
    mbert = random_model(tmp, "mbert", a.mbert_shape) if any(w.startswith("mbert") for w in wanted) else None
    qwen = random_model(tmp, "qwen") if any(w.startswith("qwen") for w in wanted) else None
    peer_name = {"mnrl": "sentence-transformers", "clf": "transformers Trainer", "lora": "sentence-transformers + peft"}
    env = dict(pristine, TOKENIZERS_PARALLELISM="false")
    print(f"{machine()}; data {a.data} ({len(rows_for('mnrl', data=a.data))} training pairs); batch {a.batch_size}, "
          f"max length {a.max_length}, {a.steps} steps ({a.warmup} untimed), seeds {a.seeds}", flush=True)
    from engine.defaults import default_model_dir
    models = {"MiniLM-L6": default_model_dir(), f"ModernBERT-{a.mbert_shape}": mbert, "Qwen3-shaped": qwen}
    print("dropout, peer and ours alike (each model's config; the -nodrop kinds: 0): "
          + "; ".join(f"{name} {dropout_of(path) or 'none'}" for name, path in models.items() if path), flush=True)
    print(f"{'row':<52} {'examples/s':>10} {'vs peer':>8} {'peak RSS':>9} {'final loss':>10} {'train s':>8}  held-out")
    for row in wanted:
        task = row.split("-")[-1]
        model = {"mbert": mbert, "qwen": qwen}.get(row.split("-")[0], str(default_model_dir()))
        label = {"mbert": f"ModernBERT-{a.mbert_shape} ", "qwen": "Qwen3-shaped "}.get(row.split("-")[0], "MiniLM-L6 ") + task.upper()
        results = {}
        child_envs = {kind: dict(env) for kind in kinds}
        if "base" in kinds:
            child_envs["base"]["PYTHONPATH"] = a.base_root
        if "ours-plain-kernels" in kinds:
            (tmp / "plain-kernels").mkdir(exist_ok=True)
            child_envs["ours-plain-kernels"].update(RACLATE_KERNEL_FLAGS="0", TMPDIR=str(tmp / "plain-kernels"))
        for kind in kinds:  # warm the compiled-kernel caches
            if kind not in ("peer", "peer-nodrop") and a.warm_steps:
                run_child(CHILD_KIND.get(kind, kind), task, model, seeds[0], a, child_envs[kind], steps=a.warm_steps)
        for seed in seeds:
            for kind in kinds:
                if kind in ("peer-nodrop", "ours-nodrop") and not row.startswith(("mnrl", "clf")):
                    continue
                r = run_child(CHILD_KIND.get(kind, kind), task, model, seed, a, child_envs[kind])
                if r is not None:
                    results.setdefault(kind, []).append(r)
        mean = lambda kind, f: statistics.mean(f(r) for r in results[kind])
        peer = mean("peer", lambda r: r["examples_per_s"]) if "peer" in results else None
        names = {"peer": peer_name[task], "peer-nodrop": peer_name[task] + " (dropout 0)",
                 "ours": "RACLATE (compiled)", "ours-eager": "RACLATE (eager)", "ours-nodrop": "RACLATE (dropout 0)",
                 "ours-random": "RACLATE (random batches)",
                 "ours-plain-kernels": "RACLATE (unvectorised kernels)",
                 "base": "RACLATE (--base-root)"}
        for kind in kinds:
            if kind not in results:
                continue
            rate = mean(kind, lambda r: r["examples_per_s"])
            ratio = f"{rate / peer:.2f}x" if peer else "-"
            losses = [r["final_loss"] for r in results[kind] if r["final_loss"] is not None]
            loss = f"{statistics.mean(losses):.4f}" if losses else "-"
            metrics = {k: statistics.mean(r["metrics"][k] for r in results[kind]) for k in results[kind][0]["metrics"]}
            held = ", ".join(f"{k} {v:.3f}" for k, v in metrics.items())
            if len(results[kind]) > 1:
                first = next(iter(metrics))
                held += f" (sd {statistics.stdev(r['metrics'][first] for r in results[kind]):.3f})"
            print(f"{label + ' ' + names[kind]:<52} {rate:>10.1f} {ratio:>8} "
                  f"{mean(kind, lambda r: r['peak_rss_bytes']) / 2**20:>7.0f}MB {loss:>10} "
                  f"{mean(kind, lambda r: r['train_s']):>8.1f}  {held}", flush=True)


if __name__ == "__main__":
    main()
