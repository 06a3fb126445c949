"""The tasks the app offers, how each maps onto an engine task, and the column roles it reads.

The app shows six tasks; the engine knows four (late interaction is sentence similarity with
``use_late_interaction``, regression is classification with ``is_regression``). Qt-free.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from engine.data import guess_columns
from engine.data.args import TASK_ROLES, base_role
from engine.data.mapping import suggest_tasks

IGNORE = "ignore"


@dataclass(frozen=True)
class AppTask:
    key: str
    title: str
    blurb: str                       # the one-line explanation under the picker
    engine_task: str
    training: dict = field(default_factory=dict)   # TrainingArgs values the task implies
    label_title: str = "label"       # what the "label" role is called in this task

    @property
    def required(self) -> tuple[str, ...]:
        return TASK_ROLES[self.engine_task][0]

    @property
    def optional(self) -> tuple[str, ...]:
        return TASK_ROLES[self.engine_task][1]

    @property
    def roles(self) -> tuple[str, ...]:
        """The roles a column can take in this task, "ignore" last."""
        return self.required + self.optional + (IGNORE,)


APP_TASKS: tuple[AppTask, ...] = (
    AppTask("sentence-similarity", "Sentence similarity",
            "One vector per text so that related texts land close: (question, answer) pairs, "
            "optional hard negatives or a similarity score.",
            "sentence-similarity", {"use_late_interaction": False, "is_regression": None}, "score"),
    AppTask("late-interaction", "Late interaction (ColBERT)",
            "One vector per token, scored with MaxSim: sharper retrieval than one vector per text, "
            "at the cost of a larger index.",
            "sentence-similarity", {"use_late_interaction": True, "is_regression": None}, "score"),
    AppTask("classification", "Classification",
            "Pick one class per text (or text pair): sentiment, topic, intent, spam.",
            "text-classification", {"use_late_interaction": False, "is_regression": False}),
    AppTask("regression", "Regression",
            "Predict a number per text (or text pair): a rating, a price, a similarity score.",
            "text-classification", {"use_late_interaction": False, "is_regression": True}, "score"),
    AppTask("masked-lm", "Masked language model",
            "Keep pre-training on your own text (fill in hidden words) to adapt the model to a domain.",
            "masked-lm", {"use_late_interaction": False, "is_regression": None}),
    AppTask("token-classification", "Token classification",
            "Tag every word: named entities (people, places), parts of speech.",
            "token-classification", {"use_late_interaction": False, "is_regression": None}),
)
TASKS_BY_KEY = {t.key: t for t in APP_TASKS}
DEFAULT_TASK = "sentence-similarity"

ROLE_TITLES = {"text": "text", "text_pair": "text pair", "negative": "negative", "label": "label",
               "tokens": "tokens", "labels": "tags", IGNORE: "ignore"}
ROLE_HINTS = {"text": "the text, anchor or query", "text_pair": "the second text: positive, answer or document",
              "negative": "a text that must not match (hard negative)", "label": "the class or number to predict",
              "tokens": "a list of words", "labels": "one tag per word", IGNORE: "not used for training"}


def get_task(key: str) -> AppTask:
    return TASKS_BY_KEY.get(key) or TASKS_BY_KEY[DEFAULT_TASK]


def role_title(role: str, task: AppTask) -> str:
    return task.label_title if role == "label" else ROLE_TITLES.get(base_role(role), role)


def guess_mapping(columns, task: AppTask) -> dict[str, str]:
    """{column: role} for every column, from the engine's whole-word guess (unguessed → ignore)."""
    guessed = {column: base_role(role) for role, column in guess_columns(columns, task.engine_task).items()}
    return {c: guessed.get(c, IGNORE) for c in columns}


def engine_columns(mapping: dict[str, str], columns) -> dict[str, str]:
    """{column: role} (UI) → {role: column} (engine); several negatives become negative_1, negative_2, ..."""
    out: dict[str, str] = {}
    negatives = [c for c in columns if mapping.get(c) == "negative"]
    for column in columns:
        role = mapping.get(column, IGNORE)
        if role not in (IGNORE, "negative"):
            out[role] = column
    if len(negatives) == 1:
        out["negative"] = negatives[0]
    else:
        out.update({f"negative_{i}": c for i, c in enumerate(negatives, 1)})
    return out


def missing_roles(mapping: dict[str, str], task: AppTask) -> list[str]:
    used = set(mapping.values())
    return [r for r in task.required if r not in used]


@dataclass(frozen=True)
class TaskChoice:
    """A task the data fits, as the app offers it: the app task, every column's role, and why."""
    key: str
    mapping: dict[str, str]   # {column: role}
    reason: str


def task_choices(columns, rows) -> list[TaskChoice]:
    """The engine's suggestions for these columns and sample rows, best first, as app tasks."""
    out = []
    for s in suggest_tasks(columns, rows):
        key = ("regression" if s.is_regression else "classification") if s.task == "text-classification" else s.task
        roles = {column: base_role(role) for role, column in s.mapping.items()}
        out.append(TaskChoice(get_task(key).key, {c: roles.get(c, IGNORE) for c in columns}, s.reason))
    return out
