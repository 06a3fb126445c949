"""Evaluate a loaded model on a dataset with the task's metrics (``engine.metrics``), as training's
evaluations compute them: `raclate eval`, the app's Evaluate page and the trainer share this.

    load_eval_data(model, task, data | record=...)   -> (role-named Dataset, LabelInfo, task)
    remap_labels(ds, label_info, model, task)        -> the data's label ids as the model's ids
    eval_batches(model, tokenizer, task, ds, ...)    -> collated batches in length order
    evaluate_dataset(model, tokenizer, task, ds, label_info) -> metrics (examples=N: the misclassified rows)
    evaluate_retrieval(model, tokenizer, ds)         -> retrieval metrics with the worst queries
    evaluate_file(model, tokenizer, task, data)      -> {task, rows, metrics}

Long work takes ``progress(done, total, text)``, called between batches; it may raise to cancel.
"""
from __future__ import annotations

import math
from typing import Iterator

import numpy as np

import mlx.core as mx

from engine.data import DatasetArgs, LabelInfo, load_dataset, tokenize_dataset
from engine.data.args import first_dataset, text_roles_of
from engine.data.collators import collator_for
from engine.data.inputs import role_prompts
from engine.errors import UsageError
from engine.inference.encode import max_length_of
from engine.inference.loading import is_regression
from engine.inference.search import no_progress, score_matrix
from engine.metrics import evaluate_batches, per_query_metrics, retrieval_metrics, worst_queries
from engine.models.pylate import ColBERTCollator
from engine.tasks import TASKS

# Tasks whose data labels are class names (text-classification, token-classification): the data's
# ids must be matched to the model's.
LABELLED_TASKS = tuple(name for name, t in TASKS.items() if {"label", "labels"} & set(t.required_roles))


# -- data ----------------------------------------------------------------------------------------
def load_eval_data(model, task: str, data: str | None = None, *, record: dict | None = None, columns=None,
                   split=None, subset=None, max_rows=None, max_length=None, encoding: str | None = None):
    """(role-named Dataset, LabelInfo, task) to evaluate ``model`` on: every row of ``data`` (a file,
    folder or Hub id, its columns mapped by ``columns`` {role: column}), or, with no ``data``, the
    validation split of the run ``record`` describes. ``max_rows`` keeps the first rows; ``encoding`` is the text
    encoding of a CSV/TSV/JSON ``data`` file (default UTF-8)."""
    regression = is_regression(model) if task == "text-classification" else None
    multi_label = _multi_label(model) if task == "text-classification" else None
    if data is None:
        # several datasets: the first one's validation rows
        settings = {k: v for k, v in first_dataset((record or {}).get("data") or {}).items()
                    if k in DatasetArgs.__dataclass_fields__}
        if not settings.get("data"):
            raise UsageError("This model has no run record, so there is no validation split to use: choose a file.")
        loaded = load_dataset(DatasetArgs(**settings))
        ds = loaded.validation
        if ds is None:
            raise UsageError("The run trained without validation data (validation split 0 and no validation "
                             "file): choose a file to evaluate on.")
        if max_rows and len(ds) > max_rows:
            ds = ds.select(range(max_rows))   # after the split, so that it stays the run's validation split
        return ds, loaded.label_info, loaded.task
    length = {"max_length": max(max_length, 2)} if max_length else {}
    loaded = load_dataset(DatasetArgs(data=data, task_type=task, columns=dict(columns or {}), split=split,
                                      subset=subset, validation_split=0.0, max_rows=max_rows, encoding=encoding,
                                      is_regression=regression, is_multi_label=multi_label, **length))
    return loaded.train, loaded.label_info, loaded.task


def _multi_label(model) -> bool:
    return model.info.config.get("problem_type") == "multi_label_classification"


def remap_labels(ds, data_info, model, task: str):
    """Data label ids (the data's own sorted names) → the model's ids (its id2label); regression as is.
    Returns (dataset, LabelInfo with the model's names)."""
    if task == "text-classification" and is_regression(model):
        return ds, LabelInfo(None, 1, True)
    id2label = {int(k): v for k, v in model.info.config["id2label"].items()}
    names = [id2label[i] for i in range(len(id2label))]
    label2id = {v: k for k, v in id2label.items()}
    lookup, unknown = {}, []
    for data_id, name in enumerate(data_info.names or []):
        if name in label2id:
            lookup[data_id] = label2id[name]
        elif name.lstrip("-").isdigit() and 0 <= int(name) < len(names):
            lookup[data_id] = int(name)  # integer labels against LABEL_i names
        else:
            unknown.append(name)
    if unknown:
        raise UsageError(f"The data has labels the model does not know: {', '.join(unknown[:10])}. The model's labels "
                         f"are: {', '.join(names[:20])}.")
    if data_info.is_multi_label:   # multi-hot columns in the data's name order → the model's order
        columns = [lookup[i] for i in range(len(data_info.names))]

        def fn(b):
            rows = np.zeros((len(b["label"]), len(names)), dtype=np.float32)
            rows[:, columns] = np.asarray(b["label"], dtype=np.float32).reshape(len(rows), len(columns))
            return {"label": rows.tolist()}
        return ds.map(fn, batched=True, desc="Matching labels"), LabelInfo(names, len(names), False, True)
    if task == "token-classification":
        def fn(b):
            return {"labels": [[lookup.get(t, -100) if t >= 0 else t for t in row] for row in b["labels"]]}
    else:
        def fn(b):
            return {"label": [lookup[v] for v in b["label"]]}
    return ds.map(fn, batched=True, desc="Matching labels"), LabelInfo(names, len(names), False)


# -- batches -------------------------------------------------------------------------------------
def token_lengths(tokenized) -> np.ndarray:
    """Each row's length in tokens: its longest text column."""
    cols = [c for c in tokenized.column_names if c.endswith("input_ids")]
    per_col = [np.fromiter((len(x) for x in tokenized[c]), dtype=np.int64, count=len(tokenized)) for c in cols]
    return np.max(np.stack(per_col), axis=0)


def length_order(tokenized) -> np.ndarray:
    """Row indices shortest first (equal lengths in row order): the order evaluation reads rows in."""
    return np.argsort(token_lengths(tokenized), kind="stable")


def collated_batches(tokenized, collator, task: str, batch_size: int) -> Iterator[tuple[int, dict]]:
    """(rows, collated batch) over every row of ``tokenized`` in length order: similar lengths share a
    batch, so there is less padding. Masked LM draws its masks from the batch's position."""
    order = length_order(tokenized)
    for position, start in enumerate(range(0, len(tokenized), batch_size)):
        picked = tokenized[[int(i) for i in order[start:start + batch_size]]]
        rows = [{k: v[i] for k, v in picked.items()} for i in range(len(next(iter(picked.values()))))]
        yield len(rows), collator(rows, position=position) if task == "masked-lm" else collator(rows)


def _tokenized(model, tokenizer, task: str, ds, max_length: int):
    """``ds`` (role-named) tokenized as the trainer evaluates it: with the model's prompts and chat
    template (engine/data/inputs.py)."""
    return tokenize_dataset(ds, tokenizer, task, max_length, use_chat_template=model.info.use_chat_template,
                            prompts=role_prompts(model.info, task))


def _collator(model, tokenizer, task: str, max_length: int, seed: int = 0):
    if task == "sentence-similarity" and model.info.colbert:   # PyLate's query/document format
        return ColBERTCollator(tokenizer, model.info.colbert, max_length=max_length)
    kw = {"pad_to_multiple_of": 8}
    if task == "text-classification":
        kw["is_regression"] = is_regression(model)
    if task == "masked-lm":
        kw["seed"] = seed
    return collator_for(task, tokenizer, **kw)


def eval_batches(model, tokenizer, task: str, ds, batch_size: int, max_length: int, seed: int = 0) -> Iterator[dict]:
    """``ds`` (role-named) tokenized and collated for ``task`` in length order, as the trainer evaluates:
    with the model's prompts and chat template (engine/data/inputs.py)."""
    tokenized = _tokenized(model, tokenizer, task, ds, max_length)
    collator = _collator(model, tokenizer, task, max_length, seed)
    for _, batch in collated_batches(tokenized, collator, task, batch_size):
        yield batch


# -- metrics -------------------------------------------------------------------------------------
def evaluate_dataset(model, tokenizer, task: str, ds, label_info, *, batch_size: int = 32, max_length=None,
                     progress=None, examples: int = 0) -> dict:
    """The task's metrics of ``model`` on role-named ``ds``; class labels are matched to the model's
    by name first (:func:`remap_labels`). ``examples`` > 0 (single-label classification) adds
    ``misclassified``: up to that many wrong predictions, worst first (:func:`misclassified`)."""
    progress = progress or no_progress
    if task in LABELLED_TASKS:
        ds, label_info = remap_labels(ds, label_info, model, task)
    max_length = max(max_length or max_length_of(model, tokenizer), 2)
    total = math.ceil(len(ds) / batch_size)
    model.eval()
    tokenized = _tokenized(model, tokenizer, task, ds, max_length)
    collator = _collator(model, tokenizer, task, max_length)
    single_label = task == "text-classification" and not label_info.is_regression and not label_info.is_multi_label
    scored = _Scores(model) if examples > 0 and single_label else None

    def tracked():
        for i, (_, batch) in enumerate(collated_batches(tokenized, collator, task, batch_size)):
            progress(i, total, "Evaluating")
            yield batch
    metrics = evaluate_batches(task, scored or model, tracked(), label_info)
    progress(total, total, "Evaluating")
    if scored is not None and scored.probabilities:
        probabilities = np.empty((len(ds), scored.probabilities[0].shape[1]), np.float32)
        probabilities[length_order(tokenized)] = np.concatenate(scored.probabilities)   # back in row order
        metrics["misclassified"] = misclassified(ds, probabilities, label_info.names, examples)
    return metrics


class _Scores:
    """``model`` as ``evaluate_batches`` calls it, keeping each batch's class probabilities: the
    per-example predictions come from the same forward pass as the metrics."""

    def __init__(self, model):
        self.model, self.probabilities = model, []

    def __call__(self, *inputs):
        out = self.model(*inputs)   # (B, C)
        self.probabilities.append(np.array(mx.softmax(out.astype(mx.float32), axis=-1)))
        return out

    def __getattr__(self, name):
        return getattr(self.model, name)


def misclassified(ds, probabilities: np.ndarray, names, limit: int) -> list[dict]:
    """The rows of role-named ``ds`` predicted wrong, worst first (the least probability on the right
    label), at most ``limit``: [{row, text, text_pair?, label, predicted, confidence, label_score}];
    ``confidence`` is the predicted label's probability."""
    labels = np.asarray(ds["label"], dtype=np.int64)                  # (N,)
    predicted = probabilities.argmax(axis=1)                          # (N,)
    right = probabilities[np.arange(len(labels)), labels]             # (N,)
    wrong = np.flatnonzero(predicted != labels)
    worst = wrong[np.argsort(right[wrong], kind="stable")][:limit]
    names = list(names or []) or [str(i) for i in range(probabilities.shape[1])]
    rows = []
    for i in worst.tolist():
        example = ds[i]
        row = {"row": i, "text": str(example["text"]), "label": names[labels[i]], "predicted": names[predicted[i]],
               "confidence": float(probabilities[i, predicted[i]]), "label_score": float(right[i])}
        if example.get("text_pair") is not None:   # a pair classifier's second text
            row["text_pair"] = str(example["text_pair"])
        rows.append(row)
    return rows


def evaluate_retrieval(model, tokenizer, ds, *, progress=None, worst: int = 20, top: int = 5) -> dict:
    """Retrieval metrics of an embedding model on text pairs (negatives optional) with the evaluator's
    protocol (engine.metrics.evaluate): queries are the distinct anchors, the corpus the distinct
    positives and negatives, a query's relevant documents the positives of its rows. Also the
    ``worst`` queries (each with its ``top`` retrieved documents) and the median rank of the right
    document: {metrics, queries, corpus, worst, median_gold_rank}."""
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
    model.eval()
    scores = score_matrix(model, tokenizer, queries, docs, progress)   # (Q, C)
    ranks = per_query_metrics(scores, relevant)["gold_rank"]
    listed = []
    for item in worst_queries(scores, relevant, k=top, n=worst):
        i = item["query"]
        gold = sorted(relevant[i], key=lambda j: -scores[i, j])[0]   # the best-ranked relevant document
        listed.append({"query": queries[i], "gold": docs[gold], "gold_rank": item["gold_rank"],
                       "gold_score": float(scores[i, gold]),
                       "retrieved": [{"text": docs[j], "score": float(scores[i, j]), "relevant": j in relevant[i]}
                                     for j in item["top"]]})
    return {"metrics": retrieval_metrics(scores, relevant), "queries": len(queries), "corpus": len(docs),
            "worst": listed, "median_gold_rank": float(np.median(ranks[ranks > 0])) if (ranks > 0).any() else None}


def evaluate_file(model, tokenizer, task: str, data: str, *, columns=None, split=None, subset=None, max_rows=None,
                  batch_size: int = 32, max_length: int | None = None, encoding: str | None = None) -> dict:
    """Metrics of a loaded model on every row of a data file (what `raclate eval` prints): {task, rows, metrics}."""
    max_length = max_length or max_length_of(model, tokenizer)
    ds, info, data_task = load_eval_data(model, task, data, columns=columns, split=split, subset=subset,
                                         max_rows=max_rows, max_length=max_length, encoding=encoding)
    metrics = evaluate_dataset(model, tokenizer, data_task, ds, info, batch_size=batch_size, max_length=max_length)
    return {"task": data_task, "rows": len(ds), "metrics": metrics}
