"""Checkpoints: rotation, half-written folders, exact resume in-process, best model and early stopping."""
import json
import os

import numpy as np
import pytest

import mlx.core as mx

from engine.errors import UsageError
from engine.training.checkpoint import checkpoint_dirs, find_checkpoint, load_checkpoint, rotate_checkpoints, save_checkpoint
from engine.training.step import make_optimizer
from engine.training.args import TrainingArgs
from tests.trainer_helpers import dataset, labels, load, max_diff, of, sentiment_rows, tiny_bert_dir, train, weights


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return tiny_bert_dir(tmp_path_factory)


def make_dirs(root, steps):
    for s in steps:
        (root / f"step-{s:07d}").mkdir(parents=True)
    return root


def names(root):
    return [p.name for p in checkpoint_dirs(root)]


@pytest.mark.parametrize("limit,keep,left", [
    (2, set(), [4, 5]),
    (2, {"step-0000002"}, [2, 5]),        # the best counts within the limit
    (3, {"step-0000002"}, [2, 4, 5]),
    (1, {"step-0000002"}, [2, 5]),        # limit 1: the best and the latest
    (1, {"step-0000005"}, [5]),
    (0, set(), [1, 2, 3, 4, 5]),          # 0 = keep all
])
def test_rotation(tmp_path, limit, keep, left):
    root = make_dirs(tmp_path, [1, 2, 3, 4, 5])
    (root / f".tmp-step-0000006-{os.getpid()}").mkdir()   # this process's own
    rotate_checkpoints(root, limit, keep)
    assert names(root) == [f"step-{s:07d}" for s in left]
    assert not (root / f".tmp-step-0000006-{os.getpid()}").exists()


def complete(root, steps):
    """Checkpoint folders whose files verify (tiny tensors, the RNG key, a trainer state)."""
    for s in steps:
        path = root / f"step-{s:07d}"
        mx.save_safetensors(str(path / "weights.safetensors"), {"w": mx.zeros((2,))})
        mx.save_safetensors(str(path / "optimizer.safetensors"), {"__rng__": mx.random.state[0]})
        (path / "trainer_state.json").write_text(json.dumps({"step": s}))
    return root


def test_half_written_checkpoint_is_never_latest(tmp_path):
    root = complete(make_dirs(tmp_path / "checkpoints", [3, 7]), [3, 7])
    tmp = root / ".tmp-step-0000099-4242"
    tmp.mkdir()
    (tmp / "trainer_state.json").write_text("{}")
    (root / "step-0000012-broken").mkdir()
    assert find_checkpoint(tmp_path, "latest").name == "step-0000007"
    with pytest.raises(UsageError, match="--resume latest"):
        find_checkpoint(tmp_path, str(tmp_path / "nothing-here"))
    with pytest.raises(UsageError, match="without --resume"):
        find_checkpoint(tmp_path / "empty", "latest")


def test_checkpoint_round_trip_restores_weights_optimizer_and_rng(bert_dir, tmp_path):
    model, _ = load(bert_dir, "text-classification", num_labels=2)
    opt = make_optimizer(TrainingArgs(), 10, 0)
    opt.init(model.trainable_parameters())
    mx.random.seed(1234)
    mx.random.normal((3,))                       # a key that no seed gives directly
    key = np.array(mx.random.state[0])
    path = save_checkpoint(tmp_path, 5, model, opt, {"step": 5})
    assert path.name == "step-0000005" and not list(tmp_path.glob(".tmp-*"))
    saved = weights(model)
    other, _ = load(bert_dir, "text-classification", num_labels=2, seed=9)
    other_opt = make_optimizer(TrainingArgs(), 10, 0)
    other_opt.init(other.trainable_parameters())
    mx.random.seed(0)
    assert load_checkpoint(path, other, other_opt) == {"step": 5}
    assert max_diff(weights(other), saved) == 0.0
    assert np.array_equal(np.array(mx.random.state[0]), key)
    assert int(other_opt.state["step"]) == 0 and set(other_opt.state) == set(opt.state)


def test_save_total_limit_is_respected(bert_dir, tmp_path):
    model, tok = load(bert_dir, "text-classification", num_labels=2)
    _, _, events = train(model, tok, "text-classification", dataset(sentiment_rows(16)), label_info=labels(),
                         max_steps=10, save_steps=2, save_total_limit=2, output_dir=str(tmp_path))
    assert [e["step"] for e in of(events, "checkpoint")] == [2, 4, 6, 8, 10]
    assert names(tmp_path / "checkpoints") == ["step-0000008", "step-0000010"]
    state = json.loads((tmp_path / "checkpoints" / "step-0000010" / "trainer_state.json").read_text())
    assert state["step"] == 10 and state["config"]["training"]["save_total_limit"] == 2


@pytest.mark.parametrize("task", ["text-classification", "masked-lm"])
def test_resume_continues_exactly(bert_dir, tmp_path, task):
    """Stop after step 3 (mid-epoch), resume from 'latest': the same weights as one uninterrupted run."""
    from engine.training.trainer import Trainer
    kw = {"num_labels": 2} if task == "text-classification" else {}
    info = labels() if task == "text-classification" else None
    rows = sentiment_rows(24) if task == "text-classification" else [{"text": r["text"]} for r in sentiment_rows(24)]
    args = dict(batch_size=8, max_steps=7, learning_rate=5e-3, warmup_steps=2, logging_steps=1, save_steps=0,
                max_length=32, seed=3)

    model, tok = load(bert_dir, task, **kw)
    train(model, tok, task, dataset(rows), label_info=info, **args, output_dir=str(tmp_path / "a"))
    uninterrupted = weights(model)

    model, tok = load(bert_dir, task, **kw)
    first = []
    trainer = Trainer(model, tok, task, TrainingArgs(**args, output_dir=str(tmp_path / "b")), dataset(rows),
                      callbacks=[first.append, lambda e: e["event"] == "step" and e["step"] == 3 and
                                 trainer.request_stop()], label_info=info)
    result = trainer.train()
    assert result["step"] == 3 and result["stopped_early"]
    assert names(tmp_path / "b" / "checkpoints")[-1] == "step-0000003"

    model, tok = load(bert_dir, task, seed=7, **kw)   # a different head: the checkpoint replaces it
    _, result, events = train(model, tok, task, dataset(rows), label_info=info, **args,
                              output_dir=str(tmp_path / "b"), resume_from_checkpoint="latest")
    assert of(events, "run_started")[0]["resumed_from_step"] == 3
    assert [e["step"] for e in of(events, "step")] == [4, 5, 6, 7]
    assert result["step"] == 7 and not result["stopped_early"]
    assert max_diff(weights(model), uninterrupted) <= 1e-5


def flipped_eval_run(bert_dir, output_dir="", **extra):
    """Eval labels are the opposite of the training labels: the eval loss soon rises, so an early
    evaluation is the best one."""
    model, tok = load(bert_dir, "text-classification", num_labels=2)
    eval_rows = [dict(r, label=1 - r["label"]) for r in sentiment_rows(16, seed=5)]
    _, result, events = train(model, tok, "text-classification", dataset(sentiment_rows(32)), dataset(eval_rows),
                              labels(), learning_rate=1e-2, max_steps=20, eval_steps=2, output_dir=output_dir,
                              metric_for_best_model="eval_loss", load_best_model_at_end=True, **extra)
    return model, result, events


def test_load_best_model_at_end(bert_dir, tmp_path):
    model, result, events = flipped_eval_run(bert_dir, str(tmp_path), save_total_limit=1)
    evals = [(e["step"], e["metrics"]["eval_loss"]) for e in of(events, "eval") if e["step"] > 0]
    best_step, best_loss = min(evals, key=lambda x: x[1])
    assert result["best_step"] == best_step and result["best_metric"] == pytest.approx(best_loss)
    assert best_step != result["step"] == 20, "the scenario needs an early best"
    assert f"from step {best_step}" in of(events, "warning")[-1]["message"]
    assert result["metrics"]["eval_loss"] == pytest.approx(best_loss)
    best_dir = tmp_path / "checkpoints" / f"step-{best_step:07d}"
    assert names(tmp_path / "checkpoints") == [best_dir.name, "step-0000020"]   # limit 1: best + latest
    saved = {k: np.array(v) for k, v in mx.load(str(best_dir / "weights.safetensors")).items()}
    assert max_diff(weights(model), saved) == 0.0

    # Without an output folder the best weights are kept in memory: the same end.
    in_memory, result2, _ = flipped_eval_run(bert_dir)
    assert result2["best_step"] == best_step and max_diff(weights(in_memory), weights(model)) <= 1e-6


def test_early_stopping(bert_dir, tmp_path):
    _, result, events = flipped_eval_run(bert_dir, str(tmp_path), early_stopping_patience=2)
    evals = [(e["step"], e["metrics"]["eval_loss"]) for e in of(events, "eval") if e["step"] > 0]
    best, bad, stop = None, 0, None
    for step, loss in evals:
        best, bad = (loss, 0) if best is None or loss < best else (best, bad + 1)
        if bad == 2:
            stop = step
            break
    assert stop is not None and result["step"] == stop < 20 and result["stopped_early"]
    assert evals[-1][0] == stop                    # no second evaluation of the same step
    assert result["best_step"] < stop
