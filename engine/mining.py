"""Hard-negative mining: turn (anchor, positive) pairs into triplets or n-tuples with the corpus texts an
embedding model ranks closest to each anchor, guarded against false negatives.

    mine_hard_negatives(model, tokenizer, pairs, corpus=()) -> Mined(rows, summary)
    read_pairs(path, columns) / read_corpus(path, column)   -> the texts of a data file

The corpus is the distinct positives plus any extra texts. Every anchor is scored against all of it
by the engine's search (engine/inference/search.py: an exact blocked matrix product of cosine scores,
or MaxSim for late interaction; no [Q, C] matrix is ever whole). An anchor's candidates are the corpus
ranked best first without its own positives and its own text; the rank window keeps ranks
``range_min <= r < range_max`` of them (0 = the closest). Two rules guard each pair against false
negatives (a candidate that is really another answer), as sentence-transformers' mine_hard_negatives:

    margin            removed when  score(anchor, c) > score(anchor, positive) - margin
    relative_margin   removed when  score(anchor, c) > (1 - relative_margin) * score(anchor, positive)

The ``num_negatives`` best candidates left become the pair's negatives. The summary counts the
candidates each rule removed (a candidate both remove counts for both) and keeps the closest removed
ones, with their scores, for a person to review.

A cross-encoder (a pair classification or regression model, ``load_cross_encoder``) can rescore: the
embedding model still picks the rank window, then the cross-encoder scores each (anchor, candidate) and
(anchor, positive) pair, the rules compare its scores, and the window is taken best first by them, as
sentence-transformers' mine_hard_negatives does with its ``cross_encoder``. Reading the pair together
it is the better judge of what is really another answer, at the cost of one forward pass per pair.
"""
from __future__ import annotations

import heapq
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import mlx.core as mx

from engine.data.inputs import tokenize_texts
from engine.data.mapping import apply_columns, resolve_columns
from engine.data.reading import read_file
from engine.errors import DataError, UsageError
from engine.files import atomic_write, write_json
from engine.inference.encode import max_length_of
from engine.inference.loading import load_for_task, untrained_head
from engine.inference.search import score_blocks

FORMATS = ("triplet", "n-tuple")
SAMPLE_SIZE = 10   # closest removed candidates kept for review


@dataclass
class Mined:
    """The output rows (anchor, positive, negative | negative_1..n[, scores]) and a JSON-safe summary."""
    rows: list[dict]
    summary: dict


def read_pairs(path, columns: dict[str, str] | None = None, encoding: str | None = None) -> list[tuple[str, str]]:
    """(anchor, positive) of each row of a data file (in its text ``encoding``, default UTF-8): the
    text and text_pair roles, guessed from the column names unless ``columns`` ({role: column}) says."""
    ds, _ = read_file(path, encoding=encoding)
    mapping = resolve_columns(ds.column_names, "sentence-similarity", columns, file=str(path))
    ds = apply_columns(ds, {r: mapping[r] for r in ("text", "text_pair")}, file=str(path))
    pairs = [(a, p) for a, p in zip(ds["text"], ds["text_pair"]) if _text(a) and _text(p)]
    if not pairs:
        raise DataError("No row has both an anchor and a positive text.", file=str(path), code="empty_file",
                        fix="Mine from (anchor, positive) pairs, or map the columns with --column text=... "
                            "--column text_pair=...")
    return pairs


def read_corpus(path, column: str | None = None) -> list[str]:
    """Extra corpus texts: the lines of a .txt file, or one column of a data file (``column``, else its
    only text column)."""
    path = Path(path)
    if path.suffix.lower() == ".txt":
        if not path.exists():
            raise DataError("The corpus file does not exist.", file=str(path), code="missing_file")
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    ds, _ = read_file(path)
    texts = [c for c in ds.column_names if ds.features[c].dtype in ("string", "large_string")]
    if column is None and len(texts) != 1:
        raise UsageError(f"{path} has {len(texts)} text columns ({', '.join(texts)}): pick one with --corpus-column.")
    column = column or texts[0]
    if column not in ds.column_names:
        raise UsageError(f"{path} has no column {column!r}; its columns: {', '.join(ds.column_names)}.")
    return [t for t in ds[column] if _text(t)]


def scores_from_logits(logits: np.ndarray, config: dict) -> np.ndarray:
    """A pair classifier's score [N] from its outputs [N, C]: the value of a regression model, the sigmoid of a
    single logit (a reranker, as sentence-transformers' CrossEncoder reads one), the softmax probability of
    label 1 of two (the pair matches); more labels have no one score.

    >>> scores_from_logits(np.array([[0.0, 0.0], [0.0, np.log(3.0)]]), {}).round(3).tolist()
    [0.5, 0.75]
    """
    if config.get("problem_type") == "regression":
        return logits[:, 0]
    if logits.shape[1] == 1:
        return 1 / (1 + np.exp(-logits[:, 0]))
    if logits.shape[1] == 2:
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e[:, 1] / e.sum(axis=1)
    names = ", ".join(str(v) for v in (config.get("id2label") or {}).values())
    raise UsageError(f"The --cross-encoder model has {logits.shape[1]} labels ({names}); rescoring needs one score "
                     "per pair: a regression model, a one-logit reranker or a two-label (no match / match) classifier.")


class CrossEncoder:
    """Scores (anchor, text) pairs with a text-classification model read as pairs: ``scorer(pairs) -> [N]``."""

    def __init__(self, model, tokenizer, name: str = "", batch_size: int = 32):
        self.model, self.tokenizer, self.name, self.batch_size = model, tokenizer, name, batch_size

    def __call__(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        max_length = max_length_of(self.model, self.tokenizer)
        order = np.argsort([len(a) + len(b) for a, b in pairs], kind="stable")   # similar lengths: less padding
        scores = np.zeros(len(pairs), np.float32)
        for start in range(0, len(pairs), self.batch_size):
            rows = order[start:start + self.batch_size]
            enc = tokenize_texts(self.tokenizer, [pairs[i][0] for i in rows], [pairs[i][1] for i in rows],
                                 use_chat_template=self.model.info.use_chat_template, max_length=max_length,
                                 padding=True, return_tensors="np")
            names = ("input_ids", "attention_mask", "token_type_ids")   # BERT reads a pair's segments
            logits = self.model(*(mx.array(enc[k].astype(np.int32)) for k in names if k in enc))  # (b, C)
            scores[rows] = scores_from_logits(np.array(logits.astype(mx.float32)), self.model.info.config)
        return scores


def load_cross_encoder(source: str, batch_size: int = 32) -> CrossEncoder:
    """A pair classification / regression model (a run of this app, or a transformers sequence-classification
    checkpoint) as a CrossEncoder; UsageError for a model without a trained classification head."""
    model, tokenizer, _, _ = load_for_task(source, "text-classification")
    heads = untrained_head(model, "text-classification")
    if heads:
        raise UsageError(f"--cross-encoder {source} has no trained classification head (missing: "
                         f"{', '.join(heads[:4])}). Pass a pair classifier or reranker: the --output of `raclate "
                         f"train --task text-classification` on (text, text_pair, label) rows, or a transformers "
                         f"sequence-classification checkpoint.")
    return CrossEncoder(model, tokenizer, name=str(source), batch_size=batch_size)


def _text(value) -> bool:
    return isinstance(value, str) and bool(value.strip())


def check_settings(num_negatives: int, range_min: int, range_max: int, margin, relative_margin,
                   output_format: str) -> None:
    if num_negatives < 1:
        raise UsageError(f"--num-negatives must be at least 1, got {num_negatives}.")
    if not 0 <= range_min < range_max:
        raise UsageError(f"The rank window needs 0 <= --range-min < --range-max, got {range_min} and {range_max}.")
    if relative_margin is not None and not 0 <= relative_margin < 1:
        raise UsageError(f"--relative-margin must be in [0, 1), got {relative_margin}.")
    if output_format not in FORMATS:
        raise UsageError(f"--output-format must be one of {', '.join(FORMATS)}, got {output_format!r}.")


def removed_by(score: float, positive: float, margin: float | None, relative_margin: float | None) -> list[str]:
    """The false-negative rules that remove a candidate scoring ``score`` for a pair whose positive scores ``positive``.

    >>> removed_by(0.75, 0.8, margin=0.1, relative_margin=0.05), removed_by(0.75, 0.8, 0.0, 0.05)
    (['margin'], [])
    """
    rules = []
    if margin is not None and score > positive - margin:
        rules.append("margin")
    if relative_margin is not None and score > (1 - relative_margin) * positive:
        rules.append("relative_margin")
    return rules


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest of ``scores`` [C], best first, equal scores by index."""
    cut = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    return cut[np.lexsort((cut, -scores[cut]))]


def mine_hard_negatives(model, tokenizer, pairs, corpus=(), *, num_negatives: int = 3, range_min: int = 0,
                        range_max: int = 50, margin: float | None = None, relative_margin: float | None = None,
                        output_format: str = "triplet", with_scores: bool = False, sample_size: int = SAMPLE_SIZE,
                        progress=None, cross_encoder=None) -> Mined:
    """Negatives for each (anchor, positive) of ``pairs`` from the positives plus ``corpus`` (see the
    module docstring). ``output_format``: "triplet" (one row per negative) or "n-tuple" (one row per
    pair with exactly ``num_negatives`` negatives; pairs with fewer are left out). ``with_scores`` adds
    a ``scores`` column: [positive score, negative scores...]. ``progress(done, total, text)`` as search.
    ``cross_encoder``: ``f(pairs) -> scores [N]`` (a CrossEncoder) rescoring each rank window."""
    check_settings(num_negatives, range_min, range_max, margin, relative_margin, output_format)
    pairs = [(str(a), str(p)) for a, p in pairs]
    if not pairs:
        raise UsageError("No (anchor, positive) pairs to mine negatives for.")
    texts: dict[str, int] = {}   # corpus text -> index; positives first, then the extra texts
    for text in [p for _, p in pairs] + list(corpus):
        texts.setdefault(text, len(texts))
    anchors: dict[str, list[int]] = {}   # anchor -> its rows in ``pairs``
    for row, (a, _) in enumerate(pairs):
        anchors.setdefault(a, []).append(row)
    corpus_texts, anchor_texts = list(texts), list(anchors)

    counts = {"candidates": 0, "margin": 0, "relative_margin": 0, "removed": 0, "short": 0}
    closest: list = []   # heap of the closest removed candidates: (score, n, record)
    found: list[list[tuple[int, float]]] = [[] for _ in pairs]
    positive_scores = np.zeros(len(pairs), np.float32)
    start = 0
    for block in score_blocks(model, tokenizer, anchor_texts, corpus_texts, progress):  # [b, C]
        windows = []   # (anchor, its rows, window, {candidate: score}, {row: positive score}) per anchor
        for anchor, scores in zip(anchor_texts[start:start + len(block)], block):
            rows = anchors[anchor]
            excluded = {texts[pairs[r][1]] for r in rows} | ({texts[anchor]} if anchor in texts else set())
            ranked = [c for c in _top(scores, min(len(scores), range_max + len(excluded))) if c not in excluded]
            window = ranked[range_min:range_max]
            windows.append((anchor, rows, window, {c: float(scores[c]) for c in window},
                            {r: float(scores[texts[pairs[r][1]]]) for r in rows}))
        if cross_encoder is not None:
            windows = _rescored(cross_encoder, windows, pairs, corpus_texts)
        for anchor, rows, window, candidate_scores, row_scores in windows:
            for r in rows:
                positive = row_scores[r]
                positive_scores[r] = positive
                for c in window:
                    score = candidate_scores[c]
                    rules = removed_by(score, positive, margin, relative_margin)
                    counts["candidates"] += 1
                    if rules:
                        for name in rules:
                            counts[name] += 1
                        counts["removed"] += 1
                        record = {"anchor": anchor, "positive": pairs[r][1], "candidate": corpus_texts[c],
                                  "positive_score": positive, "score": score, "removed_by": rules}
                        item = (score, counts["removed"], record)
                        (heapq.heappush if len(closest) < sample_size else heapq.heappushpop)(closest, item)
                    elif len(found[r]) < num_negatives:
                        found[r].append((c, score))
        start += len(block)

    out = []
    for r, (anchor, positive) in enumerate(pairs):
        negatives = found[r]
        counts["short"] += len(negatives) < num_negatives
        if output_format == "triplet":
            for c, score in negatives:
                row = {"anchor": anchor, "positive": positive, "negative": corpus_texts[c]}
                out.append({**row, "scores": [float(positive_scores[r]), score]} if with_scores else row)
        elif len(negatives) == num_negatives:
            row = {"anchor": anchor, "positive": positive,
                   **{f"negative_{i}": corpus_texts[c] for i, (c, _) in enumerate(negatives, 1)}}
            scores = [float(positive_scores[r])] + [s for _, s in negatives]
            out.append({**row, "scores": scores} if with_scores else row)
    chosen = [s for negatives in found for _, s in negatives]
    summary = {
        "pairs": len(pairs), "anchors": len(anchor_texts), "corpus": len(corpus_texts),
        "settings": {"num_negatives": num_negatives, "range_min": range_min, "range_max": range_max,
                     "margin": margin, "relative_margin": relative_margin, "output_format": output_format,
                     "cross_encoder": getattr(cross_encoder, "name", None) if cross_encoder is not None else None,
                     "scores": "embedding" if cross_encoder is None else "cross-encoder"},
        "candidates": counts["candidates"],
        "removed": {"margin": counts["margin"], "relative_margin": counts["relative_margin"]},
        "removed_total": counts["removed"],
        "negatives": len(chosen), "rows": len(out), "pairs_short_of_negatives": counts["short"],
        "mean_positive_score": float(positive_scores.mean()) if len(pairs) else None,
        "mean_negative_score": float(np.mean(chosen)) if chosen else None,
        "closest_removed": [record for _, _, record in sorted(closest, key=lambda x: (-x[0], x[1]))],
    }
    return Mined(out, summary)


def _rescored(cross_encoder, windows: list, pairs, corpus_texts) -> list:
    """``windows`` with the cross-encoder's scores of every (anchor, candidate) and (anchor, positive) pair,
    each window ordered best first by them (equal scores keep the embedding's order); one call per block."""
    asked = [(anchor, corpus_texts[c]) for anchor, _, window, _, _ in windows for c in window]
    asked += [(anchor, pairs[r][1]) for anchor, rows, _, _, _ in windows for r in rows]
    scores = iter(float(s) for s in cross_encoder(asked)) if asked else iter(())
    rescored = [(anchor, rows, window, {c: next(scores) for c in window}) for anchor, rows, window, _, _ in windows]
    out = []
    for anchor, rows, window, candidate_scores in rescored:
        window = sorted(window, key=lambda c: -candidate_scores[c])   # stable: ties stay in embedding order
        out.append((anchor, rows, window, candidate_scores, {r: next(scores) for r in rows}))
    return out


def summary_path(output) -> Path:
    """Where the JSON summary of ``output`` goes: triplets.jsonl -> triplets.summary.json."""
    output = Path(output)
    return output.with_name(output.stem + ".summary.json")


def write_mined(mined: Mined, output) -> Path:
    """The rows as JSON lines in ``output`` and the summary beside it (both written whole or not at all);
    returns the summary's path."""
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            for row in mined.rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    atomic_write(Path(output), write)
    write_json(summary_path(output), mined.summary)
    return summary_path(output)
