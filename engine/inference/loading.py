"""Load a model for its task: a model folder (its task read from the run record or the files), a run's
checkpoint, or the model a run started from (for before/after comparisons).

A checkpoint folder (``RUN/checkpoints/step-N``) holds the weights only: the run's record (two
folders up) names the base model, the task and the head, so every loader here takes one as a model
folder (``raclate export``, ``raclate eval``, the app's Export dialog)."""
from __future__ import annotations

from pathlib import Path

import mlx.core as mx

from engine.data.inputs import adopt, recorded
from engine.errors import ModelError
from engine.files import read_json
from engine.models import load_model
from engine.models.adapters import apply_training_adapters
from engine.models.loading import adapter_base, resolve_model_dir
from engine.models.peft_format import adapter_task, read_adapter_config
from engine.models.pylate import is_pylate_dir
from engine.run_record import is_run_folder, read_run_record
from engine.tasks import EMBEDDING_TASKS, TASKS, get_task, normalize_task, training_task

# "…ForMaskedLM" → masked-lm: the transformers head classes of the task table, by architecture suffix.
HEAD_TASKS = {task.auto_class.removeprefix("AutoModel"): name for name, task in TASKS.items()
              if task.auto_class != "AutoModel"}


def checkpoint_run(folder) -> Path | None:
    """The run folder of a checkpoint folder ``RUN/checkpoints/step-N``, else None."""
    folder = Path(folder)
    if not ((folder / "weights.safetensors").is_file() and (folder / "trainer_state.json").is_file()):
        return None
    run = folder.parent.parent
    if not is_run_folder(run):
        raise ModelError(f"{folder} is a checkpoint without its run: {run} has no run record, which names the base "
                         "model and the task. Keep the checkpoint inside its run folder (RUN/checkpoints/step-N).")
    return run


def checkpoint_record(record: dict, checkpoint: Path) -> dict:
    """The run's record as of ``checkpoint``: its step and last evaluation (what an export's model
    card and record report), not the run's final ones."""
    state = read_json(Path(checkpoint) / "trainer_state.json")
    step = state.get("step")
    history = [e for e in record.get("history") or [] if step is None or e.get("step", 0) <= step]
    return {**record, "checkpoint": str(checkpoint), "final_step": step, "metrics": state.get("metrics") or {},
            "history": history}


def detect_task(root: Path) -> str:
    """The task a model folder was made for: its run record, else its files (an adapter folder: the task
    its adapter_config.json names, else its base model's)."""
    root = Path(root)
    base = adapter_base(root)
    if base is not None:
        task, base_task = adapter_task(read_adapter_config(root)), detect_task(resolve_model_dir(base))
        return base_task if task is None or (task in EMBEDDING_TASKS and base_task in EMBEDDING_TASKS) else task
    record = read_run_record(checkpoint_run(root) or root)
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
    run = checkpoint_run(root)
    if run is not None:   # no files of its own: the run's settings say
        record = read_run_record(run)
        late = bool((record.get("training") or {}).get("use_late_interaction"))
        return task, late, bool((record.get("label_info") or {}).get("is_regression"))
    base = adapter_base(root)
    if base is not None:   # an adapter folder: what its base model's files say
        root = resolve_model_dir(base)
    late = get_task(task, ModelError).embedding and is_pylate_dir(root)
    regression = task == "text-classification" and read_json(root / "config.json").get("problem_type") == "regression"
    return task, late, regression


def load_for_task(source: str, task: str | None = None):
    """(model, tokenizer, task, run record) of a model folder, Hub id or 'default'; the task is detected
    when not given, and a late-interaction model is recognised from its files or its run record. A
    trained folder reads its inputs as its run trained with them (chat template, max length)."""
    root = resolve_model_dir(source)
    run = checkpoint_run(root)
    if run is not None:
        record = checkpoint_record(read_run_record(run), root)
        recorded_task = normalize_task(record.get("task") or "sentence-similarity", ModelError)
        if task and training_task(task, ModelError) != training_task(recorded_task):
            raise ModelError(f"{root} is a checkpoint of a {recorded_task} run, not {task}.")
        model, tokenizer = load_run_checkpoint(record, root)
        return model, tokenizer, recorded_task, record
    record = read_run_record(root)
    task = normalize_task(task or detect_task(root), ModelError)
    late = True if (record.get("training") or {}).get("use_late_interaction") else None
    model, tokenizer = load_model(source, task, use_late_interaction=late)
    adopt(model.info, **recorded(record))
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
    classifiers; ``names`` and ``regression`` override the recorded labels) and the run's inputs
    (prompts, chat template, max length), seeded as the run was so that "before" numbers are the same
    every time."""
    training, info = record.get("training") or {}, record.get("label_info") or {}
    names = names if names is not None else info.get("names")
    regression = regression if regression is not None else bool(info.get("is_regression"))
    mx.random.seed(int(record.get("seed", training.get("seed", 42)) or 0))
    model, tokenizer = load_model(record.get("model") or "default", record.get("task") or "sentence-similarity",
                                  id2label=names if names and not regression else None, is_regression=regression,
                      is_multi_label=info.get("is_multi_label"),
                                  use_late_interaction=bool(training.get("use_late_interaction")),
                                  late_interaction_dim=int(training.get("late_interaction_dim", 128)))
    adopt(model.info, **recorded(record))
    return model, tokenizer


def load_run_checkpoint(record: dict, checkpoint: str | Path):
    """(model, tokenizer) of one of a run's checkpoints: the run's base model with its weights."""
    model, tokenizer = load_run_base(record)
    apply_training_adapters(model, record.get("training") or {})   # a LoRA run's checkpoint holds its adapters
    weights = mx.load(str(Path(checkpoint) / "weights.safetensors"))
    model.load_weights(list(weights.items()), strict=True)
    mx.eval(model.parameters())
    model.info.new_weights = []   # every weight, the head included, came from the checkpoint
    return model, tokenizer
