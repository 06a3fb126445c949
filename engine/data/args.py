"""DatasetArgs (the data half of a run's config), task names and the roles each task reads."""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import PurePath

from engine.data.reading import text_codec
from engine.errors import DataError, UsageError
from engine.tasks import TASKS as TASK_TABLE
from engine.tasks import TEXT_ROLES, TRAINING_TASKS, training_task

TASKS = TRAINING_TASKS
# Roles per task: (required, optional), read from the task table.
TASK_ROLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    name: (TASK_TABLE[name].required_roles, TASK_TABLE[name].optional_roles) for name in TRAINING_TASKS}
_NEGATIVE = re.compile(r"^negative(_\d+)?$")
SAMPLING = ("proportional", "round-robin")
DATASET_KEYS = ("path", "name", "columns", "loss", "eval_data")   # one entry of several datasets (run.json)
FIELD_ROLES = ("text", "text_pair", "negative", "label", "tokens", "labels")   # the roles with a *_field option


def normalize_task(name: str) -> str:
    """The task whose data a run of ``name`` reads ("embedding", "feature-extraction" → "sentence-similarity")."""
    try:
        return training_task(name)
    except UsageError as exc:
        raise DataError(str(exc), code="bad_task") from None


def task_roles(task: str) -> tuple[str, ...]:
    required, optional = TASK_ROLES[normalize_task(task)]
    return required + optional


def is_role(role: str, task: str) -> bool:
    """True when ``role`` is valid for ``task`` (negative_2 counts as negative)."""
    return base_role(role) in task_roles(task)


def base_role(role: str) -> str:
    """negative_2 → negative; every other role unchanged."""
    return "negative" if _NEGATIVE.match(role) else role


def text_roles_of(columns) -> list[str]:
    """The text roles among ``columns`` in batch order: text, text_pair, negative, negative_1, ..."""
    def order(c):
        return (TEXT_ROLES.index(base_role(c)), int(c.rsplit("_", 1)[1]) if c.startswith("negative_") else 0)
    return sorted((c for c in columns if base_role(c) in TEXT_ROLES), key=order)


@dataclass
class DatasetArgs:
    data: str | list = field(default="", metadata={
        "help": "Training data: a .jsonl/.json/.csv/.tsv/.parquet file, a folder with train/validation/test "
                "files, or a Hugging Face Hub dataset id. Repeat --data to train on several datasets in one run "
                "(each batch comes from one of them)."})
    eval_data: str | list | None = field(default=None, metadata={
        "help": "Optional separate validation file (same formats); replaces any validation split. With several "
                "--data, one --eval-data per --data, in the same order."})
    sampling: str = field(default="proportional", metadata={
        "help": "Several datasets: 'proportional' (batches drawn in proportion to the datasets' sizes) or "
                "'round-robin' (one batch of each in turn; a dataset that runs out leaves the rotation)."})
    subset: str | None = field(default=None, metadata={
        "help": "Hub dataset subset (configuration name), e.g. 'pair-score' for sentence-transformers/all-nli."})
    split: str | None = field(default=None, metadata={
        "help": "Split to train on (default 'train'; the only split when there is one)."})
    encoding: str | None = field(default=None, metadata={
        "help": "Text encoding of CSV/TSV/JSON files, e.g. latin-1 or cp1252 (any Python codec name); "
                "default UTF-8 (a byte-order mark is fine)."})
    task_type: str = field(default="sentence-similarity", metadata={
        "help": "sentence-similarity, text-classification, masked-lm or token-classification "
                "(aliases: engine/tasks.py)."})
    text_field: str | None = field(default=None, metadata={"help": "Column holding the text / anchor / query."})
    text_pair_field: str | None = field(default=None, metadata={
        "help": "Column holding the second text: positive / answer / document, or the pair in classification."})
    negative_field: str | None = field(default=None, metadata={
        "help": "Column holding a hard negative (several: comma-separated column names)."})
    label_field: str | None = field(default=None, metadata={
        "help": "Column holding the class or score (similarity score for sentence pairs)."})
    tokens_field: str | None = field(default=None, metadata={
        "help": "Column holding the list of words (token classification)."})
    labels_field: str | None = field(default=None, metadata={
        "help": "Column holding one tag per word (token classification)."})
    columns: dict[str, str] = field(default_factory=dict, metadata={
        "help": "Generic mapping {role: column}; roles: text, text_pair, negative, negative_1.., label, tokens, labels."})
    validation_split: float = field(default=0.1, metadata={
        "help": "Fraction of the training rows held out for validation when the data has no validation split (0 = none)."})
    test_split: float = field(default=0.0, metadata={
        "help": "Fraction of the training rows held out as a test split when the data has none (0 = none)."})
    is_regression: bool | None = field(default=None, metadata={
        "help": "Classification with float targets. None = detect (float labels → regression)."})
    is_multi_label: bool | None = field(default=None, metadata={
        "flag": "--multi-label",
        "help": "Classification with several labels per row: a list of names per row (JSONL), or names separated "
                "by '|' in one cell (CSV). None = detect (lists, or '|' in the labels)."})
    use_chat_template: bool = field(default=False, metadata={
        "help": "Wrap each text in the tokenizer's chat template (decoder models)."})
    max_rows: int | None = field(default=None, metadata={
        "help": "Read at most this many rows per split (quick experiments)."})
    max_length: int = field(default=256, metadata={
        "help": "Maximum tokens per text; longer texts are truncated (validation reports how many)."})
    seed: int = field(default=42, metadata={"help": "Seed for the automatic validation/test split."})

    def __post_init__(self):
        self.task_type = normalize_task(self.task_type)
        if isinstance(self.data, (list, tuple)):   # several datasets: checked, named, each with its validation file
            self.data, self.eval_data = dataset_entries(self.data, self.eval_data), None
        elif isinstance(self.eval_data, (list, tuple)):
            if len(self.eval_data) != 1:
                raise DataError(f"{len(self.eval_data)} validation files for one dataset.", code="bad_datasets",
                                fix="Give one --eval-data, or one --data per --eval-data (they are paired in order).")
            self.eval_data = self.eval_data[0]
        if self.sampling not in SAMPLING:
            raise DataError(f"sampling must be one of {', '.join(SAMPLING)}, got {self.sampling!r}.",
                            fix="Use --sampling proportional (the default) or --sampling round-robin.",
                            code="bad_sampling")
        text_codec(self.encoding)   # an unknown codec name fails here, before any file is read
        if self.max_rows is not None and self.max_rows <= 0:
            raise DataError(f"max_rows must be a positive number of rows, got {self.max_rows}.",
                            fix="Leave max_rows empty to read every row, or give a number ≥ 1.", code="bad_max_rows")
        for name in ("validation_split", "test_split"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise DataError(f"{name} must be a fraction in [0, 1), got {value}.",
                                fix=f"Use e.g. {name}=0.1 for 10% of the rows, or 0 for none.", code="bad_split")
        if self.max_length is not None and self.max_length < 2:
            raise DataError(f"max_length must be at least 2 tokens, got {self.max_length}.",
                            fix="Use e.g. max_length=256.", code="bad_max_length")

    def role_columns(self) -> dict[str, str]:
        """The explicit mapping {role: column} from the *_field options and ``columns``."""
        return role_columns_of(vars(self))

    @property
    def several(self) -> bool:
        """True when the run trains on several datasets (``data`` is a list of entries)."""
        return isinstance(self.data, list)

    def per_dataset(self) -> list[tuple[str, str | None, DatasetArgs]]:
        """(name, loss, DatasetArgs of that dataset alone) for each dataset; one dataset is ("", None, self).
        A dataset's own columns win over the run's (``columns`` and the *_field options)."""
        if not self.several:
            return [("", None, self)]
        fields_off = {f"{role}_field": None for role in FIELD_ROLES}   # in ``columns`` now, under the dataset's own
        return [(e["name"], e["loss"], replace(self, data=e["path"], eval_data=e["eval_data"], **fields_off,
                                               columns={**self.role_columns(), **e["columns"]}))
                for e in self.data]


def role_columns_of(settings: dict) -> dict[str, str]:
    """The explicit mapping {role: column} of data settings (DatasetArgs fields): ``columns``, and the
    *_field options over it."""
    mapping = dict(settings.get("columns") or {})
    for role in ("text", "text_pair", "label", "tokens", "labels"):
        value = settings.get(f"{role}_field")
        if value:
            mapping[role] = value
    if settings.get("negative_field"):
        names = [n.strip() for n in settings["negative_field"].split(",") if n.strip()]
        if len(names) == 1:
            mapping["negative"] = names[0]
        else:
            mapping.update({f"negative_{i}": n for i, n in enumerate(names, 1)})
    return mapping


def dataset_name(path: str) -> str:
    """The default name of a dataset: its file stem ("data/nli.jsonl" → "nli"; a Hub id's last part)."""
    return PurePath(str(path).rstrip("/")).stem or str(path)


def dataset_entries(data, eval_data=None) -> list[dict]:
    """Several datasets (paths, or {path, name, columns, loss, eval_data} dicts) → entries with every key,
    unique names (default: the file stem) and ``eval_data`` paired in order with ``data``."""
    entries = []
    for item in data:
        entry = {"path": item} if isinstance(item, str) else dict(item) if isinstance(item, dict) else None
        unknown = sorted(set(entry or {}) - set(DATASET_KEYS)) if entry is not None else []
        if entry is None or unknown or not entry.get("path"):
            raise DataError(f"Each dataset is a path or {{path, name, columns, loss, eval_data}}; got {item!r}.",
                            fix=f"Give every dataset a 'path'; the other keys are {', '.join(DATASET_KEYS[1:])}.",
                            code="bad_datasets")
        name = str(entry.get("name") or dataset_name(entry["path"]))
        if ":" in name or "=" in name:
            raise DataError(f"Dataset name {name!r} holds ':' or '=', which --column NAME:role=column cannot tell "
                            "apart.", fix="Give the dataset another name (the 'name' key).", code="bad_datasets")
        entries.append({"path": str(entry["path"]), "name": name, "columns": dict(entry.get("columns") or {}),
                        "loss": entry.get("loss") or None, "eval_data": entry.get("eval_data") or None})
    names = [e["name"] for e in entries]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DataError(f"Two datasets are named {twice[0]!r}; each needs its own name (metrics and --column "
                        "NAME:role=column use it).", fix="Rename a file, or set 'name' for each dataset in the "
                        "run.json data list.", code="bad_datasets")
    if eval_data:
        files = [eval_data] if isinstance(eval_data, str) else list(eval_data)
        if len(files) != len(entries):
            raise DataError(f"{len(files)} validation file(s) for {len(entries)} datasets: they are paired in order.",
                            fix="Give one --eval-data per --data, in the same order, or none (each dataset then "
                                "holds out validation_split of its rows).", code="bad_datasets")
        for entry, file in zip(entries, files):
            entry["eval_data"] = file
    return entries


def set_dataset_columns(entries: list[dict], columns: dict[str, dict]) -> None:
    """--column NAME:role=column: ``columns`` {name: {role: column}} into the entries of those datasets."""
    by_name = {e["name"]: e for e in entries}
    for name, mapping in columns.items():
        if name not in by_name:
            raise DataError(f"--column {name}:… names no dataset; the datasets are {', '.join(by_name)}.",
                            fix="Use a dataset's name (its file stem, or the 'name' given in run.json) before ':'.",
                            code="bad_datasets")
        by_name[name]["columns"] = {**by_name[name]["columns"], **mapping}


def first_dataset(data: dict) -> dict:
    """A run record's data settings (``asdict(DatasetArgs)``) as one dataset: as they are, or, for several,
    the first dataset's path, validation file and columns (what reading one file back needs: the corpus
    of the Playground, an evaluation on the run's validation rows)."""
    entries = data.get("data")
    if not isinstance(entries, list) or not entries:
        return data
    entry = dataset_entries(entries)[0]
    return {**data, **{f"{role}_field": None for role in FIELD_ROLES}, "data": entry["path"],
            "eval_data": entry["eval_data"], "columns": {**role_columns_of(data), **entry["columns"]}}


def data_label(data) -> str:
    """A run's data in a few words: the file name, or the datasets' names ("nli + quora")."""
    if isinstance(data, list):
        return " + ".join(e.get("name") or dataset_name(e.get("path", "")) if isinstance(e, dict) else dataset_name(e)
                          for e in data)
    return PurePath(data).name or data if data else ""


def data_paths(data) -> list[str]:
    """The paths of a run's ``data`` setting: its one path, or each dataset's."""
    if isinstance(data, list):
        return [e["path"] if isinstance(e, dict) else str(e) for e in data]
    return [data] if data else []
