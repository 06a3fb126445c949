"""Column → role mapping: a whole-word first guess, checks of a user's mapping, and renaming."""
from __future__ import annotations

import re

from engine.data.args import TASK_ROLES, base_role, is_role, normalize_task, task_roles
from engine.errors import DataError, UsageError

# (keyword, role) in priority order; a keyword matches whole words of a column name only.
KEYWORDS: tuple[tuple[str, str], ...] = (
    ("hard negative", "negative"), ("negative", "negative"), ("neg", "negative"),
    ("ner tags", "labels"), ("tags", "labels"), ("labels", "labels"),
    ("tokens", "tokens"), ("words", "tokens"),
    ("text pair", "text_pair"),
    ("anchor", "text"), ("query", "text"), ("question", "text"), ("sentence1", "text"),
    ("text1", "text"), ("premise", "text"),
    ("positive", "text_pair"), ("pos", "text_pair"), ("answer", "text_pair"), ("document", "text_pair"),
    ("passage", "text_pair"), ("sentence2", "text_pair"), ("text2", "text_pair"), ("hypothesis", "text_pair"),
    ("label", "label"), ("labels", "label"), ("score", "label"), ("target", "label"), ("class", "label"),
    ("text", "text"), ("sentence", "text"),
)


def parse_column_items(items) -> dict[str, str]:
    """``ROLE=NAME`` items (the CLI's repeatable --column) → {role: column}.

    >>> parse_column_items(["text=question", " label = score "])
    {'text': 'question', 'label': 'score'}
    """
    mapping = {}
    for item in items or []:
        role, sep, name = item.partition("=")
        if not sep or not role.strip() or not name.strip():
            raise UsageError(f"--column expects ROLE=NAME (e.g. --column text=question), got {item!r}.")
        mapping[role.strip()] = name.strip()
    return mapping


def split_words(name: str) -> list[str]:
    """'queryText' → ['query', 'text']; 'hard_negative-2' → ['hard', 'negative', '2']; 'sentence1' → ['sentence', '1']."""
    name = re.sub(r"([a-z])([A-Z])", r"\1 \2", str(name))
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", name)
    name = re.sub(r"([A-Za-z])([0-9])|([0-9])([A-Za-z])", lambda m: " ".join(g for g in m.groups() if g), name)
    return [w for w in re.split(r"[\s_\-./]+", name.lower()) if w]


def _match(words: list[str], keyword: list[str]) -> bool:
    n = len(keyword)
    return any(words[i:i + n] == keyword for i in range(len(words) - n + 1))


def guess_columns(columns, task: str) -> dict[str, str]:
    """A first guess {role: column} from whole words in the column names, only roles valid for ``task``.

    >>> guess_columns(["question", "answer", "context"], "sentence-similarity")
    {'text': 'question', 'text_pair': 'answer'}
    """
    task = normalize_task(task)
    columns = list(columns)
    candidates = []  # (extra words, keyword priority, column index, column, role)
    for index, column in enumerate(columns):
        words = split_words(column)
        for priority, (keyword, role) in enumerate(KEYWORDS):
            kw = split_words(keyword)
            if is_role(role, task) and _match(words, kw):
                candidates.append((len(words) - len(kw), priority, index, column, role))
    mapping: dict[str, str] = {}
    used: set[str] = set()
    negatives: list[tuple[int, str]] = []
    for _extra, _priority, index, column, role in sorted(candidates):
        if column in used or (role in mapping and role != "negative"):
            continue
        used.add(column)
        if role == "negative":
            negatives.append((index, column))
        else:
            mapping[role] = column
    negatives.sort()
    if len(negatives) == 1:
        mapping["negative"] = negatives[0][1]
    else:
        mapping.update({f"negative_{i}": column for i, (_, column) in enumerate(negatives, 1)})
    order = ("text", "text_pair", "negative", "label", "tokens", "labels")
    return dict(sorted(mapping.items(), key=lambda kv: (order.index(base_role(kv[0])), kv[0])))


def resolve_columns(columns, task: str, explicit: dict[str, str] | None = None,
                    file: str | None = None) -> dict[str, str]:
    """The final {role: column}: the user's mapping, completed by guesses; checked against ``columns``.

    A role given as ``None`` (or ``"ignore"``) stays unmapped: no guess fills it ("negative" blocks
    every negative_N guess).

    >>> resolve_columns(["query", "document", "score"], "sentence-similarity", {"label": None})
    {'text': 'query', 'text_pair': 'document'}
    """
    task = normalize_task(task)
    columns = list(columns)
    blocked = {base_role(r) for r, c in (explicit or {}).items() if not c or c == "ignore"}
    explicit = {r: c for r, c in (explicit or {}).items() if c and c != "ignore"}
    for role, column in explicit.items():
        if not is_role(role, task):
            raise DataError(f"Role {role!r} is not used by the {task} task.", file=file, column=column,
                            fix=f"Map columns to these roles only: {', '.join(task_roles(task))}.", code="bad_role")
        if column not in columns:
            raise DataError(f"Column {column!r} (mapped to role {role!r}) does not exist.", file=file,
                            fix=f"Pick one of the available columns: {', '.join(map(repr, columns))}.",
                            code="missing_column")
    seen: dict[str, str] = {}
    for role, column in explicit.items():
        if column in seen:
            raise DataError(f"Column {column!r} is mapped to two roles, {seen[column]!r} and {role!r}.",
                            file=file, column=column,
                            fix="Map each role to its own column (duplicate the column first if you mean it).",
                            code="duplicate_mapping")
        seen[column] = role
    mapping = dict(explicit)
    has_negative = any(base_role(r) == "negative" for r in explicit)
    for role, column in guess_columns(columns, task).items():
        if column in seen or role in mapping or base_role(role) in blocked or \
                (base_role(role) == "negative" and has_negative):
            continue
        mapping[role] = column
        seen[column] = role
    required = TASK_ROLES[task][0]
    missing = [r for r in required if r not in mapping]
    if missing:
        raise DataError(f"No column for role(s) {', '.join(map(repr, missing))} of the {task} task.", file=file,
                        fix=f"Set {', '.join(r + '_field' for r in missing)} (or columns={{role: column}}) to one of "
                            f"the available columns: {', '.join(map(repr, columns))}.", code="missing_column")
    return mapping


def apply_columns(ds, mapping: dict[str, str], file: str | None = None):
    """Keep only the mapped columns of a ``datasets.Dataset``, renamed to their roles."""
    missing = [c for c in mapping.values() if c not in ds.column_names]
    if missing:
        raise DataError(f"Column {missing[0]!r} (mapped to role "
                        f"{next(r for r, c in mapping.items() if c == missing[0])!r}) does not exist.",
                        file=file, fix=f"Pick one of the available columns: {', '.join(map(repr, ds.column_names))}.",
                        code="missing_column")
    ds = ds.select_columns(list(mapping.values()))
    renames = {c: r for r, c in mapping.items() if c != r}
    # Two-step rename so that swaps such as {text: "label", label: "text"} cannot collide.
    tmp = {c: f"__raclate_{i}" for i, c in enumerate(renames)}
    if renames:
        ds = ds.rename_columns(tmp).rename_columns({tmp[c]: r for c, r in renames.items()})
    return ds
