"""Read a file, a folder of split files, a saved dataset or a Hub id into ``datasets.Dataset`` splits.

``datasets`` parses every format (Arrow, memory-mapped); this module only picks the builder, turns
its failures into :class:`DataError` with file and line, and remembers where each row came from.
"""
from __future__ import annotations

import contextlib
import csv
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.data.errors import DataError

FORMATS = {".jsonl": "json", ".ndjson": "json", ".json": "json", ".csv": "csv", ".tsv": "csv", ".parquet": "parquet"}
SPLIT_NAMES = {"train": "train", "training": "train", "validation": "validation", "valid": "validation",
               "val": "validation", "dev": "validation", "eval": "validation", "evaluation": "validation",
               "test": "test", "testing": "test"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


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
        raise DataError("File not found.", file=str(path), code="missing_file",
                        fix="Check the path, or give a Hub dataset id such as 'owner/name'.")
    ext = path.suffix.lower()
    if ext not in FORMATS:
        raise DataError(f"Unsupported file type {ext or '(no extension)'!r}.", file=str(path), code="bad_format",
                        fix="Use .jsonl, .json, .csv, .tsv or .parquet (convert the file, or rename it if it "
                            "already is one of these).")
    if path.stat().st_size == 0 or (ext != ".parquet" and _blank(path)):
        raise DataError("The file is empty.", file=str(path), code="empty_file",
                        fix="Choose the file that holds the data, or add rows to it.")
    return FORMATS[ext]


def _blank(path: Path) -> bool:
    with open(path, "rb") as fh:
        return not fh.read(1 << 16).strip() and path.stat().st_size <= 1 << 16


def json_kind(path: str | Path) -> str:
    """"records" for a JSON array, "object" for one JSON object, "jsonl" for one object per line."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 16).lstrip()
    if head.startswith(b"["):
        return "records"
    first = head.split(b"\n", 1)[0]
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


def read_file(path: str | Path, cache_dir: str | None = None):
    """One file → ``(datasets.Dataset, kind)``; kind says how rows are numbered in messages."""
    import datasets
    builder = check_file(path)
    path = str(path)
    kwargs: dict = {"sep": "\t"} if path.lower().endswith(".tsv") else {}
    layout = json_kind(path) if builder == "json" else builder
    kind = {"csv": "csv", "jsonl": "jsonl"}.get(layout, "rows")
    try:
        with _quiet_datasets():
            ds = datasets.load_dataset(builder, data_files={"train": path}, split="train", cache_dir=cache_dir, **kwargs)
            if layout == "object" and len(ds) == 1 and len(ds.column_names) == 1:
                # {"data": [{...}, ...]}: the rows live under one key.
                key = ds.column_names[0]
                if type(ds.features[key]).__name__ in ("List", "Sequence", "LargeList"):
                    ds = datasets.load_dataset(builder, data_files={"train": path}, split="train",
                                               cache_dir=cache_dir, field=key)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 — every parser failure becomes one DataError
        raise _diagnose(path, builder, exc) from exc
    return ds, kind


def _root_cause(exc: BaseException) -> BaseException:
    seen = exc
    while seen.__cause__ is not None or (seen.__context__ is not None and not seen.__suppress_context__):
        seen = seen.__cause__ or seen.__context__
    return seen


def _diagnose(path: str, builder: str, exc: Exception) -> DataError:
    """Find the line a parser choked on and say how to fix it."""
    if "corresponds to no data" in str(exc) or isinstance(_root_cause(exc), StopIteration):
        return DataError("The file has no data rows.", file=path, code="empty_file",
                         fix="Choose the file that holds the data, or add rows below the header.")
    if builder == "json":
        if json_kind(path) == "jsonl":
            with open(path, encoding="utf-8", errors="replace") as fh:
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
                with open(path, encoding="utf-8") as fh:
                    json.load(fh)
            except ValueError as err:
                line = getattr(err, "lineno", None)
                return DataError(f"Not valid JSON ({err}).", file=path, row=line, row_label="line", code="bad_json",
                                 fix="Fix the JSON there, or save the data as JSON lines (.jsonl), one object per line.")
    if builder == "csv":
        sep = "\t" if path.lower().endswith(".tsv") else ","
        found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(_root_cause(exc)))
        if found:
            want, line, got = map(int, found.groups())
        else:
            want, line, got = _ragged_row(path, sep)
        if line:
            return DataError(f"Expected {want} fields like the header, found {got}.", file=path, row=line,
                             row_label="line", code="ragged_csv",
                             fix="Quote fields that contain the separator (\"a, b\"), or fix the row's number of fields.")
    if builder == "parquet":
        return DataError(f"Cannot read the Parquet file ({_root_cause(exc)}).", file=path, code="bad_parquet",
                         fix="The file is corrupt or not Parquet: export it again, or use CSV/JSONL.")
    return DataError(f"Cannot read the file ({type(_root_cause(exc)).__name__}: {_root_cause(exc)}).", file=path,
                     code="unreadable", fix="Check that the file is valid " + builder.upper() + ".")


def _ragged_row(path: str, sep: str) -> tuple[int, int | None, int]:
    """(header fields, first line with another count, its count) using the csv module's quoting rules."""
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        reader = csv.reader(fh, delimiter=sep)
        header = next(reader, [])
        for row in reader:
            if row and len(row) != len(header):
                return len(header), reader.line_num, len(row)
    return len(header), None, 0


def is_hub_id(data: str) -> bool:
    return (not os.path.exists(data) and bool(_HUB_ID.match(data))
            and Path(data).suffix.lower() not in FORMATS and not data.startswith("."))


def read_splits(data: str, *, subset: str | None = None, cache_dir: str | None = None) -> dict[str, tuple]:
    """``data`` (file, folder, saved dataset or Hub id) → {split: (Dataset, Source)}; split names normalised."""
    if not data:
        raise DataError("No data given.", code="missing_file", fix="Choose a data file, a folder or a Hub dataset id.")
    data = str(data)
    path = Path(data).expanduser()
    if path.is_dir():
        if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
            return _read_saved(path)
        return _read_folder(path, cache_dir)
    if path.exists() or not is_hub_id(data):
        ds, kind = read_file(path, cache_dir)
        return {"train": (ds, Source([str(path)], [len(ds)], [kind]))}
    return _read_hub(data, subset, cache_dir)


def _read_folder(path: Path, cache_dir: str | None) -> dict[str, tuple]:
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
        parts = [read_file(p, cache_dir) for p in paths]
        ds = parts[0][0] if len(parts) == 1 else _concat([d for d, _ in parts], paths)
        split = SPLIT_NAMES.get(str(name).lower(), str(name))
        splits[split] = (ds, Source(list(paths), [len(d) for d, _ in parts], [k for _, k in parts]))
    if not splits:
        raise DataError("No .jsonl, .json, .csv, .tsv or .parquet files in the folder.", file=str(path),
                        code="empty_folder", fix="Put train/validation/test files in it (e.g. train.jsonl).")
    return splits


def _concat(parts, paths):
    import datasets
    try:
        return datasets.concatenate_datasets(parts)
    except ValueError as exc:
        columns = {p: d.column_names for d, p in zip(parts, paths)}
        raise DataError(f"The files of one split have different columns: {columns}.", file=paths[0],
                        code="column_mismatch", fix="Give every file of a split the same columns.") from exc


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
