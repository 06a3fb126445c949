"""Dropout as each family's config says, in training only: every dropout site of every family acts in
train mode and not in eval mode (the mode load_model returns, which the parity tests compare with
transformers), attention-probability dropout goes through the one attention helper, the compiled step
equals the eager one with a fixed key and draws new masks each step, gradient checkpointing replays the
masks, ``dropout=0`` turns every dropout off, and the run record and saved config say what was used."""
import json

import numpy as np
import pytest

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from engine.models.attention import attention, make_mask
from engine.models.dropout import dropout_values
from engine.training.args import TrainingArgs
from engine.training.step import build_step, make_optimizer
from tests.helpers import padded_batch
from tests.tiny_families import FAMILIES, build
from tests.trainer_helpers import dataset, labels, load, of, sentiment_rows, tiny_bert_dir, train

# Every place a family applies dropout, one config key at a time: (family, task, key).
SITES = [("bert", "feature-extraction", "hidden_dropout_prob"),
         ("bert", "feature-extraction", "attention_probs_dropout_prob"),
         ("bert", "text-classification", "classifier_dropout"),
         ("bert", "token-classification", "classifier_dropout"),
         ("modernbert", "feature-extraction", "embedding_dropout"),
         ("modernbert", "feature-extraction", "attention_dropout"),
         ("modernbert", "feature-extraction", "mlp_dropout"),
         ("modernbert", "text-classification", "classifier_dropout"),
         ("modernbert", "token-classification", "classifier_dropout"),
         ("qwen3", "feature-extraction", "attention_dropout"),
         ("qwen3", "token-classification", "classifier_dropout"),
         ("gemma3_text", "feature-extraction", "attention_dropout"),
         ("gemma3_text", "token-classification", "classifier_dropout"),
         ("t5gemma", "feature-extraction", "dropout_rate"),
         ("t5gemma", "feature-extraction", "attention_dropout"),
         ("t5gemma", "text-classification", "classifier_dropout_rate"),
         ("t5gemma", "token-classification", "classifier_dropout_rate"),
         ("lfm2", "token-classification", "classifier_dropout")]
# Where transformers applies no dropout at all: LFM2's backbone, the generic last-token classifiers.
NO_DROPOUT = [("lfm2", "feature-extraction"), ("qwen3", "text-classification"),
              ("gemma3_text", "text-classification"), ("lfm2", "text-classification")]
# A task per family whose train mode has dropout (LFM2: only its token classifier has any).
TASK_WITH_DROPOUT = {f: "token-classification" if f == "lfm2" else "feature-extraction" for f in FAMILIES}


def inputs(seed=0):
    ids, mask = padded_batch(100, lengths=(7, 4, 9), seed=seed)
    return mx.array(ids), mx.array(mask)


def only(family: str, key: str, p: float) -> dict:
    """Config keys: every dropout probability of ``family`` 0, but ``key`` = p."""
    from engine.models import get_family
    return {**dict.fromkeys(get_family(family).DROPOUT_KEYS, 0.0), key: p}


def modes(model, ids, mask):
    """(eval output, two train-mode outputs, eval output again)."""
    before = np.array(model(ids, mask))
    model.train()
    first, second = np.array(model(ids, mask)), np.array(model(ids, mask))
    model.eval()
    return before, first, second, np.array(model(ids, mask))


@pytest.mark.parametrize("family,task,key", SITES)
def test_each_dropout_site_acts_in_train_mode_only(family, task, key):
    model = build(family, task, **only(family, key, 0.1))
    ids, mask = inputs()
    before, first, second, after = modes(model, ids, mask)
    assert not np.allclose(first, before) and not np.allclose(first, second)
    np.testing.assert_array_equal(after, before)


@pytest.mark.parametrize("family", FAMILIES)
def test_train_mode_differs_from_eval_mode_and_dropout_zero_turns_it_off(family):
    task = TASK_WITH_DROPOUT[family]
    ids, mask = inputs()
    before, first, _, after = modes(build(family, task, dropout=0.1), ids, mask)
    assert not np.allclose(first, before)
    np.testing.assert_array_equal(after, before)
    # --dropout 0: every probability 0, so training computes exactly what inference does.
    model = build(family, task, dropout=0.0)
    assert set(dropout_values(model).values()) == {0.0}
    before, first, second, _ = modes(model, ids, mask)
    np.testing.assert_array_equal(first, before)
    np.testing.assert_array_equal(second, before)


@pytest.mark.parametrize("family,task", NO_DROPOUT)
def test_no_dropout_where_transformers_has_none(family, task):
    model = build(family, task, **only(family, "classifier_dropout", 0.5))  # LFM2's one dropout key
    before, first, _, _ = modes(model, *inputs())
    np.testing.assert_array_equal(first, before)


def test_config_defaults_are_transformers_defaults():
    """A config without dropout keys trains with transformers' defaults: BertConfig's 0.1 (the classifier's
    falls back to it), 0 elsewhere, and GenericForTokenClassification's 0.1 for the decoders' token heads."""
    assert dropout_values(build("bert")) == dict.fromkeys(
        ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout"), 0.1)
    assert dropout_values(build("bert", hidden_dropout_prob=0.2))["classifier_dropout"] == 0.2
    assert set(dropout_values(build("modernbert")).values()) == {0.0}
    assert set(dropout_values(build("t5gemma")).values()) == {0.0}
    for family in ("qwen3", "gemma3_text", "lfm2"):
        values = dropout_values(build(family))
        assert values.pop("classifier_dropout") == 0.1 and set(values.values()) <= {0.0}


def test_t5gemma_reads_dropout_at_the_top_level_as_transformers():
    """T5GemmaConfig copies its top-level dropout into the encoder, whatever the encoder says."""
    from tests.tiny_families import TINY
    encoder = dict(TINY["t5gemma"]["encoder"], dropout_rate=0.3, attention_dropout=0.3)
    model = build("t5gemma", encoder=encoder, dropout_rate=0.1)
    assert dropout_values(model) == {"dropout_rate": 0.1, "attention_dropout": 0.0, "classifier_dropout_rate": 0.0}


# -- attention-probability dropout (the one attention helper) -----------------------------------------------------
def qkv(B=2, Hq=4, Hkv=2, T=6, D=8, seed=0):
    mx.random.seed(seed)
    return (mx.random.normal((B, Hq, T, D)), mx.random.normal((B, Hkv, T, D)), mx.random.normal((B, Hkv, T, D)))


def test_attention_with_dropout_is_softmax_dropout_then_values():
    q, k, v = qkv()
    mask = make_mask(mx.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]]), causal=True)
    fused = attention(q, k, v, mask, scale=0.3)
    # A vanishing probability takes the written-out path with no mask drawn as zero: the fused result (GQA, masks).
    assert mx.abs(attention(q, k, v, mask, scale=0.3, dropout=1e-9) - fused).max().item() <= 1e-5
    # Masked keys stay unread with dropout: other values there change nothing.
    v2 = mx.where(mx.arange(6)[None, None, :, None] >= 4, v + 100.0, v)
    rows = mx.array([0])
    mx.random.seed(1)
    a = attention(q[rows], k[rows], v[rows], mask[rows], scale=0.3, dropout=0.5)
    mx.random.seed(1)
    b = attention(q[rows], k[rows], v2[rows], mask[rows], scale=0.3, dropout=0.5)
    np.testing.assert_array_equal(np.array(a), np.array(b))
    assert not np.allclose(np.array(a), np.array(fused[rows]))


def test_attention_dropout_is_unbiased():
    """Kept probabilities are scaled by 1/(1-p): the mean over many draws is the output without dropout."""
    q, k, v = qkv(B=1)
    many = [mx.repeat(x, 4000, axis=0) for x in (q, k, v)]
    mx.random.seed(0)
    mean = attention(*many, None, scale=0.3, dropout=0.3).mean(axis=0)
    assert mx.abs(mean - attention(q, k, v, None, scale=0.3)[0]).max().item() <= 0.05


# -- the step -----------------------------------------------------------------------------------------------------
def classifier_batch(seed=0):
    ids, mask = inputs(seed)
    return {"input_ids": ids, "attention_mask": mask, "labels": mx.array([0, 2, 1])}


def steps(compile: bool, n: int = 3):
    from engine.losses import CrossEntropyLoss
    model = build("bert", "text-classification", dropout=0.1)
    model.train()
    optimizer = make_optimizer(TrainingArgs(learning_rate=1e-2), 100, 0)
    optimizer.init(model.trainable_parameters())
    full_step, grads_fn, _ = build_step(model, CrossEntropyLoss(), optimizer, 1.0, compile)
    mx.random.seed(7)
    losses = [full_step(classifier_batch(i))[0].item() for i in range(n)]
    return model, losses, grads_fn


def test_compiled_step_equals_eager_with_a_fixed_key_and_draws_new_masks_each_step():
    compiled, compiled_losses, grads_fn = steps(compile=True)
    eager, eager_losses, _ = steps(compile=False)
    np.testing.assert_allclose(compiled_losses, eager_losses, rtol=1e-5, atol=1e-6)
    a, b = dict(tree_flatten(compiled.parameters())), dict(tree_flatten(eager.parameters()))
    assert max(mx.abs(a[k] - b[k]).max().item() for k in a) <= 1e-5
    # The random state is the compiled step's state: the same batch twice gets two masks.
    batch = classifier_batch()
    first, second = grads_fn(batch)[0].item(), grads_fn(batch)[0].item()
    assert first != second


@pytest.mark.parametrize("family", FAMILIES)
def test_gradient_checkpointing_replays_the_dropout_masks(family):
    task = TASK_WITH_DROPOUT[family]
    model = build(family, task, dropout=0.2)
    model.train()
    ids, mask = inputs()
    target = mx.random.normal(model(ids, mask).shape)
    loss = lambda m: (m(ids, mask) * target).sum()
    grads = {}
    for on in (False, True):
        model.set_grad_checkpoint(on)
        mx.random.seed(3)
        value, g = nn.value_and_grad(model, loss)(model)
        grads[on] = (value.item(), dict(tree_flatten(g)))
    assert grads[True][0] == pytest.approx(grads[False][0], abs=1e-6)
    assert max(mx.abs(grads[True][1][k] - v).max().item() for k, v in grads[False][1].items()) <= 1e-5


# -- loading, the trainer, the run record ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return tiny_bert_dir(tmp_path_factory)  # BertConfig's defaults: hidden and attention dropout 0.1


def test_load_model_gives_eval_mode_and_the_override_is_saved_as_config(bert_dir, tmp_path):
    from engine.models import load_model
    model, _ = load_model(str(bert_dir), "text-classification", num_labels=2)
    assert not model.training and not any(m.training for _, m in model.named_modules())
    model.save_pretrained(tmp_path / "own")
    saved = json.loads((tmp_path / "own" / "config.json").read_text())
    assert saved["hidden_dropout_prob"] == saved["attention_probs_dropout_prob"] == 0.1  # the model's own config
    assert saved.get("classifier_dropout") is None
    model, _ = load_model(str(bert_dir), "text-classification", num_labels=2, dropout=0.25)
    assert dropout_values(model) == dict.fromkeys(
        ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout"), 0.25)
    model.save_pretrained(tmp_path / "override")
    saved = json.loads((tmp_path / "override" / "config.json").read_text())
    assert saved["hidden_dropout_prob"] == saved["attention_probs_dropout_prob"] == saved["classifier_dropout"] == 0.25


def test_trainer_steps_in_train_mode_and_evaluates_in_eval_mode(bert_dir, monkeypatch):
    model, tok = load(bert_dir, "text-classification", num_labels=2)
    seen, phase = [], {"name": None}
    original = type(model).__call__
    monkeypatch.setattr(type(model), "__call__",
                        lambda self, *a: seen.append((phase["name"], self.training)) or original(self, *a))
    on_event = lambda e: phase.update(name=e["name"]) if e["event"] == "phase" else None
    from engine.training.trainer import Trainer
    trainer = Trainer(model, tok, "text-classification",
                      TrainingArgs(batch_size=8, max_steps=2, save_steps=0, max_length=32, compile=False),
                      dataset(sentiment_rows(16)), dataset(sentiment_rows(8, seed=1)), callbacks=[on_event],
                      label_info=labels())
    trainer.train()
    assert {mode for name, mode in seen if name == "training"} == {True}
    assert {mode for name, mode in seen if name == "evaluating"} == {False}
    assert not model.training


def test_trainer_refuses_a_dropout_setting_the_model_was_not_loaded_with(bert_dir):
    from engine.errors import TrainingError
    model, tok = load(bert_dir, "text-classification", num_labels=2)
    with pytest.raises(TrainingError, match="dropout"):
        train(model, tok, "text-classification", dataset(sentiment_rows(8)), label_info=labels(), max_steps=1,
              dropout=0.0)


@pytest.mark.parametrize("dropout", [None, 0.0])
def test_run_record_and_output_config_show_the_dropout(bert_dir, tmp_path, dropout):
    from engine.data import DatasetArgs
    from engine.run_record import read_run_record
    from engine.training.config import RunConfig
    from engine.training.run import train_run
    data = tmp_path / "reviews.jsonl"
    data.write_text("".join(json.dumps({"text": r["text"], "label": ["neg", "pos"][r["label"]]}) + "\n"
                            for r in sentiment_rows(16)))
    out = tmp_path / "run"
    args = TrainingArgs(output_dir=str(out), batch_size=8, max_steps=1, save_steps=0, max_length=32, dropout=dropout)
    dargs = DatasetArgs(data=str(data), task_type="text-classification", max_length=32)
    events = []
    train_run(RunConfig(str(bert_dir), "text-classification", dargs, args), [events.append])
    want = 0.1 if dropout is None else dropout
    used = dict.fromkeys(("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout"), want)
    record = read_run_record(out)
    assert record["dropout"] == used and record["training"]["dropout"] == dropout
    assert of(events, "run_started")[0]["config"]["dropout"] == used
    saved = json.loads((out / "config.json").read_text())
    assert saved["hidden_dropout_prob"] == saved["attention_probs_dropout_prob"] == want
