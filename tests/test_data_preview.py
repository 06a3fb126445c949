"""Lazy preview for the GUI: first rows, dtypes, exact or estimated row counts (engine/data/preview.py)."""
import csv
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.data import DataError, preview

ROWS = [{"question": f"question number {i}", "answer": "some answer " * (i % 5 + 1), "score": i / 7}
        for i in range(500)]


def write(path, rows):
    ext = path.suffix
    if ext == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif ext in (".csv", ".tsv"):
        with open(path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter="\t" if ext == ".tsv" else ",")
            w.writeheader()
            w.writerows(rows)
    elif ext == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=100)
    elif ext == ".json":
        path.write_text(json.dumps({"data": rows}))
    return path


@pytest.mark.parametrize("ext", [".jsonl", ".csv", ".tsv", ".parquet", ".json"])
def test_small_files_exact_count(tmp_path, ext):
    p = preview(write(tmp_path / f"d{ext}", ROWS), n=20)
    assert p.columns == ["question", "answer", "score"]
    assert len(p.rows) == 20 and p.rows[3]["question"] == "question number 3"
    assert p.num_rows == 500 and not p.num_rows_is_estimate
    assert p.dtypes["score"] == "double" and p.dtypes["question"] == "string"


@pytest.mark.parametrize("ext", [".jsonl", ".csv"])
def test_large_files_estimate_the_count(tmp_path, ext):
    rows = ROWS * 60                                          # 30,000 rows, several MB
    p = preview(write(tmp_path / f"big{ext}", rows), n=200)
    assert p.num_rows_is_estimate and len(p.rows) == 200
    assert abs(p.num_rows - len(rows)) / len(rows) < 0.05


def test_parquet_count_comes_from_metadata(tmp_path):
    p = preview(write(tmp_path / "big.parquet", ROWS * 40), n=150)
    assert p.num_rows == 20_000 and not p.num_rows_is_estimate and len(p.rows) == 150


def test_jsonl_with_mixed_types_still_previews(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": "pos"}\n')
    p = preview(path)
    assert p.rows[1]["label"] == "pos" and p.dtypes["label"] == "mixed: int, str"


def test_folder_previews_the_train_file_and_lists_splits(tmp_path):
    write(tmp_path / "train.csv", ROWS[:50])
    write(tmp_path / "test.jsonl", ROWS[50:60])
    p = preview(tmp_path, n=5)
    assert p.file.endswith("train.csv") and p.num_rows == 50 and set(p.splits) == {"train", "test"}


def test_preview_errors_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="File not found"):
        preview(tmp_path / "missing.csv")
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(DataError, match="The file is empty"):
        preview(tmp_path / "e.csv")


@pytest.mark.parametrize("ext", [".jsonl", ".csv", ".tsv", ".parquet", ".json"])
def test_offset_reaches_rows_past_the_first_block(tmp_path, ext, monkeypatch):
    import sys
    monkeypatch.setattr(sys.modules["engine.data.preview"], "BLOCK", 4096)   # (the package's name is the function)      # the head block holds ~60 rows only
    rows = ROWS * 4                                          # 2,000 rows, row groups of 100
    path = write(tmp_path / f"d{ext}", rows)
    p = preview(path, n=10, offset=1234)
    assert p.offset == 1234 and len(p.rows) == 10
    assert [r["question"] for r in p.rows] == [rows[i]["question"] for i in range(1234, 1244)]
    assert p.dtypes["score"] == "double" and p.columns == ["question", "answer", "score"]
    assert isinstance(p.rows[0]["score"], float)
    assert preview(path, n=10, offset=1995).rows[-1]["question"] == rows[-1]["question"]
    assert preview(path, n=10, offset=5000).rows == []


def test_offset_csv_keeps_quoted_newlines_as_one_row(tmp_path):
    rows = [{"text": f"line one\nline two {i}" if i % 2 else f"plain, {i}", "label": i} for i in range(300)]
    path = write(tmp_path / "q.csv", rows)
    p = preview(path, n=3, offset=101)
    assert [r["text"] for r in p.rows] == [rows[i]["text"] for i in (101, 102, 103)]
    assert [r["label"] for r in p.rows] == [101, 102, 103]


def test_offset_jsonl_error_names_the_file_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS[:50]) + "{oops\n" + json.dumps(ROWS[0]) + "\n")
    with pytest.raises(DataError, match="line 51"):
        preview(path, n=5, offset=48)
