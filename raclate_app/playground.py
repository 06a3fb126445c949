"""What the Playground page runs on its model thread: one text in, the task's answer out. Qt-free;
each function takes a :class:`raclate_app.evaluation.Loaded` model and reuses the engine's
``raclate predict`` code (engine/commands/predict.py) and scores (engine/losses/scores.py)."""
from __future__ import annotations

import re

import numpy as np

import engine  # noqa: F401  (fast BLAS before mlx.core)
import mlx.core as mx

from raclate_app.evaluation import Loaded, score_matrix

WORD = re.compile(r"\w+(?:[-'’]\w+)*|[^\w\s]")   # words and punctuation marks, as NER data splits them
MAX_CORPUS = 2000


def _max_length(loaded: Loaded) -> int:
    from engine.embedding import max_length_of
    return max_length_of(loaded.model, loaded.tokenizer)


def classify(loaded: Loaded, text: str, pair: str | None = None) -> dict:
    """{"labels": [{label, score}, ...] best first} or, for regression, {"score": value}."""
    from engine.commands.predict import classify as predict_classify
    text = text.strip()
    if not text:
        raise ValueError("Type a text to classify.")
    item = (text, pair.strip()) if pair and pair.strip() else text
    return predict_classify(loaded.model, loaded.tokenizer, [item], max_length=_max_length(loaded))[0]


def fill_mask(loaded: Loaded, text: str, top_k: int = 10) -> dict:
    """{"text", "masks": [[{token, score, sequence}, ...] per mask]}."""
    from engine.commands.predict import fill_mask as predict_fill
    return predict_fill(loaded.model, loaded.tokenizer, [text.strip()], top_k=top_k, max_length=_max_length(loaded))[0]


def tag(loaded: Loaded, text: str) -> dict:
    """{"words", "spans" [(start, end) chars], "tags", "entities": [{type, start, end, text, score,
    char_start, char_end}]} — words split off punctuation so "Paris." tags "Paris"."""
    from engine.commands.predict import tag as predict_tag
    matches = list(WORD.finditer(text))
    if not matches:
        raise ValueError("Type a sentence to tag.")
    words = [m.group(0) for m in matches]
    result = predict_tag(loaded.model, loaded.tokenizer, [words], max_length=_max_length(loaded))[0]
    spans = [m.span() for m in matches]
    for entity in result["entities"]:
        entity["char_start"], entity["char_end"] = spans[entity["start"]][0], spans[entity["end"] - 1][1]
    return {**result, "text": text, "spans": spans}


def search(loaded: Loaded, query: str, corpus: list[str], top_k: int = 20, progress=None) -> dict:
    """Rank ``corpus`` for ``query``: {"results": [{rank, index, text, score}], "late": bool}."""
    query = query.strip()
    docs = [d for d in (str(c).strip() for c in corpus) if d][:MAX_CORPUS]
    if not query or not docs:
        raise ValueError("Type a query and give a corpus (one document per line).")
    kw = {"progress": progress} if progress else {}
    scores = score_matrix(loaded, [query], docs, **kw)[0]    # (C,)
    order = np.argsort(-scores, kind="stable")[:top_k]
    return {"query": query, "late": loaded.task_key == "late-interaction", "corpus": len(docs),
            "results": [{"rank": r + 1, "index": int(i), "text": docs[i], "score": float(scores[i])}
                        for r, i in enumerate(order)]}


def _token_vectors(loaded: Loaded, text: str, is_query: bool):
    """(tokens, vectors [T, D]) of the positions MaxSim scores (PyLate's score mask)."""
    from engine.models import pylate
    config = loaded.model.info.colbert
    special = pylate.token_ids(loaded.tokenizer, config)
    ids, attention, score = pylate.tokenize(loaded.tokenizer, [text], config, is_query=is_query, ids=special)
    out = loaded.model(mx.array(ids), mx.array(attention))   # (1, T, D), normalised per token
    vectors = np.array(out.astype(mx.float32))[0]
    keep = score[0] > 0
    names = {special["query"]: "[Q]", special["document"]: "[D]"}   # the prefixes as PyLate names them
    tokens = [names.get(i) or loaded.tokenizer.convert_ids_to_tokens(i).strip() for i in ids[0][keep].tolist()]
    return tokens, vectors[keep]


def maxsim_map(loaded: Loaded, query: str, document: str) -> dict:
    """The query × document token similarities behind a MaxSim score: ``sim`` [Tq, Td], each query
    token's best document token (``best``), its similarity (``row_max``: its contribution) and the
    total (their sum, the MaxSim score)."""
    if loaded.task_key != "late-interaction":
        raise ValueError("The MaxSim map is for late-interaction (ColBERT) models.")
    q_tokens, q = _token_vectors(loaded, query, True)
    d_tokens, d = _token_vectors(loaded, document, False)
    sim = q @ d.T                                           # (Tq, Td)
    best = sim.argmax(axis=1)                               # (Tq,)
    row_max = sim[np.arange(len(q_tokens)), best]           # (Tq,)
    return {"query_tokens": q_tokens, "doc_tokens": d_tokens, "sim": sim, "best": best, "row_max": row_max,
            "total": float(row_max.sum())}


def corpus_from_rows(rows: list[dict], columns: dict[str, str], limit: int = 200) -> list[str]:
    """Distinct documents (the text-pair column, then negatives) of some data rows, for search."""
    from engine.data.args import base_role
    names = [c for r, c in columns.items() if c and base_role(r) in ("text_pair", "negative")]
    if not names:
        names = [c for r, c in columns.items() if c and r == "text"]
    seen: dict[str, None] = {}
    for row in rows:
        for name in names:
            value = row.get(name)
            if isinstance(value, str) and value.strip():
                seen.setdefault(value.strip(), None)
        if len(seen) >= limit:
            break
    return list(seen)[:limit]


def data_corpus(record: dict, limit: int = 200) -> list[str]:
    """Documents from a run's data file (its first rows), mapped as the run mapped them."""
    from engine.data import preview
    from engine.data.mapping import resolve_columns
    from raclate_app.runs import role_mapping
    data = record.get("data") or {}
    if not data.get("data"):
        raise ValueError("This model has no run record naming its data: paste documents instead.")
    pv = preview(data["data"], max(limit * 2, 200), subset=data.get("subset"), split=data.get("split"))
    explicit = {r: c for r, c in role_mapping(data).items() if c in pv.columns}
    columns = resolve_columns(pv.columns, record.get("task") or "sentence-similarity", explicit)
    return corpus_from_rows(pv.rows, columns, limit)
