"""What the Playground page runs on its model thread: one text in, the task's answer out. Qt-free
adapters over the engine's inference library (engine/inference/): each takes a
:class:`raclate_app.evaluation.Loaded` model and says what to type when the input is empty."""
from __future__ import annotations

from engine import inference
from engine.data import preview
from engine.data.mapping import resolve_columns
from raclate_app.evaluation import Loaded
from raclate_app.runs import role_mapping

MAX_CORPUS = 2000


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


def search(loaded: Loaded, query: str, corpus: list[str], top_k: int = 20, progress=None) -> dict:
    """Rank ``corpus`` for ``query``: {"results": [{rank, index, text, score}], "late": bool}."""
    query = query.strip()
    docs = [d for d in (str(c).strip() for c in corpus) if d][:MAX_CORPUS]
    if not query or not docs:
        raise ValueError("Type a query and give a corpus (one document per line).")
    (results,) = inference.search(loaded.model, loaded.tokenizer, [query], docs, top_k, progress)
    return {"query": query, "late": loaded.task_key == "late-interaction", "corpus": len(docs), "results": results}


def maxsim_map(loaded: Loaded, query: str, document: str) -> dict:
    """The token similarities behind a late-interaction model's MaxSim score (engine.inference.maxsim_map)."""
    return inference.maxsim_map(loaded.model, loaded.tokenizer, query, document)


def data_corpus(record: dict, limit: int = 200) -> list[str]:
    """Documents from a run's data file (its first rows), mapped as the run mapped them."""
    data = record.get("data") or {}
    if not data.get("data"):
        raise ValueError("This model has no run record naming its data: paste documents instead.")
    pv = preview(data["data"], max(limit * 2, 200), subset=data.get("subset"), split=data.get("split"))
    explicit = {r: c for r, c in role_mapping(data).items() if c in pv.columns}
    columns = resolve_columns(pv.columns, record.get("task") or "sentence-similarity", explicit)
    return inference.corpus_from_rows(pv.rows, columns, limit)
