"""Training throughput: this trainer vs its PyTorch peers, in one run, on the same data, model, batch
size, max length and number of steps. Each configuration runs in its own process (clean peak RSS).

    python benchmarks/train_throughput.py [--steps 30] [--warmup 5] [--batch-size 16] [--max-length 128]
        [--only mnrl,clf,mbert-mnrl,mbert-clf]

Rows: MNRL on question/answer pairs (resources/demo/pairs.jsonl) and text classification
(resources/demo/reviews.csv), on the embedded all-MiniLM-L6-v2 and on a small random ModernBERT
(4 layers, hidden 256). Peers: sentence-transformers' trainer (MNRL), the transformers Trainer
(classification), both PyTorch on the CPU. Ours with and without mx.compile.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "resources" / "demo"


def rows_for(task: str, n_min: int):
    if task == "mnrl":
        rows = [json.loads(l) for l in (DEMO / "pairs.jsonl").read_text().splitlines() if l.strip()]
        rows = [{"text": r["question"], "text_pair": r["answer"]} for r in rows]
    else:
        with open(DEMO / "reviews.csv", newline="") as f:
            rows = [{"text": r["text"], "label": r["label"]} for r in csv.DictReader(f)]
    while len(rows) < n_min:
        rows = rows + rows
    return rows


def small_modernbert(tmp: Path) -> str:
    from transformers import AutoTokenizer, ModernBertConfig, ModernBertModel
    from engine.defaults import default_model_dir
    import torch
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(str(default_model_dir()))
    cfg = ModernBertConfig(vocab_size=len(tok), hidden_size=256, intermediate_size=512, num_hidden_layers=4,
                           num_attention_heads=4, max_position_embeddings=512, pad_token_id=tok.pad_token_id,
                           bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id,
                           cls_token_id=tok.cls_token_id, sep_token_id=tok.sep_token_id)
    path = tmp / "modernbert-small"
    ModernBertModel(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def child_ours(task, model_path, a, compile_):
    import numpy as np
    from datasets import Dataset
    from engine.data.labels import LabelInfo
    from engine.models import load_model
    from engine.trainer import Trainer
    from engine.training_args import TrainingArgs
    rows = rows_for(task, a.batch_size * a.steps)
    label_info = None
    if task == "clf":
        names = sorted({r["label"] for r in rows})
        rows = [{"text": r["text"], "label": names.index(r["label"])} for r in rows]
        label_info = LabelInfo(names=names, num_labels=len(names), is_regression=False)
        model, tok = load_model(model_path, "text-classification", id2label=names)
    else:
        model, tok = load_model(model_path, "sentence-similarity")
    times, losses = [], []

    def on_event(e):
        if e["event"] == "step":
            times.append(time.perf_counter())
            losses.append(e["loss"])

    args = TrainingArgs(output_dir="", batch_size=a.batch_size, max_steps=a.steps, learning_rate=5e-5,
                        warmup_ratio=0.1, logging_steps=1, save_steps=0, max_length=a.max_length,
                        compile=compile_, seed=0)
    task_type = "text-classification" if task == "clf" else "sentence-similarity"
    Trainer(model, tok, task_type, args, Dataset.from_list(rows), callbacks=[on_event], label_info=label_info).train()
    return times, losses


def child_peer(task, model_path, a):
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

    rows = rows_for(task, a.batch_size * a.steps)
    common = dict(per_device_train_batch_size=a.batch_size, max_steps=a.steps, learning_rate=5e-5,
                  warmup_steps=0.1, logging_steps=1, save_strategy="no", report_to=[], use_cpu=True, seed=0,
                  dataloader_drop_last=True)
    with tempfile.TemporaryDirectory() as out:
        if task == "mnrl":
            from sentence_transformers import (SentenceTransformer, SentenceTransformerTrainer,
                                               SentenceTransformerTrainingArguments, losses as st_losses)
            from sentence_transformers.models import Normalize, Pooling, Transformer
            if (Path(model_path) / "modules.json").exists():
                model = SentenceTransformer(model_path, device="cpu")
            else:
                t = Transformer(model_path)
                model = SentenceTransformer(modules=[t, Pooling(t.get_word_embedding_dimension()), Normalize()],
                                            device="cpu")
            model.max_seq_length = a.max_length
            ds = Dataset.from_list([{"anchor": r["text"], "positive": r["text_pair"]} for r in rows])
            trainer = SentenceTransformerTrainer(
                model=model, args=SentenceTransformerTrainingArguments(output_dir=out, **common), train_dataset=ds,
                loss=st_losses.MultipleNegativesRankingLoss(model), callbacks=[Timer()])
        else:
            from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding,
                                      Trainer, TrainingArguments)
            names = sorted({r["label"] for r in rows})
            tok = AutoTokenizer.from_pretrained(model_path)
            model = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=len(names))
            ds = Dataset.from_list([{"text": r["text"], "label": names.index(r["label"])} for r in rows])
            ds = ds.map(lambda b: tok(b["text"], truncation=True, max_length=a.max_length), batched=True,
                        remove_columns=["text"])
            trainer = Trainer(model=model, args=TrainingArguments(output_dir=out, **common), train_dataset=ds,
                              data_collator=DataCollatorWithPadding(tok), callbacks=[Timer()])
        trainer.train()
    return times, losses


def child(a):
    kind, task, model_name = a.child.split(":")
    model_path = model_name if model_name != "minilm" else None
    if model_path is None:
        from engine.defaults import default_model_dir
        model_path = str(default_model_dir())
    if kind == "peer":
        times, losses = child_peer(task, model_path, a)
    else:
        import engine  # noqa: F401
        times, losses = child_ours(task, model_path, a, compile_=(kind == "ours"))
    w = a.warmup
    rate = a.batch_size * (len(times) - 1 - w) / (times[-1] - times[w]) if len(times) > w + 1 else float("nan")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    print(json.dumps({"examples_per_s": rate, "peak_rss_bytes": rss, "final_loss": losses[-1] if losses else None}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5, help="Steps excluded from timing (compilation, caches).")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--only", default="mnrl,clf,mbert-mnrl,mbert-clf")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child(a)
    wanted = a.only.split(",")
    tmp = Path(tempfile.mkdtemp())
    mbert = small_modernbert(tmp) if any(w.startswith("mbert") for w in wanted) else None
    peer_name = {"mnrl": "sentence-transformers", "clf": "transformers Trainer"}
    print(f"batch {a.batch_size}, max length {a.max_length}, {a.steps} steps ({a.warmup} untimed), "
          f"{os.cpu_count()} cores")
    print(f"{'row':<32} {'examples/s':>10} {'vs peer':>8} {'peak RSS':>9} {'final loss':>10}")
    for row in wanted:
        task = row.split("-")[-1]
        model = mbert if row.startswith("mbert") else "minilm"
        label = ("ModernBERT-small " if row.startswith("mbert") else "MiniLM ") + task.upper()
        results = {}
        for kind in ("peer", "ours", "ours-eager"):
            cmd = [sys.executable, __file__, "--child", f"{kind}:{task}:{model}", "--steps", str(a.steps),
                   "--warmup", str(a.warmup), "--batch-size", str(a.batch_size), "--max-length", str(a.max_length)]
            out = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, TOKENIZERS_PARALLELISM="false"))
            if out.returncode != 0:
                print(f"{label} {kind}: failed\n{out.stderr[-2000:]}")
                continue
            results[kind] = json.loads(out.stdout.strip().splitlines()[-1])
        peer = results.get("peer", {}).get("examples_per_s")
        for kind, name in (("peer", peer_name[task]), ("ours", "RACLATE (compiled)"), ("ours-eager", "RACLATE (eager)")):
            if kind not in results:
                continue
            r = results[kind]
            ratio = f"{r['examples_per_s'] / peer:.2f}x" if peer else "-"
            loss = f"{r['final_loss']:.4f}" if r["final_loss"] is not None else "-"
            print(f"{label + ' ' + name:<32} {r['examples_per_s']:>10.1f} {ratio:>8} "
                  f"{r['peak_rss_bytes'] / 2**20:>7.0f}MB {loss:>10}")


if __name__ == "__main__":
    main()
