"""Classification and regression metrics in plain numpy (no scikit-learn / scipy).

    accuracy(y_true, y_pred)                         -> float
    confusion_matrix(y_true, y_pred, num_classes)    -> int64 [C, C], rows = true, cols = predicted
    classification_report(y_true, y_pred, names)     -> {accuracy, macro_f1, per_class, confusion_matrix}
    multilabel_report(y_true, scores, names)         -> {micro_f1, macro_f1, micro_precision, micro_recall,
                                                         subset_accuracy, per_label}
    best_threshold(y_true, scores)                   -> (threshold, F1) of one label
    pearson(x, y), spearman(x, y), mse(...), mae(...) -> float
    regression_report(y_true, y_pred)                -> {pearson, spearman, mse, mae}

Precision/recall/F1 of a class with nothing to divide by are 0.0 (scikit-learn's ``zero_division``
default); a correlation of a constant input is NaN (as scipy; the event stream writes it as null).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def accuracy(y_true, y_pred) -> float:
    """Fraction of exact matches.

    >>> accuracy([0, 1, 2, 2], [0, 2, 2, 2])
    0.75
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float(np.mean(y_true == y_pred)) if y_true.size else float("nan")


def confusion_matrix(y_true, y_pred, num_classes: int | None = None) -> np.ndarray:
    """``m[t, p]`` = number of examples of true class ``t`` predicted as ``p``; cells sum to N.

    >>> confusion_matrix([0, 1, 1], [0, 0, 1]).tolist()
    [[1, 0], [1, 1]]
    """
    y_true = np.asarray(y_true, dtype=np.int64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.int64).ravel()
    if num_classes is None:
        num_classes = int(max(y_true.max(initial=-1), y_pred.max(initial=-1))) + 1
    if y_true.size and (min(y_true.min(), y_pred.min()) < 0 or max(y_true.max(), y_pred.max()) >= num_classes):
        raise ValueError(f"class ids must lie in [0, {num_classes})")
    flat = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def per_class_scores(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support per class from a confusion matrix (rows = true)."""
    tp = np.diag(cm).astype(np.float64)
    predicted, support = cm.sum(axis=0), cm.sum(axis=1)
    precision, recall = _safe_div(tp, predicted), _safe_div(tp, support)
    f1 = _safe_div(2 * precision * recall, precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def classification_report(y_true, y_pred, label_names: Sequence[str] | None = None) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix.

    ``y_true`` / ``y_pred`` are class ids; ``label_names[i]`` names class ``i`` (default ``"0"``,
    ``"1"``, ...). Macro-F1 averages the classes present in ``y_true`` or ``y_pred`` (scikit-learn's
    default, so an unused label does not drag it down); ``per_class`` still lists every name.
    """
    y_true = np.asarray(y_true, dtype=np.int64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.int64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.size} values but y_pred has {y_pred.size}")
    n = len(label_names) if label_names is not None else None
    cm = confusion_matrix(y_true, y_pred, n)
    names = list(label_names) if label_names is not None else [str(i) for i in range(cm.shape[0])]
    s = per_class_scores(cm)
    present = (s["support"] > 0) | (cm.sum(axis=0) > 0)
    return {
        "accuracy": accuracy(y_true, y_pred),
        "macro_f1": float(s["f1"][present].mean()) if present.any() else float("nan"),
        "per_class": {name: {"precision": float(s["precision"][i]), "recall": float(s["recall"][i]),
                             "f1": float(s["f1"][i]), "support": int(s["support"][i])}
                      for i, name in enumerate(names)},
        "confusion_matrix": cm.tolist(),
    }


def best_threshold(y_true, scores) -> tuple[float, float]:
    """(t, F1): the largest threshold among ``scores`` whose predictions ``scores >= t`` have the best
    F1 against the 0/1 ``y_true``; (NaN, 0.0) when no example is positive (no threshold helps).

    >>> best_threshold([1, 0, 1], [0.9, 0.8, 0.3])   # all three predicted: 2 right of 3, F1 0.8
    (0.3, 0.8)
    """
    y = np.asarray(y_true).ravel() > 0.5
    s = np.asarray(scores, dtype=np.float64).ravel()
    positives = int(y.sum())
    if positives == 0:
        return float("nan"), 0.0
    order = np.argsort(-s, kind="stable")
    s, tp = s[order], np.cumsum(y[order])      # predicting the top k: tp[k-1] right
    k = np.arange(1, s.size + 1)
    ends_ties = np.append(s[1:] < s[:-1], True)  # a threshold keeps or drops equal scores together
    f1 = np.where(ends_ties, 2 * tp / (k + positives), -1.0)
    best = int(np.argmax(f1))                   # the first best: fewest predictions, largest threshold
    return float(s[best]), float(f1[best])


def multilabel_report(y_true, scores, label_names: Sequence[str] | None = None, threshold: float = 0.5) -> dict:
    """Multi-label metrics from 0/1 targets [N, C] and sigmoid scores [N, C]; a label is predicted
    when its score is ≥ ``threshold``.

    micro_precision/recall/f1 pool every (row, label) decision; macro_f1 averages the labels' F1 over
    all labels (scikit-learn's ``average="macro"``); subset_accuracy counts rows whose whole label set
    is right. ``per_label[name]``: precision, recall, f1, support at ``threshold``, and best_threshold /
    best_f1 (:func:`best_threshold` on these rows: an optimistic hint, tuned on the data it scores).
    """
    y = np.asarray(y_true, dtype=np.float64) > 0.5
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 2:
        raise ValueError(f"y_true {y.shape} and scores {s.shape} must both be [N, C]")
    pred = s >= threshold
    tp, fp, fn = (y & pred).sum(0), (~y & pred).sum(0), (y & ~pred).sum(0)  # (C,) each
    precision, recall = _safe_div(tp, tp + fp), _safe_div(tp, tp + fn)
    f1 = _safe_div(2 * tp, 2 * tp + fp + fn)
    micro_p, micro_r = _safe_div(tp.sum(), tp.sum() + fp.sum()), _safe_div(tp.sum(), tp.sum() + fn.sum())
    names = list(label_names) if label_names is not None else [str(i) for i in range(y.shape[1])]
    per_label = {}
    for i, name in enumerate(names):
        t, best = best_threshold(y[:, i], s[:, i])
        per_label[name] = {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                           "support": int(y[:, i].sum()), "best_threshold": t, "best_f1": best}
    return {
        "micro_f1": float(_safe_div(2 * tp.sum(), 2 * tp.sum() + fp.sum() + fn.sum())),
        "macro_f1": float(f1.mean()) if f1.size else float("nan"),
        "micro_precision": float(micro_p), "micro_recall": float(micro_r),
        "subset_accuracy": float(np.mean((y == pred).all(axis=1))) if y.shape[0] else float("nan"),
        "per_label": per_label,
    }


def pearson(x, y) -> float:
    """Pearson correlation; NaN when either input is constant (or has fewer than 2 values).

    >>> round(pearson([1, 2, 3], [2, 4, 7]), 4)
    0.9934
    """
    x, y = np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
    if x.size < 2:
        return float("nan")
    dx, dy = x - x.mean(), y - y.mean()
    den = np.sqrt(np.sum(dx * dx) * np.sum(dy * dy))
    return float(np.sum(dx * dy) / den) if den > 0 else float("nan")


def rank_average(x) -> np.ndarray:
    """1-based ranks, ties sharing the average of the ranks they span.

    >>> rank_average([10, 20, 20, 30]).tolist()
    [1.0, 2.5, 2.5, 4.0]
    """
    x = np.asarray(x).ravel()
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[np.argsort(x, kind="stable")] = np.arange(1, x.size + 1)
    _, group, counts = np.unique(x, return_inverse=True, return_counts=True)
    return (np.bincount(group, weights=ranks) / counts)[group]


def spearman(x, y) -> float:
    """Spearman correlation: Pearson of the average ranks (ties get the mean rank, as scipy)."""
    return pearson(rank_average(x), rank_average(y))


def mse(y_true, y_pred) -> float:
    d = np.asarray(y_true, dtype=np.float64).ravel() - np.asarray(y_pred, dtype=np.float64).ravel()
    return float(np.mean(d * d)) if d.size else float("nan")


def mae(y_true, y_pred) -> float:
    d = np.asarray(y_true, dtype=np.float64).ravel() - np.asarray(y_pred, dtype=np.float64).ravel()
    return float(np.mean(np.abs(d))) if d.size else float("nan")


def regression_report(y_true, y_pred) -> dict[str, float]:
    """Pearson and Spearman correlation, mean squared and mean absolute error."""
    return {"pearson": pearson(y_true, y_pred), "spearman": spearman(y_true, y_pred),
            "mse": mse(y_true, y_pred), "mae": mae(y_true, y_pred)}
