"""Lazy preview for the Data page: columns, dtypes, some rows and a row count — without reading
the whole file (Parquet metadata; the first block of CSV/JSONL, with the row count estimated).

``offset`` starts the rows further down (a report's example row): CSV rows and JSONL lines are
skipped in bounded blocks, Parquet reads only the row groups that hold the window."""
from __future__ import annotations

import codecs
import collections
import csv
import io
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from engine.errors import DataError
from engine.data.reading import (FORMATS, check_encoding, check_file, check_header, csv_separator, is_hub_id,
                                 json_kind, text_codec)

BLOCK = 1 << 20    # bytes read from the head of a CSV/JSONL file


@dataclass
class Preview:
    columns: list[str]
    dtypes: dict[str, str]
    rows: list[dict]
    num_rows: int | None
    num_rows_is_estimate: bool = False
    file: str = ""
    format: str = ""
    splits: dict[str, list[str]] = field(default_factory=dict)   # folders: split → files
    offset: int = 0            # index of the first row in ``rows`` (0 = the head of the data)


def _schema(table: pa.Table) -> tuple[list[str], dict[str, str]]:
    return table.column_names, {f.name: str(f.type) for f in table.schema}


def preview(path_or_id: str, n: int = 200, *, subset: str | None = None, split: str | None = None,
            offset: int = 0, encoding: str | None = None) -> Preview:
    """``n`` rows from row ``offset`` (0-based; CSV: data rows, JSONL: lines) of a file, a folder's
    train file, or a Hub dataset (streamed). Past the end, ``rows`` is empty. ``encoding`` is the text
    encoding of CSV/TSV/JSON files (default UTF-8; bytes it cannot decode raise a DataError)."""
    data = str(path_or_id)
    path = Path(data).expanduser()
    offset = max(int(offset or 0), 0)
    text_codec(encoding)   # an unknown codec name fails before any file is read
    if path.is_dir():
        return _preview_folder(path, n, offset, encoding)
    if is_hub_id(data):
        return _preview_hub(data, n, subset, split, offset)
    builder = check_file(path)
    if builder == "parquet":
        result = _preview_parquet(path, n, offset)
    elif builder == "csv":
        result = _preview_csv(path, n, csv_separator(path, encoding), offset, encoding)
    elif json_kind(path, encoding) == "jsonl":
        result = _preview_jsonl(path, n, offset, encoding)
    else:
        result = _preview_json(path, n, offset, encoding)
    result.offset = offset
    return result


def _head(path: Path, encoding: str | None) -> tuple[bytes, bool]:
    """The first BLOCK bytes as UTF-8 (what Arrow parses) cut at the last full line, and whether that is
    the whole file. A byte the encoding cannot decode raises a DataError naming its line."""
    check_encoding(path, encoding, limit=BLOCK)
    with open(path, "rb") as fh:
        data = fh.read(BLOCK)
        whole = not fh.read(1)
    text = codecs.getincrementaldecoder(text_codec(encoding))().decode(data, final=whole)
    if not whole:
        text = text[:text.rfind("\n") + 1] or text
    return text.encode("utf-8"), whole


def _utf8(data: bytes, encoding: str | None) -> bytes:
    """A block from further down the file as UTF-8; the rows shown there were checked by the load that
    pointed at them, so a stray byte shows as \ufffd instead of failing the preview."""
    return data.decode(text_codec(encoding), errors="replace").encode("utf-8")


def _estimate(path: Path, head: bytes, whole: bool, lines_in_head: int, header_lines: int) -> tuple[int, bool]:
    rows_in_head = max(lines_in_head - header_lines, 0)
    if whole or not rows_in_head:
        return rows_in_head, False
    per_line = len(head) / lines_in_head
    return int(round(path.stat().st_size / per_line)) - header_lines, True


def _lines(head: bytes) -> int:
    return head.count(b"\n") + (0 if head.endswith(b"\n") or not head else 1)


def _preview_parquet(path: Path, n: int, offset: int = 0) -> Preview:
    import pyarrow.parquet as pq
    try:
        pf = pq.ParquetFile(path)
        if offset:
            table, skip = _parquet_window(pf, n, offset)
        else:
            batch, skip = next(pf.iter_batches(batch_size=max(n, 1)), None), 0
            table = pa.Table.from_batches([batch]) if batch is not None else pf.schema_arrow.empty_table()
    except Exception as exc:  # noqa: BLE001 — corrupt or not parquet
        raise DataError(f"Cannot read the Parquet file ({exc}).", file=str(path), code="bad_parquet",
                        fix="The file is corrupt or not Parquet: export it again, or use CSV/JSONL.") from exc
    columns, dtypes = _schema(table)
    return Preview(columns, dtypes, table.slice(skip, n).to_pylist(), pf.metadata.num_rows, False, str(path), "parquet")


def _parquet_window(pf, n: int, offset: int) -> tuple[pa.Table, int]:
    """The row groups that overlap rows [offset, offset + n), and where the window starts in them."""
    groups, start, first = [], 0, None
    for i in range(pf.metadata.num_row_groups):
        rows = pf.metadata.row_group(i).num_rows
        if start + rows > offset and start < offset + n:
            groups.append(i)
            first = start if first is None else first
        start += rows
    if not groups:
        return pf.schema_arrow.empty_table(), 0
    return pf.read_row_groups(groups), offset - first


def _preview_csv(path: Path, n: int, sep: str, offset: int = 0, encoding: str | None = None) -> Preview:
    import pyarrow.csv as pcsv
    head, whole = _head(path, encoding)
    check_header(path, sep, encoding)
    try:
        table = pcsv.read_csv(io.BytesIO(head), parse_options=pcsv.ParseOptions(delimiter=sep, newlines_in_values=True))
        if offset:
            window = _csv_window(path, sep, n, offset, table.schema, encoding)
    except pa.ArrowInvalid as exc:
        from engine.data.reading import _ragged_row
        want, line, got = _ragged_row(str(path), sep, encoding)
        if line:
            raise DataError(f"Expected {want} fields like the header, found {got}.", file=str(path), row=line,
                            row_label="line", code="ragged_csv",
                            fix="Quote fields that contain the separator (\"a, b\"), or fix the row's number of fields.") from exc
        raise DataError(f"Cannot read the file as CSV ({exc}).", file=str(path), code="unreadable",
                        fix="Check the separator and quoting.") from exc
    columns, dtypes = _schema(table)
    total, estimated = _estimate(path, head, whole, _lines(head), 1)
    if not estimated:
        total = table.num_rows
    rows = window.to_pylist() if offset else table.slice(0, n).to_pylist()
    return Preview(columns, dtypes, rows, total, estimated, str(path), "tsv" if sep == "\t" else "csv")


def _csv_window(path: Path, sep: str, n: int, offset: int, schema: pa.Schema, encoding: str | None) -> pa.Table:
    """Rows [offset, offset + n) with the csv module's quoting rules (a quoted value may span lines),
    re-parsed by Arrow with the head's column types; memory stays at one row at a time while skipping."""
    import pyarrow.csv as pcsv
    with open(path, newline="", encoding=text_codec(encoding), errors="replace") as fh:
        reader = csv.reader(fh, delimiter=sep)
        header = next(reader, [])
        collections.deque(itertools.islice(reader, offset), maxlen=0)   # skip without keeping rows
        rows = list(itertools.islice(reader, n))
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=sep)
    writer.writerow(header)
    writer.writerows(rows)
    data = buf.getvalue().encode("utf-8")
    parse = pcsv.ParseOptions(delimiter=sep, newlines_in_values=True)
    try:
        return pcsv.read_csv(io.BytesIO(data), parse_options=parse,
                             convert_options=pcsv.ConvertOptions(column_types=schema))
    except pa.ArrowInvalid:   # a value of another type than in the head: let Arrow infer again
        return pcsv.read_csv(io.BytesIO(data), parse_options=parse)


def _preview_jsonl(path: Path, n: int, offset: int = 0, encoding: str | None = None) -> Preview:
    import pyarrow.json as pjson
    head, whole = _head(path, encoding)
    total, estimated = _estimate(path, head, whole, _lines(head), 0)
    if not estimated:
        total = len([line for line in head.split(b"\n") if line.strip()])
    if offset:
        head = _utf8(_block_at_line(path, offset), encoding)
    lines = [line for line in head.split(b"\n") if line.strip()]
    try:
        table = pjson.read_json(io.BytesIO(b"\n".join(lines[:max(n, 1)])))
    except pa.ArrowInvalid:
        table = None
    if table is None or table.num_rows < min(n, len(lines)):   # mixed types or a bad line: go row by row
        rows = []
        for number, line in enumerate(head.split(b"\n")[:n * 2], 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except ValueError as err:
                number += offset
                raise DataError(f"Not valid JSON ({err}).", file=str(path), row=number, row_label="line",
                                code="bad_json", fix=f"Fix or delete line {number}: each line must be one JSON object.")
            if len(rows) == n:
                break
        columns = list(dict.fromkeys(k for r in rows for k in r))
        dtypes = {c: _py_type([r.get(c) for r in rows]) for c in columns}
    else:
        columns, dtypes = _schema(table)
        rows = table.slice(0, n).to_pylist()
    return Preview(columns, dtypes, rows, total, estimated, str(path), "jsonl")


def _block_at_line(path: Path, offset: int) -> bytes:
    """BLOCK bytes starting at line ``offset + 1`` (cut at the last full line), found by counting
    newlines one block at a time."""
    with open(path, "rb") as fh:
        skipped = 0
        while skipped < offset:
            chunk = fh.read(BLOCK)
            if not chunk:
                return b""
            count = chunk.count(b"\n")
            if skipped + count >= offset:
                at = -1
                for _ in range(offset - skipped):
                    at = chunk.index(b"\n", at + 1)
                fh.seek(fh.tell() - len(chunk) + at + 1)
                break
            skipped += count
        data = fh.read(BLOCK)
        more = bool(fh.read(1))
    return data[:data.rfind(b"\n") + 1] or data if more else data


def _py_type(values) -> str:
    kinds = sorted({type(v).__name__ for v in values if v is not None})
    return kinds[0] if len(kinds) == 1 else ("mixed: " + ", ".join(kinds) if kinds else "null")


def _preview_json(path: Path, n: int, offset: int = 0, encoding: str | None = None) -> Preview:
    # A JSON document has no line structure to stop at, so it is parsed whole (meant for small files).
    check_encoding(path, encoding)
    try:
        with open(path, encoding=text_codec(encoding)) as fh:
            value = json.load(fh)
    except ValueError as err:
        raise DataError(f"Not valid JSON ({err}).", file=str(path), row=getattr(err, "lineno", None),
                        row_label="line", code="bad_json", fix="Fix the JSON there, or save the data as .jsonl.") from err
    if isinstance(value, dict):
        lists = [v for v in value.values() if isinstance(v, list)]
        value = lists[0] if len(lists) == 1 else [value]
    rows = [r for r in value[offset:offset + n] if isinstance(r, dict)]
    columns = list(dict.fromkeys(k for r in rows for k in r))
    try:
        dtypes = _schema(pa.Table.from_pylist(rows))[1]
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        dtypes = {c: _py_type([r.get(c) for r in rows]) for c in columns}
    return Preview(columns, dtypes, rows, len(value), False, str(path), "json")


def _preview_folder(path: Path, n: int, offset: int = 0, encoding: str | None = None) -> Preview:
    from datasets.data_files import DataFilesDict, get_data_patterns
    try:
        files = DataFilesDict.from_patterns(get_data_patterns(str(path)), base_path=str(path))
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"No data files in the folder ({exc}).", file=str(path), code="empty_folder",
                        fix="Put train/validation/test files (.jsonl, .csv, .tsv, .json, .parquet) in it.") from exc
    splits = {str(k): sorted(p for p in v if Path(p).suffix.lower() in FORMATS) for k, v in files.items()}
    splits = {k: v for k, v in splits.items() if v}
    if not splits:
        raise DataError("No .jsonl, .json, .csv, .tsv or .parquet files in the folder.", file=str(path),
                        code="empty_folder", fix="Put train/validation/test files in it (e.g. train.jsonl).")
    first = splits.get("train") or next(iter(splits.values()))
    result = preview(first[0], n, offset=offset, encoding=encoding)
    result.splits = splits
    return result


def _preview_hub(data: str, n: int, subset: str | None, split: str | None, offset: int = 0) -> Preview:
    import datasets
    from itertools import islice
    try:
        stream = datasets.load_dataset(data, subset, split=split or "train", streaming=True)
        rows = list(islice(iter(stream), offset, offset + n))
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"Could not open the Hub dataset {data!r}: {exc}.", file=data, code="hub_unavailable",
                        fix="Check the id, subset and split, download it while online, or use a local file.") from exc
    info = stream.info.splits.get(split or "train") if stream.info and stream.info.splits else None
    columns = list(stream.features) if stream.features else list(dict.fromkeys(k for r in rows for k in r))
    dtypes = {c: str(f) for c, f in (stream.features or {}).items()} or {c: _py_type([r.get(c) for r in rows]) for c in columns}
    return Preview(columns, dtypes, rows, info.num_examples if info else None, info is None, data, "hub")
