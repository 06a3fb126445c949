"""What the Evaluate and Playground pages run off the GUI thread, over the engine's inference library
(engine/inference/): the model the user picked (a run's output, one of its checkpoints, its base
model, or any model folder) loaded with the app's task, and the Evaluate page's whole job — read the
evaluation set (the run's validation split or another file mapped to roles), compute the metrics
as `raclate eval` does, and the same for the base model.

Qt-free. Long work takes ``progress(done, total, text)``, which may raise to cancel; it is called
between batches, so a cancel takes effect within one batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine import inference
from engine.files import read_json
from engine.inference.search import no_progress
from engine.losses.matryoshka import truncate
from engine.models.loading import resolve_model_dir
from engine.run_record import read_run_record
from engine.tasks import get_task, training_task
from raclate_app.runs import app_task_key


MISCLASSIFIED = 50   # wrong predictions a classifier's evaluation lists, worst first
FRACTIONS = (2, 4, 8)   # the truncations offered for a model trained without Matryoshka dims: 1/2, 1/4, 1/8


@dataclass(frozen=True)
class ModelChoice:
    """A model the user picked: a run's final model (``checkpoint`` None), one of its checkpoints,
    or a model folder / Hub id with no run (``run_dir`` None)."""
    path: str
    run_dir: str | None = None
    checkpoint: int | None = None   # step
    base: str | None = None         # the model the run started from (for before/after)
    task_key: str | None = None     # the app task, when known without loading the model

    @property
    def record(self) -> dict:
        """The run's raclate_run.json (read from disk: call it off the GUI thread)."""
        return read_run_record(Path(self.run_dir)) if self.run_dir else {}

    def describe(self) -> str:
        if self.checkpoint is not None:
            return f"{Path(self.run_dir).name}, checkpoint at step {self.checkpoint}"
        return Path(self.path).name or self.path


@dataclass
class Loaded:
    model: object
    tokenizer: object
    task: str             # engine task
    task_key: str         # app task (late-interaction, regression, ...)
    untrained_head: bool  # a new, random head (the base model of a classifier)


def app_task_of(task: str, late: bool, regression: bool) -> str:
    """The app's task key (raclate_app.tasks) of an engine task and its variant."""
    if get_task(task).embedding:
        return "late-interaction" if late else "sentence-similarity"
    if task == "text-classification":
        return "regression" if regression else "classification"
    return task


def _loaded(model, tokenizer, task: str) -> Loaded:
    task = training_task(task)
    model.eval()
    key = app_task_of(task, model.info.late_interaction, inference.is_regression(model))
    return Loaded(model, tokenizer, task, key, bool(inference.untrained_head(model, task)))


def load_choice(choice: ModelChoice) -> Loaded:
    """The model of ``choice``: a folder through the engine's task detection, a checkpoint as its
    run's base model with the checkpoint's weights."""
    if choice.checkpoint is None:
        model, tokenizer, task, _ = inference.load_for_task(choice.path)
        return _loaded(model, tokenizer, task)
    model, tokenizer = inference.load_run_checkpoint(choice.record, choice.path)
    return _loaded(model, tokenizer, model.info.task)


def load_base(choice: ModelChoice, trained: Loaded) -> Loaded:
    """The base model of ``choice``'s run, shaped like ``trained`` (same labels, same head kind)."""
    config = trained.model.info.config
    names = None
    if "id2label" in config and trained.task != "masked-lm":
        names = [config["id2label"][k] for k in sorted(config["id2label"], key=int)]
    model, tokenizer = inference.load_run_base(choice.record, names, inference.is_regression(trained.model))
    return _loaded(model, tokenizer, trained.task)


def folder_task_key(path: str) -> str:
    """The app task of a model folder without loading its weights: its run record, else its files."""
    root = resolve_model_dir(path)
    record = read_run_record(root)
    if record.get("task"):
        return app_task_key(record)
    return app_task_of(*inference.folder_kind(root))


# -- embedding dimensions (Matryoshka) -------------------------------------------------------------
@dataclass(frozen=True)
class Dims:
    """The embedding sizes a dense model can be used at: ``full`` and the smaller ``dims`` (best first);
    ``matryoshka`` when they are the dims its run trained (else plain truncations, 1/2, 1/4, 1/8)."""
    full: int
    dims: tuple = ()
    matryoshka: bool = False


def embedding_size(root: Path) -> int | None:
    """A dense model's embedding size from its files: the last sentence-transformers Dense module's
    out_features, else its pooling's word_embedding_dimension, else config.json's hidden_size."""
    modules = read_json(root / "modules.json") if (root / "modules.json").exists() else []
    for module in reversed(modules):
        kind, config = module.get("type", "").rsplit(".", 1)[-1], root / module.get("path", "") / "config.json"
        if kind in ("Dense", "Pooling") and config.exists():
            found = read_json(config)
            return found.get("out_features") or found.get("word_embedding_dimension")
    config = root / "config.json"
    return read_json(config).get("hidden_size") if config.exists() else None


def embedding_dims(choice: ModelChoice) -> Dims | None:
    """The sizes to offer for ``choice`` (a dense embedding model; None when its files do not say):
    the Matryoshka dims its run recorded, else halvings down to 1/8 (at least 8 values)."""
    roots = [resolve_model_dir(choice.path)] + ([Path(choice.run_dir)] if choice.run_dir else [])
    full = next((size for size in map(embedding_size, roots) if size), None)   # a checkpoint may hold weights only
    if not full:
        return None
    record = choice.record or read_run_record(roots[0])   # an export carries its run's record too
    trained = (record.get("training") or {}).get("matryoshka_dims") or []
    dims = sorted({int(d) for d in trained if 0 < int(d) < full}, reverse=True)
    if dims:
        return Dims(int(full), tuple(dims), True)
    return Dims(int(full), tuple(full // f for f in FRACTIONS if full // f >= 8))


class AtDim:
    """``model`` with its embeddings cut to their first ``dim`` values, re-normalised when the model
    normalises (as Matryoshka training and sentence-transformers' ``truncate_dim`` use them). Every
    other attribute is the model's, so the engine's encode, search and evaluation take it as it is."""

    def __init__(self, model, dim: int):
        self.model, self.dim = model, dim

    def __call__(self, *inputs):
        return truncate(self.model(*inputs), self.dim, bool(getattr(self.model, "normalize", False)))

    def __getattr__(self, name):
        return getattr(self.model, name)


def at_dim(loaded: Loaded, dim: int | None) -> Loaded:
    """``loaded`` used at ``dim`` dimensions (None: its full size)."""
    if not dim:
        return loaded
    return Loaded(AtDim(loaded.model, dim), loaded.tokenizer, loaded.task, loaded.task_key, loaded.untrained_head)


# -- evaluation ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class EvalSet:
    """The run's validation split (``file`` None) or a file with a role mapping ({role: column|None})."""
    file: str | None = None
    columns: tuple = ()        # ((role, column), ...) so the dataclass stays hashable
    max_rows: int | None = None
    dim: int | None = None     # an embedding model's vectors cut to this size (Matryoshka); None: full


def evaluate(loaded: Loaded, ds, info, progress=no_progress, batch_size: int = 32) -> dict:
    """{task, task_key, rows, metrics, ...} of ``loaded`` on role-named ``ds``: what ``raclate eval``
    computes, for retrieval also the worst queries (engine.inference.evaluate_retrieval), for a
    classifier also its misclassified rows (metrics["misclassified"])."""
    model, tokenizer = loaded.model, loaded.tokenizer
    if loaded.task == "sentence-similarity" and "label" not in ds.column_names:
        result = inference.evaluate_retrieval(model, tokenizer, ds, progress=progress)
    else:
        result = {"metrics": inference.evaluate_dataset(model, tokenizer, loaded.task, ds, info, batch_size=batch_size,
                                                        progress=progress, examples=MISCLASSIFIED)}
    return {"task": loaded.task, "task_key": loaded.task_key, "rows": len(ds), **result}


def run_evaluation(choice: ModelChoice, spec: EvalSet, compare_base: bool, progress=no_progress) -> dict:
    """The whole Evaluate-page job: load, read the data, evaluate; then the same for the base model."""
    progress(0, 0, "Loading the model")
    loaded = at_dim(load_choice(choice), spec.dim)
    progress(0, 0, "Reading the evaluation data")
    ds, info, _ = inference.load_eval_data(loaded.model, loaded.task, spec.file, record=choice.record,
                                           columns=dict(spec.columns), max_rows=spec.max_rows)
    if len(ds) == 0:
        raise ValueError("The evaluation data has no rows.")
    shown = choice.describe() + (f" at {spec.dim} dimensions" if spec.dim else "")
    result = {"model": evaluate(loaded, ds, info, progress), "choice": shown, "dim": spec.dim,
              "untrained_head": loaded.untrained_head}
    if compare_base and choice.base:
        progress(0, 0, "Loading the base model")
        base = at_dim(load_base(choice, loaded), spec.dim)   # before/after at the same size
        result["base"] = evaluate(base, ds, info, lambda d, t, text="": progress(d, t, f"{text} (base model)"))
        result["base_name"] = choice.base
        result["base_untrained_head"] = base.untrained_head
    return result
