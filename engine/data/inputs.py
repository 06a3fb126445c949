"""One input pipeline: raw texts → what a model reads, the same in training (engine/data/tokenize.py),
`raclate eval` / `raclate predict` and the app (engine/inference), and the export self-check.

A text goes through, in order:
1. its prompt, chosen as sentence-transformers chooses it (:func:`pick_prompt`): a query takes the
   model's "query" prompt, a document its "document" / "passage" / "corpus" prompt (``encode_query`` /
   ``encode_document``), any other text the ``default_prompt_name``'s. Training reads the anchor as a
   query, positives and negatives as documents (:func:`role_prompts`). Embedding models only.
2. stripped, as sentence-transformers' Transformer module strips (embedding models);
3. the tokenizer's chat template, when the run used one; it writes its own special tokens;
4. tokenized to ``max_length`` on the tokenizer's ``truncation_side``; a pair as the tokenizer joins
   two texts (under a chat template: one user message, "text\\npair") (:func:`tokenize_texts`).

The settings travel on ``model.info``: ``prompts`` / ``default_prompt_name`` (the model's
config_sentence_transformers.json, with the run's --prompt / --query-prompt / --document-prompt
merged in), ``use_chat_template`` and ``max_seq_length``. :func:`adopt` sets them: at the start of
training from the run's settings (so the saved folder holds them), and when a trained folder is
loaded from its run record (:func:`recorded`).
"""
from __future__ import annotations

from engine.errors import DataError, UsageError
from engine.tasks import EMBEDDING_TASKS

DOCUMENT_PROMPTS = ("document", "passage", "corpus")   # sentence-transformers' encode_document order


def user_prompts(prompts: dict | None = None, query_prompt: str | None = None,
                 document_prompt: str | None = None) -> dict[str, str]:
    """--prompt NAME=TEXT (``prompts``), --query-prompt and --document-prompt → named prompts."""
    named = dict(prompts or {})
    if query_prompt is not None:
        named["query"] = query_prompt
    if document_prompt is not None:
        named["document"] = document_prompt
    return named


def check_user_prompts(task: str, late_interaction: bool, prompts: dict) -> None:
    """Refuse prompts where nothing would apply them (before any work)."""
    if not prompts:
        return
    bad = [k for k, v in prompts.items() if not isinstance(k, str) or not k or not isinstance(v, str)]
    if bad:
        raise UsageError(f"Prompts are NAME=TEXT pairs of strings; {bad[0]!r} is not.")
    if task not in EMBEDDING_TASKS:
        raise UsageError(f"Prompts are for embedding models (sentence-similarity); a {task} model has none. "
                         "Leave out --prompt / --query-prompt / --document-prompt.")
    if late_interaction:
        raise UsageError("Prompts are not applied to late-interaction models (PyLate applies them only when asked "
                         "by name). Leave out --prompt / --query-prompt / --document-prompt.")


def pick_prompt(info, *, is_query: bool | None = None, prompt_name: str | None = None,
                prompt: str | None = None) -> str:
    """The text sentence-transformers puts before a text of a model with ``info`` (its ``prompts`` and
    ``default_prompt_name``): ``prompt`` as given; else the prompt named ``prompt_name``; else, for a
    query (``is_query``) the "query" prompt, for a document (``is_query=False``) the first of
    document / passage / corpus; else the default prompt; else none."""
    if prompt is not None:
        return prompt
    prompts = info.prompts or {}
    if prompt_name is None and is_query is not None:
        prompt_name = next((n for n in (("query",) if is_query else DOCUMENT_PROMPTS) if n in prompts), None)
    if prompt_name is not None:
        if prompt_name not in prompts:
            raise UsageError(f"Prompt {prompt_name!r} is not defined by this model "
                             f"(prompts: {', '.join(prompts) or 'none'}).")
        return prompts[prompt_name] or ""
    default = info.default_prompt_name
    return (prompts.get(default) or "") if default else ""


def role_prompts(info, task: str) -> dict[str, str]:
    """{role: prompt} of a data row for an embedding model: the query prompt for the anchor (text),
    the document prompt for positives and negatives; nothing for other tasks."""
    if task not in EMBEDDING_TASKS:
        return {}
    query, document = pick_prompt(info, is_query=True), pick_prompt(info, is_query=False)
    return {role: p for role, p in (("text", query), ("text_pair", document), ("negative", document)) if p}


def format_text(text, tokenizer, *, prompt: str = "", use_chat_template: bool = False, strip: bool = False) -> str:
    """The string that is tokenized for one text: prompt prefix, stripped (``strip``), then the
    tokenizer's chat template as one user message."""
    text = prompt + ("" if text is None else str(text))
    if strip:
        text = text.strip()
    if not use_chat_template:
        return text
    if not getattr(tokenizer, "chat_template", None):
        raise DataError(f"The tokenizer {getattr(tokenizer, 'name_or_path', '') or ''!r} has no chat template.",
                        code="no_chat_template",
                        fix="Turn off use_chat_template, or pick a chat/instruct model whose tokenizer has one.")
    return tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                         add_generation_prompt=False)


def tokenize_texts(tokenizer, texts, pairs=None, *, prompt: str = "", pair_prompt: str = "",
                   use_chat_template: bool = False, strip: bool = False, max_length: int | None = None, **kw):
    """The tokenizer's encoding of ``texts`` (and their ``pairs``) as the model reads them;
    ``max_length=None`` means no truncation; ``kw`` go to the tokenizer (padding, return_tensors)."""
    trunc = {"truncation": True, "max_length": max_length} if max_length else {"truncation": False}

    def fmt(values, p):
        return [format_text(v, tokenizer, prompt=p, use_chat_template=use_chat_template, strip=strip) for v in values]

    if pairs is not None and use_chat_template:   # one message: the template has no slot for a second text
        joined = [f"{a}\n{b}" for a, b in zip(texts, pairs)]
        return tokenizer(fmt(joined, prompt), add_special_tokens=False, **trunc, **kw)
    if pairs is not None:
        return tokenizer(fmt(texts, prompt), fmt(pairs, pair_prompt), **trunc, **kw)
    # a chat template writes its own special tokens
    return tokenizer(fmt(texts, prompt), add_special_tokens=not use_chat_template, **trunc, **kw)


def adopt(info, *, prompts: dict | None = None, use_chat_template: bool | None = None,
          max_length: int | None = None) -> None:
    """Make a model's ``info`` carry a run's inputs, so that saving writes them and inference applies
    them: ``prompts`` merged over the model's named prompts (config_sentence_transformers.json), the
    chat-template switch, and the max length (sentence-transformers' max_seq_length; a late-interaction
    model keeps PyLate's query and document lengths)."""
    if prompts:
        check_user_prompts(info.task, info.late_interaction, prompts)
        info.prompts = {**(info.prompts or {}), **prompts}
    if use_chat_template is not None:
        info.use_chat_template = bool(use_chat_template)
    if max_length and not info.late_interaction:
        info.max_seq_length = int(max_length)


def recorded(record: dict | None) -> dict:
    """The inputs a run trained with, from its run record (raclate_run.json), as :func:`adopt` takes them;
    {} for a folder that no run wrote."""
    training, data = (record or {}).get("training") or {}, (record or {}).get("data") or {}
    if not training:
        return {}
    return {"prompts": user_prompts(training.get("prompts"), training.get("query_prompt"),
                                    training.get("document_prompt")),
            "use_chat_template": bool(data.get("use_chat_template")), "max_length": training.get("max_length")}
