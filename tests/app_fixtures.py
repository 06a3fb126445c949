"""Tiny "trained" models for the Evaluate, Playground, Runs and Export tests (no tests of its own).

Each model is a tiny random BERT with the embedded model's tokenizer: a freshly loaded head saved with
``save_pretrained`` next to a hand-written ``raclate_run.json`` (as ``train_run`` writes it) whose data
has a validation split. ``trained_run`` is a real 4-step ``train_run`` with checkpoints at steps 2 and 4.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import pytest

WORDS = ("good", "bad", "fine", "great", "awful", "okay", "film", "food", "staff", "room", "price", "music")
CLASSES = ("neg", "neu", "pos")


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def data_files(folder: Path) -> dict[str, Path]:
    """One small data file per task."""
    folder.mkdir(parents=True, exist_ok=True)
    cls = [{"text": f"the {WORDS[i % 12]} was {WORDS[(i * 5) % 12]} today {i}", "label": CLASSES[i % 3]}
           for i in range(48)]
    reg = [{"text": f"the {WORDS[i % 12]} and {WORDS[(i * 7) % 12]} number {i}", "score": round((i % 10) / 9, 3)}
           for i in range(40)]
    pairs = [{"question": f"what is the {WORDS[i % 12]} {WORDS[(i * 5) % 12]} number {i}?",
              "answer": f"the {WORDS[(i * 7) % 12]} {WORDS[i % 12]} answer is {i}"} for i in range(40)]
    ner = []
    for i in range(40):
        tokens = ["Anna", "met", "Bob", "in", "Paris", "on", "day", str(i)] if i % 2 else \
            ["The", "staff", "in", "Berlin", "liked", "Carla", "a", "lot"]
        tags = ["B-PER", "O", "B-PER", "O", "B-LOC", "O", "O", "O"] if i % 2 else \
            ["O", "O", "O", "B-LOC", "O", "B-PER", "O", "O"]
        ner.append({"tokens": tokens, "ner_tags": tags})
    mlm = [{"text": f"the {WORDS[i % 12]} was very {WORDS[(i * 5) % 12]} and the {WORDS[(i * 3) % 12]} too"}
           for i in range(40)]
    return {"classification": write_jsonl(folder / "reviews.jsonl", cls),
            "regression": write_jsonl(folder / "ratings.jsonl", reg),
            "pairs": write_jsonl(folder / "pairs.jsonl", pairs),
            "ner": write_jsonl(folder / "ner.jsonl", ner),
            "mlm": write_jsonl(folder / "texts.jsonl", mlm)}


def tiny_bert(folder: Path, masked_lm: bool = False) -> Path:
    pytest.importorskip("torch")
    from transformers import BertConfig, BertForMaskedLM, BertModel

    from engine.defaults import default_model_dir
    from tests.helpers import save_tiny
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    save_tiny(BertForMaskedLM if masked_lm else BertModel, config, folder, default_model_dir())
    return folder


def make_run(out: Path, base: Path, task: str, data: Path, *, columns=None, late=False, regression=None,
             names=None, status="finished", seed=1, started=None) -> Path:
    """A run folder: the base model with a fresh head (seeded), saved, and its raclate_run.json."""
    import mlx.core as mx

    from engine.data import DatasetArgs
    from engine.models import load_model
    from engine.training.args import TrainingArgs
    mx.random.seed(seed + 1000)   # another head than the base model's (seeded with ``seed``) for before/after
    model, tokenizer = load_model(str(base), task, id2label=names, is_regression=regression,
                                  use_late_interaction=late)
    model.save_pretrained(out)
    tokenizer.save_pretrained(str(out))
    dargs = DatasetArgs(data=str(data), task_type=task, columns=dict(columns or {}), validation_split=0.25,
                        max_length=64, is_regression=regression)
    targs = TrainingArgs(output_dir=str(out), max_steps=4, batch_size=8, max_length=64, use_late_interaction=late,
                         is_regression=regression, seed=seed)
    history = [{"event": "step", "time": 0, "step": s, "loss": 2.0 / s, "learning_rate": 1e-4} for s in (1, 2, 3, 4)]
    history += [{"event": "eval", "time": 0, "step": s, "metrics": {"eval_loss": 2.5 / (s + 1)}} for s in (0, 4)]
    record = {"run_id": out.name, "status": status, "started": started or time.time(), "pid": None,
              "model": str(base), "task": task, "data": asdict(dargs), "training": targs.to_dict(), "seed": seed,
              "label_info": {"names": list(names) if names else None, "num_labels": len(names or []) or 1,
                             "is_regression": bool(regression)},
              "metrics": {"eval_loss": 0.5}, "final_step": 4, "history": history}
    (out / "raclate_run.json").write_text(json.dumps(record))
    return out


@pytest.fixture(scope="session")
def app_models(tmp_path_factory):
    """{task key: run folder} for every app task, plus "data" (the files) and "base"/"mlm_base"."""
    root = tmp_path_factory.mktemp("app_models")
    files = data_files(root / "data")
    base = tiny_bert(root / "tiny-bert")
    mlm_base = tiny_bert(root / "tiny-bert-mlm", masked_lm=True)
    runs = root / "runs"
    out = {"data": files, "base": base, "mlm_base": mlm_base, "runs": runs}
    specs = {
        "classification": (base, "text-classification", files["classification"], {}, False, False, list(CLASSES)),
        "regression": (base, "text-classification", files["regression"], {"label": "score"}, False, True, None),
        "sentence-similarity": (base, "sentence-similarity", files["pairs"], {}, False, None, None),
        "late-interaction": (base, "sentence-similarity", files["pairs"], {}, True, None, None),
        "token-classification": (base, "token-classification", files["ner"], {"labels": "ner_tags"}, False, None,
                                 ["B-LOC", "B-PER", "O"]),
        "masked-lm": (mlm_base, "masked-lm", files["mlm"], {}, False, None, None),
    }
    for i, (key, (model, task, data, columns, late, regression, names)) in enumerate(specs.items()):
        folder = runs / f"2025-01-0{i + 1}-120000-{key}"
        folder.mkdir(parents=True)
        out[key] = make_run(folder, model, task, data, columns=columns, late=late, regression=regression,
                            names=names, seed=i + 1, started=time.time() - 86400 * (7 - i))
    return out


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, app_models):
    """A real 4-step classification run (engine train_run) with checkpoints at steps 2 and 4."""
    from engine.data import DatasetArgs
    from engine.training.run import train_run
    from engine.training.args import TrainingArgs
    from engine.training.config import RunConfig
    out = tmp_path_factory.mktemp("trained") / "2025-02-01-090000-classification"
    data = DatasetArgs(data=str(app_models["data"]["classification"]), task_type="text-classification",
                       validation_split=0.25, max_length=32)
    args = TrainingArgs(output_dir=str(out), max_steps=4, batch_size=8, max_length=32, save_steps=2, eval_steps=2,
                        logging_steps=1, save_total_limit=3, learning_rate=1e-3)
    train_run(RunConfig(str(app_models["base"]), "text-classification", data, args))
    return out


def open_run_page(qtbot, project, app_models, page_class, height: int):
    """An Evaluate/Playground-style page over the tiny runs, shown at 1280×height, once its run picker
    lists them all. The caller shuts it down (``page.shutdown()``)."""
    project.settings.set_json("runs/extra", [str(app_models["runs"])])
    page = page_class(project)
    qtbot.addWidget(page)
    page.resize(1280, height)
    page.show()
    qtbot.waitUntil(lambda: len(page.picker.runs) >= 6, timeout=20_000)
    return page
