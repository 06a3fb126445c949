"""What the Playground page runs on its model thread: one text in, the task's answer out. Qt-free
adapters over the engine's inference library (engine/inference/): each takes a
:class:`raclate_app.evaluation.Loaded` model and says what to type when the input is empty."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from engine import inference
from engine.data import preview
from engine.data.args import first_dataset
from engine.data.mapping import resolve_columns
from raclate_app.evaluation import AtDim, Loaded
from raclate_app.runs import role_mapping

MAX_CORPUS = 100_000   # documents one search reads (encoded once, then searched by blocked products)


def classify(loaded: Loaded, text: str, pair: str | None = None) -> dict:
    """{"labels": [{label, score}, ...] best first} or, for regression, {"score": value}."""
    text = text.strip()
    if not text:
        raise ValueError("Type a text to classify.")
    item = (text, pair.strip()) if pair and pair.strip() else text
    return inference.classify(loaded.model, loaded.tokenizer, [item])[0]


def fill_mask(loaded: Loaded, text: str, top_k: int = 10) -> dict:
    """{"text", "masks": [[{token, score, sequence}, ...] per mask]}."""
    return inference.fill_mask(loaded.model, loaded.tokenizer, [text.strip()], top_k=top_k)[0]


def tag(loaded: Loaded, text: str) -> dict:
    """{"words", "spans" [(start, end) chars], "tags", "entities": [{type, start, end, text, score,
    char_start, char_end}]} — words split off punctuation so "Paris." tags "Paris"."""
    if not text.strip():
        raise ValueError("Type a sentence to tag.")
    return inference.tag_text(loaded.model, loaded.tokenizer, text)


def search(loaded: Loaded, query: str, corpus: list[str], top_k: int = 20, progress=None, index=None,
           dim: int | None = None) -> dict:
    """Rank ``corpus`` for ``query``: {"results": [{rank, index, text, score}], "late": bool, "index", "dim"}.
    ``index``: the last answer's (engine.inference.CorpusIndex), reused when it holds these documents
    encoded by this model, so a new query does not encode the corpus again. ``dim``: a dense model's
    vectors cut to their first ``dim`` values and re-normalised (Matryoshka); the index keeps the full
    vectors, so another size needs no encoding either."""
    query = query.strip()
    docs = [d for d in (str(c).strip() for c in corpus) if d][:MAX_CORPUS]
    if not query or not docs:
        raise ValueError("Type a query and give a corpus (one document per line).")
    if index is None or index.model is not loaded.model or index.texts != docs:
        index = inference.build_index(loaded.model, loaded.tokenizer, docs, progress)
    model, searched = loaded.model, index
    if dim and index.vectors is not None:
        model = AtDim(loaded.model, dim)
        cut = index.vectors[:, :dim]                                                  # (C, dim)
        searched = inference.CorpusIndex(index.texts, model,
                                         vectors=cut / np.maximum(np.linalg.norm(cut, axis=1, keepdims=True), 1e-8))
    (results,) = inference.search_index(model, loaded.tokenizer, searched, [query], top_k)
    return {"query": query, "late": loaded.task_key == "late-interaction", "corpus": len(docs), "results": results,
            "index": index, "dim": dim if model is not loaded.model else None}


def maxsim_map(loaded: Loaded, query: str, document: str) -> dict:
    """The token similarities behind a late-interaction model's MaxSim score (engine.inference.maxsim_map)."""
    return inference.maxsim_map(loaded.model, loaded.tokenizer, query, document)


def data_corpus(record: dict, limit: int = 200) -> list[str]:
    """Documents from a run's data file (its first rows; several datasets: the first's), mapped as the run
    mapped them."""
    data = first_dataset(record.get("data") or {})
    if not data.get("data"):
        raise ValueError("This model has no run record naming its data: paste documents instead.")
    pv = preview(data["data"], max(limit * 2, 200), subset=data.get("subset"), split=data.get("split"))
    explicit = {r: c for r, c in role_mapping(data).items() if c in pv.columns}
    columns = resolve_columns(pv.columns, record.get("task") or "sentence-similarity", explicit)
    return inference.corpus_from_rows(pv.rows, columns, limit)


def pair_input(record: dict) -> bool | None:
    """Whether a run's classifier reads a second text: its data's text_pair role, mapped or guessed
    from the data file's columns as training guessed it; None when unknown (no record, file gone)."""
    data = record.get("data") or {}
    explicit = role_mapping(data)
    if "text_pair" in explicit:
        return True
    if "text_pair" in (data.get("columns") or {}):   # left unmapped on purpose
        return False
    if not data.get("data") or not Path(data["data"]).exists():   # a Hub dataset: not fetched for this
        return None
    try:
        pv = preview(data["data"], 1, subset=data.get("subset"), split=data.get("split"))
        known = {r: c for r, c in explicit.items() if c in pv.columns}
        return "text_pair" in resolve_columns(pv.columns, record.get("task") or "text-classification", known)
    except (OSError, ValueError):   # an unreadable file or a mapping it no longer fits
        return None
