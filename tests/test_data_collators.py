"""Collators: batch formats of docs/ARCHITECTURE.md, padding, MLM masking statistics (engine/data/collators.py)."""
import zlib

import numpy as np
import pytest
from transformers import AutoTokenizer

import mlx.core as mx
from engine.data.collators import (ClassificationCollator, MaskedLMCollator, SentenceSimilarityCollator,
                                   TokenClassificationCollator, collator_for, pad)
from engine.defaults import default_model_dir


@pytest.fixture(scope="module")
def tok():
    return AutoTokenizer.from_pretrained(str(default_model_dir()))


def np_(a):
    return np.array(a)


def test_pad_rounds_up_to_multiple_and_respects_side():
    ids, mask = pad([[1, 2, 3], [4]], pad_id=9, multiple=8)
    assert ids.shape == (2, 8) and ids.dtype == np.int32 and mask.dtype == np.int32
    assert ids[1].tolist() == [4] + [9] * 7 and mask[0].tolist() == [1, 1, 1] + [0] * 5
    ids, mask = pad([[1] * 9, [4]], pad_id=0, multiple=8, side="left")
    assert ids.shape == (2, 16) and ids[1, -1] == 4 and mask[1].sum() == 1 and mask[1, -1] == 1
    assert pad([[1, 2]], 0, multiple=1)[0].shape == (1, 2)


def test_sentence_similarity_pairs_triplets_and_scored(tok):
    rows = [{"text": f"q{i}", "text_pair": f"p{i}", "negative": "n", "text_input_ids": [101] + [5] * i + [102],
             "text_pair_input_ids": [101, 7, 102], "negative_input_ids": [101, 102]} for i in range(1, 4)]
    batch = SentenceSimilarityCollator(tok)(rows)
    assert set(batch) == {"inputs", "hashes"} and len(batch["inputs"]) == 3 and len(batch["hashes"]) == 3
    anchor = batch["inputs"][0]
    assert anchor["input_ids"].shape == (3, 8) and anchor["input_ids"].dtype == mx.int32
    assert anchor["attention_mask"].dtype == mx.int32 and np_(anchor["attention_mask"]).sum(1).tolist() == [3, 4, 5]
    assert batch["hashes"][0].dtype == mx.int32
    assert np_(batch["hashes"][0]).tolist() == [zlib.crc32(f"q{i}".encode()) & 0x7FFFFFFF for i in range(1, 4)]
    assert len(set(np_(batch["hashes"][2]).tolist())) == 1          # same negative text → same hash
    pairs = [{k: v for k, v in r.items() if not k.startswith("negative")} | {"label": 0.5} for r in rows]
    batch = SentenceSimilarityCollator(tok)(pairs)
    assert len(batch["inputs"]) == 2 and batch["labels"].dtype == mx.float32 and batch["labels"].shape == (3,)


def test_sentence_similarity_several_negatives_in_order(tok):
    row = {"text": "q", "text_pair": "p", "negative_2": "b", "negative_1": "a",
           "text_input_ids": [1], "text_pair_input_ids": [2], "negative_1_input_ids": [3], "negative_2_input_ids": [4]}
    batch = SentenceSimilarityCollator(tok)([row])
    assert [int(np_(x["input_ids"])[0, 0]) for x in batch["inputs"]] == [1, 2, 3, 4]
    # without the raw texts the hashes come from the ids, so distinct texts still differ
    bare = [{"text_input_ids": [101, i, 102], "text_pair_input_ids": [101, 9, 102]} for i in (5, 6, 5)]
    hashes = np_(SentenceSimilarityCollator(tok)(bare)["hashes"][0]).tolist()
    assert hashes[0] == hashes[2] != hashes[1]


def test_classification_labels_and_regression(tok):
    rows = [{"input_ids": [101] + [7] * n + [102], "label": n % 2} for n in range(1, 12)]
    batch = ClassificationCollator(tok)(rows)
    assert batch["input_ids"].shape == (11, 16) and batch["labels"].dtype == mx.int32
    assert np_(batch["labels"]).tolist() == [n % 2 for n in range(1, 12)]
    batch = collator_for("text-classification", tok, is_regression=True, pad_to_multiple_of=4)(
        [{"input_ids": [1, 2, 3, 4, 5], "label": 0.25}])
    assert batch["labels"].dtype == mx.float32 and batch["input_ids"].shape == (1, 8)


def test_left_padding_follows_the_tokenizer(tok):
    left = AutoTokenizer.from_pretrained(str(default_model_dir()), padding_side="left")
    batch = ClassificationCollator(left)([{"input_ids": [101, 5, 102], "label": 1}, {"input_ids": [101, 102], "label": 0}])
    assert np_(batch["input_ids"])[1].tolist() == [0] * 6 + [101, 102]
    assert np_(batch["attention_mask"])[0].tolist() == [0] * 5 + [1, 1, 1]
    tc = TokenClassificationCollator(left)([{"input_ids": [101, 5, 102], "word_ids": [-1, 0, -1], "labels": [4]}])
    assert np_(tc["labels"])[0].tolist() == [-100] * 6 + [4, -100]


def test_token_classification_first_subtoken_or_all(tok):
    rows = [{"input_ids": [101, 11, 12, 13, 14, 102], "word_ids": [-1, 0, 0, 1, 1, -1], "labels": [3, 5]},
            {"input_ids": [101, 15, 102], "word_ids": [-1, 0, -1], "labels": [2]}]
    batch = TokenClassificationCollator(tok)(rows)
    assert batch["labels"].shape == (2, 8) and batch["labels"].dtype == mx.int32
    assert np_(batch["labels"]).tolist() == [[-100, 3, -100, 5, -100, -100, -100, -100],
                                             [-100, 2, -100, -100, -100, -100, -100, -100]]
    batch = TokenClassificationCollator(tok, label_all_tokens=True)(rows)
    assert np_(batch["labels"])[0].tolist()[:6] == [-100, 3, 3, 5, 5, -100]
    pre_aligned = TokenClassificationCollator(tok)([{"input_ids": [101, 9, 102], "label_ids": [-100, 4, -100]}])
    assert np_(pre_aligned["labels"])[0, :3].tolist() == [-100, 4, -100]


def mlm_rows(tok, n_rows, rng):
    special = set(tok.all_special_ids)
    words = np.array([i for i in range(1000, len(tok)) if i not in special])
    return [{"input_ids": [tok.cls_token_id] + rng.choice(words, rng.integers(20, 200)).tolist() + [tok.sep_token_id]}
            for _ in range(n_rows)]


def test_mlm_80_10_10_over_100k_tokens(tok):
    rng = np.random.default_rng(0)
    rows = mlm_rows(tok, 1800, rng)
    collator = MaskedLMCollator(tok, seed=1)
    picked = masked = randomized = kept = real = 0
    for start in range(0, len(rows), 64):
        chunk = rows[start:start + 64]
        batch = collator(chunk)
        original, _ = pad([r["input_ids"] for r in chunk], tok.pad_token_id, 8)
        ids, labels, att = np_(batch["input_ids"]), np_(batch["labels"]), np_(batch["attention_mask"])
        sel = labels != -100
        assert (labels[sel] == original[sel]).all()                      # labels hold the original id
        assert (ids[~sel] == original[~sel]).all()                       # nothing else changes
        real += int(((att == 1) & (original != tok.cls_token_id) & (original != tok.sep_token_id)).sum())
        picked += int(sel.sum())
        masked += int((ids[sel] == tok.mask_token_id).sum())
        kept += int((ids[sel] == original[sel]).sum())
        randomized += int(((ids[sel] != original[sel]) & (ids[sel] != tok.mask_token_id)).sum())
    assert real >= 100_000
    ratios = picked / real, masked / picked, randomized / picked, kept / picked
    print(f"\nMLM over {real} tokens: picked {ratios[0]:.4f}, [MASK] {ratios[1]:.4f}, "
          f"random {ratios[2]:.4f}, unchanged {ratios[3]:.4f}")
    assert ratios == pytest.approx((0.15, 0.80, 0.10, 0.10), abs=0.01)


def test_mlm_never_masks_special_or_padding_tokens(tok):
    specials = sorted(set(tok.all_special_ids))
    rows = [{"input_ids": [tok.cls_token_id, *specials, 2000 + i, tok.unk_token_id, tok.sep_token_id] * 10}
            for i in range(40)] + [{"input_ids": [tok.cls_token_id, 3000, tok.sep_token_id]}]
    collator = MaskedLMCollator(tok, mlm_probability=0.9, seed=0)
    for _ in range(5):
        batch = collator(rows)
        ids, labels = np_(batch["input_ids"]), np_(batch["labels"])
        original, mask = pad([r["input_ids"] for r in rows], tok.pad_token_id, 8)
        special = np.isin(original, specials) | (mask == 0)
        assert (labels[special] == -100).all() and (ids[special] == original[special]).all()
        assert (labels[~special] != -100).mean() > 0.8
        assert not np.isin(ids[(labels != -100) & (ids != tok.mask_token_id)], specials).any()   # random ≠ special


def test_mlm_mask_changes_each_epoch_and_resume_reproduces_it(tok):
    rows = mlm_rows(tok, 16, np.random.default_rng(1))
    a = MaskedLMCollator(tok, seed=7)
    epoch0 = [np_(a(rows)["labels"]) for _ in range(3)]
    assert not np.array_equal(epoch0[0], epoch0[1])                     # new mask per batch position
    a.set_epoch(1)
    epoch1 = [np_(a(rows)["labels"]) for _ in range(3)]
    assert not np.array_equal(epoch0[0], epoch1[0])                     # new mask per epoch
    b = MaskedLMCollator(tok, seed=7)
    b.load_state_dict({"epoch": 1, "position": 2})                      # resume at the 3rd batch of epoch 1
    assert np.array_equal(np_(b(rows)["labels"]), epoch1[2])
    assert b.state_dict() == {"epoch": 1, "position": 3, "seed": 7}
    assert np.array_equal(np_(MaskedLMCollator(tok, seed=7)(rows, position=0)["labels"]), epoch0[0])
