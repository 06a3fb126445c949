"""Label kinds and encoding: string classes → sorted ids, float labels → regression, tags → ids,
label lists → multi-hot rows (multi-label).

Multi-label data: a label column holding a list of names per row (JSONL/JSON/Parquet
``["sports", "politics"]``; ``[]`` = no label), or, in CSV/TSV, one cell of names separated by
``|`` (``sports|politics``; spaces around names are trimmed, an empty cell = no label). Lists are
always multi-label; ``|`` in a text label makes it multi-label unless ``is_multi_label=False``."""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

SEPARATOR = "|"   # between label names in one CSV cell (";" and "," are common in CSV files themselves)


@dataclass
class LabelInfo:
    """What the model head needs: class names (id order), their count, regression or multi-label."""
    names: list[str] | None = None
    num_labels: int = 0
    is_regression: bool = False
    is_multi_label: bool = False

    @property
    def id2label(self) -> dict[int, str]:
        return {i: n for i, n in enumerate(self.names or [])}

    @property
    def label2id(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.names or [])}

    def to_dict(self) -> dict:
        return {"names": self.names, "num_labels": self.num_labels, "is_regression": self.is_regression,
                "is_multi_label": self.is_multi_label}


def label_kind(feature) -> str:
    """"class" | "int" | "bool" | "float" | "string" | "mixed" | "null" | "list" | "other" for a datasets feature."""
    kind = type(feature).__name__
    if kind == "ClassLabel":
        return "class"
    if kind == "Json":
        return "mixed"
    if kind in ("List", "Sequence", "LargeList"):
        return "list"
    if kind != "Value":
        return "other"
    dtype = feature.dtype
    if dtype == "bool":
        return "bool"
    if dtype.startswith(("int", "uint")):
        return "int"
    if dtype.startswith("float"):
        return "float"
    if dtype in ("string", "large_string"):
        return "string"
    if dtype == "null":
        return "null"
    return "other"


def item_feature(feature):
    """The feature of one list element (token-classification tags)."""
    return getattr(feature, "feature", None)


def arrow_column(ds, name: str) -> pa.ChunkedArray:
    """A column as Arrow (respects ``select``'s indices) without Python objects. A ``select``ed split's
    rows are taken by Arrow: datasets gathers them one row slice at a time (~1 s per 200,000 rows)."""
    column = ds.data.table.column(name)
    indices = ds._indices   # datasets' own index mapping of a select (None when there is none)
    return column if indices is None else column.take(indices.column(0))


def numeric_strings(values: pa.ChunkedArray) -> pa.Array:
    """Boolean mask: which string values parse as numbers (nulls count as not)."""
    return pc.fill_null(pc.match_substring_regex(
        pc.utf8_trim_whitespace(values), r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"), False)


def row_labels(value) -> list:
    """One row's label names: a list as it is, a ``|``-separated text split (trimmed), nothing → []."""
    if isinstance(value, list):
        return value
    if value is None or not str(value).strip():
        return []
    return [name.strip() for name in str(value).split(SEPARATOR)]


def label_lists(values: pa.ChunkedArray) -> pa.Array:
    """A multi-label column as list<string> (a list column as it is; a null list stays null)."""
    if pa.types.is_list(values.type) or pa.types.is_large_list(values.type):
        return values.combine_chunks()
    return pa.array([row_labels(v) for v in values.to_pylist()], pa.list_(pa.string()))


def multi_label_source(splits: dict, is_multi_label: bool | None) -> str | None:
    """How the label column holds several labels per row: "list", "separated" (``|`` in text), or
    None (single-label, or a kind that holds no names: validation refuses it when multi-label is asked
    for). ``is_multi_label`` forces it: True reads text without ``|`` as one label per row."""
    labelled = [ds for ds in splits.values() if "label" in ds.column_names]
    kinds = {label_kind(ds.features["label"]) for ds in labelled}
    if is_multi_label is False:
        return None
    if "list" in kinds:
        return "list"
    if "string" in kinds and kinds <= {"string", "null"} and (is_multi_label or any(   # null: a CSV of empty cells
            pc.any(pc.match_substring(arrow_column(ds, "label"), SEPARATOR)).as_py() for ds in labelled)):
        return "separated"
    return None


def class_values(splits: dict, column: str, kind: str) -> list:
    """Sorted distinct label values over all splits (numbers numerically, strings lexically)."""
    seen = set()
    for ds in splits.values():
        if column in ds.column_names:
            values = arrow_column(ds, column)
            if kind == "multi":
                values = pc.list_flatten(label_lists(values))
            elif kind == "list":
                values = pc.list_flatten(values)
            seen.update(v for v in pc.unique(values).to_pylist() if v is not None)
    return sorted(seen)


def plan_labels(splits: dict, task: str, is_regression: bool | None,
                is_multi_label: bool | None = None) -> LabelInfo:
    """Decide names / num_labels / regression / multi-label from the label feature (validated data);
    multi-label names are the union over every split, sorted."""
    train = splits["train"]
    if task == "sentence-similarity":
        scored = "label" in train.column_names
        return LabelInfo(None, 1 if scored else 0, scored)
    if task == "masked-lm":
        return LabelInfo()
    column = "label" if task == "text-classification" else "labels"
    if task == "text-classification" and multi_label_source(splits, is_multi_label):
        names = [str(v) for v in class_values(splits, column, "multi")]
        return LabelInfo(names, len(names), False, True)
    feature = train.features[column]
    if task == "token-classification":
        feature = item_feature(feature)
    kind = label_kind(feature)
    if kind == "class":
        return LabelInfo(list(feature.names), len(feature.names), False)
    regression = is_regression if is_regression is not None else kind == "float"
    if task == "text-classification" and regression:
        return LabelInfo(None, 1, True)
    values = class_values(splits, column, "list" if task == "token-classification" else "scalar")
    if kind == "int" and values == list(range(len(values))):
        return LabelInfo([str(v) for v in values], len(values), False)
    if kind == "int" and task == "token-classification" and values and min(values) >= 0:
        return LabelInfo([str(v) for v in range(max(values) + 1)], max(values) + 1, False)
    names = [_name(v) for v in values]
    return LabelInfo(names, len(names), False)


def _name(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def encode_labels(ds, task: str, info: LabelInfo):
    """The dataset with its label column as ids (int64) or float32 targets, per ``info``."""
    import datasets
    if task == "masked-lm" or (task == "sentence-similarity" and "label" not in ds.column_names):
        return ds
    column = "labels" if task == "token-classification" else "label"
    feature = ds.features[column]
    if task == "token-classification":
        kind = label_kind(item_feature(feature))
        if kind == "class" or (kind == "int" and info.names == [str(i) for i in range(info.num_labels)]):
            return ds
        lookup = {v: i for i, v in enumerate(info.names or [])}
        names = set(lookup)
        # Tag values are matched by their name string ("B-PER", 3, 1.0 → "1").
        return ds.map(lambda b: {column: [[lookup[_name(t)] if _name(t) in names else -100 for t in row]
                                          for row in b[column]]},
                      batched=True, desc="Encoding tags",
                      features=_with(ds.features, column, datasets.List(datasets.Value("int64"))))
    if info.is_multi_label:
        lookup = info.label2id

        def multi_hot(value):
            row = [0.0] * info.num_labels
            for name in row_labels(value):
                row[lookup[name]] = 1.0
            return row
        return ds.map(lambda b: {column: [multi_hot(v) for v in b[column]]}, batched=True, desc="Encoding labels",
                      features=_with(ds.features, column, datasets.List(datasets.Value("float32"))))
    if info.is_regression:
        if label_kind(feature) == "string":
            return ds.map(lambda b: {column: [float(v) for v in b[column]]}, batched=True, desc="Encoding labels",
                          features=_with(ds.features, column, datasets.Value("float32")))
        return ds.cast_column(column, datasets.Value("float32"))
    kind = label_kind(feature)
    if kind == "class" or (kind == "int" and info.names == [str(i) for i in range(info.num_labels)]):
        return ds   # already ids 0..K-1
    lookup = {n: i for i, n in enumerate(info.names or [])}
    return ds.map(lambda b: {column: [lookup[_name(v)] for v in b[column]]}, batched=True, desc="Encoding labels",
                  features=_with(ds.features, column, datasets.Value("int64")))


def _with(features, column, feature):
    features = features.copy()
    features[column] = feature
    return features
