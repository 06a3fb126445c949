"""Tokenization: once per dataset through ``datasets.map`` (batched, cached), plus ``render`` for the GUI.
Texts become token ids through engine/data/inputs.py, the pipeline `raclate eval` / `predict` share.

Columns produced by :func:`tokenize_dataset` (the raw role columns stay, collators hash raw texts):
- sentence-similarity: ``<role>_input_ids`` per text role (text, text_pair, negative, negative_1, ...)
- text-classification / masked-lm: ``input_ids`` (a text pair is encoded jointly, as the model sees it),
  and for a pair ``token_type_ids`` when the tokenizer gives them (BERT: the second text is type 1)
- token-classification: ``input_ids``, ``word_ids`` (-1 = special token) and ``label_ids`` aligned to
  the first sub-token of each word (-100 elsewhere; ``label_all_tokens`` labels every sub-token)
"""
from __future__ import annotations

import copy
import json

import numpy as np

from engine.data.args import base_role, normalize_task, text_roles_of
from engine.data.inputs import tokenize_texts
from engine.data.labels import arrow_column
from engine.errors import DataError

IGNORE = -100


def needs_prefix_space(tokenizer) -> bool:
    """True for byte-level BPE tokenizers (RoBERTa, ModernBERT, GPT-2 style) built without add_prefix_space:
    they would tokenize each pre-split word as if it began a text, unlike the same word inside a sentence."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    pre = getattr(backend, "pre_tokenizer", None)
    if pre is None:
        return False
    return _bytelevel_off(json.loads(pre.__getstate__()))


def _bytelevel_off(state) -> bool:
    if isinstance(state, dict):
        if state.get("type") == "ByteLevel":
            return not state.get("add_prefix_space", False)
        return any(_bytelevel_off(v) for v in state.get("pretokenizers", []))
    return False


def _turn_on(state):
    if isinstance(state, dict):
        if state.get("type") == "ByteLevel":
            state["add_prefix_space"] = True
        for v in state.get("pretokenizers", []):
            _turn_on(v)


def prepare_tokenizer(tokenizer, task: str):
    """The tokenizer to use for ``task``: for token classification with a byte-level BPE tokenizer, a copy
    with ``add_prefix_space=True`` so word labels align (the original is left unchanged)."""
    if normalize_task(task) != "token-classification" or not needs_prefix_space(tokenizer):
        return tokenizer
    from tokenizers import Tokenizer
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    _turn_on(state["pre_tokenizer"])
    fixed = copy.deepcopy(tokenizer)
    fixed._tokenizer = Tokenizer.from_str(json.dumps(state))
    fixed.add_prefix_space = True
    fixed.init_kwargs["add_prefix_space"] = True   # kept when the tokenizer is saved with the model
    return fixed


def _prompt(prompts: dict | None, role: str) -> str:
    if not prompts:
        return ""
    for key in (role, base_role(role), "text_pair" if base_role(role) == "negative" else None):
        if key and key in prompts:
            return prompts[key] or ""
    return ""


def align_labels(word_ids, word_labels, label_all_tokens: bool = False) -> list[int]:
    """Word tags → one label per token: the first sub-token of a word gets the tag, the rest -100
    (or the tag too with ``label_all_tokens``); special tokens (word id None or -1) get -100."""
    out, previous = [], None
    for wid in word_ids:
        if wid is None or wid < 0:
            out.append(IGNORE)
        elif wid != previous or label_all_tokens:
            out.append(word_labels[wid] if wid < len(word_labels) else IGNORE)
        else:
            out.append(IGNORE)
        previous = wid if wid is not None and wid >= 0 else None
    return out


def encode_batch(batch: dict, tokenizer, task: str, max_length: int | None = None, *,
                 use_chat_template: bool = False, prompts: dict | None = None,
                 label_all_tokens: bool = False) -> dict:
    """Role-named columns of a batch → the token columns listed in the module docstring.
    ``max_length=None`` means no truncation (used to measure lengths)."""
    task = normalize_task(task)
    trunc = {"truncation": True, "max_length": max_length} if max_length else {"truncation": False}
    template = {"use_chat_template": use_chat_template, "max_length": max_length}

    if task == "token-classification":
        if use_chat_template:
            raise DataError("Chat templates do not apply to token classification (words are labelled one by one).",
                            code="no_chat_template", fix="Turn off use_chat_template.")
        enc = tokenizer([list(t or []) for t in batch["tokens"]], is_split_into_words=True, **trunc)
        word_ids = [[-1 if w is None else w for w in enc.word_ids(i)] for i in range(len(enc["input_ids"]))]
        out = {"input_ids": enc["input_ids"], "word_ids": word_ids}
        if "labels" in batch:
            out["label_ids"] = [align_labels(w, l or [], label_all_tokens) for w, l in zip(word_ids, batch["labels"])]
        return out
    if task == "sentence-similarity":   # stripped, as sentence-transformers does
        return {f"{role}_input_ids": tokenize_texts(tokenizer, batch[role], prompt=_prompt(prompts, role), strip=True,
                                                    **template)["input_ids"]
                for role in text_roles_of(batch.keys())}
    pairs = batch["text_pair"] if "text_pair" in batch and task == "text-classification" else None
    enc = tokenize_texts(tokenizer, batch["text"], pairs, prompt=_prompt(prompts, "text"),
                         pair_prompt=_prompt(prompts, "text_pair"), **template)
    out = {"input_ids": enc["input_ids"]}
    if pair_token_types(tokenizer, task, batch.keys(), use_chat_template):
        out["token_type_ids"] = enc["token_type_ids"]
    return out


def pair_token_types(tokenizer, task: str, columns, use_chat_template: bool = False) -> bool:
    """Whether rows get a ``token_type_ids`` column: text-classification pairs tokenized as two texts
    (a chat template joins them into one) by a tokenizer that gives segment ids, which transformers
    (pipeline, CrossEncoder) then passes to the model."""
    return (task == "text-classification" and "text_pair" in columns and not use_chat_template
            and "token_type_ids" in getattr(tokenizer, "model_input_names", ()))


def tokenize_dataset(ds, tokenizer, task: str, max_length: int, *, use_chat_template: bool = False,
                     prompts: dict | None = None, label_all_tokens: bool = False, batch_size: int = 1000,
                     num_proc: int | None = None, load_from_cache_file: bool | None = None):
    """Add token columns to ``ds`` once (``datasets.map``, batched; cached next to file-backed data).
    For token classification pass the tokenizer from :func:`prepare_tokenizer` (done here if not)."""
    import datasets
    task = normalize_task(task)
    tokenizer = prepare_tokenizer(tokenizer, task)
    features = ds.features.copy()
    ids = datasets.List(datasets.Value("int32"))
    if task == "sentence-similarity":
        features.update({f"{r}_input_ids": ids for r in text_roles_of(ds.column_names)})
    else:
        features["input_ids"] = ids
    if pair_token_types(tokenizer, task, ds.column_names, use_chat_template):
        features["token_type_ids"] = ids
    if task == "token-classification":
        features["word_ids"] = ids
        if "labels" in ds.column_names:
            features["label_ids"] = ids
    return ds.map(encode_batch, batched=True, batch_size=batch_size, num_proc=num_proc, features=features,
                  load_from_cache_file=load_from_cache_file, desc="Tokenizing",
                  fn_kwargs={"tokenizer": tokenizer, "task": task, "max_length": max_length,
                             "use_chat_template": use_chat_template, "prompts": prompts,
                             "label_all_tokens": label_all_tokens})


def _lengths_batch(batch: dict, tokenizer, task: str, use_chat_template: bool, prompts: dict | None) -> dict:
    enc = encode_batch(batch, tokenizer, task, None, use_chat_template=use_chat_template, prompts=prompts)
    roles = ["tokens"] if task == "token-classification" else text_roles_of(batch.keys())
    out = {}
    for key, seqs in enc.items():
        if key.endswith("input_ids"):
            role = key[:-len("_input_ids")] if key != "input_ids" else roles[0]
            out[f"{role}_length"] = [len(s) for s in seqs]
    return out


def token_lengths(ds, tokenizer, task: str, *, use_chat_template: bool = False, prompts: dict | None = None,
                  batch_size: int = 4096, progress=None) -> dict[str, np.ndarray]:
    """Untruncated token counts per row: {role: lengths}; classification/MLM report one "text" (a pair
    counts jointly), token classification "tokens". Streamed over the Arrow columns ``batch_size`` rows
    at a time (no cache file: the tokenizer is the cost); ``progress(done, total)`` after each chunk."""
    task = normalize_task(task)
    tokenizer = prepare_tokenizer(tokenizer, task)
    keep = ["tokens"] if task == "token-classification" else text_roles_of(ds.column_names)
    if not keep or not len(ds):
        return {}
    columns = {role: arrow_column(ds, role) for role in keep}
    parts: dict[str, list] = {}
    for start in range(0, len(ds), batch_size):
        batch = {role: values.slice(start, batch_size).to_pylist() for role, values in columns.items()}
        for name, lengths in _lengths_batch(batch, tokenizer, task, use_chat_template, prompts).items():
            parts.setdefault(name[:-len("_length")], []).append(np.asarray(lengths, dtype=np.int64))
        if progress is not None:
            progress(min(start + batch_size, len(ds)), len(ds))
    return {role: np.concatenate(chunks) for role, chunks in parts.items()}


def render(row: dict, tokenizer, task: str, max_length: int | None = None, *, use_chat_template: bool = False,
           prompts: dict | None = None, label_all_tokens: bool = False) -> dict:
    """What the model sees for one role-named row: {"inputs": [{role, text, tokens, input_ids, num_tokens,
    truncated}], "labels": aligned token labels (token classification)}. ``text`` decodes the ids, so
    prompts, chat template, special tokens and truncation all show."""
    task = normalize_task(task)
    tokenizer = prepare_tokenizer(tokenizer, task)
    batch = {k: [v] for k, v in row.items()}
    enc = encode_batch(batch, tokenizer, task, max_length, use_chat_template=use_chat_template, prompts=prompts,
                       label_all_tokens=label_all_tokens)
    full = encode_batch(batch, tokenizer, task, None, use_chat_template=use_chat_template, prompts=prompts)
    inputs = []
    for key, seqs in enc.items():
        if not key.endswith("input_ids"):
            continue
        ids = list(seqs[0])
        role = key[:-len("_input_ids")] if key != "input_ids" else ("tokens" if task == "token-classification" else "text")
        inputs.append({"role": role, "text": tokenizer.decode(ids, skip_special_tokens=False),
                       "tokens": tokenizer.convert_ids_to_tokens(ids), "input_ids": ids, "num_tokens": len(ids),
                       "truncated": len(full[key][0]) > len(ids)})
    out = {"inputs": inputs}
    if "label_ids" in enc:
        out["labels"] = list(enc["label_ids"][0])
        out["word_ids"] = list(enc["word_ids"][0])
    return out
