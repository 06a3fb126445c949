"""Bad input that used to slip through or crash later: non-finite scores, non-UTF-8 bytes, folders
whose files disagree, symlink loops, duplicate CSV headers. Each must be a DataError naming the file,
the line or column, and the fix (engine/data/reading.py, validation.py, preview.py)."""
import codecs
import json
import os

import datasets
import pytest

from engine.data import DataError, DatasetArgs, load_dataset, preview

datasets.disable_progress_bars()

FRENCH = ["Très bon café, service rapide et agréable.", "Déçu : le thé était froid et très cher.",
          "Une crème brûlée délicieuse, à refaire !", "Accueil sympathique, mais l'été il fait chaud."]


@pytest.fixture
def load(tmp_path):
    def run(data, **kw):
        kw.setdefault("task_type", "text-classification")
        kw.setdefault("validation_split", 0.0)
        strict = kw.pop("strict", True)
        return load_dataset(DatasetArgs(data=str(data), **kw), cache_dir=str(tmp_path / "cache"), strict=strict)
    return run


# --- 1. NaN / Infinity labels ----------------------------------------------------------------------------

def test_nan_and_infinity_scores_in_jsonl_are_refused(tmp_path, load):
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(f'{{"text": "t{i}", "text_pair": "p{i}", "label": {score}}}\n'
                            for i, score in enumerate(["0.5", "NaN", "Infinity", "-Infinity"])))
    with pytest.raises(DataError, match=r"pairs\.jsonl, line 2, column 'label': 3 label\(s\) are not finite numbers "
                                        r"\(e\.g\. nan\)\. \(3 rows; lines 2, 3, 4\) Fix: Replace") as err:
        load(path, task_type="sentence-similarity")
    assert err.value.code == "non_finite_label"
    data = load(path, task_type="sentence-similarity", strict=False)   # the app's report lists it
    assert [f.code for f in data.report.fatal] == ["non_finite_label"]


@pytest.mark.parametrize("value", ["inf", "-Infinity"])
def test_infinite_regression_target_in_csv_is_refused(tmp_path, load, value):
    path = tmp_path / "r.csv"
    path.write_text(f"text,score\na,1.5\nb,{value}\nc,2.0\n")
    with pytest.raises(DataError, match=r"r\.csv, line 3, column 'score': 1 label\(s\) are not finite numbers"):
        load(path, label_field="score", is_regression=True)


def test_nan_float_classes_are_refused_too(tmp_path, load):
    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "a", "label": 1.0}\n{"text": "b", "label": 2.0}\n{"text": "c", "label": NaN}\n')
    with pytest.raises(DataError, match=r"c\.jsonl, line 3, column 'label': 1 label\(s\) are not finite"):
        load(path, is_regression=False)


# --- 2. Encodings ------------------------------------------------------------------------------------------

def latin1_files(tmp_path):
    csv_path, jsonl_path = tmp_path / "avis.csv", tmp_path / "avis.jsonl"
    rows = [("Good coffee", 1), ("Bad tea", 0)] + [(t, i % 2) for i, t in enumerate(FRENCH)]
    csv_path.write_bytes(("text,label\n" + "".join(f'"{t}",{y}\n' for t, y in rows)).encode("latin-1"))
    jsonl_path.write_bytes("".join(json.dumps({"text": t, "label": y}, ensure_ascii=False) + "\n"
                                   for t, y in rows).encode("latin-1"))
    return csv_path, jsonl_path


def test_non_utf8_csv_and_jsonl_name_the_line_and_the_encoding(tmp_path, load):
    for path, line in zip(latin1_files(tmp_path), (4, 3)):   # the CSV's line 1 is its header
        with pytest.raises(DataError, match=rf"{path.name}, line {line}: Not valid UTF-8 text: byte 0xE8 cannot "
                                            r"be decoded; the file may be cp1252 \(this line would then read "
                                            r".*Très bon café.*Fix: .*pass --encoding cp1252 \(CLI\)") as err:
            load(path)
        assert err.value.code == "bad_encoding" and err.value.row == line
        with pytest.raises(DataError, match=rf"{path.name}, line {line}: Not valid UTF-8 text"):
            preview(path)


def test_encoding_option_reads_latin1_in_loading_and_preview(tmp_path, load):
    for path in latin1_files(tmp_path):
        data = load(path, encoding="latin-1")
        assert data.train[2]["text"] == FRENCH[0]
        rows = preview(path, encoding="latin-1").rows
        assert rows[2]["text"] == FRENCH[0] and all(isinstance(v, (str, int)) for r in rows for v in r.values())
    assert preview(tmp_path / "avis.csv", n=2, offset=3, encoding="cp1252").rows[0]["text"] == FRENCH[1]


def test_utf16_file_with_its_encoding(tmp_path, load):
    path = tmp_path / "excel.tsv"
    path.write_bytes(("text\tlabel\n" + "".join(f"{t}\t{i % 2}\n" for i, t in enumerate(FRENCH))).encode("utf-16"))
    with pytest.raises(DataError, match=r"line 1: Not valid UTF-8 text: byte 0xFF.*--encoding utf-16"):
        load(path)
    assert load(path, encoding="utf-16").train["text"] == FRENCH
    assert preview(path, encoding="utf-16").rows[3]["text"] == FRENCH[3]


def test_bytes_a_given_codec_cannot_decode_are_named(tmp_path, load):
    path = tmp_path / "a.csv"
    path.write_bytes("text,label\nok,1\nfine,0\ncafé,1\n".encode("utf-8"))
    with pytest.raises(DataError, match=r"a\.csv, line 4: Not valid ascii text: byte 0xC3 cannot be decoded; "
                                        r"the file may be utf-8"):
        load(path, encoding="ascii")


@pytest.mark.parametrize("name", ["klingon", "hex"])
def test_unknown_encoding_name_is_refused(tmp_path, name):
    with pytest.raises(DataError, match=rf"Unknown text encoding {name!r}\. Fix: Use a Python codec name") as err:
        DatasetArgs(data="x.csv", encoding=name)
    assert err.value.code == "bad_encoding"
    (tmp_path / "x.csv").write_text("text,label\na,1\n")
    with pytest.raises(DataError, match="Unknown text encoding"):
        preview(tmp_path / "x.csv", encoding=name)


@pytest.mark.parametrize("ext", [".csv", ".tsv", ".jsonl", ".json"])
def test_utf8_bom_is_skipped(tmp_path, load, ext):
    path = tmp_path / f"bom{ext}"
    rows = [{"text": "é1", "label": 1}, {"text": "b", "label": 0}]
    if ext == ".jsonl":
        body = "".join(json.dumps(r) + "\n" for r in rows)
    elif ext == ".json":
        body = json.dumps(rows)
    else:
        sep = "\t" if ext == ".tsv" else ","
        body = f"text{sep}label\né1{sep}1\nb{sep}0\n"
    path.write_bytes(codecs.BOM_UTF8 + body.encode("utf-8"))
    data = load(path)
    assert data.columns["text"] == "text" and data.train["text"] == ["é1", "b"]
    assert preview(path).columns == ["text", "label"]


# --- 3./4. Folders whose files disagree -------------------------------------------------------------------

def test_split_from_csv_and_jsonl_files_with_the_same_columns(tmp_path, load):
    (tmp_path / "train.csv").write_text("text,label\ngood,pos\nbad,neg\n")
    (tmp_path / "train.jsonl").write_text('{"text": "fine", "label": "pos"}\n{"text": "awful", "label": "neg"}\n')
    data = load(tmp_path)
    assert sorted(data.train["text"]) == ["awful", "bad", "fine", "good"]


def test_folder_files_with_different_columns_are_refused(tmp_path, load):
    (tmp_path / "train-0.jsonl").write_text('{"text": "a", "label": 1}\n{"text": "b", "label": 0}\n')
    (tmp_path / "train-1.jsonl").write_text('{"sentence": "c", "label": 1}\n{"sentence": "d", "label": 0}\n')
    with pytest.raises(DataError, match=r"train-1\.jsonl: The files of one split have different columns: "
                                        r"\S*train-1\.jsonl has 'sentence', which \S*train-0\.jsonl lacks; "
                                        r"\S*train-0\.jsonl has 'text', which \S*train-1\.jsonl lacks\. "
                                        r"Fix: Give every file of the split the same column names") as err:
        load(tmp_path)
    assert err.value.code == "column_mismatch"


def test_folder_files_with_different_column_types_name_the_column(tmp_path, load):
    (tmp_path / "train-0.jsonl").write_text('{"text": "a", "label": 1}\n{"text": "b", "label": 0}\n')
    (tmp_path / "train-1.jsonl").write_text('{"text": "c", "label": [1]}\n{"text": "d", "label": [0]}\n')
    with pytest.raises(DataError, match=r"train-1\.jsonl, column 'label': The column holds Value\('int64'\) in "
                                        r"\S*train-0\.jsonl but List\(Value\('int64'\)\) here"):
        load(tmp_path)


# --- 5. Symbolic links --------------------------------------------------------------------------------------

def test_symlink_loop_is_named(tmp_path, load):
    link = tmp_path / "data.jsonl"
    os.symlink(link, link)
    with pytest.raises(DataError, match=r"data\.jsonl: The path is a symbolic link loop") as err:
        load(link)
    assert err.value.code == "symlink_loop"
    with pytest.raises(DataError, match="symbolic link loop"):
        preview(link)
    loop_dir = tmp_path / "mydata"     # no extension: must not be taken for a Hub id
    os.symlink(loop_dir, loop_dir)
    with pytest.raises(DataError, match=r"mydata: The path is a symbolic link loop"):
        load(loop_dir)


def test_dangling_symlink_names_its_target(tmp_path, load):
    link = tmp_path / "data.csv"
    os.symlink(tmp_path / "gone.csv", link)
    with pytest.raises(DataError, match=r"data\.csv: The symbolic link points to '\S*gone\.csv', which does not exist"):
        load(link)


# --- 6. Duplicate CSV headers -------------------------------------------------------------------------------

def test_duplicate_csv_header_is_refused(tmp_path, load):
    path = tmp_path / "d.csv"
    path.write_text("text,label,text\na,1,b\nc,0,d\n")
    with pytest.raises(DataError, match=r"d\.csv, line 1, column 'text': The header names the column 'text' twice "
                                        r"\(columns 1 and 3\).*Fix: Rename one of the columns") as err:
        load(path)
    assert err.value.code == "duplicate_column"
    with pytest.raises(DataError, match=r"d\.csv, line 1, column 'text': The header names the column 'text' twice"):
        preview(path)
