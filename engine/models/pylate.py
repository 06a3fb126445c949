"""PyLate (ColBERT) conventions for late-interaction models, so that a saved folder gives the same
token vectors in ``pylate.models.ColBERT(path)`` as here (checked against pylate 1.6.0):

- the prefixes "[Q] " / "[D] " are added to the tokenizer as tokens (the embedding table grows by
  two rows) and their ids are inserted right after the first token ([CLS]); they are never typed
  into the text;
- texts are stripped (sentence-transformers' ``Transformer.tokenize``) and truncated to
  ``length - 1`` tokens before the prefix goes in;
- query expansion: queries are padded to ``query_length`` with [MASK] (EOS when the tokenizer has
  no mask token); those pads get attention 0 (1 with ``attend_to_expansion_tokens``) but every
  query position is scored;
- documents score their real tokens minus the skiplist (punctuation); skipped tokens are still
  attended to;
- token vectors are L2-normalised after the Dense projection (``LateInteractionModel``).

``tokenize`` returns ``score_mask`` next to ``attention_mask``: the model reads the second, MaxSim
the first (the loss and the evaluator take ``score_mask`` when a batch has it).
"""
from __future__ import annotations

import string
from pathlib import Path

import numpy as np

import mlx.core as mx
import mlx.nn as nn

from engine.errors import ModelError
from engine.models.loading import read_json

DEFAULTS = {"query_prefix": "[Q] ", "document_prefix": "[D] ", "query_length": 32, "document_length": 180,
            "attend_to_expansion_tokens": False, "skiplist_words": list(string.punctuation),
            "do_query_expansion": True}
DENSE_TYPE = "pylate.models.Dense.Dense"


def is_pylate_dir(root: Path) -> bool:
    """A folder PyLate saved (or we saved in its layout): ColBERT keys or a PyLate Dense module."""
    cfg_file, modules_file = Path(root) / "config_sentence_transformers.json", Path(root) / "modules.json"
    if cfg_file.exists():
        cfg = read_json(cfg_file)
        if "query_prefix" in cfg or cfg.get("similarity_fn_name") == "MaxSim" or cfg.get("model_type") == "ColBERT":
            return True
    return modules_file.exists() and any(m.get("type") == DENSE_TYPE for m in read_json(modules_file))


def read_colbert_config(root: Path | None) -> dict:
    """PyLate's settings from config_sentence_transformers.json, PyLate's defaults for the rest."""
    config = {k: (list(v) if isinstance(v, list) else v) for k, v in DEFAULTS.items()}
    if root is not None and (Path(root) / "config_sentence_transformers.json").exists():
        saved = read_json(Path(root) / "config_sentence_transformers.json")
        config.update({k: saved[k] for k in DEFAULTS if saved.get(k) is not None})
    if not config["do_query_expansion"]:
        config["attend_to_expansion_tokens"] = False  # as PyLate: nothing to attend to
    return config


def prepare(model, tokenizer, config: dict):
    """Make ``tokenizer`` and the embedding table follow PyLate: prefix tokens added (new rows start
    at the mean embedding), right padding (query expansion pads after the text). Returns the tokenizer."""
    tokenizer.padding_side = "right"
    prefixes = [p for p in (config["query_prefix"], config["document_prefix"]) if p]
    if prefixes:
        tokenizer.add_tokens(prefixes)  # a no-op for a tokenizer PyLate saved
    info = model.info
    rows = int(info.config.get("vocab_size") or 0)
    if len(tokenizer) > rows:
        table = _word_embedding(model.backbone, rows)
        old = table.weight
        mean = mx.mean(old.astype(mx.float32), axis=0, keepdims=True).astype(old.dtype)
        table.weight = mx.concatenate([old, mx.repeat(mean, len(tokenizer) - rows, axis=0)], axis=0)
        _set_vocab_size(info.config, len(tokenizer))
        info.new_weights = list(info.new_weights) + [f"embedding rows {rows}..{len(tokenizer) - 1} (prefix tokens)"]
        info.added_rows = len(tokenizer) - rows
    info.colbert = dict(config)
    return tokenizer


def _set_vocab_size(config: dict, rows: int) -> None:
    """The grown table's size in the config: at the top and in each sub-config that names one
    (T5Gemma's ``encoder``, which transformers and this engine read, and its ``decoder``)."""
    config["vocab_size"] = rows
    for key, sub in config.items():
        if isinstance(sub, dict) and "vocab_size" in sub:
            config[key] = dict(sub, vocab_size=rows)


def _word_embedding(backbone, rows: int) -> nn.Embedding:
    for _, module in backbone.named_modules():
        if isinstance(module, nn.Embedding) and module.weight.shape[0] == rows:
            return module
    raise ModelError(f"Could not find the token embedding table ({rows} rows) to add the ColBERT prefix tokens to.")


def token_ids(tokenizer, config: dict) -> dict:
    """Ids PyLate derives from the tokenizer: prefixes, the query-expansion pad, the skiplist."""
    def tid(token):
        return tokenizer.convert_tokens_to_ids(token) if token else None
    pad = tokenizer.mask_token_id
    if pad is None:
        pad = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.pad_token_id
    if pad is None:
        raise ModelError("Late interaction needs a [MASK], EOS or pad token for query expansion; this tokenizer has none.")
    skip = [tid(w) for w in config["skiplist_words"]]
    return {"query": tid(config["query_prefix"]), "document": tid(config["document_prefix"]), "pad": int(pad),
            "skiplist": np.array(sorted({int(i) for i in skip if i is not None}), dtype=np.int64)}


def tokenize(tokenizer, texts, config: dict, *, is_query: bool, max_length: int | None = None,
             pad_to_multiple_of: int | None = None, ids: dict | None = None):
    """Texts → (input_ids, attention_mask, score_mask), int32 numpy [B, T], as ``ColBERT.tokenize``
    plus the scoring mask of ``ColBERT.encode``. ``max_length`` caps the document length (training)."""
    ids = ids or token_ids(tokenizer, config)
    prefix = ids["query" if is_query else "document"]
    length = config["query_length"] if is_query else config["document_length"]
    if max_length and not is_query:
        length = min(length, max_length)
    budget = length - 1 if prefix is not None else length
    seqs = tokenizer([str(t).strip() for t in texts], truncation=True, max_length=budget)["input_ids"]
    if prefix is not None:
        seqs = [s[:1] + [prefix] + s[1:] for s in seqs]
    expand = is_query and config["do_query_expansion"]
    width = length if expand else max(len(s) for s in seqs)
    if pad_to_multiple_of and not expand:
        width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
    input_ids = np.full((len(seqs), width), ids["pad"], dtype=np.int32)
    attention = np.zeros((len(seqs), width), dtype=np.int32)
    for i, s in enumerate(seqs):
        input_ids[i, :len(s)], attention[i, :len(s)] = s, 1
    if expand:
        score = np.ones_like(attention)
        if config["attend_to_expansion_tokens"]:
            attention = np.ones_like(attention)
    elif is_query:
        score = attention.copy()
    else:
        score = attention * ~np.isin(input_ids, ids["skiplist"])
    return input_ids, attention, score.astype(np.int32)


class ColBERTCollator:
    """Sentence-similarity rows → the batch of docs/ARCHITECTURE.md for a late-interaction model:
    the anchor (text) is tokenized as a query, every other text role as a document, from the raw
    texts, each input with ``score_mask`` next to ``attention_mask``."""

    def __init__(self, tokenizer, config: dict, *, max_length: int | None = None, pad_to_multiple_of: int = 8):
        self.tokenizer, self.config = tokenizer, config
        self.max_length, self.pad_to_multiple_of = max_length, pad_to_multiple_of
        self.ids = token_ids(tokenizer, config)

    def __call__(self, rows: list[dict]) -> dict:
        # Here, not at the top: engine.data loads pyarrow, which the model loader does not need.
        from engine.data.args import text_roles_of
        from engine.data.collators import text_hash
        roles = text_roles_of(k[:-len("_input_ids")] for k in rows[0] if k.endswith("_input_ids")) \
            or text_roles_of(rows[0].keys())
        inputs, hashes = [], []
        for role in roles:
            texts = ["" if r.get(role) is None else str(r[role]) for r in rows]
            ids, attention, score = tokenize(self.tokenizer, texts, self.config, is_query=role == "text",
                                             max_length=self.max_length, pad_to_multiple_of=self.pad_to_multiple_of,
                                             ids=self.ids)
            inputs.append({"input_ids": mx.array(ids), "attention_mask": mx.array(attention),
                           "score_mask": mx.array(score)})
            hashes.append(mx.array(np.array([text_hash(t) for t in texts], dtype=np.int32)))
        batch = {"inputs": inputs, "hashes": hashes}
        if rows[0].get("label") is not None:
            batch["labels"] = mx.array(np.array([r["label"] for r in rows], dtype=np.float32))
        return batch

