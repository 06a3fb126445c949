"""Checks of role-named splits → a Report of findings (fatal | warning) with rows and fixes.

The checks are vectorised over the Arrow columns (pyarrow.compute / numpy; only the rows of a column
that mixes value types are looked at one by one); duplicates are found by hashing (dictionary
encoding). Token lengths, the one costly part, go through the tokenizer's batch encode in chunks,
with ``progress(done, total)`` after each."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.data.args import base_role, normalize_task, text_roles_of
from engine.errors import DataError, location
from engine.data.labels import (SEPARATOR, arrow_column, item_feature, label_kind, label_lists,
                                 multi_label_source, numeric_strings)
from engine.data.tokenize import token_lengths

IMBALANCE_RATIO = 10     # largest / smallest class count that earns a warning
EXAMPLES = 5             # row numbers shown per finding


@dataclass
class Finding:
    severity: str                     # "fatal" | "warning"
    code: str                         # e.g. "empty_text", "length_mismatch"
    message: str
    fix: str = ""
    file: str | None = None
    row: int | None = None            # first affected line (jsonl/csv) or 1-based data row
    column: str | None = None         # the user's column name
    count: int = 0
    examples: list[int] = field(default_factory=list)
    split: str | None = None
    row_label: str = "row"

    def __str__(self) -> str:
        where = location(self.file, self.row, self.column, self.row_label)
        more = f" ({self.count} rows; {self.row_label}s {', '.join(map(str, self.examples))})" \
            if self.count > 1 and self.examples else ""
        return f"{self.severity}: {where + ': ' if where else ''}{self.message}{more} Fix: {self.fix}"


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    num_rows: dict[str, int] = field(default_factory=dict)
    length_histogram: dict | None = None    # {"edges": [...], "counts": [...]} over train texts, in tokens
    truncated_rows: int = 0                 # rows (all splits) with a text longer than max_length
    max_length: int | None = None
    label_counts: dict[str, int] = field(default_factory=dict)   # train class → rows
    multi_label: bool = False               # several labels per row (lists, or '|'-separated text)

    @property
    def fatal(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "fatal"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.fatal

    def raise_if_fatal(self) -> None:
        if self.fatal:
            first = self.fatal[0]
            others = "".join(f"\n  also: {f}" for f in self.fatal[1:])
            raise DataError(first.message + (f" ({first.count} rows; {first.row_label}s "
                                             f"{', '.join(map(str, first.examples))})" if first.count > 1 else "")
                            + others, file=first.file, row=first.row, column=first.column, fix=first.fix,
                            code=first.code, row_label=first.row_label, findings=self.fatal)

    def to_dict(self) -> dict:
        return asdict(self)


class _Collector:
    def __init__(self, sources, columns):
        self.sources, self.columns, self.findings = sources or {}, columns or {}, []

    def add(self, severity, code, message, fix, split, role, rows=(), count=None):
        rows = [int(r) for r in rows[:EXAMPLES]] if len(rows) else []
        file = row = None
        label, examples = "row", []
        source = self.sources.get(split)
        for r in rows:
            if source is not None:
                f, number, label = source.locate(r)
                file = file or f
            else:
                number = r + 1
            examples.append(number)
        row = examples[0] if examples else None
        if source is not None and file is None and source.files:
            file = source.files[0]
        column = self.columns.get(role, role) if role else None
        self.findings.append(Finding(severity, code, message, fix, file, row, column,
                                     len(rows) if count is None else count, examples, split, label))


def _rows(mask) -> np.ndarray:
    return np.flatnonzero(np.asarray(pc.fill_null(mask, True).to_numpy(zero_copy_only=False), dtype=bool))


def _list_rows(lists, item_mask) -> np.ndarray:
    """Rows of a list column holding at least one item where ``item_mask`` is true."""
    parents = pc.list_parent_indices(lists)
    return np.unique(np.asarray(pc.filter(parents, item_mask).to_numpy(zero_copy_only=False)))


def validate(splits: dict, task: str, *, tokenizer=None, max_length: int | None = None,
             is_regression: bool | None = None, sources: dict | None = None, columns: dict | None = None,
             use_chat_template: bool = False, prompts: dict | None = None,
             is_multi_label: bool | None = None, progress=None) -> Report:
    """Check role-named splits ({"train": Dataset, ...}); fatal findings make ``report.raise_if_fatal()`` raise.

    ``sources`` (split → reading.Source) turns split rows into file lines, ``columns`` (role → user's
    column) names columns as the user knows them; with a ``tokenizer`` token lengths are measured too.
    ``is_multi_label`` None detects multi-label classification (engine/data/labels.py says how).
    ``progress(done, total)`` is called as token lengths are measured (rows of all splits); an
    exception it raises (the app's Cancel) stops the check.
    """
    task = normalize_task(task)
    out = _Collector(sources, columns)
    multi = multi_label_source(splits, is_multi_label) if task == "text-classification" else None
    report = Report(num_rows={k: len(v) for k, v in splits.items()}, max_length=max_length, multi_label=bool(multi))
    for split, ds in splits.items():
        for role in text_roles_of(ds.column_names) if task != "token-classification" else ():
            _check_text(out, split, ds, role)
        if task == "token-classification":
            _check_tokens(out, split, ds)
        elif "label" in ds.column_names and multi:
            _check_label_lists(out, split, ds, multi, is_regression)
        elif "label" in ds.column_names:
            _check_label(out, split, ds, task, is_regression, is_multi_label)
    if not any(f.severity == "fatal" for f in out.findings):
        if multi:
            _check_label_names(out, splits, multi, is_multi_label, report)
        else:
            _check_classes(out, splits, task, is_regression, report)
        _check_duplicates(out, splits, task)
        if tokenizer is not None and max_length:
            _check_lengths(out, splits, task, tokenizer, max_length, report, use_chat_template, prompts, progress)
    report.findings = out.findings
    return report


def _check_text(out, split, ds, role):
    if label_kind(ds.features[role]) == "mixed":
        first, kinds, rows = _mixed_rows(ds, role)
        out.add("fatal", "text_not_string", f"The {role} column mixes value types ({', '.join(kinds)}).",
                "Make every value text (quote numbers in JSON: \"42\").", split, role, rows or [0])
        return
    values = arrow_column(ds, role)
    if pa.types.is_null(values.type):
        values = pa.chunked_array([pa.nulls(len(values), pa.string())])
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        out.add("fatal", "text_not_string", f"The {role} column holds {values.type} values, not text.",
                "Map a column of strings to this role (or convert the values to text).", split, role, [0], len(ds))
        return
    empty = _rows(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(values)), 0))
    if len(empty) == len(ds) and len(ds) and split == "train":
        out.add("fatal", "all_texts_empty", f"Every {role} in the {split} split is empty.",
                "Map the column that holds the text (check the column mapping).", split, role, empty)
    elif len(empty):
        out.add("warning", "empty_text", f"{len(empty)} empty or whitespace-only {role} value(s).",
                "Remove these rows or fill in the text.", split, role, empty)


def _mixed_rows(ds, column):
    values = ds[column]
    types = [type(v).__name__ for v in values]
    first = next((t for t in types if t != "NoneType"), "NoneType")
    rows = [i for i, t in enumerate(types) if t not in (first, "NoneType")]
    return first, sorted(set(types) - {"NoneType"}), rows


def _check_label(out, split, ds, task, is_regression, is_multi_label=None):
    kind = label_kind(ds.features["label"])
    if kind == "mixed":
        first, kinds, rows = _mixed_rows(ds, "label")
        out.add("fatal", "mixed_label_types", f"The label column mixes value types ({', '.join(kinds)}); "
                f"the first row has {first}.", "Use one type for every label: all text or all numbers.",
                split, "label", rows)
        return
    if kind == "list" and task == "text-classification":   # only with is_multi_label=False
        out.add("fatal", "bad_label_type", "The label column holds lists of labels, but is_multi_label is off.",
                "Leave is_multi_label unset (or --multi-label) to train multi-label classification, or give "
                "one label per row.", split, "label", [0], len(ds))
        return
    if is_multi_label and task == "text-classification":   # lists and text are read as label lists
        out.add("fatal", "bad_label_type", f"Multi-label classification needs label names; the label column "
                f"holds {ds.features['label']} values.", f'Give each row a list of names (["sports", '
                f'"politics"]) or, in CSV, names separated by "{SEPARATOR}" (sports{SEPARATOR}politics).',
                split, "label", [0], len(ds))
        return
    if kind in ("null", "list", "other"):
        out.add("fatal", "bad_label_type", f"The label column holds {ds.features['label']} values.",
                "Map a column of class names, class ids or numeric scores.", split, "label", [0], len(ds))
        return
    values = arrow_column(ds, "label")
    missing = _rows(pc.is_null(values))
    if len(missing):
        out.add("fatal", "missing_label", f"{len(missing)} row(s) have no label.",
                "Fill in the label or remove these rows.", split, "label", missing)
    if kind == "float":
        infinite = _rows(pc.invert(pc.fill_null(pc.is_finite(values), True)))
        if len(infinite):
            out.add("fatal", "non_finite_label", f"{len(infinite)} label(s) are not finite numbers "
                    f"(e.g. {values[int(infinite[0])].as_py()}).", "Replace NaN and Infinity with real numbers, or "
                    "remove these rows: one such target makes the loss NaN.", split, "label", infinite)
    numeric_needed = task == "sentence-similarity" or is_regression
    if numeric_needed and kind == "string":
        bad = _rows(pc.invert(numeric_strings(values)))
        bad = np.setdiff1d(bad, missing)
        if len(bad):
            what = "similarity scores" if task == "sentence-similarity" else "regression targets"
            out.add("fatal", "non_numeric_regression" if task != "sentence-similarity" else "non_numeric_score",
                    f"Labels must be numbers for {what}; {len(bad)} are not (e.g. {values[int(bad[0])].as_py()!r}).",
                    "Turn off is_regression to train classes, or map a numeric column." if task != "sentence-similarity"
                    else "Map a numeric score column (0..1), or leave label unmapped for (anchor, positive) pairs.",
                    split, "label", bad)


def _check_label_lists(out, split, ds, source, is_regression):
    """Multi-label rows: a list of label names each ([] = none); every name a non-empty string."""
    if is_regression:
        out.add("fatal", "bad_label_type", "The label column holds lists of labels, not regression targets.",
                "Turn off is_regression to train multi-label classification, or map a numeric column.",
                split, "label", [0], len(ds))
        return
    lists = label_lists(arrow_column(ds, "label"))
    missing = _rows(pc.is_null(lists))
    if len(missing):
        out.add("fatal", "missing_label", f"{len(missing)} row(s) have no label list.",
                "Write [] for a row without labels, or remove these rows.", split, "label", missing)
    items = pc.list_flatten(lists)
    if pa.types.is_null(items.type):   # every list empty: _check_label_names says so for train
        return
    if not (pa.types.is_string(items.type) or pa.types.is_large_string(items.type)):
        first = int(_rows(pc.greater(pc.fill_null(pc.list_value_length(lists), 0), 0))[0])
        out.add("fatal", "non_string_label", f"Multi-label labels must be lists of label names; the column holds "
                f"{items.type} items (e.g. {lists[first].as_py()!r}).", 'Write the names as text, e.g. '
                '["sports", "politics"] (quote numbers: ["1", "3"]).', split, "label", [first], len(ds))
        return
    nulls = _list_rows(lists, pc.is_null(items))
    if len(nulls):
        out.add("fatal", "missing_label", f"{len(nulls)} row(s) have a null inside their label list.",
                "Remove the nulls from the lists ([] is a row without labels).", split, "label", nulls)
    empty = _list_rows(lists, pc.fill_null(pc.equal(pc.utf8_trim_whitespace(items), ""), False))
    if len(empty):
        fix = (f'Remove the extra "{SEPARATOR}" (e.g. "tech{SEPARATOR}{SEPARATOR}sports" → '
               f'"tech{SEPARATOR}sports").' if source == "separated" else "Remove the empty strings from the lists.")
        out.add("fatal", "empty_label", f"{len(empty)} row(s) have an empty label name "
                f"(e.g. {lists[int(empty[0])].as_py()!r}).", fix, split, "label", empty)


def _check_label_names(out, splits, source, is_multi_label, report):
    """Multi-label: label counts over train, no label at all, labels other splits add, and what was detected."""
    if "train" not in splits:
        return
    names = pc.drop_null(pc.list_flatten(label_lists(arrow_column(splits["train"], "label"))))
    counts = {c["values"]: c["counts"] for c in pc.value_counts(names).to_pylist()}
    report.label_counts = dict(sorted(counts.items()))
    if not counts:
        out.add("fatal", "no_labels", "No row of the train split has a label; every label list is empty.",
                "Map the column that holds the labels (check the column mapping).", "train", "label",
                [0], len(splits["train"]))
        return
    for split, ds in splits.items():
        lists = label_lists(arrow_column(ds, "label"))
        unseen = pc.invert(pc.is_in(pc.list_flatten(lists), value_set=pa.array(list(counts), pa.string())))
        rows = _list_rows(lists, unseen) if split != "train" else []
        if len(rows):
            names = sorted(set(pc.filter(pc.list_flatten(lists), unseen).to_pylist()))
            out.add("warning", "unseen_label", f"{len(names)} label(s) of the {split} split never occur in "
                    f"train: {', '.join(map(repr, names[:5]))}.", "Add training rows with these labels; "
                    "the model cannot learn a label it never saw.", split, "label", rows)
    if source == "separated" and is_multi_label is None:   # a guess from the text: say so
        values = arrow_column(splits["train"], "label")
        example = pc.filter(values, pc.fill_null(pc.match_substring(values, SEPARATOR), False))[0].as_py()
        out.add("warning", "multi_label", f"The labels are names separated by '{SEPARATOR}' (e.g. {example!r}): "
                f"training multi-label classification over {len(counts)} labels.",
                f"Set is_multi_label=False (--no-multi-label) if '{SEPARATOR}' is part of single class names.",
                "train", "label", [], len(splits["train"]))


def _check_tokens(out, split, ds):
    tokens, labels = arrow_column(ds, "tokens"), arrow_column(ds, "labels")
    if not pa.types.is_list(tokens.type) and not pa.types.is_large_list(tokens.type):
        out.add("fatal", "non_list_tokens", f"tokens must be a list of words per row, found {tokens.type} "
                f"(e.g. {tokens[0].as_py()!r}).", 'Store each row as {"tokens": ["EU", "rejects", ...], '
                '"ner_tags": ["B-ORG", "O", ...]}.', split, "tokens", [0], len(ds))
        return
    if not pa.types.is_list(labels.type) and not pa.types.is_large_list(labels.type):
        out.add("fatal", "non_list_labels", f"labels must be a list with one tag per word, found {labels.type}.",
                "Store one tag per word, e.g. [\"B-ORG\", \"O\"].", split, "labels", [0], len(ds))
        return
    if not (pa.types.is_string(tokens.type.value_type) or pa.types.is_large_string(tokens.type.value_type)):
        out.add("fatal", "non_list_tokens", f"tokens must be lists of strings, found {tokens.type}.",
                "Store each word as a string.", split, "tokens", [0], len(ds))
        return
    kind = label_kind(item_feature(ds.features["labels"]))
    if kind in ("mixed", "null", "list", "other"):
        out.add("fatal", "mixed_label_types", f"The tags mix value types or are not class names/ids "
                f"({ds.features['labels']}).", "Use one type for every tag: all strings (\"B-PER\") or all ids.",
                split, "labels", [0], len(ds))
        return
    mismatch = _rows(pc.not_equal(pc.list_value_length(tokens), pc.list_value_length(labels)))
    if len(mismatch):
        i = int(mismatch[0])
        out.add("fatal", "length_mismatch", f"{len(mismatch)} row(s) have a different number of words and tags "
                f"(first: {len(tokens[i].as_py() or [])} words, {len(labels[i].as_py() or [])} tags).",
                "Give every word exactly one tag.", split, "labels", mismatch)
    null_tags = _list_rows(labels, pc.is_null(pc.list_flatten(labels)))
    if len(null_tags):
        out.add("fatal", "missing_label", f"{len(null_tags)} row(s) have a null tag.",
                "Give every word a tag (use \"O\" for none).", split, "labels", null_tags)
    empty = _rows(pc.equal(pc.list_value_length(tokens), 0))
    if len(empty) == len(ds) and len(ds) and split == "train":
        out.add("fatal", "all_texts_empty", "Every row has an empty tokens list.",
                "Map the column holding the words.", split, "tokens", empty)
    elif len(empty):
        out.add("warning", "empty_text", f"{len(empty)} row(s) have no words.", "Remove these rows.",
                split, "tokens", empty)


def _class_counts(ds, task):
    values = arrow_column(ds, "labels" if task == "token-classification" else "label")
    if task == "token-classification":
        values = pc.list_flatten(values)
    counts = pc.value_counts(pc.drop_null(values)).to_pylist()
    return {c["values"]: c["counts"] for c in counts}


def _check_classes(out, splits, task, is_regression, report):
    if task not in ("text-classification", "token-classification") or "train" not in splits:
        return
    train = splits["train"]
    column = "labels" if task == "token-classification" else "label"
    feature = train.features[column]
    kind = label_kind(item_feature(feature) if task == "token-classification" else feature)
    if task == "text-classification" and (is_regression or (is_regression is None and kind == "float")):
        return
    names = (item_feature(feature) if task == "token-classification" else feature)
    names = getattr(names, "names", None)
    counts = _class_counts(train, task)
    report.label_counts = {(names[k] if names else str(k)): v for k, v in sorted(counts.items(), key=lambda kv: str(kv[0]))}
    if len(counts) == 1:
        only = next(iter(report.label_counts))
        out.add("fatal", "single_class", f"Every row of the train split has the same label {only!r}; "
                "a classifier needs at least two classes.", "Add rows of other classes, or map the right label "
                "column (float scores train a regression with is_regression=True).", "train", column,
                [0], len(train))
        return
    if task == "text-classification" and counts:
        largest, smallest = max(counts.values()), min(counts.values())
        if smallest and largest / smallest >= IMBALANCE_RATIO:
            rare = [k for k, v in report.label_counts.items() if v == smallest]
            out.add("warning", "class_imbalance", f"Classes are unbalanced: {largest} vs {smallest} rows "
                    f"(rarest: {', '.join(map(repr, rare[:5]))}).", "Add rows of the rare classes, or expect "
                    "lower recall on them (macro-F1 shows it).", "train", column, [], sum(counts.values()))
    for split, ds in splits.items():
        if split == "train":
            continue
        values = arrow_column(ds, column)
        if task == "token-classification":
            flat = pc.list_flatten(values)
            mask = pc.invert(pc.fill_null(pc.is_in(flat, value_set=pa.array(list(counts))), True))
            rows = _list_rows(values, mask)
            unseen_values = sorted(set(pc.filter(flat, mask).to_pylist()), key=str)
        else:
            mask = pc.invert(pc.fill_null(pc.is_in(values, value_set=pa.array(list(counts))), True))
            rows = _rows(mask)
            unseen_values = sorted(set(pc.filter(values, mask).to_pylist()), key=str)
        if len(rows):
            out.add("warning", "unseen_label", f"{len(unseen_values)} label(s) of the {split} split never occur in "
                    f"train: {', '.join(map(repr, unseen_values[:5]))}.", "Add training rows with these labels; "
                    "the model cannot predict a class it never saw.", split, column, rows)


def _keys(ds, task) -> pa.Array | None:
    """One string per row identifying its texts (text roles joined), for duplicate and overlap checks."""
    roles = ["tokens"] if task == "token-classification" else text_roles_of(ds.column_names)
    parts = []
    for role in roles:
        values = arrow_column(ds, role)
        if role == "tokens":
            values = pc.binary_join(values, " ")
        parts.append(pc.fill_null(pc.cast(values, pa.large_string()), "").combine_chunks())
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else pc.binary_join_element_wise(*parts, pa.scalar("\x1f", pa.large_string()))


def _check_duplicates(out, splits, task):
    train_keys = _keys(splits["train"], task) if "train" in splits else None
    if train_keys is None:
        return
    # Hashing: dictionary encoding numbers the distinct keys; a row whose number came before is a repeat.
    encoded = pc.dictionary_encode(train_keys)
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    _, first = np.unique(codes, return_index=True)
    dup = np.setdiff1d(np.arange(len(codes)), first, assume_unique=True)
    role = "tokens" if task == "token-classification" else "text"
    if len(dup):
        out.add("warning", "duplicates", f"{len(dup)} row(s) repeat an earlier train row.",
                "Remove the repeats (they weigh those examples more and inflate validation scores).",
                "train", role, dup)
    unique_train = encoded.dictionary
    for split, ds in splits.items():
        if split == "train":
            continue
        rows = _rows(pc.is_in(_keys(ds, task), value_set=unique_train))
        if len(rows):
            out.add("warning", "train_validation_overlap" if split == "validation" else "train_test_overlap",
                    f"{len(rows)} {split} row(s) also occur in train; their scores will look better than they are.",
                    f"Remove these rows from the {split} data (or from train).", split, role, rows)


def _check_lengths(out, splits, task, tokenizer, max_length, report, use_chat_template, prompts, progress=None):
    pooled, done, total = [], 0, sum(len(ds) for ds in splits.values())

    def step(rows, _split_rows):   # a split's progress → progress over every split
        progress(done + rows, total)
    for split, ds in splits.items():
        lengths = token_lengths(ds, tokenizer, task, use_chat_template=use_chat_template, prompts=prompts,
                                progress=step if progress is not None else None)
        done += len(ds)
        if not lengths:
            continue
        if split == "train":
            pooled = np.concatenate(list(lengths.values()))
        for role, values in lengths.items():
            over = np.flatnonzero(values > max_length)
            if len(over):
                out.add("warning", "too_long", f"{len(over)} {base_role(role)} value(s) of the {split} split are "
                        f"longer than max_length={max_length} tokens (longest {int(values.max())}); they will be "
                        "truncated.", "Raise max_length (costs memory and time), or shorten these texts.",
                        split, role, over)
        report.truncated_rows += int(np.any(np.stack([v > max_length for v in lengths.values()]), axis=0).sum())
    if len(pooled):
        top = max(int(pooled.max()), max_length)
        edges = [0] + [2 ** k for k in range(3, 40) if 2 ** (k - 1) <= top]   # 0, 8, 16, ... past the longest
        counts, _ = np.histogram(pooled, bins=edges)
        report.length_histogram = {"edges": edges, "counts": counts.tolist(),
                                   "mean": float(pooled.mean()), "max": int(pooled.max())}


__all__ = ["Finding", "Report", "validate"]
