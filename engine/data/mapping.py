"""Column → role mapping: a whole-word first guess, the tasks a file's columns fit (with the reason),
checks of a user's mapping, and renaming."""
from __future__ import annotations

import math
import re
from typing import NamedTuple

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
    ("rating", "label"), ("stars", "label"), ("grade", "label"),
    ("category", "label"), ("sentiment", "label"), ("intent", "label"), ("tag", "label"), ("topic", "label"),
    ("emotion", "label"), ("polarity", "label"),
    ("text", "text"), ("sentence", "text"),
)
# Label keywords that name classes, never a similarity score: guessed for classification only.
CLASS_ONLY = ("category", "sentiment", "intent", "tag", "topic", "emotion", "polarity")
# Words of a column name that say it holds classes (so a few whole numbers there are not a score).
CLASS_WORDS = CLASS_ONLY + ("class", "label", "labels")
# Words of a column name that say it holds what to predict (suggest_tasks).
LABEL_WORDS = CLASS_WORDS + ("tags", "topics", "categories", "classes", "score", "target", "rating", "stars", "grade",
                             "y")
ID_WORDS = ("id", "idx", "index", "key", "uid", "uuid", "guid")


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
            if keyword in CLASS_ONLY and task != "text-classification":
                continue
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


class TaskSuggestion(NamedTuple):
    """A task a file's columns fit: its canonical name, the mapping {role: column} and why, in plain
    words ("“rating” has 5 values (1–5): 5 classes")."""
    task: str
    mapping: dict[str, str]
    reason: str
    is_regression: bool | None = None   # text-classification: a number to predict rather than classes


class _Column(NamedTuple):
    kind: str        # "text" | "category" | "number" | "list" | "empty"
    distinct: list   # the distinct sample values (numbers as floats; list items for lists), sorted
    count: int       # sample values present (not empty)
    words: float     # mean words per value (text and categories)


CATEGORY_LIMIT = 20          # distinct values of a column not named like a label that can still be classes
NAMED_CATEGORY_LIMIT = 100   # ... of one named like a label (intent sets have ~80 classes)
CLASS_LIMIT = 10             # whole numbers with at most this many values may be classes (ratings, stars)


def suggest_tasks(columns, sample_rows) -> list[TaskSuggestion]:
    """The tasks the columns fit, best first, with their mapping and the reason; [] without a text column.
    ``sample_rows`` are the file's first rows ({column: value}), e.g. a preview's.

    The label is a column named like one (whole words: label, rating, stars, category, sentiment, intent,
    tag, ...), else one with few distinct values, else a number column (not an id). Classes make it
    classification, numbers regression, a few whole numbers (a 1–5 rating) either. Masked LM is
    suggested only when nothing is left to predict.

    >>> rows = [{"review_text": f"review {i}", "rating": i % 5 + 1} for i in range(20)]
    >>> [(s.task, s.is_regression) for s in suggest_tasks(["review_text", "rating"], rows)]
    [('text-classification', False), ('text-classification', True)]
    """
    columns, rows = list(columns), list(sample_rows)
    words = {c: split_words(c) for c in columns}
    named = {c for c in columns if any(w in LABEL_WORDS for w in words[c])}
    profiles = {c: _profile([r.get(c) for r in rows], c in named) for c in columns}
    ids = {c for c in columns if any(w in ID_WORDS for w in words[c]) or _counts_rows(profiles[c])}
    tagged = guess_columns(columns, "token-classification")
    if {"tokens", "labels"} <= set(tagged) and profiles[tagged["tokens"]].kind == "list" == \
            profiles[tagged["labels"]].kind:
        return [TaskSuggestion("token-classification", tagged, f"“{tagged['tokens']}” holds lists of words and "
                                                               f"“{tagged['labels']}” a tag for each")]
    texts = [c for c in columns if profiles[c].kind == "text" and c not in ids]
    if not texts:
        return []
    pairs = {r: c for r, c in guess_columns(columns, "sentence-similarity").items() if r != "label"}
    named_pair = {"text", "text_pair"} <= set(pairs) and all(profiles[c].kind in ("text", "category")
                                                             for c in pairs.values())
    if not named_pair:
        pairs = {}
    guessed = guess_columns(columns, "text-classification")
    text = guessed["text"] if guessed.get("text") in texts else max(texts, key=lambda c: profiles[c].words)
    taken = set(pairs.values()) | {text}
    label = _pick_label([guessed.get("label")] + columns, profiles, named, ids, taken)
    if label is None:
        if not pairs and len(texts) >= 2:   # two texts not named as a pair may still be one, in column order
            return [TaskSuggestion("sentence-similarity", {"text": texts[0], "text_pair": texts[1]},
                                   _pair_reason({"text": texts[0], "text_pair": texts[1]})),
                    TaskSuggestion("masked-lm", {"text": text},
                                   f"nothing to predict: keep pre-training on “{text}”")]
        if pairs:
            return [TaskSuggestion("sentence-similarity", pairs, _pair_reason(pairs))]
        return [TaskSuggestion("masked-lm", {"text": text}, f"“{text}” is the only text and nothing is to be "
                                                            "predicted: keep pre-training on it")]
    base = {"text": pairs["text"], "text_pair": pairs["text_pair"]} if pairs else {"text": text}
    classified = [TaskSuggestion("text-classification", {**base, "label": label}, reason, regression)
                  for regression, reason in _label_options(label, profiles[label])]
    if not pairs:
        return classified
    if any(s.is_regression for s in classified):   # a number beside a pair: most often a similarity score
        return [TaskSuggestion("sentence-similarity", {**pairs, "label": label},
                               f"{_pair_reason(pairs)} with a score in “{label}”")] + classified[:2]
    return classified + [TaskSuggestion("sentence-similarity", pairs,
                                        f"{_pair_reason(pairs)} (“{label}” left out)")]


def _pair_reason(pairs: dict[str, str]) -> str:
    reason = f"“{pairs['text']}” and “{pairs['text_pair']}” are pairs of texts"
    negatives = sum(base_role(r) == "negative" for r in pairs)
    if negatives:
        reason += f" with {negatives} hard negatives" if negatives > 1 else " with a hard negative"
    return reason


def _profile(values, named: bool) -> _Column:
    present = [v for v in values if v is not None and v != ""]
    if not present:
        return _Column("empty", [], 0, 0.0)
    if sum(isinstance(v, list) for v in present) * 10 >= len(present) * 9:
        items = sorted({str(x) for v in present if isinstance(v, list) for x in v})
        return _Column("list", items, len(present), 0.0)
    numbers = [n for n in map(_as_number, present) if n is not None]
    if len(numbers) * 4 >= len(present) * 3:   # mostly numbers: a stray word is a data problem, not a kind
        return _Column("number", sorted(set(numbers)), len(present), 0.0)
    texts = [str(v) for v in present]
    distinct = sorted(set(texts))
    words = sum(len(t.split()) for t in texts) / len(texts)
    short = sum(map(len, texts)) / len(texts) <= 40
    # Classes repeat; in a handful of rows a column named like a label may not, but its values stay short.
    few = len(distinct) <= (NAMED_CATEGORY_LIMIT if named else CATEGORY_LIMIT) and \
        (2 * len(distinct) <= len(texts) or named and words <= 2)
    return _Column("category" if few and short else "text", distinct, len(present), words)


def _as_number(value) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _counts_rows(profile: _Column) -> bool:
    """Whole numbers, all different, over many rows: a row number, not something to predict."""
    return profile.kind == "number" and profile.count >= 20 and len(profile.distinct) == profile.count and \
        all(v.is_integer() for v in profile.distinct)


def _pick_label(candidates, profiles, named, ids, taken) -> str | None:
    usable = [c for c in dict.fromkeys(candidates) if c in profiles and c not in taken and c not in ids
              and len(profiles[c].distinct) >= (1 if c in named else 2)   # a named label stays, to be checked
              and (profiles[c].kind in ("category", "number") or profiles[c].kind == "list" and c in named)]
    for group in ([c for c in usable if c in named], [c for c in usable if profiles[c].kind == "category"], usable):
        if group:
            return group[0]
    return None


def _label_options(column: str, profile: _Column) -> list[tuple[bool, str]]:
    """(is_regression, reason) for each way to read ``column`` as the label, best first."""
    name = f"“{column}”"
    values = profile.distinct
    if profile.kind == "list":
        return [(False, f"{name} holds a list of labels per row ({_some(values)}): several classes per text")]
    k = len(values)
    classes = f"{name} has {k} value{'s' if k > 1 else ''}"
    if profile.kind == "category":
        return [(False, f"{classes} ({_some(values)}): {k} class{'es' if k > 1 else ''}")]
    low, high = _number(values[0]), _number(values[-1])
    score = (True, f"{name} is a number from {low} to {high}: predict it as a score" if k > 1 else
             f"{name} is a number ({low}): predict it as a score")
    if k <= CLASS_LIMIT and all(v.is_integer() for v in values):
        out = [(False, f"{classes} ({low}–{high}): {k} classes" if k > 1 else f"{classes} ({low}): 1 class")]
        if k >= 3 and not any(w in CLASS_WORDS for w in split_words(column)):
            out.append(score)
        return out
    return [score]


def _some(values, shown: int = 4) -> str:
    return ", ".join(map(str, values[:shown])) + (", …" if len(values) > shown else "")


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else f"{value:.4g}"


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
