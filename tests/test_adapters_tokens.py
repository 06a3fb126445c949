"""Trainable new token rows with adapters (``train_new_tokens``): late interaction's [Q]/[D] rows, added
to the embedding table at load, train with the adapters while every row the model came with stays
bit-identical; the merged output holds the whole table."""
import numpy as np
import pytest

import mlx.core as mx

from engine.models.adapters import NewRowsEmbedding
from tests.trainer_helpers import dataset, load, pair_rows, tiny_bert_dir, train, weights

TABLE = "embeddings.word_embeddings.weight"


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return tiny_bert_dir(tmp_path_factory)


def colbert_run(bert_dir, **extra):
    model, tok = load(bert_dir, "sentence-similarity", use_late_interaction=True, late_interaction_dim=16)
    before = model.backbone.embeddings.word_embeddings.weight
    rows = [{k: r[k] for k in ("text", "text_pair")} for r in pair_rows(16)]
    train(model, tok, "sentence-similarity", dataset(rows), max_steps=2, learning_rate=1e-2, lora_rank=4,
          use_late_interaction=True, **extra)
    return model, tok, np.array(before)


def merged_table(model) -> np.ndarray:
    from engine.models.adapters import merged_parameters
    return np.array(merged_parameters(model.backbone)[TABLE])


def test_new_token_rows_train_and_the_others_stay_bit_identical(bert_dir, tmp_path):
    model, tok, before = colbert_run(bert_dir)
    assert model.info.added_rows == 2
    table = model.backbone.embeddings.word_embeddings
    assert isinstance(table, NewRowsEmbedding)
    trainable = weights(model, trainable_only=True)
    assert f"backbone.{TABLE}" not in trainable and any(k.endswith("new_rows") for k in trainable)
    after = merged_table(model)
    kept = before.shape[0] - 2
    assert np.array_equal(after[:kept], before[:kept])        # bit-identical
    assert (np.abs(after[kept:] - before[kept:]).max(axis=1) > 1e-4).all()   # [Q] and [D] both trained
    # The merged folder holds the whole table and reloads with the same token vectors.
    model.save_pretrained(tmp_path / "merged")
    tok.save_pretrained(str(tmp_path / "merged"))
    reloaded, tok2 = load(tmp_path / "merged", "sentence-similarity")
    assert reloaded.info.added_rows == 0   # PyLate's tokenizer already has [Q]/[D]
    ids = tok2(["[Q] what is it"], return_tensors="np")
    x = mx.array(ids["input_ids"].astype(np.int32)), mx.array(ids["attention_mask"].astype(np.int32))
    model.eval()
    assert np.abs(np.array(reloaded(*x)) - np.array(model(*x))).max() <= 1e-5


def test_train_new_tokens_off_keeps_the_new_rows(bert_dir):
    model, _, before = colbert_run(bert_dir, train_new_tokens=False)
    assert not isinstance(model.backbone.embeddings.word_embeddings, NewRowsEmbedding)
    assert np.array_equal(merged_table(model), before)
