"""Trainer mechanics on a tiny random BERT: accumulation, gradient checkpointing, frozen embeddings,
AdamW bias correction, compiled = eager, the non-finite guard, prompts, evaluate()."""
import math

import numpy as np
import pytest

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from engine.training.args import TrainingArgs
from engine.training.step import make_optimizer
from tests.trainer_helpers import (dataset, labels, load, max_diff, of, pair_rows, sentiment_rows, tiny_bert_dir,
                                   train, weights)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return tiny_bert_dir(tmp_path_factory)


def classify(bert_dir, rows, **args):
    model, tok = load(bert_dir, "text-classification", num_labels=2, dropout=args.get("dropout"))
    trainer, result, events = train(model, tok, "text-classification", dataset(rows), label_info=labels(), **args)
    return model, result, events


@pytest.mark.parametrize("compile", [True, False])
def test_gradient_accumulation_equals_one_big_batch(bert_dir, compile):
    # 8 rows = one optimizer step per epoch either way: both runs see the same rows in every step. Dropout
    # off: masks drawn for two batches of 4 are not those drawn for one of 8.
    rows = sentiment_rows(8)
    big, r1, _ = classify(bert_dir, rows, batch_size=8, num_train_epochs=4, compile=compile, dropout=0.0)
    small, r2, _ = classify(bert_dir, rows, batch_size=4, gradient_accumulation_steps=2, num_train_epochs=4,
                            compile=compile, dropout=0.0)
    assert r1["step"] == r2["step"] == 4
    start = weights(load(bert_dir, "text-classification", num_labels=2)[0])
    assert max_diff(weights(big), start) > 1e-3            # it trained
    assert max_diff(weights(big), weights(small)) <= 1e-5


def test_accumulated_loss_is_the_mean_of_the_micro_batches(bert_dir):
    rows = sentiment_rows(8)
    _, _, one = classify(bert_dir, rows, batch_size=8, max_steps=1, dropout=0.0)  # the same masks need one batch
    _, _, two = classify(bert_dir, rows, batch_size=4, gradient_accumulation_steps=2, max_steps=1, dropout=0.0)
    assert of(one, "step")[0]["loss"] == pytest.approx(of(two, "step")[0]["loss"], abs=1e-6)


def test_grad_checkpoint_gives_the_same_gradients_and_recomputes(bert_dir, monkeypatch):
    from engine.losses import CrossEntropyLoss
    from engine.models import bert
    model, tok = load(bert_dir, "text-classification", num_labels=2)
    enc = tok(["a good film", "a really awful and boring meal"], padding=True, return_tensors="np")
    batch = {"input_ids": mx.array(enc["input_ids"].astype(np.int32)),
             "attention_mask": mx.array(enc["attention_mask"].astype(np.int32)), "labels": mx.array([1, 0])}
    calls = []
    original = bert.Layer.__call__
    monkeypatch.setattr(bert.Layer, "__call__", lambda self, *a: calls.append(1) or original(self, *a))
    grads = {}
    for on in (False, True):
        model.set_grad_checkpoint(on)
        calls.clear()
        loss, g = nn.value_and_grad(model, CrossEntropyLoss())(model, batch)
        mx.eval(loss, g)
        grads[on] = {k: np.array(v) for k, v in tree_flatten(g)}
        n_calls = len(calls)
        assert n_calls == (4 if on else 2)  # 2 layers; checkpointed ones run again in the backward pass
    assert max_diff(grads[False], grads[True]) <= 1e-6


def test_grad_checkpoint_trains_the_same_through_the_trainer(bert_dir):
    rows = sentiment_rows(16)
    plain, _, _ = classify(bert_dir, rows, max_steps=3)
    checkpointed, _, _ = classify(bert_dir, rows, max_steps=3, grad_checkpoint=True)
    assert max_diff(weights(plain), weights(checkpointed)) <= 1e-5


def test_frozen_embeddings_stay_while_the_rest_trains(bert_dir):
    model, tok = load(bert_dir, "text-classification", num_labels=2)
    before = weights(model)
    _, _, events = train(model, tok, "text-classification", dataset(sentiment_rows(16)), label_info=labels(),
                         max_steps=3, learning_rate=1e-2, freeze_embeddings=True)
    after = weights(model)
    embedding = [k for k in before if k.startswith("bert.embeddings.")]
    others = [k for k in before if not k.startswith("bert.embeddings.")]
    assert embedding and all(np.array_equal(before[k], after[k]) for k in embedding)
    assert all(not np.array_equal(before[k], after[k]) for k in others), "every other weight should move"
    started = of(events, "run_started")[0]
    frozen = sum(before[k].size for k in embedding)
    assert started["trainable_parameters"] == started["total_parameters"] - frozen


def test_adamw_bias_correction_matches_pytorch():
    import torch
    args = TrainingArgs(learning_rate=0.1, weight_decay=0.01, lr_scheduler_type="constant")
    opt = make_optimizer(args, total_steps=10, warmup_steps=0)
    start = np.array([1.0, -2.0, 3.0, 0.5], np.float32)
    grads = [np.array(g, np.float32) for g in ([0.1, -0.2, 0.3, 1e-3], [0.5, 0.1, -0.3, 2.0], [-1.0, 0.2, 0.1, 0.0])]
    params = {"w": mx.array(start)}
    ref = torch.nn.Parameter(torch.tensor(start))
    torch_opt = torch.optim.AdamW([ref], lr=0.1, weight_decay=0.01)
    for i, g in enumerate(grads):
        params = opt.apply_gradients({"w": mx.array(g)}, params)
        ref.grad = torch.tensor(g)
        torch_opt.step()
        np.testing.assert_allclose(np.array(params["w"]), ref.detach().numpy(), rtol=1e-5, atol=1e-6)
        if i == 0:  # first step ≈ lr per weight (with decay), not the 3.16 × lr of an uncorrected Adam
            step = np.abs(np.array(params["w"]) - start * (1 - 0.1 * 0.01))
            np.testing.assert_allclose(step, 0.1, rtol=1e-4)


def test_first_trainer_update_moves_weights_by_the_learning_rate(bert_dir):
    model, tok = load(bert_dir, "text-classification", num_labels=2)
    before = weights(model)
    train(model, tok, "text-classification", dataset(sentiment_rows(8)), label_info=labels(), max_steps=1,
          learning_rate=1e-3, lr_scheduler_type="constant", weight_decay=0.0, max_grad_norm=0.0)
    moved = max_diff(weights(model), before)
    assert moved == pytest.approx(1e-3, rel=1e-3)  # bias-corrected Adam: |Δw| ≤ lr, = lr where |g| ≫ eps


def test_first_update_with_warmup_has_learning_rate_zero(bert_dir):
    model, tok = load(bert_dir, "text-classification", num_labels=2)
    before = weights(model)
    _, _, events = train(model, tok, "text-classification", dataset(sentiment_rows(8)), label_info=labels(),
                         max_steps=1, warmup_steps=2)
    assert max_diff(weights(model), before) == 0.0
    assert of(events, "step")[0]["learning_rate"] == 0.0


@pytest.mark.parametrize("task", ["text-classification", "sentence-similarity"])
def test_compiled_step_equals_eager_step(bert_dir, task):
    out = {}
    for compile in (True, False):
        if task == "text-classification":
            model, tok = load(bert_dir, task, num_labels=2)
            rows, info = sentiment_rows(24, words=4) + sentiment_rows(24, seed=1, words=9), labels()
        else:
            model, tok = load(bert_dir, task)
            rows, info = pair_rows(48), None
        train(model, tok, task, dataset(rows), label_info=info, max_steps=6, compile=compile)
        out[compile] = weights(model)
    assert max_diff(out[True], out[False]) <= 1e-5


def test_cached_mnrl_trains_like_mnrl(bert_dir):
    """GradCache brings its own gradients (uncompiled path): the same weights as plain MNRL. Dropout off: masks
    drawn per mini-batch of 3 are not those drawn for the batch (tests/test_losses_cached.py compares them so)."""
    out = {}
    for loss in ("mnrl", "cached_mnrl"):
        model, tok = load(bert_dir, "sentence-similarity", dropout=0.0)
        train(model, tok, "sentence-similarity", dataset(pair_rows(16)), max_steps=2, loss=loss, mini_batch_size=3,
              dropout=0.0)
        out[loss] = weights(model)
    assert max_diff(out["mnrl"], out["cached_mnrl"]) <= 1e-5


def regression_rows(n, nan_rows=()):
    rows = sentiment_rows(n)
    for i, row in enumerate(rows):
        row["label"] = float("nan") if i in nan_rows else float(row["label"])
        if i in nan_rows:  # longer texts: the sampler groups these rows into one batch
            row["text"] += " and then the film was over"
    return rows


def test_a_non_finite_step_is_skipped(bert_dir):
    model, tok = load(bert_dir, "text-classification", is_regression=True)
    before = weights(model)
    # Batch 1 (the longest rows, always first) has NaN labels, batch 2 is fine; 2 epochs = 4 steps.
    _, result, events = train(model, tok, "text-classification", dataset(regression_rows(8, nan_rows=range(4))),
                              label_info=labels(regression=True), batch_size=4, num_train_epochs=2, max_bad_steps=2)
    steps = of(events, "step")
    assert result["step"] == 4
    assert [s["loss"] is None for s in steps] == [True, False, True, False]
    warnings = [w["message"] for w in of(events, "warning")]
    assert len(warnings) == 2 and all("non-finite" in w and "skipped" in w for w in warnings)
    assert all(np.isfinite(v).all() for v in weights(model).values())
    assert max_diff(weights(model), before) > 0  # the good steps trained


def test_a_skipped_step_leaves_weights_and_optimizer_alone(bert_dir):
    model, tok = load(bert_dir, "text-classification", is_regression=True)
    before = weights(model)
    _, result, events = train(model, tok, "text-classification", dataset(regression_rows(4, nan_rows=[0])),
                              label_info=labels(regression=True), max_steps=1)
    assert max_diff(weights(model), before) == 0.0
    assert of(events, "step")[0]["loss"] is None and len(of(events, "warning")) == 1


def test_several_non_finite_steps_in_a_row_stop_the_run(bert_dir):
    from engine.errors import classify_error
    from engine.errors import TrainingError
    model, tok = load(bert_dir, "text-classification", is_regression=True)
    with pytest.raises(TrainingError) as info:
        train(model, tok, "text-classification", dataset(regression_rows(8, nan_rows=range(8))),
              label_info=labels(regression=True), max_steps=20, max_bad_steps=3, logging_steps=10)
    err = info.value
    assert err.kind == "diverged" and "3 steps in a row" in str(err)
    assert "learning rate" in err.hint and "--lr" in err.hint
    assert classify_error(err) == ("diverged", str(err), err.hint)


def test_sentence_similarity_prompts_are_role_prompts(bert_dir):
    from engine.training.trainer import Trainer
    model, tok = load(bert_dir, "sentence-similarity")
    model.info.prompts = {"query": "query: ", "document": "passage: "}
    trainer = Trainer(model, tok, "sentence-similarity", TrainingArgs(), dataset(pair_rows(2)))
    assert trainer._prompts() == {"text": "query: ", "text_pair": "passage: ", "negative": "passage: "}
    row = pair_rows(2)[0]
    ds = trainer._tokenized(dataset(pair_rows(2)))
    assert ds[0]["text_input_ids"] == tok("query: " + row["text"])["input_ids"]
    assert ds[0]["text_pair_input_ids"] == tok("passage: " + row["text_pair"])["input_ids"]
    assert ds[0]["negative_input_ids"] == tok("passage: " + row["negative"])["input_ids"]
    model.info.prompts = {}
    plain = Trainer(model, tok, "sentence-similarity", TrainingArgs(), dataset(pair_rows(2)))._tokenized(dataset(pair_rows(2)))
    assert plain[0]["text_input_ids"] == tok(row["text"])["input_ids"]


def test_evaluate_works_standalone(bert_dir):
    from engine.training.trainer import Trainer
    model, tok = load(bert_dir, "text-classification", num_labels=2)
    eval_ds = dataset(sentiment_rows(12, seed=3))
    trainer = Trainer(model, tok, "text-classification", TrainingArgs(batch_size=4), dataset(sentiment_rows(8)),
                      eval_ds, label_info=labels())
    metrics = trainer.evaluate()
    assert {"eval_loss", "accuracy", "macro_f1"} <= set(metrics)
    assert math.isfinite(metrics["eval_loss"]) and metrics["eval_loss"] == pytest.approx(math.log(2), abs=0.05)
    assert trainer.evaluate(eval_ds) == metrics            # deterministic, and nothing changed the model
    with pytest.raises(ValueError, match="eval_dataset"):
        Trainer(model, tok, "text-classification", TrainingArgs(), dataset(sentiment_rows(8)),
                label_info=labels()).evaluate()


def test_the_first_eval_of_a_run_equals_evaluate(bert_dir):
    model, tok = load(bert_dir, "text-classification", num_labels=2)
    eval_ds = dataset(sentiment_rows(12, seed=3))
    from engine.training.trainer import Trainer
    standalone = Trainer(model, tok, "text-classification", TrainingArgs(batch_size=4, max_length=32),
                         dataset(sentiment_rows(8)), eval_ds, label_info=labels()).evaluate()
    _, _, events = train(model, tok, "text-classification", dataset(sentiment_rows(8)), eval_ds, labels(),
                         batch_size=4, max_steps=1)
    assert of(events, "eval")[0]["step"] == 0
    assert of(events, "eval")[0]["metrics"]["eval_loss"] == pytest.approx(standalone["eval_loss"], abs=1e-6)
