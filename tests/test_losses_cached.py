"""GradCache (CachedMultipleNegativesRankingLoss, CachedLateInteractionContrastiveLoss) gives the plain loss
and gradients."""
from __future__ import annotations

import json
import zlib

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten

from engine.cli import main
from engine.errors import UsageError
from engine.losses import (CachedLateInteractionContrastiveLoss, CachedMultipleNegativesRankingLoss,
                           LateInteractionContrastiveLoss, MultipleNegativesRankingLoss, select_loss)
from engine.tasks import TASKS
from tests.trainer_helpers import dataset, load, max_diff, pair_rows, tiny_bert_dir, train, weights

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


# -- GradCache for late interaction (CachedLateInteractionContrastiveLoss) ------------------------------------

class TinyColBERT(TinyEmbedder):
    """Token vectors [B, T, D]: each token's embedding plus its row's masked mean (so a row's padding and
    its other tokens matter, as in attention), projected and L2-normalised per token."""

    def __init__(self, vocab=64, dim=16, out=8, dropout=0.0):
        super().__init__(vocab, dim, out, dropout)

    def __call__(self, input_ids, attention_mask):
        h = self.drop(self.embed(input_ids))  # (B, T, dim)
        m = attention_mask[..., None].astype(h.dtype)
        context = (h * m).sum(axis=1, keepdims=True) / mx.maximum(m.sum(axis=1, keepdims=True), 1.0)  # (B, 1, dim)
        v = self.proj(h + context)  # (B, T, out)
        return v / mx.linalg.norm(v, axis=-1, keepdims=True)


def late_batch(b, n_neg, seed=0):
    """make_batch with a different padded length per column and rows of every real length (1 .. T), a
    duplicate positive (rows 0 and 3), and a PyLate-style score_mask on the query column."""
    batch = make_batch(b, n_neg, seed=seed)
    rng = np.random.default_rng(seed)
    for c, column in enumerate(batch["inputs"]):
        t = 6 + 3 * c
        ids = np.array(rng.integers(1, 64, size=(b, t)), dtype=np.int32)
        mask = (np.arange(t)[None, :] < (np.arange(b)[:, None] % t) + 1).astype(np.int32)  # lengths 1, 2, ...
        if c == 1:
            ids[3], mask[3] = ids[0], mask[0]
        column.update(input_ids=mx.array(ids), attention_mask=mx.array(mask))
    query = batch["inputs"][0]
    score_mask = np.array(query["attention_mask"])
    score_mask[:, -2:] = 1  # expansion [MASK] positions count in MaxSim though the model masks them out
    query["score_mask"] = mx.array(score_mask)
    return batch


@pytest.mark.parametrize("b,n_neg,mini", [(7, 0, 3), (6, 1, 4), (6, 2, 1), (5, 1, 5)])
def test_cached_late_interaction_equals_plain(b, n_neg, mini):
    mx.random.seed(2)
    model = TinyColBERT()
    batch = late_batch(b, n_neg, seed=b + n_neg)
    want_loss, want_grads = plain_loss_and_grads(model, LateInteractionContrastiveLoss(temperature=0.5), batch)
    cached = CachedLateInteractionContrastiveLoss(temperature=0.5, mini_batch_size=mini)
    loss, grads = cached.loss_and_grads(model, batch)
    assert abs(loss.item() - want_loss.item()) <= TOL
    assert_trees_close(grads, want_grads)
    assert [k for k, _ in tree_flatten(grads)] == [k for k, _ in tree_flatten(model.trainable_parameters())]
    assert abs(cached(model, batch).item() - want_loss.item()) <= TOL   # __call__: the plain loss
    # The masks are what the loss reads: without the duplicate masking or the score mask it differs.
    assert abs(cached.loss_and_grads(model, {"inputs": batch["inputs"]})[0].item() - loss.item()) > 1e-4
    no_score = {**batch, "inputs": [{k: v for k, v in c.items() if k != "score_mask"} for c in batch["inputs"]]}
    assert abs(cached.loss_and_grads(model, no_score)[0].item() - loss.item()) > 1e-4


def test_cached_late_interaction_replays_dropout():
    model = TinyColBERT(dropout=0.5)
    model.train()
    batch = late_batch(5, 1, seed=9)
    mx.random.seed(11)
    loss, grads = CachedLateInteractionContrastiveLoss(mini_batch_size=5).loss_and_grads(model, batch)
    key_after = np.array(mx.random.state[0])
    mx.random.seed(11)
    want_loss, want_grads = plain_loss_and_grads(model, LateInteractionContrastiveLoss(), batch)
    assert abs(loss.item() - want_loss.item()) <= TOL
    assert_trees_close(grads, want_grads)
    np.testing.assert_array_equal(key_after, np.array(mx.random.state[0]))


def test_select_cached_late_interaction_and_refusals():
    def sel(late, **kw):
        return select_loss("sentence-similarity", scored=False, use_late_interaction=late, num_negatives=0,
                           is_regression=False, **kw)
    loss = sel(True, loss_name="cached-late-interaction", mini_batch_size=4, temperature=0.5)
    assert type(loss) is CachedLateInteractionContrastiveLoss and loss.mini_batch_size == 4 and loss.temperature == 0.5
    assert "cached_late_interaction" in TASKS["sentence-similarity"].losses
    with pytest.raises(UsageError, match="valid here: mnrl, cached_mnrl"):   # a dense model
        sel(False, loss_name="cached_late_interaction")
    with pytest.raises(UsageError, match="late-interaction.*without --matryoshka-dims"):
        sel(True, loss_name="cached_late_interaction", matryoshka_dims=[8])
    with pytest.raises(ValueError):
        CachedLateInteractionContrastiveLoss(mini_batch_size=0)


def test_cached_late_interaction_trains_like_plain_and_from_the_cli(tmp_path, tmp_path_factory, capsys):
    """Two Trainer steps with each loss give the same weights (dropout off); `raclate train --loss
    cached_late_interaction` runs 2 steps and records the loss."""
    bert = tiny_bert_dir(tmp_path_factory)
    out = {}
    for loss in ("late_interaction", "cached_late_interaction"):
        model, tok = load(bert, "sentence-similarity", use_late_interaction=True, late_interaction_dim=16, dropout=0.0)
        train(model, tok, "sentence-similarity", dataset(pair_rows(12)), max_steps=2, batch_size=6, loss=loss,
              mini_batch_size=4, use_late_interaction=True, dropout=0.0)
        out[loss] = weights(model)
    # AdamW's first steps move a weight by ~lr (1e-3) however small its gradient, so summation-order
    # differences (they depend on the BLAS kernels) in near-zero gradients show as a small fraction of lr;
    # the losses and gradients themselves are compared at 1e-5 above.
    assert max_diff(out["late_interaction"], out["cached_late_interaction"]) <= 0.05 * 1e-3

    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"query": r["text"], "document": r["text_pair"]}) + "\n" for r in pair_rows(12)))
    run = tmp_path / "run"
    code = main(["train", "--model", str(bert), "--task", "late-interaction", "--late-interaction", "--data", str(data),
                 "--output", str(run), "--loss", "cached_late_interaction", "--mini-batch-size", "3",
                 "--batch-size", "6", "--max-steps", "2", "--max-length", "32", "--late-interaction-dim", "16"])
    assert code == 0, capsys.readouterr().err
    record = json.loads((run / "raclate_run.json").read_text())
    assert record["training"]["loss"] == "cached_late_interaction" and record["training"]["mini_batch_size"] == 3
