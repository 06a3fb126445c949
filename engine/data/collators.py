"""Collators: rows of a tokenized dataset (dicts) → one MLX batch in the format of docs/ARCHITECTURE.md.

Every sequence is padded to the longest in the batch rounded up to ``pad_to_multiple_of`` (so a
compiled step sees few shapes), on the tokenizer's ``padding_side``, with its ``pad_token_id``.
"""
from __future__ import annotations

import zlib

import numpy as np

import mlx.core as mx

from engine.data.args import text_roles_of
from engine.data.tokenize import IGNORE, align_labels


def text_hash(text) -> int:
    """Stable 31-bit hash of a raw text (in-batch losses use it to skip duplicates of the positive)."""
    return zlib.crc32(("" if text is None else str(text)).encode("utf-8")) & 0x7FFFFFFF


def _ids_hash(ids) -> int:
    return zlib.crc32(np.asarray(ids, dtype=np.int32).tobytes()) & 0x7FFFFFFF


def pad(seqs, pad_id: int, multiple: int = 8, side: str = "right", fill=None) -> tuple[np.ndarray, np.ndarray]:
    """Lists of ids → (ids [B, T], mask [B, T]) int32, T = longest rounded up to ``multiple``.
    ``fill`` pads with another value (labels: -100) while the mask still marks real positions."""
    longest = max((len(s) for s in seqs), default=0)
    width = max(multiple, -(-longest // multiple) * multiple) if multiple else max(longest, 1)
    ids = np.full((len(seqs), width), pad_id if fill is None else fill, dtype=np.int32)
    mask = np.zeros((len(seqs), width), dtype=np.int32)
    for i, s in enumerate(seqs):
        n = len(s)
        if side == "left":
            ids[i, width - n:], mask[i, width - n:] = s, 1
        else:
            ids[i, :n], mask[i, :n] = s, 1
    return ids, mask


def padding_of(tokenizer) -> tuple[int, str]:
    """(pad id, side) a tokenizer pads with; decoder tokenizers without a pad token pad with their end
    token (the mask hides it anyway)."""
    if tokenizer is None:
        return 0, "right"
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return (0 if pad_id is None else int(pad_id)), getattr(tokenizer, "padding_side", None) or "right"


class _Padding:
    def __init__(self, tokenizer=None, pad_to_multiple_of: int = 8, pad_token_id: int | None = None,
                 padding_side: str | None = None):
        own_id, own_side = padding_of(tokenizer)
        self.pad_token_id = own_id if pad_token_id is None else int(pad_token_id)
        self.padding_side = padding_side or own_side
        self.pad_to_multiple_of = pad_to_multiple_of

    def _pad(self, seqs, fill=None):
        return pad(seqs, self.pad_token_id, self.pad_to_multiple_of, self.padding_side, fill)


class SentenceSimilarityCollator(_Padding):
    """Pairs, triplets (+ more negatives) and scored pairs → {"inputs": [...], "hashes": [...], "labels"?}.

    Reads ``<role>_input_ids`` and the raw ``<role>`` text of each text role, in the order anchor
    (text), positive (text_pair), negative(s); a numeric ``label`` makes it scored pairs (float32).
    """

    def __init__(self, tokenizer=None, *, roles: list[str] | None = None, **padding):
        super().__init__(tokenizer, **padding)
        self.roles = roles

    def __call__(self, rows: list[dict]) -> dict:
        roles = self.roles or text_roles_of(k[:-len("_input_ids")] for k in rows[0] if k.endswith("_input_ids"))
        inputs, hashes = [], []
        for role in roles:
            ids, mask = self._pad([r[f"{role}_input_ids"] for r in rows])
            inputs.append({"input_ids": mx.array(ids), "attention_mask": mx.array(mask)})
            # raw text when the row kept it; else its ids (texts with equal ids are equal for the model)
            hashes.append(mx.array(np.array([text_hash(r[role]) if role in r else _ids_hash(r[f"{role}_input_ids"])
                                             for r in rows], dtype=np.int32)))
        batch = {"inputs": inputs, "hashes": hashes}
        if rows[0].get("label") is not None:
            batch["labels"] = mx.array(np.array([r["label"] for r in rows], dtype=np.float32))
        return batch


class ClassificationCollator(_Padding):
    """{"input_ids", "attention_mask", "labels", "token_type_ids" (pairs whose tokenizer gives them)}:
    labels int32 [B], float32 [B] for regression, or float32 [B, C] multi-hot rows for multi-label
    (engine/data/labels.py encodes a row's labels as its multi-hot list)."""

    def __init__(self, tokenizer=None, *, is_regression: bool = False, **padding):
        super().__init__(tokenizer, **padding)
        self.is_regression = is_regression

    def __call__(self, rows: list[dict]) -> dict:
        ids, mask = self._pad([r["input_ids"] for r in rows])
        multi_label = isinstance(rows[0]["label"], list)
        dtype = np.float32 if self.is_regression or multi_label else np.int32
        batch = {"input_ids": mx.array(ids), "attention_mask": mx.array(mask),
                 "labels": mx.array(np.array([r["label"] for r in rows], dtype=dtype))}
        if "token_type_ids" in rows[0]:   # a pair's segments (BERT); padding is type 0, as transformers pads
            batch["token_type_ids"] = mx.array(self._pad([r["token_type_ids"] for r in rows], fill=0)[0])
        return batch


class MaskedLMCollator(_Padding):
    """Masked LM: ``mlm_probability`` of the real, non-special tokens are picked; of those 80% become
    [MASK], 10% a random non-special token, 10% stay; labels hold the original id there, -100 elsewhere.

    The mask is drawn from ``numpy.random.default_rng([seed, epoch, position])`` where position counts
    batches in the epoch: a new mask each epoch, and the same one again after resuming.
    """

    def __init__(self, tokenizer, *, mlm_probability: float = 0.15, mask_replace_prob: float = 0.8,
                 random_replace_prob: float = 0.1, seed: int = 0, **padding):
        super().__init__(tokenizer, **padding)
        if tokenizer.mask_token_id is None:
            raise ValueError("Masked LM needs a tokenizer with a mask token (e.g. [MASK] or <mask>).")
        self.mask_token_id = int(tokenizer.mask_token_id)
        self.special_ids = np.array(sorted(set(tokenizer.all_special_ids) | {self.pad_token_id}), dtype=np.int32)
        self.random_ids = np.setdiff1d(np.arange(len(tokenizer), dtype=np.int32), self.special_ids)
        self.mlm_probability, self.seed = mlm_probability, seed
        self.mask_replace_prob, self.random_replace_prob = mask_replace_prob, random_replace_prob
        self.epoch, self.position = 0, 0

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.position = epoch, 0

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self.seed = int(state.get("seed", self.seed))

    def mask(self, ids: np.ndarray, attention: np.ndarray, rng: np.random.Generator):
        """(masked ids, labels) for padded ids [B, T]; a pure function of its inputs and the generator."""
        maskable = (attention == 1) & ~np.isin(ids, self.special_ids)
        picked = maskable & (rng.random(ids.shape) < self.mlm_probability)
        labels = np.where(picked, ids, IGNORE).astype(np.int32)
        roll = rng.random(ids.shape)
        to_mask = picked & (roll < self.mask_replace_prob)
        to_random = picked & (roll >= self.mask_replace_prob) & (roll < self.mask_replace_prob + self.random_replace_prob)
        out = ids.copy()
        out[to_mask] = self.mask_token_id
        out[to_random] = self.random_ids[rng.integers(0, len(self.random_ids), size=int(to_random.sum()))]
        return out, labels

    def __call__(self, rows: list[dict], position: int | None = None) -> dict:
        position = self.position if position is None else position
        ids, attention = self._pad([r["input_ids"] for r in rows])
        masked, labels = self.mask(ids, attention, np.random.default_rng([self.seed, self.epoch, position]))
        self.position = position + 1
        return {"input_ids": mx.array(masked), "attention_mask": mx.array(attention), "labels": mx.array(labels)}


class TokenClassificationCollator(_Padding):
    """{"input_ids", "attention_mask", "labels" int32 [B, T]}: each word's tag on its first sub-token,
    -100 on the other sub-tokens (or the tag on all with ``label_all_tokens``), specials and padding."""

    def __init__(self, tokenizer=None, *, label_all_tokens: bool = False, **padding):
        super().__init__(tokenizer, **padding)
        self.label_all_tokens = label_all_tokens

    def _labels(self, row):
        if "word_ids" in row and row.get("labels") is not None:
            return align_labels(row["word_ids"], row["labels"], self.label_all_tokens)
        return row["label_ids"]

    def __call__(self, rows: list[dict]) -> dict:
        ids, mask = self._pad([r["input_ids"] for r in rows])
        labels, _ = self._pad([self._labels(r) for r in rows], fill=IGNORE)
        return {"input_ids": mx.array(ids), "attention_mask": mx.array(mask), "labels": mx.array(labels)}


COLLATORS = {
    "sentence-similarity": SentenceSimilarityCollator,
    "text-classification": ClassificationCollator,
    "masked-lm": MaskedLMCollator,
    "token-classification": TokenClassificationCollator,
}


def collator_for(task: str, tokenizer, **kwargs):
    """The collator class of ``task`` built with ``kwargs`` (e.g. is_regression, seed, label_all_tokens)."""
    from engine.data.args import normalize_task
    return COLLATORS[normalize_task(task)](tokenizer, **kwargs)
