"""Matryoshka: the loss is the weighted sum of the inner loss at each truncation, cached MNRL included;
evaluation reports metrics at each dim; the dims are settings a run records."""
from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

from engine.errors import UsageError
from engine.losses import (CachedMultipleNegativesRankingLoss, CoSENTLoss, MatryoshkaLoss, MultipleNegativesRankingLoss,
                           cosent_loss, mnrl_loss, select_loss)
from engine.losses.columns import embed_columns
from engine.outputs.model_card import _training_section
from engine.training.args import TrainingArgs
from tests.test_losses_cached import TinyEmbedder, assert_trees_close, make_batch, plain_loss_and_grads
from tests.trainer_helpers import dataset, load, of, pair_rows, tiny_bert_dir


def unit(x):
    return x / mx.linalg.norm(x, axis=-1, keepdims=True)


def test_mnrl_equals_hand_sum_over_truncations():
    mx.random.seed(0)
    model = TinyEmbedder(out=12)
    batch = make_batch(4, n_neg=1, duplicate=False)
    dims, weights = [12, 6, 3], [1.0, 0.5, 0.25]
    got = MatryoshkaLoss(MultipleNegativesRankingLoss(), dims, weights)(model, batch)
    a, p, n = embed_columns(model, batch["inputs"])
    want = sum(w * mnrl_loss(a[:, :d], mx.concatenate([p[:, :d], n[:, :d]])) for d, w in zip(dims, weights))
    np.testing.assert_allclose(got.item(), want.item(), rtol=1e-5)
    assert got.item() != pytest.approx(MultipleNegativesRankingLoss()(model, batch).item())


def test_renormalises_only_when_the_model_normalises():
    mx.random.seed(1)
    model = TinyEmbedder(out=8)
    batch = make_batch(4, n_neg=0, duplicate=False)
    dot = MatryoshkaLoss(MultipleNegativesRankingLoss(scale=1.0, similarity="dot"), [4])
    a, p = embed_columns(model, batch["inputs"])
    raw = mnrl_loss(a[:, :4], p[:, :4], 1.0, "dot")
    np.testing.assert_allclose(dot(model, batch).item(), raw.item(), rtol=1e-5)
    model.normalize = True   # as EmbeddingModel with a Normalize module: cut rows go back on the unit sphere
    renormed = mnrl_loss(unit(a[:, :4]), unit(p[:, :4]), 1.0, "dot")
    np.testing.assert_allclose(dot(model, batch).item(), renormed.item(), rtol=1e-5)
    assert renormed.item() != pytest.approx(raw.item())


def test_cosent_equals_hand_sum():
    mx.random.seed(2)
    model = TinyEmbedder(out=10)
    batch = make_batch(6, n_neg=0, duplicate=False)
    batch["labels"] = mx.array([0.1, 0.9, 0.5, 0.3, 0.7, 0.2])
    dims = [10, 5]
    a, b = embed_columns(model, batch["inputs"])
    want = sum(cosent_loss(a[:, :d], b[:, :d], batch["labels"]) for d in dims)
    np.testing.assert_allclose(MatryoshkaLoss(CoSENTLoss(), dims)(model, batch).item(), want.item(), rtol=1e-5)


def test_full_dim_alone_is_the_inner_loss():
    mx.random.seed(3)
    model = TinyEmbedder(out=12)
    batch = make_batch(4, n_neg=1)
    inner = MultipleNegativesRankingLoss()
    np.testing.assert_allclose(MatryoshkaLoss(inner, [12])(model, batch).item(), inner(model, batch).item(), rtol=1e-6)


def test_cached_mnrl_gives_the_plain_matryoshka_loss_and_gradients():
    mx.random.seed(4)
    model = TinyEmbedder(out=12)
    batch = make_batch(8, n_neg=1)
    dims, weights = [12, 4], [1.0, 2.0]
    cached = MatryoshkaLoss(CachedMultipleNegativesRankingLoss(mini_batch_size=3), dims, weights)
    assert hasattr(cached, "loss_and_grads")   # the trainer's GradCache path
    loss, grads = cached.loss_and_grads(model, batch)
    want_loss, want_grads = plain_loss_and_grads(model, MatryoshkaLoss(MultipleNegativesRankingLoss(), dims, weights),
                                                 batch)
    np.testing.assert_allclose(loss.item(), want_loss.item(), rtol=1e-5)
    assert_trees_close(grads, want_grads)
    assert not hasattr(MatryoshkaLoss(MultipleNegativesRankingLoss(), dims), "loss_and_grads")


def test_select_loss_wraps_and_refuses():
    loss = select_loss("sentence-similarity", scored=False, use_late_interaction=False, num_negatives=0,
                       is_regression=False, loss_name="cached_mnrl", matryoshka_dims=[8, 4], mini_batch_size=2)
    assert isinstance(loss, MatryoshkaLoss) and isinstance(loss.inner, CachedMultipleNegativesRankingLoss)
    assert loss.inner.mini_batch_size == 2 and loss.weights == [1.0, 1.0]
    loss.gather_across_ranks = True   # the trainer's distributed switch reaches the wrapped loss
    assert loss.inner.gather_across_ranks
    for kw in ({"use_late_interaction": True}, {"task": "text-classification"}):
        with pytest.raises(UsageError, match="Matryoshka"):
            select_loss(kw.pop("task", "sentence-similarity"), scored=False, num_negatives=0, is_regression=False,
                        **{"use_late_interaction": False, **kw}, matryoshka_dims=[8])
    with pytest.raises(UsageError, match="one weight per dim"):
        MatryoshkaLoss(MultipleNegativesRankingLoss(), [8, 4], [1.0])
    with pytest.raises(UsageError, match="larger than"):
        MatryoshkaLoss(MultipleNegativesRankingLoss(), [99])(TinyEmbedder(out=12), make_batch(4, 0))


def test_training_args_parse_dims():
    args = TrainingArgs(matryoshka_dims="384,256, 64", matryoshka_weights="1,0.5,0.25")
    assert args.matryoshka_dims == [384, 256, 64] and args.matryoshka_weights == [1.0, 0.5, 0.25]
    assert TrainingArgs.from_dict(args.to_dict()).matryoshka_dims == [384, 256, 64]
    assert TrainingArgs().matryoshka_dims is None
    for bad in ({"matryoshka_dims": "384,abc"}, {"matryoshka_dims": "0,8"},
                {"matryoshka_dims": "8,4", "matryoshka_weights": "1"}):
        with pytest.raises(ValueError):
            TrainingArgs(**bad)
    card = "\n".join(_training_section({"training": args.to_dict()}))
    assert "matryoshka_dims" in card and "384, 256, 64" in card


def test_two_step_run_reports_metrics_at_each_dim(tmp_path_factory):
    from engine.training.trainer import Trainer
    model, tok = load(tiny_bert_dir(tmp_path_factory), "sentence-similarity")
    rows = [{k: r[k] for k in ("text", "text_pair")} for r in pair_rows(16)]
    args = TrainingArgs(batch_size=8, learning_rate=1e-3, max_steps=2, logging_steps=1, save_steps=0, max_length=32,
                        matryoshka_dims="32,16,8")
    events = []
    Trainer(model, tok, "sentence-similarity", args, dataset(rows), dataset(rows), callbacks=[events.append]).train()
    metrics = of(events, "eval")[-1]["metrics"]
    for dim in (32, 16, 8):
        assert 0 <= metrics[f"ndcg@10@{dim}"] <= 1 and f"recall@1@{dim}" in metrics
    assert metrics["ndcg@10@32"] == pytest.approx(metrics["ndcg@10"])   # the full size is the plain metric
    assert all(np.isfinite(e["loss"]) for e in of(events, "step"))
