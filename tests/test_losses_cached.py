"""GradCache (CachedMultipleNegativesRankingLoss) gives the plain MNRL loss and gradients."""
from __future__ import annotations

import zlib

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten

from engine.losses import CachedMultipleNegativesRankingLoss, MultipleNegativesRankingLoss, mnrl_loss

TOL = 1e-5


class TinyEmbedder(nn.Module):
    """nn.Embedding + masked mean pooling + Linear + L2 normalisation: (input_ids, mask) -> [B, D]."""

    def __init__(self, vocab=64, dim=16, out=12, dropout=0.0):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.proj = nn.Linear(dim, out)
        self.drop = nn.Dropout(dropout)

    def __call__(self, input_ids, attention_mask):
        h = self.drop(self.embed(input_ids))  # (B, T, dim)
        m = attention_mask[..., None].astype(h.dtype)
        pooled = (h * m).sum(axis=1) / mx.maximum(m.sum(axis=1), 1.0)  # (B, dim)
        e = self.proj(pooled)  # (B, out)
        return e / mx.linalg.norm(e, axis=-1, keepdims=True)


def make_batch(b, n_neg, seed=0, duplicate=True):
    rng = np.random.default_rng(seed)
    inputs, hashes = [], []
    for c in range(2 + n_neg):
        t = int(rng.integers(4, 9))
        ids = rng.integers(1, 64, size=(b, t))
        mask = np.ones((b, t), np.int32)
        for i in range(b):
            mask[i, int(rng.integers(2, t + 1)):] = 0
        texts = [f"col{c}-row{i}" for i in range(b)]
        if c == 1 and duplicate:  # rows 0 and 3 share their positive text
            texts[3] = texts[0]
            ids[3], mask[3] = ids[0], mask[0]
        inputs.append({"input_ids": mx.array(ids, dtype=mx.int32), "attention_mask": mx.array(mask)})
        hashes.append(mx.array([zlib.crc32(s.encode()) & 0x7FFFFFFF for s in texts], dtype=mx.int32))
    return {"inputs": inputs, "hashes": hashes}


def plain_loss_and_grads(model, loss, batch):
    return nn.value_and_grad(model, lambda b: loss(model, b))(batch)


def assert_trees_close(got, want):
    got_flat, want_flat = dict(tree_flatten(got)), dict(tree_flatten(want))
    assert got_flat.keys() == want_flat.keys()
    for k in want_flat:
        np.testing.assert_allclose(np.array(got_flat[k]), np.array(want_flat[k]), rtol=TOL, atol=TOL, err_msg=k)


@pytest.mark.parametrize("b,n_neg,mini,symmetric",
                         [(7, 0, 3, False), (6, 1, 4, False), (6, 2, 2, True), (5, 1, 1, True)])
def test_cached_equals_plain(b, n_neg, mini, symmetric):
    mx.random.seed(1)
    model = TinyEmbedder()
    batch = make_batch(b, n_neg, seed=b + n_neg)
    plain = MultipleNegativesRankingLoss(symmetric=symmetric)
    cached = CachedMultipleNegativesRankingLoss(symmetric=symmetric, mini_batch_size=mini)
    want_loss, want_grads = plain_loss_and_grads(model, plain, batch)
    loss, grads = cached.loss_and_grads(model, batch)
    assert abs(loss.item() - want_loss.item()) <= TOL
    assert_trees_close(grads, want_grads)
    # Same tree as the trainer's nn.value_and_grad, including the parameter names.
    assert [k for k, _ in tree_flatten(grads)] == [k for k, _ in tree_flatten(model.trainable_parameters())]
    # __call__ is the plain, differentiable loss.
    assert abs(cached(model, batch).item() - want_loss.item()) <= TOL


def test_cached_grads_nonzero_and_duplicate_masking_matters():
    model = TinyEmbedder()
    batch = make_batch(6, 1, seed=3)
    loss, grads = CachedMultipleNegativesRankingLoss(mini_batch_size=4).loss_and_grads(model, batch)
    assert all(np.abs(np.array(v)).max() > 0 for _, v in tree_flatten(grads))
    no_hashes = {"inputs": batch["inputs"]}
    loss_unmasked, _ = CachedMultipleNegativesRankingLoss(mini_batch_size=4).loss_and_grads(model, no_hashes)
    assert abs(loss.item() - loss_unmasked.item()) > 1e-4  # the duplicate positive was masked


def test_cached_only_trainable_parameters():
    model = TinyEmbedder()
    model.embed.freeze()
    batch = make_batch(4, 0, seed=5)
    _, grads = CachedMultipleNegativesRankingLoss(mini_batch_size=3).loss_and_grads(model, batch)
    _, want = plain_loss_and_grads(model, MultipleNegativesRankingLoss(), batch)
    assert not any(k.startswith("embed.") for k, _ in tree_flatten(grads))
    assert_trees_close(grads, want)


@pytest.mark.parametrize("mini", [5, 2])
def test_cached_replays_dropout_and_equals_the_uncached_loss(mini):
    """With dropout on, the gradient is that of the loss pass 1 saw: pass 3 restores each mini-batch's
    random key. One mini-batch per column (mini >= B) is the plain MNRL loss itself, drawn from the same key;
    smaller ones equal the plain loss embedding the same mini-batches in order."""
    model = TinyEmbedder(dropout=0.5)
    model.train()
    b = 5
    batch = make_batch(b, 1, seed=7)

    def uncached(batch):
        embs = [mx.concatenate([model(c["input_ids"][s:s + mini], c["attention_mask"][s:s + mini])
                                for s in range(0, b, mini)]) for c in batch["inputs"]]
        return MultipleNegativesRankingLoss().loss_from_embeddings(embs, batch)

    mx.random.seed(11)
    loss, grads = CachedMultipleNegativesRankingLoss(mini_batch_size=mini).loss_and_grads(model, batch)
    key_after = np.array(mx.random.state[0])
    mx.random.seed(11)
    want_loss, want_grads = (plain_loss_and_grads(model, MultipleNegativesRankingLoss(), batch) if mini >= b
                             else nn.value_and_grad(model, uncached)(batch))
    assert abs(loss.item() - want_loss.item()) <= TOL
    assert_trees_close(grads, want_grads)
    np.testing.assert_array_equal(key_after, np.array(mx.random.state[0]))  # the generator goes on alike
    # Other dropout masks give another loss, so the replay is what made these equal.
    mx.random.seed(12)
    assert abs(uncached(batch).item() - loss.item()) > 1e-4


def test_cached_rejects_bad_mini_batch_size():
    with pytest.raises(ValueError):
        CachedMultipleNegativesRankingLoss(mini_batch_size=0)
