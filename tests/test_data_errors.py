"""Bad input: each case raises DataError whose message names file, row/line, column and a fix."""
import json

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.data import DataError, DatasetArgs, load_dataset, preview

datasets.disable_progress_bars()


@pytest.fixture
def load(tmp_path):
    def run(data, **kw):
        kw.setdefault("task_type", "text-classification")
        kw.setdefault("validation_split", 0.0)
        return load_dataset(DatasetArgs(data=str(data), **kw), cache_dir=str(tmp_path / "cache"))
    return run


def jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_missing_file(tmp_path, load):
    with pytest.raises(DataError, match=r"nope\.jsonl: File not found\. Fix: Check the path") as err:
        load(tmp_path / "nope.jsonl")
    assert err.value.file.endswith("nope.jsonl") and err.value.code == "missing_file"


def test_unsupported_extension(tmp_path, load):
    (tmp_path / "data.xlsx").write_text("x")
    with pytest.raises(DataError, match=r"data\.xlsx: Unsupported file type '\.xlsx'.*Use \.jsonl, \.json, \.csv"):
        load(tmp_path / "data.xlsx")


@pytest.mark.parametrize("content", ["", "\n  \n"])
def test_empty_file(tmp_path, load, content):
    (tmp_path / "e.jsonl").write_text(content)
    with pytest.raises(DataError, match=r"e\.jsonl: The file is empty\. Fix:"):
        load(tmp_path / "e.jsonl")


def test_header_only_csv_has_no_rows(tmp_path, load):
    (tmp_path / "h.csv").write_text("text,label\n")
    with pytest.raises(DataError, match=r"h\.csv: The file has no data rows\. Fix: Choose the file"):
        load(tmp_path / "h.csv")


def test_malformed_json_line_names_the_line(tmp_path, load):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": 0}\n{"text": "c", label: 2}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl, line 3: Not valid JSON .* Fix: Fix or delete line 3") as err:
        load(path)
    assert err.value.row == 3
    with pytest.raises(DataError, match=r"line 3: Not valid JSON"):
        preview(path)


def test_csv_with_ragged_rows(tmp_path, load):
    path = tmp_path / "r.csv"
    path.write_text("text,label\nfine,1\nalso fine,0\nnot, fine,1\n")
    with pytest.raises(DataError, match=r"r\.csv, line 4: Expected 2 fields like the header, found 3\. "
                                        r"Fix: Quote fields"):
        load(path)
    with pytest.raises(DataError, match=r"r\.csv, line 4: Expected 2 fields"):
        preview(path)


def test_semicolon_csv_from_a_spreadsheet_reads_its_columns(tmp_path, load):
    """Spreadsheets where the decimal mark is a comma save CSV with ';'. A header without a comma but with
    semicolons picks ';' (quoted fields may hold either); a header with a comma keeps ','."""
    from engine.data.reading import csv_separator
    path = tmp_path / "reviews.csv"
    path.write_text('review;rating\n"good; really";pos\nbad, sadly;neg\nfine;pos\nawful;neg\n', encoding="utf-8-sig")
    assert csv_separator(path) == ";"
    data = load(path, columns={"text": "review", "label": "rating"})
    assert data.train["text"] == ["good; really", "bad, sadly", "fine", "awful"]
    assert data.label_info.names == ["neg", "pos"] and data.columns == {"text": "review", "label": "rating"}
    shown = preview(path)
    assert shown.columns == ["review", "rating"] and shown.rows[1] == {"review": "bad, sadly", "rating": "neg"}
    (tmp_path / "ragged.csv").write_text("text;label\nfine;1\nnot; fine;1\n")
    with pytest.raises(DataError, match=r"ragged\.csv, line 3: Expected 2 fields like the header, found 3"):
        load(tmp_path / "ragged.csv")
    (tmp_path / "commas.csv").write_text("text,label\na; b,1\n")
    (tmp_path / "one.csv").write_text("text\nhello; there\n")
    assert csv_separator(tmp_path / "commas.csv") == "," and csv_separator(tmp_path / "one.csv") == ","


def test_corrupt_parquet(tmp_path, load):
    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"text": ["a"] * 50, "label": [1] * 50}), path)
    path.write_bytes(path.read_bytes()[:-30])   # truncated download
    with pytest.raises(DataError, match=r"c\.parquet: Cannot read the Parquet file .*Fix: The file is corrupt"):
        load(path)
    with pytest.raises(DataError, match="Cannot read the Parquet file"):
        preview(path)


def test_mapped_column_missing_lists_available_columns(tmp_path, load):
    path = jsonl(tmp_path / "m.jsonl", [{"review": "good", "stars": 5}, {"review": "bad", "stars": 1}])
    with pytest.raises(DataError, match=r"Column 'body' \(mapped to role 'text'\) does not exist\. "
                                        r"Fix: Pick one of the available columns: 'review', 'stars'"):
        load(path, text_field="body", label_field="stars")
    # 'stars' is guessed as the label (a label word); nothing is named like a text column.
    with pytest.raises(DataError, match=r"No column for role\(s\) 'text' of.*available columns: 'review', 'stars'"):
        load(path)


def test_two_roles_mapped_to_one_column(tmp_path, load):
    path = jsonl(tmp_path / "m.jsonl", [{"text": "a", "label": 1}, {"text": "b", "label": 0}])
    with pytest.raises(DataError, match=r"column 'text': Column 'text' is mapped to two roles, 'text' and 'text_pair'"):
        load(path, text_field="text", text_pair_field="text")


def test_label_column_with_mixed_types(tmp_path, load):
    rows = [{"text": "a", "label": 1}, {"text": "b", "label": 0}, {"text": "c", "label": "pos"}]
    with pytest.raises(DataError, match=r"mix\.jsonl, line 3, column 'label': The label column mixes value types "
                                        r"\(int, str\).*Fix: Use one type") as err:
        load(jsonl(tmp_path / "mix.jsonl", rows))
    assert (err.value.row, err.value.column, err.value.code) == (3, "label", "mixed_label_types")


def test_regression_on_non_numeric_labels(tmp_path, load):
    rows = [{"text": "a", "y": "0.5"}, {"text": "b", "y": "high"}, {"text": "c", "y": "low"}]
    with pytest.raises(DataError, match=r"line 2, column 'y': Labels must be numbers for regression targets; 2 are not "
                                        r"\(e\.g\. 'high'\).*Fix: Turn off is_regression"):
        load(jsonl(tmp_path / "r.jsonl", rows), label_field="y", is_regression=True)


def test_tokens_not_a_list(tmp_path, load):
    rows = [{"tokens": "EU rejects German call", "ner_tags": ["B-ORG", "O", "B-MISC", "O"]}]
    with pytest.raises(DataError, match=r"line 1, column 'tokens': tokens must be a list of words per row.*"
                                        r'Fix: Store each row as \{"tokens": \["EU"'):
        load(jsonl(tmp_path / "t.jsonl", rows), task_type="token-classification")


def test_tokens_labels_length_mismatch_names_the_row(tmp_path, load):
    rows = [{"tokens": ["a", "b"], "tags": ["O", "O"]}, {"tokens": ["Peter", "Pan"], "tags": ["B-PER", "I-PER"]},
            {"tokens": ["x", "y", "z"], "tags": ["O", "B-PER"]}]
    with pytest.raises(DataError, match=r"n\.jsonl, line 3, column 'tags': 1 row\(s\) have a different number of "
                                        r"words and tags \(first: 3 words, 2 tags\)\. Fix: Give every word"):
        load(jsonl(tmp_path / "n.jsonl", rows), task_type="token-classification")


def test_all_texts_empty(tmp_path, load):
    rows = [{"text": "", "label": 1}, {"text": "  ", "label": 0}, {"text": None, "label": 1}]
    with pytest.raises(DataError, match=r"line 1, column 'text': Every text in the train split is empty.*"
                                        r"Fix: Map the column that holds the text"):
        load(jsonl(tmp_path / "e.jsonl", rows))


def test_one_class_only(tmp_path, load):
    rows = [{"text": f"t{i}", "label": "spam"} for i in range(5)]
    with pytest.raises(DataError, match=r"column 'label': Every row of the train split has the same label 'spam'.*"
                                        r"Fix: Add rows of other classes"):
        load(jsonl(tmp_path / "o.jsonl", rows))


def test_hub_id_while_offline(monkeypatch, tmp_path, load):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    import huggingface_hub.constants
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True, raising=False)
    with pytest.raises(DataError, match=r"Could not load the Hub dataset 'someone/nli-pairs' \(subset 'pair'\): "
                                        r"offline mode is on\. Fix: Download it while online.*or use a local file"):
        load("someone/nli-pairs", subset="pair", task_type="sentence-similarity")


@pytest.mark.parametrize("value", [0, -5])
def test_max_rows_must_be_positive(tmp_path, value):
    with pytest.raises(DataError, match=rf"max_rows must be a positive number of rows, got {value}\. "
                                        r"Fix: Leave max_rows empty"):
        DatasetArgs(data="x.jsonl", max_rows=value)


def test_all_fatal_findings_are_collected(tmp_path, load):
    rows = [{"text": "a", "label": None}, {"text": "b", "label": 1}, {"text": "c", "label": 2}]
    with pytest.raises(DataError, match=r"line 1, column 'label': 1 row\(s\) have no label") as err:
        load(jsonl(tmp_path / "n.jsonl", rows))
    assert [f.code for f in err.value.findings] == ["missing_label"]


def test_unknown_split_lists_available(tmp_path, load):
    path = jsonl(tmp_path / "a.jsonl", [{"text": "a", "label": 1}, {"text": "b", "label": 0}])
    with pytest.raises(DataError, match=r"No split named 'dev'; the data has 'train'.*Fix: Set split to one of: train"):
        load(path, split="dev")


def test_text_column_with_mixed_types(tmp_path, load):
    rows = [{"text": "fine", "label": 1}, {"text": 42, "label": 0}]
    with pytest.raises(DataError, match=r"line 2, column 'text': The text column mixes value types \(int, str\)"):
        load(jsonl(tmp_path / "t.jsonl", rows))
