"""DatasetArgs (the data half of a run's config), task names and the roles each task reads."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from engine.data.reading import text_codec
from engine.errors import DataError, UsageError
from engine.tasks import TASKS as TASK_TABLE
from engine.tasks import TEXT_ROLES, TRAINING_TASKS, training_task

TASKS = TRAINING_TASKS
# Roles per task: (required, optional), read from the task table.
TASK_ROLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    name: (TASK_TABLE[name].required_roles, TASK_TABLE[name].optional_roles) for name in TRAINING_TASKS}
_NEGATIVE = re.compile(r"^negative(_\d+)?$")


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
    data: str = field(default="", metadata={
        "help": "Training data: a .jsonl/.json/.csv/.tsv/.parquet file, a folder with train/validation/test "
                "files, or a Hugging Face Hub dataset id."})
    eval_data: str | None = field(default=None, metadata={
        "help": "Optional separate validation file (same formats); replaces any validation split."})
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
        mapping = dict(self.columns or {})
        for role in ("text", "text_pair", "label", "tokens", "labels"):
            value = getattr(self, f"{role}_field")
            if value:
                mapping[role] = value
        if self.negative_field:
            names = [n.strip() for n in self.negative_field.split(",") if n.strip()]
            if len(names) == 1:
                mapping["negative"] = names[0]
            else:
                mapping.update({f"negative_{i}": n for i, n in enumerate(names, 1)})
        return mapping
