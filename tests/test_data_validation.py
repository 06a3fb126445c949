"""Validation report: warnings with counts, examples and fixes; token lengths (engine/data/validation.py)."""
import json

import datasets
import pytest
from transformers import AutoTokenizer

from engine.data import DatasetArgs, load_dataset, validate
from engine.defaults import default_model_dir

datasets.disable_progress_bars()


@pytest.fixture(scope="module")
def tok():
    return AutoTokenizer.from_pretrained(str(default_model_dir()))


def jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def codes(report):
    return {f.code: f for f in report.findings}


def test_long_rows_histogram_and_truncation_count(tmp_path, tok):
    rows = [{"text": " ".join(["word"] * n), "label": i % 2} for i, n in enumerate([3, 5, 8, 40, 100, 6, 7, 2])]
    data = load_dataset(DatasetArgs(data=jsonl(tmp_path / "l.jsonl", rows), task_type="text-classification",
                                    max_length=32, validation_split=0), tok, cache_dir=str(tmp_path / "c"))
    report = data.report
    long = codes(report)["too_long"]
    assert long.severity == "warning" and long.count == 2 and long.examples == [4, 5]
    assert "of the train split are longer than max_length=32 tokens (longest 102)" in long.message and long.column == "text"
    assert report.truncated_rows == 2
    hist = report.length_histogram
    assert sum(hist["counts"]) == 8 and hist["max"] == 102 and hist["edges"][0] == 0 and hist["edges"][-1] > 102


def test_class_imbalance_unseen_labels_and_label_counts(tok):
    train = datasets.Dataset.from_dict({"text": [f"t{i}" for i in range(23)], "label": ["a"] * 20 + ["b"] * 2 + ["c"]})
    val = datasets.Dataset.from_dict({"text": ["v1", "v2", "v3"], "label": ["a", "d", "e"]})
    report = validate({"train": train, "validation": val}, "text-classification")
    found = codes(report)
    assert report.ok and report.label_counts == {"a": 20, "b": 2, "c": 1}
    assert "20 vs 1 rows (rarest: 'c')" in found["class_imbalance"].message
    unseen = found["unseen_label"]
    assert unseen.split == "validation" and unseen.examples == [2, 3] and "'d', 'e'" in unseen.message


def test_duplicates_and_train_validation_overlap():
    train = datasets.Dataset.from_dict({"text": ["q1", "q2", "q1", "q3", "q2"], "text_pair": ["a", "b", "a", "c", "x"]})
    val = datasets.Dataset.from_dict({"text": ["q3", "q9", "q2"], "text_pair": ["c", "z", "b"]})
    found = codes(validate({"train": train, "validation": val}, "sentence-similarity"))
    assert found["duplicates"].count == 1 and found["duplicates"].examples == [3]      # (q2, x) is not a repeat
    assert found["train_validation_overlap"].examples == [1, 3]
    assert found["train_validation_overlap"].severity == "warning"


def test_empty_texts_are_a_warning_with_rows():
    train = datasets.Dataset.from_dict({"text": ["a", "", "b", "   ", None], "text_pair": ["x", "y", "", "w", "v"]})
    report = validate({"train": train}, "sentence-similarity")
    empty = [f for f in report.findings if f.code == "empty_text"]
    assert [(f.column, f.count, f.examples) for f in empty] == [("text", 3, [2, 4, 5]), ("text_pair", 1, [3])]
    assert report.ok


def test_scored_pairs_need_numeric_scores():
    train = datasets.Dataset.from_dict({"text": ["a", "b"], "text_pair": ["c", "d"], "label": ["0.5", "high"]})
    report = validate({"train": train}, "sentence-similarity", columns={"label": "score"})
    (fatal,) = report.fatal
    assert fatal.code == "non_numeric_score" and fatal.column == "score" and fatal.row == 2


def test_token_classification_checks(tok):
    train = datasets.Dataset.from_dict({"tokens": [["EU", "rejects"], [], ["Peter"]],
                                        "labels": [["B-ORG", "O"], [], ["B-PER"]]})
    val = datasets.Dataset.from_dict({"tokens": [["Paris"], ["x"]], "labels": [["B-LOC"], ["O"]]})
    report = validate({"train": train, "validation": val}, "token-classification", tokenizer=tok, max_length=16)
    found = codes(report)
    assert found["empty_text"].examples == [2]
    assert found["unseen_label"].examples == [1] and "'B-LOC'" in found["unseen_label"].message
    assert report.ok and report.label_counts == {"B-ORG": 1, "B-PER": 1, "O": 1}


def test_single_tag_in_token_classification_is_fatal():
    train = datasets.Dataset.from_dict({"tokens": [["a", "b"], ["c"]], "labels": [["O", "O"], ["O"]]})
    report = validate({"train": train}, "token-classification")
    assert [f.code for f in report.fatal] == ["single_class"]


def test_regression_skips_class_checks():
    train = datasets.Dataset.from_dict({"text": ["a", "b", "c"], "label": [0.1, 0.1, 0.1]})
    assert validate({"train": train}, "text-classification").ok
    assert not validate({"train": train}, "text-classification", is_regression=False).ok


def test_report_to_dict_is_json_safe(tmp_path, tok):
    rows = [{"text": f"row {i}", "label": i % 2} for i in range(6)] + [{"text": "row 1", "label": 1}]
    data = load_dataset(DatasetArgs(data=jsonl(tmp_path / "d.jsonl", rows), task_type="text-classification",
                                    validation_split=0), tok, cache_dir=str(tmp_path / "c"))
    blob = json.dumps(data.report.to_dict())
    assert '"duplicates"' in blob and data.report.findings[0].file.endswith("d.jsonl")
    assert "d.jsonl, line 7, column 'text': 1 row(s) repeat an earlier train row." in str(data.report.findings[0])


def test_non_strict_load_returns_fatal_findings_for_the_gui(tmp_path):
    rows = [{"text": "a", "label": 1}, {"text": "", "label": 1}, {"text": "c", "label": 1}]
    data = load_dataset(DatasetArgs(data=jsonl(tmp_path / "one.jsonl", rows), task_type="text-classification",
                                    validation_split=0), cache_dir=str(tmp_path / "c"), strict=False)
    assert not data.report.ok and len(data.train) == 3
    assert [(f.severity, f.code) for f in data.report.findings] == [("warning", "empty_text"), ("fatal", "single_class")]


def test_token_lengths_stream_over_arrow_in_chunks_with_progress(tmp_path, tok):
    """The full check measures token lengths chunk by chunk (no datasets cache file), on a split held
    out by ``select`` too, says how far it is, and a progress callback that raises stops it."""
    from engine.data.tokenize import token_lengths
    rows = [{"text": "word " * (i % 40 + 1) + f"number {i}", "label": i % 3} for i in range(2500)]
    data = load_dataset(DatasetArgs(data=jsonl(tmp_path / "s.jsonl", rows), task_type="text-classification",
                                    validation_split=0.2), cache_dir=str(tmp_path / "c"))
    calls = []
    lengths = token_lengths(data.train, tok, "text-classification", batch_size=800,
                            progress=lambda done, total: calls.append((done, total)))
    assert calls == [(800, 2000), (1600, 2000), (2000, 2000)]
    assert lengths["text"].tolist() == [len(ids) for ids in tok(data.train[:]["text"])["input_ids"]]

    seen = []
    report = validate(data.splits, "text-classification", tokenizer=tok, max_length=16,
                      progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (2500, 2500) and report.truncated_rows == sum(n > 16 for n in lengths["text"]) + sum(
        len(ids) > 16 for ids in tok(data.validation[:]["text"])["input_ids"])

    class Stop(Exception):
        pass

    def stop(done, total):
        raise Stop
    with pytest.raises(Stop):
        validate(data.splits, "text-classification", tokenizer=tok, max_length=16, progress=stop)


def test_loaded_data_counts_the_rows_read_and_a_lenient_load_leaves_labels_as_read(tmp_path):
    """rows_read: the rows of the split trained on before validation rows are held out (the exact
    count the app shows instead of the preview's estimate); the GUI's lenient check does not encode labels."""
    rows = [{"text": f"row {i}", "label": "ab"[i % 2]} for i in range(50)]
    path = jsonl(tmp_path / "n.jsonl", rows)
    data = load_dataset(DatasetArgs(data=path, task_type="text-classification", validation_split=0.2),
                        cache_dir=str(tmp_path / "c"))
    assert data.rows_read == 50 and data.report.num_rows == {"train": 40, "validation": 10}
    assert set(data.train["label"]) == {0, 1}
    lenient = load_dataset(DatasetArgs(data=path, task_type="text-classification", max_rows=20),
                           cache_dir=str(tmp_path / "c"), strict=False)
    assert lenient.rows_read == 20 and lenient.label_info.names == ["a", "b"]
    assert set(lenient.train["label"]) == {"a", "b"}


def test_checks_read_a_held_out_split_through_arrow(tmp_path):
    """arrow_column takes a ``select``ed split's rows with Arrow (datasets gathers them one slice per row)."""
    from engine.data.labels import arrow_column
    ds = datasets.Dataset.from_dict({"text": [f"t{i}" for i in range(10)], "label": list(range(10))})
    picked = ds.select([7, 2, 5])
    assert arrow_column(picked, "text").to_pylist() == ["t7", "t2", "t5"]
    assert arrow_column(picked.select([2, 0]), "label").to_pylist() == [5, 7]
    assert arrow_column(ds, "label").to_pylist() == list(range(10))
