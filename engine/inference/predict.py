"""One answer per input for the head tasks, as the transformers pipelines give it:

    classify   text-classification   labels with scores, best first (softmax; for multi-label a sigmoid
                                     per label and the labels at or above the threshold; the value for
                                     regression)
    tag        token-classification  one tag per word and the entities they form
    fill_mask  masked-lm             the top tokens for each mask ([MASK] or <mask> in the text)

Inputs are batched (``batch_size``), go through the model's input pipeline (engine/data/inputs.py: its
chat template when it was trained with one) and are truncated to ``max_length`` tokens (default: the model's).
"""
from __future__ import annotations

import re

import numpy as np

import mlx.core as mx

from engine.data import prepare_tokenizer
from engine.data.inputs import tokenize_texts
from engine.errors import UsageError
from engine.inference.encode import max_length_of
from engine.metrics import get_entities

MASK_PLACEHOLDERS = ("[MASK]", "<mask>")
WORD = re.compile(r"\w+(?:[-'’]\w+)*|[^\w\s]")   # words and punctuation marks, as NER data splits them


def _chunks(items, size):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _forward(model, enc, token_types: bool = False) -> np.ndarray:
    """The model's outputs on a numpy encoding; ``token_types``: with its ``token_type_ids`` (a pair's
    segments, as transformers passes them to BERT)."""
    arrays = [enc["input_ids"], enc["attention_mask"]]
    if token_types and "token_type_ids" in enc:
        arrays.append(enc["token_type_ids"])
    out = model(*(mx.array(a.astype(np.int32)) for a in arrays))
    return np.array(out.astype(mx.float32))


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def classify(model, tokenizer, inputs, *, top_k=None, batch_size=32, max_length=None,
             threshold: float = 0.5) -> list[dict]:
    """Per input (a text or a (text, pair) tuple): {text, label, labels: [{label, score}] best first},
    or {text, score} for a regression model. A multi-label model (config ``problem_type``) scores
    each label with its own sigmoid and adds ``predicted``: the labels scoring ≥ ``threshold``, best
    first (possibly none; ``top_k`` shortens ``labels`` only)."""
    config = model.info.config
    names = [config["id2label"][k] for k in sorted(config["id2label"], key=int)]
    problem = config.get("problem_type")
    multi_label = problem == "multi_label_classification"
    max_length = max_length or max_length_of(model, tokenizer)
    results = []
    for chunk in _chunks(inputs, batch_size):
        pairs = isinstance(chunk[0], tuple)
        args = ([a for a, _ in chunk], [b for _, b in chunk]) if pairs else (list(chunk),)
        logits = _forward(model, tokenize_texts(tokenizer, *args, use_chat_template=model.info.use_chat_template,
                                                max_length=max_length, padding=True, return_tensors="np"),
                          token_types=pairs)
        for text, row in zip(chunk, logits):
            shown = {"text": list(text) if pairs else text}
            if problem == "regression":
                results.append({**shown, "score": float(row[0])})
                continue
            probs = 1 / (1 + np.exp(-row)) if multi_label else _softmax(row)
            order = np.argsort(-probs, kind="stable")
            labels = [{"label": names[i], "score": float(probs[i])} for i in order[:top_k or len(names)]]
            results.append({**shown, "label": labels[0]["label"], "labels": labels})
            if multi_label:
                results[-1]["predicted"] = [names[i] for i in order if probs[i] >= threshold]
    return results


def tag(model, tokenizer, inputs, *, batch_size=32, max_length=None) -> list[dict]:
    """Per word list: {words, tags, entities: [{type, start, end (word indices), text, score}]}, and
    ``truncated_words`` when the tokens ran out before the words did."""
    tok = prepare_tokenizer(tokenizer, "token-classification")
    id2label = model.info.config["id2label"]
    max_length = max_length or max_length_of(model, tokenizer)
    results = []
    for chunk in _chunks(inputs, batch_size):
        words_batch = [[str(w) for w in words] for words in chunk]
        enc = tok(words_batch, is_split_into_words=True, padding=True, truncation=True, max_length=max_length,
                  return_tensors="np")
        probs = _softmax(_forward(model, enc))  # (B, T, L)
        for i, words in enumerate(words_batch):
            tags, scores, seen = ["O"] * len(words), [0.0] * len(words), set()
            for t, w in enumerate(enc.word_ids(i)):
                if w is None or w in seen:  # the first sub-token of each word speaks for it
                    continue
                seen.add(w)
                best = int(np.argmax(probs[i, t]))
                tags[w], scores[w] = id2label[str(best)], float(probs[i, t, best])
            entities = [{"type": kind, "start": s, "end": e + 1, "text": " ".join(words[s:e + 1]),
                         "score": float(np.mean(scores[s:e + 1]))} for kind, s, e in get_entities(tags)]
            results.append({"words": words, "tags": tags, "entities": entities,
                            **({"truncated_words": len(words) - len(seen)} if len(seen) < len(words) else {})})
    return results


def tag_text(model, tokenizer, text: str, *, max_length=None) -> dict:
    """:func:`tag` of a plain text split into words and punctuation marks (so "Paris." tags "Paris"),
    with ``text``, the words' character ``spans`` and each entity's ``char_start``/``char_end``."""
    matches = list(WORD.finditer(text))
    if not matches:
        raise UsageError("There are no words to tag in the text.")
    result = tag(model, tokenizer, [[m.group(0) for m in matches]], max_length=max_length)[0]
    spans = [m.span() for m in matches]
    for entity in result["entities"]:
        entity["char_start"], entity["char_end"] = spans[entity["start"]][0], spans[entity["end"] - 1][1]
    return {**result, "text": text, "spans": spans}


def fill_mask(model, tokenizer, texts, *, top_k=None, batch_size=32, max_length=None) -> list[dict]:
    """Per text: {text, masks: [[{token, token_id, score, sequence}] top_k per mask]} (top 5 by default)."""
    mask = tokenizer.mask_token
    if mask is None:
        raise UsageError("This tokenizer has no mask token, so the model cannot fill masks.")
    texts = [_with_mask(t, mask) for t in texts]
    missing = [t for t in texts if mask not in t]
    if missing:
        raise UsageError(f"No mask in {missing[0]!r}: write {mask} (or [MASK] / <mask>) where a word should be predicted.")
    k = top_k or 5
    max_length = max_length or max_length_of(model, tokenizer)
    results = []
    for chunk in _chunks(texts, batch_size):
        enc = tokenize_texts(tokenizer, chunk, use_chat_template=model.info.use_chat_template, max_length=max_length,
                             padding=True, return_tensors="np")
        logits = _forward(model, enc)  # (B, T, V)
        for i, text in enumerate(chunk):
            ids = enc["input_ids"][i]
            masks = []
            for t in np.flatnonzero((ids == tokenizer.mask_token_id) & (enc["attention_mask"][i] > 0)):
                probs = _softmax(logits[i, t])
                filled = []
                for j in np.argsort(-probs, kind="stable")[:k]:
                    seq = ids[enc["attention_mask"][i] > 0].copy()
                    seq[t - int(np.argmax(enc["attention_mask"][i] > 0))] = j
                    filled.append({"token": tokenizer.decode([int(j)]).strip(), "token_id": int(j),
                                   "score": float(probs[j]),
                                   "sequence": tokenizer.decode(seq, skip_special_tokens=True)})
                masks.append(filled)
            results.append({"text": text, "masks": masks})
    return results


def _with_mask(text: str, mask: str) -> str:
    for placeholder in MASK_PLACEHOLDERS:
        text = text.replace(placeholder, mask)
    return text
