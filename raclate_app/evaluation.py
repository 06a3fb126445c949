"""What the Evaluate and Playground pages run off the GUI thread: load a model (a run's output, one of
its checkpoints, its base model, or any model folder), read an evaluation set (the run's validation
split or another file mapped to roles) and compute the task's metrics with ``engine.metrics``.

Qt-free. Long work takes ``progress(done, total, text)``, which may raise to cancel; it is called
between batches, so a cancel takes effect within one batch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import engine  # noqa: F401  (fast BLAS before mlx.core)
import mlx.core as mx

from engine.data import DatasetArgs, load_dataset
from engine.export import read_run_record

WORST_SHOWN = 20     # worst queries listed
TOP_SHOWN = 5        # retrieved documents shown per worst query
ENCODE_CHUNK = 64    # texts per progress tick while encoding


def _no_progress(done, total, text=""):
    return None


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


def app_task_of(model, task: str) -> str:
    if task in ("sentence-similarity", "feature-extraction"):
        return "late-interaction" if model.info.late_interaction else "sentence-similarity"
    if task == "text-classification":
        return "regression" if model.info.config.get("problem_type") == "regression" else "classification"
    return task


def _loaded(model, tokenizer, task) -> Loaded:
    from engine.models.base import EMBEDDING_TASKS
    task = "sentence-similarity" if task in EMBEDDING_TASKS else task
    heads = [w for w in model.info.new_weights if not str(w).startswith("embedding rows")]
    model.eval()
    return Loaded(model, tokenizer, task, app_task_of(model, task), bool(heads) and task != "sentence-similarity")


def load_choice(choice: ModelChoice) -> Loaded:
    """The model of ``choice``: a folder through the engine's task detection, a checkpoint as its
    run's base model with the checkpoint's weights."""
    if choice.checkpoint is None:
        from engine.export import load_for_task
        model, tokenizer, task, _ = load_for_task(choice.path)
        return _loaded(model, tokenizer, task)
    record = choice.record
    model, tokenizer = _load_base_for(record)
    weights = mx.load(str(Path(choice.path) / "weights.safetensors"))
    model.load_weights(list(weights.items()), strict=True)
    mx.eval(model.parameters())
    model.info.new_weights = []
    return _loaded(model, tokenizer, record.get("task"))


def _load_base_for(record: dict, names=None, regression=None):
    """The run's starting model with the run's head layout (a fresh head for classifiers), seeded as
    the run was, so "before" numbers are the same every time."""
    from engine.models import load_model
    training, info = record.get("training") or {}, record.get("label_info") or {}
    names = names if names is not None else info.get("names")
    regression = regression if regression is not None else bool(info.get("is_regression"))
    mx.random.seed(int(record.get("seed", training.get("seed", 42)) or 0))
    return load_model(record.get("model") or "default", record.get("task") or "sentence-similarity",
                      id2label=names if names and not regression else None, is_regression=regression,
                      use_late_interaction=bool(training.get("use_late_interaction")),
                      late_interaction_dim=int(training.get("late_interaction_dim", 128)))


def load_base(choice: ModelChoice, trained: Loaded) -> Loaded:
    """The base model of ``choice``'s run, shaped like ``trained`` (same labels, same head kind)."""
    config = trained.model.info.config
    names = None
    if "id2label" in config and trained.task != "masked-lm":
        names = [config["id2label"][k] for k in sorted(config["id2label"], key=int)]
    model, tokenizer = _load_base_for(choice.record, names, config.get("problem_type") == "regression")
    return _loaded(model, tokenizer, trained.task)


def folder_task_key(path: str) -> str:
    """The app task of a model folder without loading its weights: its run record, else its files."""
    from engine.export import detect_task
    from engine.models import pylate
    from engine.models.loading import resolve_model_dir
    from raclate_app.runs import app_task_key
    root = resolve_model_dir(path)
    record = read_run_record(root)
    if record.get("task"):
        return app_task_key(record)
    task = detect_task(root)
    if task in ("sentence-similarity", "feature-extraction"):
        return "late-interaction" if pylate.is_pylate_dir(root) else "sentence-similarity"
    if task == "text-classification":
        import json
        config = json.loads((root / "config.json").read_text()) if (root / "config.json").exists() else {}
        return "regression" if config.get("problem_type") == "regression" else "classification"
    return task


# -- evaluation sets -----------------------------------------------------------------------------
@dataclass(frozen=True)
class EvalSet:
    """The run's validation split (``file`` None) or a file with a role mapping ({role: column|None})."""
    file: str | None = None
    columns: tuple = ()        # ((role, column), ...) so the dataclass stays hashable
    max_rows: int | None = None


def load_eval_set(spec: EvalSet, record: dict, task: str, regression: bool | None):
    """(role-named Dataset, LabelInfo) to evaluate on."""
    if spec.file is None:
        data = {k: v for k, v in (record.get("data") or {}).items() if k in DatasetArgs.__dataclass_fields__}
        if not data.get("data"):
            raise ValueError("This model has no run record, so there is no validation split to use: choose a file.")
        loaded = load_dataset(DatasetArgs(**data))
        ds = loaded.validation
        if ds is None:
            raise ValueError("The run trained without validation data (validation split 0 and no validation "
                             "file): choose a file to evaluate on.")
    else:
        loaded = load_dataset(DatasetArgs(data=spec.file, task_type=task, columns=dict(spec.columns),
                                          validation_split=0.0, is_regression=regression))
        ds = loaded.train
    if spec.max_rows and len(ds) > spec.max_rows:
        ds = ds.select(range(spec.max_rows))
    return ds, loaded.label_info


# -- metrics -------------------------------------------------------------------------------------
def evaluate(loaded: Loaded, ds, info, progress=_no_progress, batch_size: int = 32) -> dict:
    """{task, rows, metrics, worst?} of ``loaded`` on role-named ``ds`` (what ``raclate eval`` computes)."""
    from engine.commands.evaluate import batches, remap_labels
    from engine.embedding import max_length_of
    from engine.metrics import evaluate_batches
    task, model, tokenizer = loaded.task, loaded.model, loaded.tokenizer
    if task == "sentence-similarity" and "label" not in ds.column_names:
        return retrieval(loaded, ds, progress)
    if task in ("text-classification", "token-classification"):
        ds, info = remap_labels(ds, info, model, task)
    max_length = max(max_length_of(model, tokenizer), 2)
    total = math.ceil(len(ds) / batch_size)

    def tracked():
        for i, batch in enumerate(batches(model, tokenizer, task, ds, batch_size, max_length)):
            progress(i, total, "Evaluating")
            yield batch
    metrics = evaluate_batches(task, model, tracked(), info)
    progress(total, total, "Evaluating")
    return {"task": task, "task_key": loaded.task_key, "rows": len(ds), "metrics": metrics}


def _encode(loaded: Loaded, texts: list[str], is_query: bool, progress, done: int, total: int) -> list:
    from engine.embedding import encode
    late = loaded.task_key == "late-interaction"
    out = []
    for start in range(0, len(texts), ENCODE_CHUNK):
        progress(done + start, total, "Encoding queries" if is_query else "Encoding documents")
        part = encode(loaded.model, loaded.tokenizer, texts[start:start + ENCODE_CHUNK],
                      is_query=is_query if late else None)
        out += list(part)
    return out


def _padded_chunks(vectors: list, size: int = 64) -> list[tuple[np.ndarray, np.ndarray]]:
    """[T_i, D] token matrices → (vectors [n, T, D], mask [n, T]) chunks for maxsim_score_blocks."""
    chunks = []
    for start in range(0, len(vectors), size):
        part = vectors[start:start + size]
        t = max(v.shape[0] for v in part)
        vecs = np.zeros((len(part), t, part[0].shape[1]), np.float32)
        mask = np.zeros((len(part), t), np.int32)
        for i, v in enumerate(part):
            vecs[i, :len(v)], mask[i, :len(v)] = v, 1
        chunks.append((vecs, mask))
    return chunks


def score_matrix(loaded: Loaded, queries: list[str], docs: list[str], progress=_no_progress) -> np.ndarray:
    """[Q, C] scores: cosine for dense models, MaxSim for late interaction (as the trainer's evaluator)."""
    from engine.metrics import cosine_score_blocks, maxsim_score_blocks
    total = len(queries) + len(docs)
    q = _encode(loaded, queries, True, progress, 0, total)
    d = _encode(loaded, docs, False, progress, len(queries), total)
    progress(total, total, "Scoring")
    if loaded.task_key == "late-interaction":
        blocks = maxsim_score_blocks(_padded_chunks(q), _padded_chunks(d))
    else:
        blocks = cosine_score_blocks(np.stack(q), np.stack(d))
    return np.concatenate(list(blocks), axis=0)


def retrieval(loaded: Loaded, ds, progress=_no_progress) -> dict:
    """The evaluator's protocol (engine.metrics.evaluate): queries are the distinct anchors, the corpus
    the distinct positives and negatives, a query's relevant documents the positives of its rows."""
    from engine.data.args import text_roles_of
    from engine.metrics import per_query_metrics, retrieval_metrics, worst_queries
    roles = text_roles_of(ds.column_names)
    queries, docs, q_index, d_index, relevant = [], [], {}, {}, []
    columns = {r: ds[r] for r in roles}
    for row in range(len(ds)):
        q = str(columns["text"][row])
        if q not in q_index:
            q_index[q] = len(queries)
            queries.append(q)
            relevant.append(set())
        for role in roles[1:]:
            d = str(columns[role][row])
            if d not in d_index:
                d_index[d] = len(docs)
                docs.append(d)
        relevant[q_index[q]].add(d_index[str(columns["text_pair"][row])])
    scores = score_matrix(loaded, queries, docs, progress)
    metrics = retrieval_metrics(scores, relevant)
    ranks = per_query_metrics(scores, relevant)["gold_rank"]
    worst = []
    for item in worst_queries(scores, relevant, k=TOP_SHOWN, n=WORST_SHOWN):
        i = item["query"]
        gold = sorted(relevant[i], key=lambda j: -scores[i, j])[0]   # the best-ranked relevant document
        worst.append({"query": queries[i], "gold": docs[gold], "gold_rank": item["gold_rank"],
                      "gold_score": float(scores[i, gold]),
                      "retrieved": [{"text": docs[j], "score": float(scores[i, j]), "relevant": j in relevant[i]}
                                    for j in item["top"]]})
    return {"task": "sentence-similarity", "task_key": loaded.task_key, "rows": len(ds), "metrics": metrics,
            "queries": len(queries), "corpus": len(docs), "worst": worst,
            "median_gold_rank": float(np.median(ranks[ranks > 0])) if (ranks > 0).any() else None}


def run_evaluation(choice: ModelChoice, spec: EvalSet, compare_base: bool, progress=_no_progress) -> dict:
    """The whole Evaluate-page job: load, read the data, evaluate; then the same for the base model."""
    progress(0, 0, "Loading the model")
    loaded = load_choice(choice)
    progress(0, 0, "Reading the evaluation data")
    regression = loaded.task_key == "regression" if loaded.task == "text-classification" else None
    ds, info = load_eval_set(spec, choice.record, loaded.task, regression)
    if len(ds) == 0:
        raise ValueError("The evaluation data has no rows.")
    result = {"model": evaluate(loaded, ds, info, progress), "choice": choice.describe(),
              "untrained_head": loaded.untrained_head}
    if compare_base and choice.base:
        progress(0, 0, "Loading the base model")
        base = load_base(choice, loaded)
        result["base"] = evaluate(base, ds, info, lambda d, t, text="": progress(d, t, f"{text} (base model)"))
        result["base_name"] = choice.base
        result["base_untrained_head"] = base.untrained_head
    return result
