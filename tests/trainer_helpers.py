"""Helpers for the trainer tests: a tiny random BERT on disk (with the embedded model's tokenizer),
small learnable datasets, and short Trainer runs."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np

import mlx.core as mx
from mlx.utils import tree_flatten

# 2 layers × 32 dims; the vocabulary is the embedded MiniLM tokenizer's, so real text tokenizes.
TINY_BERT = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=64, max_position_embeddings=64)
POSITIVE = ["good", "great", "lovely", "superb", "excellent", "wonderful"]
NEGATIVE = ["bad", "awful", "poor", "terrible", "dreadful", "boring"]
FILLER = ["the", "film", "was", "really", "a", "day", "book", "meal", "quite", "very"]

_BUILT: dict[str, Path] = {}


def quiet_datasets() -> None:
    import datasets
    datasets.disable_progress_bars()


def tiny_bert_dir(tmp_path_factory) -> Path:
    """A random BertModel saved once per session with the MiniLM tokenizer (torch only here)."""
    if "bert" not in _BUILT:
        from transformers import BertConfig, BertModel
        from engine.defaults import default_model_dir
        from tests.helpers import save_tiny
        path = tmp_path_factory.mktemp("tiny-bert")
        save_tiny(BertModel, BertConfig(**TINY_BERT), path, default_model_dir())
        _BUILT["bert"] = path
    return _BUILT["bert"]


def load(path, task="text-classification", seed=0, **kw):
    """load_model with a fixed seed, so a new head starts the same every time."""
    from engine.models import load_model
    mx.random.seed(seed)
    return load_model(str(path), task, **kw)


def sentiment_rows(n: int, seed: int = 0, words: int = 6) -> list[dict]:
    """Short reviews whose label (1 = positive) is given by their sentiment words."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        picked = rng.choices(POSITIVE if label else NEGATIVE, k=2) + rng.choices(FILLER, k=words - 2)
        rng.shuffle(picked)
        rows.append({"text": " ".join(picked), "label": label})
    return rows


def pair_rows(n: int, seed: int = 0) -> list[dict]:
    """(question, answer, negative) triples from the bundled demo pairs."""
    from engine.defaults import RESOURCES_DIR
    lines = (RESOURCES_DIR / "demo" / "pairs.jsonl").read_text(encoding="utf-8").splitlines()
    pairs = [json.loads(line) for line in lines[:n]]
    return [{"text": p["question"], "text_pair": p["answer"], "negative": pairs[(i + 1) % n]["answer"]}
            for i, p in enumerate(pairs)]


def dataset(rows):
    import datasets
    quiet_datasets()
    return datasets.Dataset.from_list(rows)


def labels(names=("neg", "pos"), regression=False):
    from engine.data import LabelInfo
    if regression:
        return LabelInfo(names=None, num_labels=1, is_regression=True)
    return LabelInfo(names=list(names), num_labels=len(names))


def train(model, tokenizer, task, train_ds, eval_ds=None, label_info=None, **args):
    """A Trainer run with test defaults (no output folder, log every step) → (trainer, result, events)."""
    from engine.training.trainer import Trainer
    from engine.training.args import TrainingArgs
    defaults = dict(batch_size=8, learning_rate=1e-3, logging_steps=1, save_steps=0, max_length=32, seed=0)
    events: list[dict] = []
    trainer = Trainer(model, tokenizer, task, TrainingArgs(**{**defaults, **args}), train_ds, eval_ds,
                      callbacks=[events.append], label_info=label_info)
    return trainer, trainer.train(), events


def weights(model, trainable_only=False) -> dict[str, np.ndarray]:
    tree = model.trainable_parameters() if trainable_only else model.parameters()
    return {k: np.array(v) for k, v in tree_flatten(tree)}


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


def of(events, name) -> list[dict]:
    return [e for e in events if e["event"] == name]
