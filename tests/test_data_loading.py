"""Loading every format, folders with splits, label encoding and automatic splits (engine/data)."""
import csv
import json

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.data import DataError, DatasetArgs, load_dataset, normalize_task

datasets.disable_progress_bars()

ROWS = [{"sentence": f"sentence number {i}", "label": ["neg", "pos", "neutral"][i % 3]} for i in range(30)]


def write(path, rows, fmt=None):
    fmt = fmt or path.suffix.lstrip(".")
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif fmt == "json":
        path.write_text(json.dumps(rows))
    elif fmt in ("csv", "tsv"):
        with open(path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter="\t" if fmt == "tsv" else ",")
            w.writeheader()
            w.writerows(rows)
    elif fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.fixture
def load(tmp_path):
    def run(data, **kw):
        kw.setdefault("task_type", "text-classification")
        tokenizer = kw.pop("tokenizer", None)
        return load_dataset(DatasetArgs(data=str(data), **kw), tokenizer, cache_dir=str(tmp_path / "cache"))
    return run


@pytest.mark.parametrize("ext", ["jsonl", "json", "csv", "tsv", "parquet"])
def test_each_format_loads_with_roles_and_sorted_label_ids(tmp_path, load, ext):
    data = load(write(tmp_path / f"train.{ext}", ROWS), validation_split=0.0)
    assert data.train.column_names == ["text", "label"]
    assert len(data.train) == 30 and data.validation is None
    assert data.label_info.names == ["neg", "neutral", "pos"]      # sorted, stable
    assert data.label_info.num_labels == 3 and not data.label_info.is_regression
    assert data.train[1] == {"text": "sentence number 1", "label": 2}   # "pos" → 2
    assert data.id2label == {0: "neg", 1: "neutral", 2: "pos"}
    assert data.columns == {"text": "sentence", "label": "label"}


@pytest.mark.parametrize("indent", [None, 2])
def test_json_object_with_data_key(tmp_path, load, indent):
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"data": ROWS}, indent=indent))
    data = load(path, validation_split=0.0)
    assert len(data.train) == 30 and data.train.column_names == ["text", "label"]
    assert data.sources["train"].locate(4) == (str(path), 5, "row")


def test_folder_with_train_validation_test_files(tmp_path, load):
    folder = tmp_path / "ds"
    folder.mkdir()
    write(folder / "train.jsonl", ROWS[:20])
    write(folder / "validation.csv", ROWS[20:25])
    write(folder / "test.parquet", ROWS[25:])
    (folder / "README.md").write_text("# notes")
    data = load(folder)
    assert (len(data.train), len(data.validation), len(data.test)) == (20, 5, 5)
    assert data.validation[0]["text"] == "sentence number 20"
    assert data.sources["validation"].locate(0) == (str(folder / "validation.csv"), 2, "line")


def test_folder_dev_split_name_and_explicit_split(tmp_path, load):
    folder = tmp_path / "ds"
    folder.mkdir()
    write(folder / "train.jsonl", ROWS[:20])
    write(folder / "dev.jsonl", ROWS[20:])
    data = load(folder)
    assert len(data.validation) == 10
    data = load(folder, split="validation", validation_split=0.0)   # train on another split
    assert len(data.train) == 10 and data.validation is None


def test_saved_dataset_folder(tmp_path, load):
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS[:24]),
                               "test": datasets.Dataset.from_list(ROWS[24:])})
    dd.save_to_disk(str(tmp_path / "saved"))
    data = load(tmp_path / "saved", validation_split=0.0)
    assert (len(data.train), len(data.test)) == (24, 6)


def test_automatic_validation_and_test_split_is_seeded(tmp_path, load):
    path = write(tmp_path / "train.jsonl", ROWS)
    a = load(path, validation_split=0.2, test_split=0.1, seed=3)
    b = load(path, validation_split=0.2, test_split=0.1, seed=3)
    assert (len(a.train), len(a.validation), len(a.test)) == (21, 6, 3)
    assert a.validation["text"][:] == b.validation["text"][:]
    assert set(a.train["text"]) | set(a.validation["text"]) | set(a.test["text"]) == {r["sentence"] for r in ROWS}
    # line numbers survive the shuffle: row 0 of validation is some line of the file
    file, line, label = a.sources["validation"].locate(0)
    assert file == str(path) and label == "line"
    assert json.loads(path.read_text().splitlines()[line - 1])["sentence"] == a.validation[0]["text"]


def test_eval_data_file_replaces_validation_split(tmp_path, load):
    data = load(write(tmp_path / "train.jsonl", ROWS[:25]), eval_data=str(write(tmp_path / "dev.csv", ROWS[25:])))
    assert (len(data.train), len(data.validation)) == (25, 5)


def test_max_rows_limits_each_split(tmp_path, load):
    data = load(write(tmp_path / "train.jsonl", ROWS), max_rows=12, validation_split=0.0)
    assert len(data.train) == 12


def test_float_labels_in_classification_mean_regression_unless_overridden(tmp_path, load):
    rows = [{"text": f"t{i}", "label": v} for i, v in enumerate([0.5, 1.0, 2.25, 3.0] * 3)]
    path = write(tmp_path / "r.jsonl", rows)
    data = load(path, validation_split=0.0)
    assert data.label_info.is_regression and data.label_info.num_labels == 1
    assert data.train.features["label"].dtype == "float32"
    data = load(path, validation_split=0.0, is_regression=False)
    assert data.label_info.names == ["0.5", "1", "2.25", "3"] and data.train[1]["label"] == 1


def test_integer_labels_keep_ids_or_map_to_sorted(tmp_path, load):
    data = load(write(tmp_path / "a.jsonl", [{"text": f"t{i}", "label": i % 3} for i in range(9)]), validation_split=0)
    assert data.label_info.names == ["0", "1", "2"] and data.train[2]["label"] == 2
    data = load(write(tmp_path / "b.jsonl", [{"text": f"t{i}", "label": [-1, 1][i % 2]} for i in range(8)]),
                validation_split=0)
    assert data.label_info.names == ["-1", "1"] and data.train["label"][:4] == [0, 1, 0, 1]


def test_numeric_strings_with_regression_become_floats(tmp_path, load):
    rows = [{"text": f"t{i}", "label": str(i / 4)} for i in range(8)]
    data = load(write(tmp_path / "s.jsonl", rows), validation_split=0, is_regression=True)
    assert data.label_info.is_regression and data.train[2]["label"] == pytest.approx(0.5)


def test_sentence_similarity_pairs_triplets_and_scores(tmp_path, load):
    rows = [{"anchor": f"q{i}", "positive": f"p{i}", "negative": f"n{i}"} for i in range(10)]
    data = load(write(tmp_path / "t.jsonl", rows), task_type="sentence-transformers", validation_split=0)
    assert data.task == "sentence-similarity" and data.text_roles == ["text", "text_pair", "negative"]
    assert data.label_info.num_labels == 0
    rows = [{"sentence1": f"a{i}", "sentence2": f"b{i}", "score": i / 10} for i in range(10)]
    data = load(write(tmp_path / "s.parquet", rows), task_type="sentence-similarity", validation_split=0)
    assert data.label_info.is_regression and data.train.column_names == ["text", "text_pair", "label"]
    rows = [{"query": f"q{i}", "pos": f"p{i}", "neg_1": f"x{i}", "neg_2": f"y{i}"} for i in range(10)]
    data = load(write(tmp_path / "m.jsonl", rows), task_type="feature-extraction", validation_split=0)
    assert data.text_roles == ["text", "text_pair", "negative_1", "negative_2"]


def test_explicit_mapping_and_negative_field_list(tmp_path, load):
    rows = [{"a": f"q{i}", "b": f"p{i}", "c": f"x{i}", "d": f"y{i}"} for i in range(6)]
    data = load(write(tmp_path / "m.jsonl", rows), task_type="sentence-similarity", validation_split=0,
                text_field="a", columns={"text_pair": "b"}, negative_field="c, d")
    assert data.text_roles == ["text", "text_pair", "negative_1", "negative_2"]
    assert data.train[0] == {"text": "q0", "text_pair": "p0", "negative_1": "x0", "negative_2": "y0"}


def test_masked_lm_reads_text_only(tmp_path, load):
    rows = [{"text": f"line {i}", "label": 1, "id": i} for i in range(5)]
    data = load(write(tmp_path / "m.jsonl", rows), task_type="masked-lm", validation_split=0)
    assert data.train.column_names == ["text"]


@pytest.mark.parametrize("ext", ["jsonl", "json", "parquet"])
def test_token_classification_string_tags_become_sorted_ids(tmp_path, load, ext):
    rows = [{"tokens": ["EU", "rejects", "German", "call"], "ner_tags": ["B-ORG", "O", "B-MISC", "O"]},
            {"tokens": ["Peter", "Blackburn"], "ner_tags": ["B-PER", "I-PER"]}] * 3
    data = load(write(tmp_path / f"ner.{ext}", rows), task_type="token-classification", validation_split=0)
    assert data.label_info.names == ["B-MISC", "B-ORG", "B-PER", "I-PER", "O"]
    assert data.train[0]["labels"] == [1, 4, 0, 4]
    assert data.train.column_names == ["tokens", "labels"]


def test_hub_class_label_features_keep_their_names(tmp_path, load):
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["negative", "positive"])})
    ds = datasets.Dataset.from_dict({"text": ["a", "b", "c", "d"], "label": [1, 0, 1, 0]}, features=features)
    ds.save_to_disk(str(tmp_path / "saved"))
    data = load(tmp_path / "saved", validation_split=0)
    assert data.label_info.names == ["negative", "positive"] and data.train[0]["label"] == 1


def test_normalize_task_aliases():
    assert normalize_task("sentence-transformers") == "sentence-similarity"
    assert normalize_task("Feature-Extraction") == "sentence-similarity"
    assert normalize_task("text-classification") == "text-classification"
    assert normalize_task("ner") == "token-classification"   # one alias table (engine/tasks.py) for every layer
    with pytest.raises(DataError, match="Unknown task 'translation'.*token-classification"):
        normalize_task("translation")


def test_report_is_attached_and_warnings_do_not_stop(tmp_path, load):
    rows = ROWS + [{"sentence": "   ", "label": "pos"}]
    data = load(write(tmp_path / "w.jsonl", rows), validation_split=0)
    assert data.report.ok and [f.code for f in data.report.warnings] == ["empty_text"]
    assert data.report.warnings[0].row == 31


def test_bool_labels_become_false_true(tmp_path, load):
    data = load(write(tmp_path / "b.jsonl", [{"text": f"t{i}", "label": i % 3 == 0} for i in range(9)]),
                validation_split=0)
    assert data.label_info.names == ["False", "True"] and data.train["label"][:3] == [1, 0, 0]


def test_not_strict_keeps_counts_warnings_and_lengths_after_a_fatal_label(tmp_path):
    """The GUI's check (strict=False): a bad label column is fatal, yet the report still counts
    rows, keeps the text warnings and measures token lengths (the text itself is fine)."""
    from transformers import AutoTokenizer

    from engine.defaults import default_model_dir
    tok = AutoTokenizer.from_pretrained(str(default_model_dir()))
    rows = [{"query": f"q {i} " + "word " * (40 if i == 3 else 1), "document": "" if i == 5 else f"d {i}",
             "score": "high" if i % 5 == 0 else 0.5} for i in range(20)]
    args = DatasetArgs(data=str(write(tmp_path / "s.jsonl", rows)), task_type="sentence-similarity",
                       validation_split=0, max_length=16)
    with pytest.raises(DataError):
        load_dataset(args, tok, cache_dir=str(tmp_path / "cache"))
    data = load_dataset(args, tok, cache_dir=str(tmp_path / "cache"), strict=False)
    report = data.report
    assert not report.ok and report.num_rows == {"train": 20}
    assert report.length_histogram and report.length_histogram["max"] > 16 and report.truncated_rows == 1
    assert {"empty_text", "too_long"} <= {f.code for f in report.warnings}
