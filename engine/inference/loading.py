"""Load a model for its task: a model folder (its task read from the run record or the files), a run's
checkpoint, or the model a run started from (for before/after comparisons)."""
from __future__ import annotations

from pathlib import Path

import mlx.core as mx

from engine.errors import ModelError
from engine.files import read_json
from engine.models import load_model
from engine.models.loading import resolve_model_dir
from engine.models.pylate import is_pylate_dir
from engine.run_record import read_run_record
from engine.tasks import EMBEDDING_TASKS, TASKS, get_task, normalize_task

# "…ForMaskedLM" → masked-lm: the transformers head classes of the task table, by architecture suffix.
HEAD_TASKS = {task.auto_class.removeprefix("AutoModel"): name for name, task in TASKS.items()
              if task.auto_class != "AutoModel"}


def detect_task(root: Path) -> str:
    """The task a model folder was made for: its run record, else its files."""
    root = Path(root)
    record = read_run_record(root)
    if record.get("task"):
        return record["task"]
    if (root / "modules.json").exists():
        return "sentence-similarity"
    arch = (read_json(root / "config.json").get("architectures") or [""])[0]
    return next((task for suffix, task in HEAD_TASKS.items() if arch.endswith(suffix)), "feature-extraction")


def folder_kind(source: str) -> tuple[str, bool, bool]:
    """(task, late interaction, regression) of a model folder from its files, without loading weights."""
    root = resolve_model_dir(source)
    task = detect_task(root)
    late = get_task(task, ModelError).embedding and is_pylate_dir(root)
    regression = task == "text-classification" and read_json(root / "config.json").get("problem_type") == "regression"
    return task, late, regression


def load_for_task(source: str, task: str | None = None):
    """(model, tokenizer, task, run record) of a model folder, Hub id or 'default'; the task is detected
    when not given, and a late-interaction model is recognised from its files or its run record."""
    root = resolve_model_dir(source)
    record = read_run_record(root)
    task = normalize_task(task or detect_task(root), ModelError)
    late = True if (record.get("training") or {}).get("use_late_interaction") else None
    model, tokenizer = load_model(source, task, use_late_interaction=late)
    return model, tokenizer, task, record


def untrained_head(model, task: str) -> list[str]:
    """The head weights initialised fresh at load (the folder had no trained head for ``task``), whose
    outputs mean nothing; embedding tasks have no head (their new [Q]/[D] rows are expected)."""
    if task in EMBEDDING_TASKS:
        return []
    return [w for w in model.info.new_weights if not str(w).startswith("embedding rows")]


def is_regression(model) -> bool:
    return model.info.config.get("problem_type") == "regression"


def load_run_base(record: dict, names: list[str] | None = None, regression: bool | None = None):
    """(model, tokenizer): the model a run started from with the run's head layout (a fresh head for
    classifiers; ``names`` and ``regression`` override the recorded labels), seeded as the run was so
    that "before" numbers are the same every time."""
    training, info = record.get("training") or {}, record.get("label_info") or {}
    names = names if names is not None else info.get("names")
    regression = regression if regression is not None else bool(info.get("is_regression"))
    mx.random.seed(int(record.get("seed", training.get("seed", 42)) or 0))
    return load_model(record.get("model") or "default", record.get("task") or "sentence-similarity",
                      id2label=names if names and not regression else None, is_regression=regression,
                      use_late_interaction=bool(training.get("use_late_interaction")),
                      late_interaction_dim=int(training.get("late_interaction_dim", 128)))


def load_run_checkpoint(record: dict, checkpoint: str | Path):
    """(model, tokenizer) of one of a run's checkpoints: the run's base model with its weights."""
    model, tokenizer = load_run_base(record)
    weights = mx.load(str(Path(checkpoint) / "weights.safetensors"))
    model.load_weights(list(weights.items()), strict=True)
    mx.eval(model.parameters())
    model.info.new_weights = []   # every weight, the head included, came from the checkpoint
    return model, tokenizer
