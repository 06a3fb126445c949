"""Multi-label classification: list labels (JSONL lists, '|'-separated CSV cells), BCE, micro/macro F1
with per-label thresholds, and an export that transformers loads as multi_label_classification."""
import csv
import json

import datasets
import mlx.core as mx
import numpy as np
import pytest

from engine.data import DataError, DatasetArgs, load_dataset
from engine.data.collators import collator_for
from engine.losses import BCEWithLogitsLoss, bce_loss, select_loss
from engine.metrics.classification import best_threshold, multilabel_report
from engine.metrics.evaluate import evaluate_batches
from engine.tasks import TASKS
from tests.trainer_helpers import tiny_bert_dir

datasets.disable_progress_bars()

TOPICS = [["sports"], ["politics", "sports"], [], ["tech"], ["politics"], ["tech", "sports"]] * 4


def rows(n=24):
    return [{"text": f"news story number {i} about {' and '.join(TOPICS[i % len(TOPICS)]) or 'nothing'}",
             "label": TOPICS[i % len(TOPICS)]} for i in range(n)]


def write_jsonl(path, items):
    path.write_text("".join(json.dumps(r) + "\n" for r in items))
    return path


def write_csv(path, items):
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(items[0]))
        w.writeheader()
        w.writerows(items)
    return path


def load(tmp_path, path, **kw):
    kw.setdefault("validation_split", 0.0)
    return load_dataset(DatasetArgs(data=str(path), task_type="text-classification", **kw),
                        cache_dir=str(tmp_path / "cache"))


# -- data ----------------------------------------------------------------------------------------
def test_jsonl_lists_load_as_multi_hot_over_the_union_of_labels(tmp_path):
    data = load(tmp_path, write_jsonl(tmp_path / "t.jsonl", rows()))
    info = data.label_info
    assert info.is_multi_label and not info.is_regression
    assert info.names == ["politics", "sports", "tech"] and info.num_labels == 3
    assert data.train[1]["label"] == [1.0, 1.0, 0.0]     # ["politics", "sports"]
    assert data.train[2]["label"] == [0.0, 0.0, 0.0]     # [] = no label
    assert info.to_dict()["is_multi_label"] is True and data.report.multi_label


def test_multi_label_data_still_gets_duplicate_and_length_checks(tmp_path):
    from transformers import AutoTokenizer
    from engine.defaults import default_model_dir
    path = write_jsonl(tmp_path / "t.jsonl", rows() + rows(1))
    data = load_dataset(DatasetArgs(data=str(path), task_type="text-classification", validation_split=0.0),
                        AutoTokenizer.from_pretrained(str(default_model_dir())), cache_dir=str(tmp_path / "cache"))
    assert any(f.code == "duplicates" for f in data.report.warnings) and data.report.length_histogram
    assert data.report.label_counts == {"politics": 8, "sports": 13, "tech": 8}   # + the repeated first row


def test_label_only_in_the_validation_file_is_still_a_column(tmp_path):
    extra = [{"text": "a story on food", "label": ["food", "sports"]}]
    data = load(tmp_path, write_jsonl(tmp_path / "t.jsonl", rows()),
                eval_data=str(write_jsonl(tmp_path / "v.jsonl", extra)))
    assert data.label_info.names == ["food", "politics", "sports", "tech"]
    assert data.validation[0]["label"] == [1.0, 0.0, 1.0, 0.0]
    assert any(f.code == "unseen_label" and "'food'" in f.message for f in data.report.warnings)


def test_csv_pipe_separated_labels_are_detected_and_said(tmp_path):
    items = [{"text": r["text"], "label": " | ".join(r["label"])} for r in rows()]
    data = load(tmp_path, write_csv(tmp_path / "t.csv", items))
    assert data.label_info.is_multi_label and data.label_info.names == ["politics", "sports", "tech"]
    assert data.train[1]["label"] == [1.0, 1.0, 0.0] and data.train[2]["label"] == [0.0, 0.0, 0.0]  # empty cell
    said = [f for f in data.report.warnings if f.code == "multi_label"]
    assert said and "'|'" in said[0].message and "3 labels" in said[0].message and "is_multi_label" in said[0].fix


def test_csv_without_pipes_is_single_label_unless_asked(tmp_path):
    items = [{"text": r["text"], "label": (r["label"] or ["none"])[0]} for r in rows()]
    path = write_csv(tmp_path / "t.csv", items)
    assert not load(tmp_path, path).label_info.is_multi_label
    data = load(tmp_path, path, is_multi_label=True)
    assert data.label_info.is_multi_label and data.label_info.names == ["none", "politics", "sports", "tech"]


def test_pipes_kept_as_class_names_when_multi_label_is_off(tmp_path):
    items = [{"text": r["text"], "label": "|".join(r["label"]) or "none"} for r in rows()]
    data = load(tmp_path, write_csv(tmp_path / "t.csv", items), is_multi_label=False)
    assert not data.label_info.is_multi_label and "politics|sports" in data.label_info.names


@pytest.mark.parametrize("case, code, words", [
    ("ids", "non_string_label", "int64"),
    ("empty", "empty_label", "empty label name"),
    ("null", "missing_label", "[]"),
])
def test_bad_list_labels_name_file_row_and_column(tmp_path, case, code, words):
    items = [{"text": r["text"], "topics": r["label"]} for r in rows(6)]
    if case == "ids":   # class ids instead of names, in every row
        items = [{"text": r["text"], "topics": list(range(len(r["topics"])))} for r in items]
    else:
        items[3]["topics"] = ["sports", ""] if case == "empty" else None
    path = write_jsonl(tmp_path / "t.jsonl", items)
    with pytest.raises(DataError) as info:
        load(tmp_path, path, label_field="topics")
    err = info.value
    assert err.code == code and err.column == "topics" and str(path) in str(err.file)
    assert words in str(err)
    assert err.row == (1 if case == "ids" else 4)   # the line of the file


def test_empty_name_between_pipes_is_refused(tmp_path):
    items = [{"text": r["text"], "label": "|".join(r["label"])} for r in rows(6)]
    items[2]["label"] = "tech||sports"
    path = write_csv(tmp_path / "t.csv", items)
    with pytest.raises(DataError) as info:
        load(tmp_path, path)
    assert info.value.code == "empty_label" and info.value.row == 4   # header + 3rd data row


def test_lists_with_regression_or_multi_label_off_are_refused(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", rows(6))
    with pytest.raises(DataError, match="is_multi_label"):
        load(tmp_path, path, is_multi_label=False)
    with pytest.raises(DataError, match="regression"):
        load(tmp_path, path, is_regression=True)


def test_collator_gives_multi_hot_float32():
    batch = collator_for("text-classification", None, pad_token_id=0, pad_to_multiple_of=4)(
        [{"input_ids": [5, 6], "label": [1.0, 0.0, 1.0]}, {"input_ids": [5], "label": [0.0, 0.0, 0.0]}])
    assert batch["labels"].dtype == mx.float32 and batch["labels"].tolist() == [[1, 0, 1], [0, 0, 0]]


# -- loss ----------------------------------------------------------------------------------------
def test_bce_by_hand():
    z, y = [[2.0, -1.0], [0.0, 3.0]], [[1.0, 0.0], [1.0, 1.0]]
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    want = -np.mean([[np.log(sig(2.0)), np.log(1 - sig(-1.0))], [np.log(sig(0.0)), np.log(sig(3.0))]])
    assert float(bce_loss(mx.array(z), mx.array(y))) == pytest.approx(want, rel=1e-6)
    big = mx.array([[80.0, -80.0]])   # no overflow: log(1 + e^80) stays finite
    assert float(bce_loss(big, mx.array([[0.0, 1.0]]))) == pytest.approx(80.0, rel=1e-6)


def test_select_loss_picks_bce_for_multi_label():
    kw = dict(scored=False, use_late_interaction=False, num_negatives=0, is_regression=False)
    assert isinstance(select_loss("text-classification", is_multi_label=True, **kw), BCEWithLogitsLoss)
    assert isinstance(select_loss("text-classification", is_multi_label=True, loss_name="bce", **kw),
                      BCEWithLogitsLoss)
    with pytest.raises(ValueError, match="cross_entropy"):
        select_loss("text-classification", is_multi_label=False, loss_name="bce", **kw)
    assert "bce" in TASKS["text-classification"].losses


# -- metrics -------------------------------------------------------------------------------------
def test_multilabel_report_matches_sklearn():
    from sklearn.metrics import f1_score, precision_recall_fscore_support
    rng = np.random.default_rng(0)
    y = (rng.random((40, 4)) < 0.4).astype(np.float32)
    scores = np.clip(y * 0.4 + rng.random((40, 4)) * 0.7, 0, 1)
    scores[:, 3] = 0.1          # a label never predicted at 0.5
    r = multilabel_report(y, scores, ["a", "b", "c", "d"])
    pred = scores >= 0.5
    assert r["micro_f1"] == pytest.approx(f1_score(y, pred, average="micro", zero_division=0))
    assert r["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro", zero_division=0))
    p, rc, f, s = precision_recall_fscore_support(y, pred, average=None, zero_division=0)
    for i, name in enumerate("abcd"):
        got = r["per_label"][name]
        assert (got["precision"], got["recall"], got["f1"], got["support"]) == pytest.approx((p[i], rc[i], f[i], s[i]))
    assert r["subset_accuracy"] == pytest.approx(np.mean((pred == (y > 0)).all(axis=1)))
    for i, name in enumerate("abcd"):   # brute force over every candidate threshold
        f1s = {t: f1_score(y[:, i], scores[:, i] >= t, zero_division=0) for t in np.unique(scores[:, i])}
        best = max(f1s.values())
        got = r["per_label"][name]
        assert got["best_f1"] == pytest.approx(best)
        assert got["best_threshold"] == max(t for t, v in f1s.items() if v == best)


def test_best_threshold_by_hand():
    # scores 0.9 (pos), 0.8 (neg), 0.3 (pos): t=0.9 → F1 2/3; t=0.3 → F1 0.8 (3 predicted, 2 right)
    assert best_threshold(np.array([1, 0, 1]), np.array([0.9, 0.8, 0.3])) == pytest.approx((0.3, 0.8))
    t, f1 = best_threshold(np.array([0, 0]), np.array([0.2, 0.7]))   # no positive: no threshold
    assert np.isnan(t) and f1 == 0.0


def test_evaluate_batches_on_multi_hot_labels():
    class Fixed:
        def __call__(self, ids, mask, *token_types):
            return mx.array([[3.0, -3.0], [-3.0, 3.0], [3.0, 3.0]])
    batch = {"input_ids": mx.zeros((3, 4), mx.int32), "attention_mask": mx.ones((3, 4), mx.int32),
             "labels": mx.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])}
    m = evaluate_batches("text-classification", Fixed(), [batch])
    assert m["micro_f1"] == pytest.approx(2 * 3 / (2 * 3 + 1)) and m["subset_accuracy"] == pytest.approx(2 / 3)
    assert set(m["per_label"]) == {"0", "1"} and "accuracy" not in m


# -- train, export, reload, predict ----------------------------------------------------------------
@pytest.mark.parity
def test_train_exports_a_multi_label_model_transformers_loads(tmp_path, tmp_path_factory, capsys):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from engine import inference
    from engine.cli import main
    bert = tiny_bert_dir(tmp_path_factory)
    data = write_jsonl(tmp_path / "t.jsonl", rows(32))
    out = tmp_path / "out"
    code = main(["train", "--model", str(bert), "--task", "text-classification", "--data", str(data),
                 "--output", str(out), "--max-steps", "2", "--batch-size", "8", "--validation-split", "0.25"])
    assert code == 0, capsys.readouterr().err
    record = json.loads((out / "raclate_run.json").read_text())
    assert record["status"] == "finished" and record["export"]["ok"], record.get("export")
    assert record["label_info"]["is_multi_label"] and "micro_f1" in record["metrics"]
    assert record["export"]["problem_type"] == "multi_label_classification"

    ref = AutoModelForSequenceClassification.from_pretrained(str(out)).eval()
    assert ref.config.problem_type == "multi_label_classification"
    assert ref.config.id2label == {0: "politics", 1: "sports", 2: "tech"}
    texts = ["a story about sports", "politics and tech news today, at length"]
    enc = AutoTokenizer.from_pretrained(str(out))(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        theirs = torch.sigmoid(ref(**enc).logits).numpy()
    model, tok, task, _ = inference.load_for_task(str(out))
    results = inference.classify(model, tok, texts)
    for row, r in zip(theirs, results):
        ours = {x["label"]: x["score"] for x in r["labels"]}
        assert set(ours) == {"politics", "sports", "tech"}
        np.testing.assert_allclose([ours[n] for n in ("politics", "sports", "tech")], row, atol=1e-5)
        assert r["predicted"] == [x["label"] for x in r["labels"] if x["score"] >= 0.5]

    # `raclate eval` on a file whose labels are a subset, in another order: columns matched by name
    subset = write_jsonl(tmp_path / "e.jsonl", [{"text": "tech and more tech", "label": ["tech"]},
                                                {"text": "the match", "label": ["sports"]}])
    capsys.readouterr()
    assert main(["eval", "--model", str(out), "--data", str(subset)]) == 0
    metrics = json.loads(capsys.readouterr().out)["metrics"]
    assert set(metrics["per_label"]) == {"politics", "sports", "tech"} and metrics["per_label"]["tech"]["support"] == 1
    assert metrics["per_label"]["politics"]["support"] == 0 and "micro_f1" in metrics
