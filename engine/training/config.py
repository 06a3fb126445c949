"""The one run-config builder: `raclate train` (its --config JSON and flags) and the app (the choices
on its pages) both turn settings into a `RunConfig` here, so the same choices make the same run.

Defaults come from the TrainingArgs / DatasetArgs dataclasses alone. A value the user did not give
that depends on the model's family (batch size, learning rate, max length) comes from the family's
preset (`engine.models.preset_for`), and the run record shows the value that was used.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

from engine.data.args import DatasetArgs, dataset_entries, dataset_name, set_dataset_columns
from engine.data.inputs import check_user_prompts, user_prompts
from engine.errors import UsageError
from engine.files import LOCK_FILE, lock_holder
from engine.models import family_specs, get_family, local_config, preset_for, spec_for, task_refusal
from engine.models.adapters import check_quantization
from engine.models.loading import adapter_settings
from engine.run_record import RUN_FILE, is_run_folder
from engine.tasks import normalize_task, task_names, training_task
from engine.training.args import TrainingArgs
from engine.training.checkpoint import checkpoint_dirs, find_checkpoint

# DatasetArgs fields a run sets from the rest of its config: the task, and TrainingArgs' own values.
DATA_FROM_RUN = ("task_type", "max_length", "seed", "is_regression")
# Tasks whose datasets mix: no label set that each file would number its own way.
MIXABLE_TASKS = ("sentence-similarity", "masked-lm")
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
    ``columns`` adds to the settings' mapping; ``dataset_columns`` {name: {role: column}} to the mapping
    of the dataset of that name) → RunConfig. Raises UsageError for a missing or bad value.

    Several datasets: ``data.data`` (or ``data`` itself) is a list of paths or {path, name, columns,
    loss, eval_data} entries. max_length, seed and is_regression are TrainingArgs settings; the data half
    gets the same values."""
    settings = settings or {}
    model = overrides.pop("model", None) or settings.get("model")
    task = overrides.pop("task", None) or settings.get("task")
    given = settings.get("data") or {}
    given = {"data": given} if isinstance(given, list) else given   # run.json's short form: "data": [...]
    data = {k: v for k, v in given.items() if k not in DATA_FROM_RUN}
    training = dict(settings.get("training") or {})
    columns = overrides.pop("columns", None)
    dataset_columns = overrides.pop("dataset_columns", None)
    for name, value in overrides.items():
        if name in TRAINING_FIELDS:
            training[name] = value
        elif name in DATA_FIELDS:
            data[name] = value
        else:
            raise UsageError(f"Unknown setting {name!r}.")
    if columns:
        data["columns"] = {**(data.get("columns") or {}), **columns}
    if dataset_columns:
        _set_dataset_columns(data, dataset_columns)

    if not model:
        raise UsageError("No model given. Pass --model with a folder, a Hub id, or 'default'.")
    if not task:
        raise UsageError(f"No task given. Pass --task with one of: {', '.join(task_names())}.")
    task = normalize_task(task)   # an unknown name is refused here, with the valid ones
    spec = spec_for(local_config(model).get("model_type", ""))   # None: not on this machine yet
    refusal = spec and task_refusal(spec.model_type, task)
    if refusal:   # the output would load nowhere but here: refused before any data or weights are read
        raise UsageError(refusal)
    if spec is not None and training_task(task) not in spec.tasks:   # e.g. masked LM on a causal family
        family = get_family(spec.model_type)
        raise UsageError(family.task_error(task, {}) if hasattr(family, "task_error") else
                         f"{spec.name} models do not support the {task} task; they support: {', '.join(spec.tasks)}.")
    if not data.get("data"):
        raise UsageError("No training data given. Pass --data with a .jsonl/.json/.csv/.tsv/.parquet file, "
                         "a folder, or a Hub dataset id.")
    if isinstance(data["data"], (list, tuple)) and training_task(task) not in MIXABLE_TASKS:
        raise UsageError(f"Several datasets in one run are for {' and '.join(MIXABLE_TASKS)}: a {task} model has one "
                         "label set, which each file would number its own way. Merge the files into one, or train "
                         "on one --data.")
    if not training.get("output_dir"):
        raise UsageError("No output folder given. Pass --output with a new folder for the model.")
    # The family's starting points fill only what the user left out.
    preset = {k: v for k, v in preset_for(model).items() if k in TRAINING_FIELDS}
    try:
        args = TrainingArgs.from_dict({**preset, **adapter_settings(model), **training})   # an adapter folder's own
        dargs = DatasetArgs(**data, task_type=task, max_length=args.max_length, seed=args.seed,
                            is_regression=args.is_regression)
    except (TypeError, ValueError) as exc:   # DataError is a ValueError too
        raise UsageError(str(exc)) from None
    if args.quantize_base:   # this backend's quantized matmul, checked before any data or weights are read
        check_quantization(args.quantize_base)
    if args.bidirectional is not None and spec is not None and not spec.supports_bidirectional:
        having = ", ".join(s.model_type for s in family_specs().values() if s.supports_bidirectional)
        raise UsageError(f"{spec.name} has no switch between causal and bidirectional attention, so "
                         f"--bidirectional / --no-bidirectional do not apply to it (families that have one: {having}).")
    check_user_prompts(task, args.use_late_interaction,
                       user_prompts(args.prompts, args.query_prompt, args.document_prompt))
    return RunConfig(str(model), task, dargs, args)


def _set_dataset_columns(data: dict, dataset_columns: dict) -> None:
    """--column NAME:role=column into ``data``: into the entry of dataset NAME when there are several,
    into the one mapping when NAME is the single dataset's name."""
    try:
        if isinstance(data.get("data"), (list, tuple)):
            data["data"], data["eval_data"] = dataset_entries(data["data"], data.get("eval_data")), None
            set_dataset_columns(data["data"], dataset_columns)
            return
        entry = {"name": dataset_name(data.get("data") or ""), "columns": data.get("columns") or {}}
        set_dataset_columns([entry], dataset_columns)
        data["columns"] = entry["columns"]
    except ValueError as exc:   # DataError: a name that is no dataset's, a bad entry
        raise UsageError(str(exc)) from None


def replacement_dir(out: Path) -> Path:
    """Where `--overwrite` trains the run that replaces the one in ``out``: a hidden folder beside it,
    renamed over ``out`` once the new run has finished, so a crash leaves the old run whole."""
    return out.parent / f".{out.name}.new-run"


def holds_files(folder: Path) -> bool:
    """``folder`` exists with something in it besides its lock file."""
    return folder.is_dir() and any(p.name != LOCK_FILE for p in folder.iterdir())


def check_output_dir(out: Path, resume: str | None, overwrite: bool) -> None:
    """Before any data or model is loaded, refuse a folder another run is writing, a folder that is not
    a run, a run without --resume/--overwrite, and a --resume with nothing to resume from."""
    for folder in (out, replacement_dir(out)):
        holder = lock_holder(folder)
        if holder:
            raise UsageError(f"Output folder {folder} is in use by another run ({holder}); nothing was written. "
                             "Wait for that run to end (or stop it), or choose another folder.")
    check_output_contents(out, resume, overwrite)


def check_output_contents(out: Path, resume: str | None, overwrite: bool) -> None:
    """check_output_dir without the lock: train_run checks again once it holds the lock."""
    staging = replacement_dir(out)
    if overwrite and resume:
        if not is_run_folder(staging):
            raise UsageError(f"--overwrite with --resume continues an unfinished replacement of {out}, and there is "
                             "none. Pass --resume alone to continue the run there, or --overwrite alone to replace it.")
        find_checkpoint(staging, resume)
        return
    if resume:
        if resume == "latest" and is_run_folder(out) and not checkpoint_dirs(out / "checkpoints"):
            also = (f", or continue the unfinished replacement in {staging} with --overwrite --resume"
                    if is_run_folder(staging) else "")
            raise UsageError(f"Output folder {out} holds a run with no checkpoint (it stopped before its first one), "
                             f"so there is nothing to resume. Pass --overwrite without --resume to start it again{also}.")
        find_checkpoint(out, resume)
    if overwrite and holds_files(staging) and not is_run_folder(staging):
        raise UsageError(f"{staging} is in the way of the replacement and was not written by RACLATE; nothing was "
                         "deleted. Move it away, or choose another folder.")
    if not holds_files(out):
        return
    if overwrite and not is_run_folder(out):
        raise UsageError(f"Output folder {out} was not written by RACLATE (it has no {RUN_FILE}); nothing was "
                         "deleted. --overwrite only replaces an earlier run or export: choose a new folder.")
    if not is_run_folder(out) and not (out / "checkpoints").is_dir():
        raise UsageError(f"Output folder {out} already exists and is not a RACLATE run; nothing was written. "
                         "Choose a new folder (or an empty one).")
    if resume or overwrite:
        return
    if not checkpoint_dirs(out / "checkpoints"):
        raise UsageError(f"Output folder {out} already holds a run with no checkpoint, so there is nothing to "
                         "resume. Pass --overwrite to start it again, or choose a new folder.")
    raise UsageError(f"Output folder {out} already holds a run. Pass --resume to continue it, "
                     "--overwrite to replace it, or choose a new folder.")
