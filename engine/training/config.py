"""The one run-config builder: `raclate train` (its --config JSON and flags) and the app (the choices
on its pages) both turn settings into a `RunConfig` here, so the same choices make the same run.

Defaults come from the TrainingArgs / DatasetArgs dataclasses alone. A value the user did not give
that depends on the model's family (batch size, learning rate, max length) comes from the family's
preset (`engine.models.preset_for`), and the run record shows the value that was used.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

from engine.data.args import DatasetArgs
from engine.errors import UsageError
from engine.models import preset_for
from engine.run_record import RUN_FILE
from engine.tasks import normalize_task, task_names
from engine.training.args import TrainingArgs
from engine.training.checkpoint import find_checkpoint

# DatasetArgs fields a run sets from the rest of its config: the task, and TrainingArgs' own values.
DATA_FROM_RUN = ("task_type", "max_length", "seed", "is_regression")
TRAINING_FIELDS = frozenset(f.name for f in fields(TrainingArgs))
DATA_FIELDS = frozenset(f.name for f in fields(DatasetArgs)) - set(DATA_FROM_RUN)


@dataclass
class RunConfig:
    model: str                # a folder, a Hub id or "default"
    task: str                 # canonical task name (engine/tasks.py)
    data: DatasetArgs
    training: TrainingArgs

    def to_dict(self) -> dict:
        """The run.json shape {model, task, data, training} that `raclate train --config` reads."""
        return {"model": self.model, "task": self.task, "data": asdict(self.data), "training": self.training.to_dict()}


def build_run_config(settings: dict | None = None, **overrides) -> RunConfig:
    """``settings`` in run.json shape ({model, task, data: {...}, training: {...}}; other keys are
    ignored), then ``overrides`` by field name (model, task, any TrainingArgs or DatasetArgs field;
    ``columns`` adds to the settings' mapping) → RunConfig. Raises UsageError for a missing or bad value.

    max_length, seed and is_regression are TrainingArgs settings; the data half gets the same values."""
    settings = settings or {}
    model = overrides.pop("model", None) or settings.get("model")
    task = overrides.pop("task", None) or settings.get("task")
    data = {k: v for k, v in (settings.get("data") or {}).items() if k not in DATA_FROM_RUN}
    training = dict(settings.get("training") or {})
    columns = overrides.pop("columns", None)
    for name, value in overrides.items():
        if name in TRAINING_FIELDS:
            training[name] = value
        elif name in DATA_FIELDS:
            data[name] = value
        else:
            raise UsageError(f"Unknown setting {name!r}.")
    if columns:
        data["columns"] = {**(data.get("columns") or {}), **columns}

    if not model:
        raise UsageError("No model given. Pass --model with a folder, a Hub id, or 'default'.")
    if not task:
        raise UsageError(f"No task given. Pass --task with one of: {', '.join(task_names())}.")
    task = normalize_task(task)   # an unknown name is refused here, with the valid ones
    if not data.get("data"):
        raise UsageError("No training data given. Pass --data with a .jsonl/.json/.csv/.tsv/.parquet file, "
                         "a folder, or a Hub dataset id.")
    if not training.get("output_dir"):
        raise UsageError("No output folder given. Pass --output with a new folder for the model.")
    # The family's starting points fill only what the user left out.
    preset = {k: v for k, v in preset_for(model).items() if k in TRAINING_FIELDS}
    try:
        args = TrainingArgs.from_dict({**preset, **training})
        dargs = DatasetArgs(**data, task_type=task, max_length=args.max_length, seed=args.seed,
                            is_regression=args.is_regression)
    except (TypeError, ValueError) as exc:   # DataError is a ValueError too
        raise UsageError(str(exc)) from None
    return RunConfig(str(model), task, dargs, args)


def check_output_dir(out: Path, resume: str | None, overwrite: bool) -> None:
    """Refuse to write over a folder that is not a run, a run without --resume/--overwrite, or a
    --resume with no checkpoint to resume from (before any data or model is loaded)."""
    if resume:
        try:
            find_checkpoint(out, resume)
        except FileNotFoundError as exc:
            raise UsageError(str(exc)) from None
    if not out.exists() or not any(out.iterdir()):
        return
    is_run = (out / RUN_FILE).exists() or (out / "checkpoints").is_dir()
    if not is_run:
        raise UsageError(f"Output folder {out} already exists and is not a RACLATE run; nothing was written. "
                         "Choose a new folder (or an empty one).")
    if not resume and not overwrite:
        raise UsageError(f"Output folder {out} already holds a run. Pass --resume to continue it, "
                         "--overwrite to replace it, or choose a new folder.")
