"""Entity-level scores for tagged sequences, with seqeval's default (conlleval) chunking rules.

    get_entities(tags)                         -> [(type, start, end), ...]   end inclusive
    entity_report(true_tag_seqs, pred_tag_seqs) -> {precision, recall, f1, per_type}

A predicted entity counts only when its type, start and end all match a true one. Overall scores
are micro-averaged over every entity (seqeval's "micro avg"); ``per_type`` holds precision, recall,
F1 and support (the number of true entities) for each type found in either side. Nothing to
divide by gives 0.0, as seqeval.
"""
from __future__ import annotations

from collections import Counter
from typing import Sequence


def _split(tag: str) -> tuple[str, str]:
    """"B-PER" -> ("B", "PER"); "O" -> ("O", "_") as seqeval (a bare prefix gets type "_")."""
    return tag[:1], tag[1:].split("-", maxsplit=1)[-1] or "_"


def _ends(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    """Does the chunk open before this token end here? (seqeval ``end_of_chunk``, IOBES included)."""
    if prev_tag in ("E", "S"):
        return True
    if prev_tag in ("B", "I") and tag in ("B", "S", "O"):
        return True
    return prev_tag not in ("O", ".") and prev_type != type_


def _starts(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    """Does a chunk start at this token? (seqeval ``start_of_chunk``): B-/S- always; I-/E- after
    O, E- or S-; and any tag whose type differs from the previous one (conlleval's lenient rule)."""
    if tag in ("B", "S"):
        return True
    if prev_tag in ("E", "S", "O") and tag in ("E", "I"):
        return True
    return tag not in ("O", ".") and prev_type != type_


def get_entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Entities ``(type, start, end)`` (end inclusive) of one tag sequence.

    An entity starts at B-X, or at I-X when the previous tag is not of type X (I- after O starts
    one); it ends when the type changes, or at O or B-.

    >>> get_entities(["B-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-ORG"])
    [('PER', 0, 1), ('LOC', 3, 3), ('LOC', 4, 4), ('ORG', 5, 5)]
    """
    prev_tag, prev_type, begin, chunks = "O", "", 0, []
    for i, tag in enumerate([*tags, "O"]):  # the trailing O closes an entity at the end
        tag, type_ = _split(tag)
        if _ends(prev_tag, tag, prev_type, type_):
            chunks.append((prev_type, begin, i - 1))
        if _starts(prev_tag, tag, prev_type, type_):
            begin = i
        prev_tag, prev_type = tag, type_
    return chunks


def _prf(tp: int, n_pred: int, n_true: int) -> tuple[float, float, float]:
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_true if n_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def entity_report(true_tag_seqs: Sequence[Sequence[str]], pred_tag_seqs: Sequence[Sequence[str]]) -> dict:
    """Micro precision/recall/F1 over all entities plus ``per_type`` {type: {precision, recall, f1, support}}.

    Each argument is a list of sequences (one per sentence) of BIO tags such as "B-PER", "I-PER", "O".
    """
    if len(true_tag_seqs) != len(pred_tag_seqs):
        raise ValueError(f"{len(true_tag_seqs)} true sequences but {len(pred_tag_seqs)} predicted")
    true, pred = set(), set()
    for n, (t, p) in enumerate(zip(true_tag_seqs, pred_tag_seqs)):
        if len(t) != len(p):
            raise ValueError(f"sequence {n}: {len(t)} true tags but {len(p)} predicted")
        true.update((n, *e) for e in get_entities(t))
        pred.update((n, *e) for e in get_entities(p))
    hits = true & pred
    n_true, n_pred, n_hit = (Counter(e[1] for e in s) for s in (true, pred, hits))
    per_type = {}
    for type_ in sorted(set(n_true) | set(n_pred)):
        precision, recall, f1 = _prf(n_hit[type_], n_pred[type_], n_true[type_])
        per_type[type_] = {"precision": precision, "recall": recall, "f1": f1, "support": n_true[type_]}
    precision, recall, f1 = _prf(len(hits), len(pred), len(true))
    return {"precision": precision, "recall": recall, "f1": f1, "per_type": per_type}
