"""The bridge the trainer calls: run a model over collated eval batches and compute its task's metrics.

    evaluate_batches(task, model, batches, label_info=None) -> {name: float | list | dict}

Metric names (stable: the GUI and ``metric_for_best_model`` use them):

    text-classification   accuracy, macro_f1 (+ per_class, confusion_matrix)
      multi-label         micro_f1, macro_f1, micro_precision, micro_recall, subset_accuracy (+ per_label:
                          precision, recall, f1 at 0.5 and the label's best_threshold / best_f1)
    regression            pearson, spearman, mse, mae
    sentence-similarity   ndcg@10, mrr@10, recall@1, recall@5, recall@10, map
      scored pairs        pearson_cosine, spearman_cosine
      Matryoshka dims     each of the above again on embeddings cut to each dim D: ``ndcg@10@256``
    token-classification  precision, recall, f1 (entities, micro) (+ per_type)
    masked-lm             perplexity

Lower is better only for mse, mae and perplexity (see :func:`greater_is_better`).

Retrieval protocol: queries are the distinct anchors, the corpus the distinct positives and hard
negatives (identical texts, told apart by ``batch["hashes"]``, become one entry), and a query's
relevant documents are the positives of every row with that anchor. Dense models are scored by
cosine, late-interaction models by MaxSim (then the scored-pair keys hold MaxSim correlations).
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from engine.tasks import training_task

import mlx.core as mx

from engine.losses.cross_entropy import model_inputs
from engine.losses.scores import maxsim_pairwise, pairwise_cos_sim
from engine.metrics.classification import (classification_report, multilabel_report, pearson, regression_report,
                                           spearman)
from engine.metrics.lm import IGNORE, perplexity
from engine.metrics.retrieval import cosine_score_blocks, maxsim_score_blocks, retrieval_report
from engine.metrics.token import entity_report

LOWER_IS_BETTER = ("loss", "mse", "mae", "perplexity")


def greater_is_better(name: str) -> bool:
    """Direction of a metric for best-model tracking: losses, errors and perplexity go down.

    >>> greater_is_better("eval_loss"), greater_is_better("ndcg@10"), greater_is_better("perplexity")
    (False, True, False)
    """
    return not str(name).endswith(LOWER_IS_BETTER)


def _numpy(x: mx.array) -> np.ndarray:
    return np.array(x.astype(mx.float32) if mx.issubdtype(x.dtype, mx.floating) else x)  # bf16 has no numpy dtype


def _task(task: str) -> str:
    return training_task(task, ValueError)


def evaluate_batches(task: str, model, batches: Iterable[dict], label_info=None, matryoshka_dims=None) -> dict:
    """Metrics of ``model`` (``model(input_ids, attention_mask)`` → task outputs, in eval mode) on
    ``batches`` (collated as docs/ARCHITECTURE.md). ``label_info``: ``.names`` (class names / token
    tags), ``.is_regression``; token classification falls back to ``model.config["id2label"]``.
    Multi-hot labels [B, C] make it multi-label (sigmoid scores). ``matryoshka_dims``: dense embedding
    metrics also at each truncation (keys suffixed ``@D``)."""
    task = _task(task)
    if task == "sentence-similarity":
        return _similarity(model, batches, matryoshka_dims or ())
    if task == "text-classification":
        return _classification(model, batches, label_info)
    if task == "token-classification":
        return _tokens(model, batches, _names(model, label_info))
    return _masked_lm(model, batches)


def _names(model, label_info) -> list[str]:
    names = getattr(label_info, "names", None)
    if not names:
        id2label = (getattr(model, "config", None) or {}).get("id2label") or {}
        names = [id2label[k] for k in sorted(id2label, key=int)]
    if not names:
        raise ValueError("token-classification metrics need the tag names (label_info.names or id2label)")
    return list(names)


def _classification(model, batches, label_info) -> dict:
    preds, labels, regression = [], [], bool(getattr(label_info, "is_regression", False))
    multi_label = bool(getattr(label_info, "is_multi_label", False))
    for batch in batches:
        out = model(*model_inputs(batch))  # (B, C)
        multi_label = multi_label or batch["labels"].ndim == 2   # multi-hot rows
        regression = not multi_label and (regression or mx.issubdtype(batch["labels"].dtype, mx.floating))
        if multi_label:
            pred = mx.sigmoid(out.astype(mx.float32))  # (B, C) scores
        else:
            pred = out[:, 0] if regression else mx.argmax(out, axis=-1)
        mx.eval(pred)  # one forward pass alive at a time
        preds.append(_numpy(pred))
        labels.append(_numpy(batch["labels"]))
        width = out.shape[-1]
    if not preds:
        return {}
    y_pred, y_true = np.concatenate(preds), np.concatenate(labels)
    if regression:
        return regression_report(y_true, y_pred)
    names = getattr(label_info, "names", None)
    if not names or len(names) < width:
        names = [str(i) for i in range(width)]
    if multi_label:
        return multilabel_report(y_true, y_pred, names)
    return classification_report(y_true, y_pred, names)


def _tokens(model, batches, names: list[str]) -> dict:
    true_seqs, pred_seqs = [], []
    for batch in batches:
        pred = mx.argmax(model(batch["input_ids"], batch["attention_mask"]), axis=-1)  # (B, T)
        mx.eval(pred)
        pred, labels = _numpy(pred), _numpy(batch["labels"])
        for p, t in zip(pred, labels):
            keep = t != IGNORE  # the first sub-token of each word (all of them with label_all_tokens)
            true_seqs.append([names[i] for i in t[keep]])
            pred_seqs.append([names[i] for i in p[keep]])
    return entity_report(true_seqs, pred_seqs)


def _masked_lm(model, batches) -> dict:
    total, count = 0.0, 0
    for batch in batches:
        labels = _numpy(batch["labels"]).reshape(-1)
        picked = np.flatnonzero(labels != IGNORE)
        if picked.size == 0:
            continue
        logits = model(batch["input_ids"], batch["attention_mask"])  # (B, T, V)
        rows = logits.reshape(-1, logits.shape[-1])[mx.array(picked)].astype(mx.float32)  # (N, V)
        target = mx.array(labels[picked])[:, None]
        ce = mx.sum(mx.logsumexp(rows, axis=-1) - mx.take_along_axis(rows, target, axis=-1)[:, 0])
        mx.eval(ce)  # only the masked rows leave the [B, T, V] logits
        total, count = total + float(ce.item()), count + int(picked.size)
    return {"perplexity": perplexity(total, count)}


def _similarity(model, batches, dims=()) -> dict:
    late = bool(getattr(getattr(model, "info", None), "late_interaction", False))
    scored, labels, pairs = [], [], []
    queries, docs, query_of, doc_of, relevant = [], [], {}, {}, []
    for batch in batches:
        outs = [model(x["input_ids"], x["attention_mask"]) for x in batch["inputs"]]
        mx.eval(outs)  # this batch's forward passes
        late = late or outs[0].ndim == 3
        masks = [x.get("score_mask", x["attention_mask"]) for x in batch["inputs"]]  # PyLate's scoring mask
        if batch.get("labels") is not None:  # scored pairs: correlation of score and label
            if late:
                score = maxsim_pairwise(outs[0], outs[1], masks[0], masks[1])  # (B,)
            else:
                score = pairwise_cos_sim(outs[0], outs[1])  # (B,)
                pairs.append((_numpy(outs[0]), _numpy(outs[1])))  # for the Matryoshka dims' scores
            scored.append(_numpy(score))
            labels.append(_numpy(batch["labels"]))
            continue
        hashes = [_numpy(h).tolist() for h in batch["hashes"]]
        rows = _new_rows(hashes[0], query_of)
        queries.append(_take(outs[0], masks[0], rows, late))
        for col in range(1, len(outs)):  # positives, then each negative column
            rows = _new_rows(hashes[col], doc_of)
            docs.append(_take(outs[col], masks[col], rows, late))
        for q, p in zip(hashes[0], hashes[1]):
            if query_of[q] == len(relevant):
                relevant.append(set())
            relevant[query_of[q]].add(doc_of[p])
    out = {}
    if scored:
        s, y = np.concatenate(scored), np.concatenate(labels)
        out.update(pearson_cosine=pearson(s, y), spearman_cosine=spearman(s, y))
        a, b = (np.concatenate(side) for side in zip(*pairs)) if pairs else (None, None)
        for dim in dims if pairs else ():  # cosine of the first ``dim`` values: truncated and re-normalised
            s = _row_cosine(a[:, :dim], b[:, :dim])
            out.update({f"pearson_cosine@{dim}": pearson(s, y), f"spearman_cosine@{dim}": spearman(s, y)})
    if queries:
        if late:
            out.update(retrieval_report(maxsim_score_blocks(queries, docs), relevant))
        else:
            q, d = np.concatenate(queries), np.concatenate(docs)
            out.update(retrieval_report(cosine_score_blocks(q, d), relevant))
            for dim in dims:
                report = retrieval_report(cosine_score_blocks(q[:, :dim], d[:, :dim]), relevant)
                out.update({f"{name}@{dim}": value for name, value in report.items()})
    return out


def _row_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of aligned rows [N, D] -> [N], as pairwise_cos_sim."""
    norms = np.maximum(np.linalg.norm(a, axis=-1), 1e-8) * np.maximum(np.linalg.norm(b, axis=-1), 1e-8)
    return np.sum(a * b, axis=-1) / norms


def _new_rows(hashes: list[int], index: dict) -> list[int]:
    """Rows whose hash is not in ``index`` yet (first occurrence only); they get the next ids."""
    rows = []
    for row, h in enumerate(hashes):
        if h not in index:
            index[h] = len(index)
            rows.append(row)
    return rows


def _take(out: mx.array, mask: mx.array, rows: list[int], late: bool):
    """The kept rows as numpy: embeddings [n, D], or (token vectors [n, T, D], mask [n, T])."""
    vecs = _numpy(out)[rows]
    return (vecs, _numpy(mask)[rows]) if late else vecs
