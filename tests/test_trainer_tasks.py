"""A short real training run per task on a tiny random BERT: the loss on the training rows falls."""
import json

import pytest

from engine.defaults import RESOURCES_DIR
from engine.training.trainer import Trainer
from engine.training.args import TrainingArgs
from tests.trainer_helpers import dataset, labels, load, of, pair_rows, sentiment_rows, tiny_bert_dir


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return tiny_bert_dir(tmp_path_factory)


def scored_rows(n):
    pairs = pair_rows(n)
    return ([{"text": p["text"], "text_pair": p["text_pair"], "label": 1.0} for p in pairs]
            + [{"text": p["text"], "text_pair": p["negative"], "label": 0.0} for p in pairs])


def ner_rows(n):
    lines = (RESOURCES_DIR / "demo" / "ner.jsonl").read_text(encoding="utf-8").splitlines()[:n]
    rows = [json.loads(line) for line in lines]
    names = sorted({t for r in rows for t in r["ner_tags"]})
    return [{"tokens": r["tokens"], "labels": [names.index(t) for t in r["ner_tags"]]} for r in rows], names


def mlm_rows(n):
    return [{"text": r["text"]} for r in sentiment_rows(n, words=10)]


CASES = {
    # name: (task, load kwargs, rows, label_info, training args)
    "pairs-mnrl": ("sentence-similarity", {}, lambda: [{k: r[k] for k in ("text", "text_pair")} for r in pair_rows(32)],
                   None, {}),
    "triplets-mnrl": ("sentence-similarity", {}, lambda: pair_rows(32), None, {}),
    "scored-pairs-cosent": ("sentence-similarity", {}, lambda: scored_rows(16), None, {}),
    "late-interaction": ("sentence-similarity", {"use_late_interaction": True, "late_interaction_dim": 16},
                         lambda: [{k: r[k] for k in ("text", "text_pair")} for r in pair_rows(32)], None,
                         {"use_late_interaction": True}),
    "text-classification": ("text-classification", {"num_labels": 2}, lambda: sentiment_rows(32), labels(),
                            {"learning_rate": 1e-2}),
    "regression": ("text-classification", {"is_regression": True},
                   lambda: [dict(r, label=float(r["label"])) for r in sentiment_rows(32)], labels(regression=True), {}),
    "masked-lm": ("masked-lm", {}, lambda: mlm_rows(32), None, {"learning_rate": 1e-2, "num_train_epochs": 3}),
    "token-classification": ("token-classification", "ner", lambda: ner_rows(32)[0], "ner", {}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_loss_falls(bert_dir, case):
    task, load_kw, rows, info, extra = CASES[case]
    if load_kw == "ner":
        names = ner_rows(32)[1]
        load_kw, info = {"id2label": names}, labels(names)
    model, tok = load(bert_dir, task, **load_kw)
    ds = dataset(rows())
    args = TrainingArgs(**{**dict(batch_size=8, learning_rate=2e-3, num_train_epochs=6, logging_steps=4, save_steps=0,
                                  max_length=48, warmup_ratio=0.1, seed=0), **extra})
    events = []
    trainer = Trainer(model, tok, task, args, ds, ds, callbacks=[events.append], label_info=info)
    before = trainer.evaluate()["eval_loss"]
    result = trainer.train()
    after = trainer.evaluate()["eval_loss"]
    assert after < 0.85 * before, (case, before, after)
    steps = of(events, "step")
    assert steps[-1]["step"] == result["step"] and all(s["loss"] is not None for s in steps)
    assert of(events, "eval")[-1]["metrics"]["eval_loss"] == pytest.approx(after, rel=1e-5)
