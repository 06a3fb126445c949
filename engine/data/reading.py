"""Read a file, a folder of split files, a saved dataset or a Hub id into ``datasets.Dataset`` splits.

``datasets`` parses every format (Arrow, memory-mapped); this module only picks the builder, turns
its failures into :class:`DataError` with file and line, and remembers where each row came from.
"""
from __future__ import annotations

import codecs
import contextlib
import csv
import dataclasses
import errno
import itertools
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import charset_normalizer
import numpy as np

from engine.errors import DataError

FORMATS = {".jsonl": "json", ".ndjson": "json", ".json": "json", ".csv": "csv", ".tsv": "csv", ".parquet": "parquet"}
SPLIT_NAMES = {"train": "train", "training": "train", "validation": "validation", "valid": "validation",
               "val": "validation", "dev": "validation", "eval": "validation", "evaluation": "validation",
               "test": "test", "testing": "test"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")
BLOCK = 1 << 20    # bytes decoded at a time when checking a file's encoding


@dataclass
class Source:
    """Where the rows of one split came from, so that messages can name file and line."""
    files: list[str] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)    # "jsonl" | "csv" | "rows" per file
    indices: np.ndarray | None = None                 # split row → row of the concatenated files
    _lines: dict = field(default_factory=dict, repr=False)

    def select(self, indices) -> "Source":
        indices = np.asarray(indices, dtype=np.int64)
        base = indices if self.indices is None else self.indices[indices]
        return Source(self.files, self.counts, self.kinds, base, self._lines)

    def locate(self, i: int) -> tuple[str | None, int, str]:
        """(file, row number, "line"|"row") of split row ``i``: a line for jsonl/csv, else a 1-based row."""
        i = int(i if self.indices is None else self.indices[i])
        for file, count, kind in zip(self.files, self.counts, self.kinds):
            if i < count:
                if kind == "csv":
                    return file, i + 2, "line"        # line 1 is the header
                if kind == "jsonl":
                    return file, self._jsonl_line(file, i), "line"
                return file, i + 1, "row"
            i -= count
        return (self.files[0] if self.files else None), i + 1, "row"

    def _jsonl_line(self, file: str, i: int) -> int:
        if file not in self._lines:   # line numbers of non-blank lines; built only when a message needs one
            with open(file, "rb") as fh:
                self._lines[file] = [n for n, line in enumerate(fh, 1) if line.strip()]
        lines = self._lines[file]
        return lines[i] if i < len(lines) else i + 1


@contextlib.contextmanager
def _quiet_datasets():
    """datasets logs its own copy of every parse error; ours says more, so keep theirs quiet."""
    import datasets
    level = datasets.logging.get_verbosity()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    try:
        yield
    finally:
        datasets.logging.set_verbosity(level)


def check_file(path: str | Path) -> str:
    """The builder name for ``path`` after checking it exists, has a known extension and is not empty."""
    path = Path(path)
    if not path.exists():
        raise _missing(path)
    ext = path.suffix.lower()
    if ext not in FORMATS:
        raise DataError(f"Unsupported file type {ext or '(no extension)'!r}.", file=str(path), code="bad_format",
                        fix="Use .jsonl, .json, .csv, .tsv or .parquet (convert the file, or rename it if it "
                            "already is one of these).")
    if path.stat().st_size == 0 or (ext != ".parquet" and _blank(path)):
        raise DataError("The file is empty.", file=str(path), code="empty_file",
                        fix="Choose the file that holds the data, or add rows to it.")
    return FORMATS[ext]


def _missing(path: Path) -> DataError:
    """"File not found", or what is wrong with a symbolic link on the way (a loop, a missing target)."""
    link = f" (it points to {os.readlink(path)!r})" if path.is_symlink() else ""
    try:
        os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return DataError(f"The path is a symbolic link loop{link}: following it leads back to a link already "
                             "followed, so there is no file to read.", file=str(path), code="symlink_loop",
                             fix="Point the link at the real file or folder (`ls -l` shows where each link points), "
                                 "or choose the real file.")
    if link:
        return DataError(f"The symbolic link points to {os.readlink(path)!r}, which does not exist.", file=str(path),
                         code="missing_file", fix="Restore the file it points to, point the link at the real file, "
                                                  "or choose the real file.")
    return DataError("File not found.", file=str(path), code="missing_file",
                     fix="Check the path, or give a Hub dataset id such as 'owner/name'.")


def _blank(path: Path) -> bool:
    with open(path, "rb") as fh:
        return not fh.read(1 << 16).strip() and path.stat().st_size <= 1 << 16


def text_codec(encoding: str | None) -> str:
    """The Python codec to read a text file with: UTF-8 with a leading BOM skipped unless ``encoding``
    names another; an unknown name (or a codec that does not make text, like 'hex') raises DataError."""
    try:   # a real decode refuses bytes-to-bytes codecs like 'hex' (an empty input would skip the lookup)
        b"a".decode(encoding or "utf-8", errors="ignore")
    except LookupError:
        raise DataError(f"Unknown text encoding {encoding!r}.", code="bad_encoding",
                        fix="Use a Python codec name such as utf-8, latin-1, cp1252 or utf-16, "
                            "or leave it empty for UTF-8.") from None
    name = codecs.lookup(encoding or "utf-8").name
    return "utf-8-sig" if name == "utf-8" else name


def check_encoding(path: str | Path, encoding: str | None = None, limit: int | None = None) -> None:
    """Raise a DataError naming the line of the first byte (within ``limit`` bytes) that ``encoding``
    (default UTF-8) cannot decode, with the encoding the file may be in."""
    codec = text_codec(encoding)
    # A BOM is valid UTF-8: the plain codec keeps error offsets exact (utf-8-sig counts past the BOM).
    decoder = codecs.getincrementaldecoder("utf-8" if codec == "utf-8-sig" else codec)()
    done = 0
    with open(path, "rb") as fh:
        while True:
            want = BLOCK if limit is None else min(BLOCK, limit - done)
            chunk = fh.read(want)
            end = len(chunk) < want                  # the file ends here: a cut character is an error
            pending = len(decoder.getstate()[0])     # bytes of a character cut by the previous chunk
            try:
                decoder.decode(chunk, final=end)
            except UnicodeDecodeError as err:
                raise _encoding_error(str(path), encoding, done - pending + err.start) from None
            done += len(chunk)
            if end or done == limit:
                return


def _encoding_error(path: str, encoding: str | None, offset: int) -> DataError:
    """The DataError for the undecodable byte at ``offset``: its line, and the guessed encoding to use."""
    line, start, done = 1, 0, 0
    with open(path, "rb") as fh:
        while done < offset:                       # count the newlines before the bad byte
            chunk = fh.read(min(BLOCK, offset - done))
            if b"\n" in chunk:
                line += chunk.count(b"\n")
                start = done + chunk.rindex(b"\n") + 1
            done += len(chunk)
        at = offset - start
        fh.seek(start)
        sample = fh.read(max(1 << 16, at + 64))    # from the start of the bad line: what the guess reads
    guess = _guess_encoding(sample)
    near = sample.split(b"\n", 1)[0][max(at - 30, 0):at + 30].decode(guess, errors="replace").strip()
    name = "UTF-8" if not encoding else encoding
    return DataError(f"Not valid {name} text: byte 0x{sample[at]:02X} cannot be decoded; the file may be "
                     f"{guess} (this line would then read {near!r}).", file=path, row=line, row_label="line",
                     code="bad_encoding",
                     fix=f"Read it with its encoding: pass --encoding {guess} (CLI) or choose the encoding {guess} "
                         "on the Data page (app); or save the file as UTF-8.")


def _guess_encoding(sample: bytes) -> str:
    """charset-normalizer's guess for ``sample``, or latin-1 (decodes any byte) when it has none.
    cp1252, the usual non-UTF-8 data file (Windows, Western Europe), wins a near tie: on short text
    the detector often ranks a cousin that misreads è or ç a little above it."""
    found = list(charset_normalizer.from_bytes(sample))
    if not found:
        return "latin-1"
    western = [m for m in found if m.encoding == "cp1252" and m.chaos <= found[0].chaos + 0.05]
    return (western or found)[0].encoding.replace("_", "-")


def csv_separator(path: str | Path, encoding: str | None = None) -> str:
    """The field separator of a CSV/TSV file: a tab for .tsv; for .csv a comma, unless the header line has no
    comma but semicolons (what spreadsheets save where the decimal mark is a comma), tabs or pipes: then the
    most frequent of those."""
    if str(path).lower().endswith(".tsv"):
        return "\t"
    try:
        with open(path, newline="", encoding=text_codec(encoding), errors="replace") as fh:
            header = next((line for line in itertools.islice(fh, 1000) if line.strip()), "")
    except OSError:
        return ","   # the reader that follows says what is wrong with the file
    if "," in header:
        return ","
    counts = {sep: header.count(sep) for sep in (";", "\t", "|")}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def check_header(path: str | Path, sep: str, encoding: str | None = None) -> None:
    """Refuse a CSV header that names a column twice (readers would rename or drop one silently)."""
    with open(path, newline="", encoding=text_codec(encoding)) as fh:
        header = next(csv.reader(fh, delimiter=sep), [])
    seen: dict[str, int] = {}
    for number, name in enumerate(header, 1):
        if name.strip() and name in seen:
            raise DataError(f"The header names the column {name!r} twice (columns {seen[name]} and {number}).",
                            file=str(path), row=1, row_label="line", column=name, code="duplicate_column",
                            fix=f"Rename one of the columns so that every column name is unique, e.g. "
                                f"{name + '_2'!r}.")
        seen.setdefault(name, number)


def json_kind(path: str | Path, encoding: str | None = None) -> str:
    """"records" for a JSON array, "object" for one JSON object, "jsonl" for one object per line."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 16).decode(text_codec(encoding), errors="replace").lstrip()
    if head.startswith("["):
        return "records"
    first = head.split("\n", 1)[0]
    try:
        value = json.loads(first)
    except ValueError:
        return "object"
    # {"data": [{...}, ...]} written on one line is an object holding the rows, not one JSONL row
    if isinstance(value, dict) and len(value) == 1:
        inner = next(iter(value.values()))
        if isinstance(inner, list) and inner and all(isinstance(r, dict) for r in inner[:10]):
            return "object"
    return "jsonl"


def read_file(path: str | Path, cache_dir: str | None = None, encoding: str | None = None):
    """One file → ``(datasets.Dataset, kind)``; kind says how rows are numbered in messages.
    ``encoding`` is the text encoding of a CSV/TSV/JSON file (default UTF-8)."""
    import datasets
    builder = check_file(path)
    path = str(path)
    kwargs: dict = {}
    if builder != "parquet":
        check_encoding(path, encoding)   # else JSON lets bad bytes through to the tokenizer
        if encoding:
            kwargs["encoding"] = encoding
    if builder == "csv":
        kwargs["sep"] = csv_separator(path, encoding)
        check_header(path, kwargs["sep"], encoding)
    layout = json_kind(path, encoding) if builder == "json" else builder
    kind = {"csv": "csv", "jsonl": "jsonl"}.get(layout, "rows")
    try:
        with _quiet_datasets():
            ds = datasets.load_dataset(builder, data_files={"train": path}, split="train", cache_dir=cache_dir, **kwargs)
            if layout == "object" and len(ds) == 1 and len(ds.column_names) == 1:
                # {"data": [{...}, ...]}: the rows live under one key.
                key = ds.column_names[0]
                if type(ds.features[key]).__name__ in ("List", "Sequence", "LargeList"):
                    ds = datasets.load_dataset(builder, data_files={"train": path}, split="train",
                                               cache_dir=cache_dir, field=key, **kwargs)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 — every parser failure becomes one DataError
        raise _diagnose(path, builder, exc, encoding) from exc
    return ds, kind


def _root_cause(exc: BaseException) -> BaseException:
    seen = exc
    while seen.__cause__ is not None or (seen.__context__ is not None and not seen.__suppress_context__):
        seen = seen.__cause__ or seen.__context__
    return seen


def _diagnose(path: str, builder: str, exc: Exception, encoding: str | None = None) -> DataError:
    """Find the line a parser choked on and say how to fix it."""
    if "corresponds to no data" in str(exc) or isinstance(_root_cause(exc), StopIteration):
        return DataError("The file has no data rows.", file=path, code="empty_file",
                         fix="Choose the file that holds the data, or add rows below the header.")
    if builder == "json":
        if json_kind(path, encoding) == "jsonl":
            with open(path, encoding=text_codec(encoding), errors="replace") as fh:
                for number, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        value = json.loads(line)
                    except ValueError as err:
                        return DataError(f"Not valid JSON ({err}).", file=path, row=number, row_label="line",
                                         code="bad_json", fix=f"Fix or delete line {number}: each line must be "
                                         "one complete JSON object such as {\"text\": \"...\", \"label\": 1}.")
                    if not isinstance(value, dict):
                        return DataError(f"Expected a JSON object, found {type(value).__name__}.", file=path,
                                         row=number, row_label="line", code="bad_json",
                                         fix="Write one object per line, e.g. {\"text\": \"...\"}.")
        else:
            try:
                with open(path, encoding=text_codec(encoding)) as fh:
                    json.load(fh)
            except ValueError as err:
                line = getattr(err, "lineno", None)
                return DataError(f"Not valid JSON ({err}).", file=path, row=line, row_label="line", code="bad_json",
                                 fix="Fix the JSON there, or save the data as JSON lines (.jsonl), one object per line.")
    if builder == "csv":
        sep = csv_separator(path, encoding)
        found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(_root_cause(exc)))
        if found:
            want, line, got = map(int, found.groups())
        else:
            want, line, got = _ragged_row(path, sep, encoding)
        if line:
            return DataError(f"Expected {want} fields like the header, found {got}.", file=path, row=line,
                             row_label="line", code="ragged_csv",
                             fix="Quote fields that contain the separator (\"a, b\"), or fix the row's number of fields.")
    if builder == "parquet":
        return DataError(f"Cannot read the Parquet file ({_root_cause(exc)}).", file=path, code="bad_parquet",
                         fix="The file is corrupt or not Parquet: export it again, or use CSV/JSONL.")
    return DataError(f"Cannot read the file ({type(_root_cause(exc)).__name__}: {_root_cause(exc)}).", file=path,
                     code="unreadable", fix="Check that the file is valid " + builder.upper() + ".")


def _ragged_row(path: str, sep: str, encoding: str | None = None) -> tuple[int, int | None, int]:
    """(header fields, first line with another count, its count) using the csv module's quoting rules."""
    with open(path, newline="", encoding=text_codec(encoding), errors="replace") as fh:
        reader = csv.reader(fh, delimiter=sep)
        header = next(reader, [])
        for row in reader:
            if row and len(row) != len(header):
                return len(header), reader.line_num, len(row)
    return len(header), None, 0


def is_hub_id(data: str) -> bool:
    # lexists: a broken or looping symbolic link is a local path whose problem check_file names
    return (not os.path.lexists(data) and bool(_HUB_ID.match(data))
            and Path(data).suffix.lower() not in FORMATS and not data.startswith("."))


def read_splits(data: str, *, subset: str | None = None, cache_dir: str | None = None,
                encoding: str | None = None) -> dict[str, tuple]:
    """``data`` (file, folder, saved dataset or Hub id) → {split: (Dataset, Source)}; split names normalised.
    ``encoding`` applies to CSV/TSV/JSON files (default UTF-8)."""
    if not data:
        raise DataError("No data given.", code="missing_file", fix="Choose a data file, a folder or a Hub dataset id.")
    data = str(data)
    path = Path(data).expanduser()
    if path.is_dir():
        if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
            return _read_saved(path)
        return _read_folder(path, cache_dir, encoding)
    if not is_hub_id(data):
        ds, kind = read_file(path, cache_dir, encoding)
        return {"train": (ds, Source([str(path)], [len(ds)], [kind]))}
    return _read_hub(data, subset, cache_dir)


def _read_folder(path: Path, cache_dir: str | None, encoding: str | None) -> dict[str, tuple]:
    from datasets.data_files import DataFilesDict, get_data_patterns
    try:
        patterns = get_data_patterns(str(path))
        files = DataFilesDict.from_patterns(patterns, base_path=str(path))
    except Exception as exc:  # noqa: BLE001 — EmptyDatasetError and friends
        raise DataError(f"No data files in the folder ({exc}).", file=str(path), code="empty_folder",
                        fix="Put train/validation/test files (.jsonl, .csv, .tsv, .json, .parquet) in it.") from exc
    splits: dict[str, tuple] = {}
    for name, paths in files.items():
        paths = sorted(p for p in paths if Path(p).suffix.lower() in FORMATS)
        if not paths:
            continue
        parts = [read_file(p, cache_dir, encoding) for p in paths]
        ds = parts[0][0] if len(parts) == 1 else _concat([d for d, _ in parts], paths)
        split = SPLIT_NAMES.get(str(name).lower(), str(name))
        splits[split] = (ds, Source(list(paths), [len(d) for d, _ in parts], [k for _, k in parts]))
    if not splits:
        raise DataError("No .jsonl, .json, .csv, .tsv or .parquet files in the folder.", file=str(path),
                        code="empty_folder", fix="Put train/validation/test files in it (e.g. train.jsonl).")
    return splits


def _concat(parts, paths):
    """One split from several files, which must have the same columns (in any order) of the same types."""
    import datasets
    first, names = paths[0], parts[0].column_names
    for ds, path in zip(parts[1:], paths[1:]):
        extra = [c for c in ds.column_names if c not in names]
        lacking = [c for c in names if c not in ds.column_names]
        if extra or lacking:
            has = "; ".join(f"{a} has {', '.join(map(repr, cols))}, which {b} lacks"
                            for a, b, cols in ((path, first, extra), (first, path, lacking)) if cols)
            raise DataError(f"The files of one split have different columns: {has}.", file=path,
                            code="column_mismatch", fix="Give every file of the split the same column names "
                            "(rename or drop columns), or move the odd file out of the folder.")
    parts = [_plain_strings(ds).select_columns(names) for ds in parts]
    try:
        return datasets.concatenate_datasets(parts)
    except ValueError as exc:   # a column of another type (a column of nulls alone aligns)
        ds, path, column = next((ds, path, c) for ds, path in zip(parts[1:], paths[1:]) for c in names
                                if ds.features[c] != parts[0].features[c])
        raise DataError(f"The column holds {parts[0].features[column]} in {first} but {ds.features[column]} here.",
                        file=path, column=column, code="column_mismatch",
                        fix="Give the column one type in every file of the split (e.g. every label a number, "
                            "or every label text).") from exc


def _plain_strings(ds):
    """``ds`` with large_string text as string: CSV files read as one, JSON files as the other."""
    import datasets

    def plain(feature):
        if isinstance(feature, datasets.Value) and feature.dtype == "large_string":
            return datasets.Value("string")
        if isinstance(feature, (datasets.List, datasets.LargeList)):
            return dataclasses.replace(feature, feature=plain(feature.feature))
        if isinstance(feature, dict):
            return {k: plain(v) for k, v in feature.items()}
        return feature
    features = datasets.Features(plain(ds.features))
    return ds if features == ds.features else ds.cast(features)


def _read_saved(path: Path) -> dict[str, tuple]:
    import datasets
    loaded = datasets.load_from_disk(str(path))
    parts = loaded.items() if isinstance(loaded, datasets.DatasetDict) else [("train", loaded)]
    return {SPLIT_NAMES.get(k, k): (d, Source([str(path)], [len(d)], ["rows"])) for k, d in parts}


def _read_hub(data: str, subset: str | None, cache_dir: str | None) -> dict[str, tuple]:
    import datasets
    try:
        with _quiet_datasets():
            loaded = datasets.load_dataset(data, subset, cache_dir=cache_dir)
    except Exception as exc:  # noqa: BLE001 — offline, unknown id, missing subset, ...
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes") or \
            os.environ.get("HF_DATASETS_OFFLINE", "").lower() in ("1", "true", "yes")
        what = f"Hub dataset {data!r}" + (f" (subset {subset!r})" if subset else "")
        why = "offline mode is on" if offline else f"{type(exc).__name__}: {exc}"
        raise DataError(f"Could not load the {what}: {why}.", file=data, code="hub_unavailable",
                        fix=f"Download it while online (`hf download --repo-type dataset {data}` or "
                            f"`datasets.load_dataset({data!r}{', ' + repr(subset) if subset else ''})`), "
                            "check the id and subset name, or use a local file.") from exc
    return {SPLIT_NAMES.get(str(k).lower(), str(k)): (d, Source([f"{data}:{k}"], [len(d)], ["rows"]))
            for k, d in loaded.items()}
