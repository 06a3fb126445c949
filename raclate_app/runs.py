"""The runs on disk, as the Runs, Evaluate and Playground pages see them. Qt-free.

A run is an output folder with a ``raclate_run.json`` (engine/training/run.py): config, status, final metrics
and the history of step/eval events, and the name the user gave it; its checkpoints are
``checkpoints/step-*`` folders whose ``trainer_state.json`` holds the step and the last evaluation.
A record still saying "running" whose process is gone (the machine slept, the app was killed) is
shown as crashed.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from engine.data.args import data_label, first_dataset
from engine.run_record import RUN_FILE, effective_status, is_run_folder, read_run_record, run_name
from engine.training.checkpoint import checkpoint_dirs
from raclate_app.tasks import get_task

# The metric that sums a run up, per app task (the first one present is shown).
MAIN_METRICS = {"sentence-similarity": ("ndcg@10", "spearman_cosine"), "late-interaction": ("ndcg@10", "spearman_cosine"),
                "classification": ("accuracy", "macro_f1"), "regression": ("spearman", "pearson"),
                "token-classification": ("f1",), "masked-lm": ("perplexity",)}
# The date filter of the Runs page: (title, days back; None = any date).
DATE_RANGES = (("Any date", None), ("Today", 0), ("Last 7 days", 7), ("Last 30 days", 30))
# Settings worth a glance in the table; the rest is in the details.
KEY_SETTINGS = (("num_train_epochs", "epochs", "{:g}"), ("max_steps", "max steps", "{}"), ("batch_size", "batch", "{}"),
                ("learning_rate", "lr", "{:.0e}"), ("max_length", "max len", "{}"))
NOT_DUPLICATED = ("output_dir", "resume_from_checkpoint", "distributed", "push_to_hub", "hub_model_id", "hub_private")


@dataclass
class Checkpoint:
    step: int
    path: Path
    metrics: dict = field(default_factory=dict)
    saved: float | None = None   # mtime


@dataclass
class RunInfo:
    path: Path
    record: dict
    status: str
    checkpoint_list: list = field(default_factory=list)   # read with the run (off the GUI thread)
    has_model: bool = False                                # the final model folder is there

    @property
    def name(self) -> str:
        """The name the user gave the run, else its folder's name."""
        return run_name(self.path, self.record)

    @property
    def named(self) -> bool:
        return self.name != self.path.name

    @property
    def started(self) -> datetime | None:
        ts = self.record.get("started")
        return datetime.fromtimestamp(ts) if isinstance(ts, (int, float)) else None

    @property
    def task_key(self) -> str:
        return app_task_key(self.record)

    @property
    def model(self) -> str:
        model = str(self.record.get("model") or "?")
        return "all-MiniLM-L6-v2 (built in)" if model == "default" else model

    @property
    def model_name(self) -> str:
        """Short: a local folder by its name (the path is in ``model``), a Hub id as is."""
        model = self.model
        return Path(model).name if model.startswith(("/", "~", ".")) or "\\" in model else model

    @property
    def data(self) -> str:
        return data_label((self.record.get("data") or {}).get("data") or "")

    @property
    def metrics(self) -> dict:
        return {k: v for k, v in (self.record.get("metrics") or {}).items() if _number(v)}

    @property
    def final_step(self) -> int | None:
        step = self.record.get("final_step")
        if step is None:
            steps = [e.get("step") for e in self.record.get("history") or [] if e.get("event") == "step"]
            step = max(steps) if steps else None
        return step

    def settings_text(self) -> str:
        training = self.record.get("training") or {}
        parts = []
        for key, title, fmt in KEY_SETTINGS:
            value = training.get(key)
            if value is None or (key == "max_steps" and value <= 0) or \
                    (key == "num_train_epochs" and (training.get("max_steps") or -1) > 0):
                continue
            parts.append(f"{title} {fmt.format(value)}")
        return ", ".join(parts)

    def main_metric(self) -> tuple[str, float] | None:
        metrics = self.metrics
        for name in MAIN_METRICS.get(self.task_key, ()):
            if name in metrics:
                return name, metrics[name]
        first = next((k for k in metrics if not k.endswith("loss")), None) or next(iter(metrics), None)
        return (first, metrics[first]) if first else None

    def error_text(self) -> str:
        error = self.record.get("error") or {}
        if self.status == "crashed" and not error and self.record.get("status") == "running":
            return "The training process ended without a word (killed, or the machine stopped)."
        return str(error.get("message") or "")

    def checkpoints(self) -> list[Checkpoint]:
        return self.checkpoint_list


def deletable(run: RunInfo) -> str | None:
    """Why ``run``'s folder must not go to the trash (None: it may): only a folder this program wrote
    (it still holds raclate_run.json) and no run that is training now."""
    if not is_run_folder(run.path):
        return f"{run.path} has no {RUN_FILE} (any more): it is not a run folder, so it is left alone."
    if effective_status(read_run_record(run.path)) == "running":
        return f"{run.name} is still training: stop it on the Train page first."
    return None


def since(days: int | None) -> datetime | None:
    """The start of a date filter: midnight ``days`` days back (0: today); None for any date."""
    if days is None:
        return None
    return datetime.now().replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=days)


def matches(run: RunInfo, text: str = "", task_key: str | None = None, after: datetime | None = None) -> bool:
    """Whether ``run`` passes the Runs page's filter: every word of ``text`` in its name, folder, model,
    data or task (any case), its app task ``task_key``, started at or after ``after``."""
    if task_key and run.task_key != task_key:
        return False
    if after is not None and (run.started is None or run.started < after):
        return False
    haystack = " ".join((run.name, run.path.name, run.model, run.data,
                         str((run.record.get("data") or {}).get("data") or ""), get_task(run.task_key).title)).lower()
    return all(word in haystack for word in text.lower().split())


def run_roots(settings) -> list[Path]:
    """The runs folder from the settings, then the folders the user added on the Runs page."""
    extra = [Path(p) for p in settings.get_json("runs/extra", []) if isinstance(p, str)]
    return [settings.runs_root(), *extra]


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# -- finding runs --------------------------------------------------------------------------------
def read_run(path: Path) -> RunInfo | None:
    path = Path(path)
    record = read_run_record(path)
    if not record:
        return None
    status = effective_status(record)
    return RunInfo(path, record, status, list_checkpoints(path),
                   (path / "config.json").exists() and status != "running")


def find_run_dirs(root: Path, depth: int = 2) -> list[Path]:
    """``root`` itself when it is a run, else runs up to ``depth`` folders below it."""
    root = Path(root).expanduser()
    if (root / RUN_FILE).is_file():
        return [root]
    if depth <= 0 or not root.is_dir():
        return []
    found = []
    try:
        children = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []
    for child in children:
        if child.name != "checkpoints":
            found += find_run_dirs(child, depth - 1)
    return found


def scan_runs(roots) -> list[RunInfo]:
    """Every run under ``roots`` (folders), newest first, each once."""
    seen, runs = set(), []
    for root in roots:
        for path in find_run_dirs(Path(root)):
            key = path.resolve()
            if key in seen:
                continue
            seen.add(key)
            run = read_run(path)
            if run is not None:
                runs.append(run)
    runs.sort(key=lambda r: r.record.get("started") or 0, reverse=True)
    return runs


def list_checkpoints(run_dir: Path) -> list[Checkpoint]:
    out = []
    for path in checkpoint_dirs(Path(run_dir) / "checkpoints"):
        try:
            state = json.loads((path / "trainer_state.json").read_text())
        except (OSError, ValueError):
            continue
        metrics = {k: v for k, v in (state.get("metrics") or {}).items() if _number(v)}
        out.append(Checkpoint(int(state.get("step", 0)), path, metrics, path.stat().st_mtime))
    return out


# -- curves --------------------------------------------------------------------------------------
def history(run: RunInfo) -> list[dict]:
    """The run's step/eval events; a resumed run's record holds only its last part, so the part
    before comes from the newest checkpoint (whose trainer state keeps the whole history)."""
    events = [e for e in run.record.get("history") or [] if isinstance(e, dict)]
    first = min((e.get("step", 0) for e in events if e.get("event") == "step"), default=None)
    if first is not None and first <= 1:
        return events
    ckpts = run.checkpoints()
    if not ckpts:
        return events
    try:
        earlier = json.loads((ckpts[-1].path / "trainer_state.json").read_text()).get("history") or []
    except (OSError, ValueError):
        return events
    cut = first if first is not None else math.inf
    return [e for e in earlier if e.get("step", 0) < cut] + events


def curves(run: RunInfo) -> dict[str, tuple[list, list]]:
    """{"loss": (steps, values), "eval_loss": ..., metric: ...} from the run's history."""
    out: dict[str, tuple[list, list]] = {}
    for event in history(run):
        step = event.get("step")
        if event.get("event") == "step" and _number(event.get("loss")):
            out.setdefault("loss", ([], []))
            out["loss"][0].append(step)
            out["loss"][1].append(event["loss"])
        elif event.get("event") == "eval":
            for name, value in (event.get("metrics") or {}).items():
                if _number(value):
                    xs, ys = out.setdefault(name, ([], []))
                    xs.append(step)
                    ys.append(value)
    return out


# -- duplicate and resume ------------------------------------------------------------------------
def app_task_key(record: dict) -> str:
    task = record.get("task") or (record.get("data") or {}).get("task_type") or "sentence-similarity"
    training = record.get("training") or {}
    if task in ("sentence-similarity", "feature-extraction"):
        return "late-interaction" if training.get("use_late_interaction") else "sentence-similarity"
    if task == "text-classification":
        regression = training.get("is_regression")
        if regression is None:
            regression = (record.get("label_info") or {}).get("is_regression")
        return "regression" if regression else "classification"
    return task if task in ("masked-lm", "token-classification") else "sentence-similarity"


def role_mapping(data: dict) -> dict[str, str]:
    """{role: column} the run used (None roles, i.e. explicitly unmapped, left out)."""
    from engine.data import DatasetArgs
    known = {k: v for k, v in data.items() if k in DatasetArgs.__dataclass_fields__}
    try:
        mapping = DatasetArgs(**known).role_columns()
    except Exception:  # noqa: BLE001 — an odd record: its explicit columns only
        mapping = dict(data.get("columns") or {})
    return {r: c for r, c in mapping.items() if c}


def duplicate_settings(record: dict) -> dict:
    """What the Data and Model & Task pages need to set up a new run like this one."""
    data = first_dataset(record.get("data") or {})   # several datasets: the Data page opens the first
    training = {k: v for k, v in (record.get("training") or {}).items() if k not in NOT_DUPLICATED}
    return {"source": data.get("data") or "", "subset": data.get("subset"), "split": data.get("split"),
            "eval_file": data.get("eval_data"), "validation_split": data.get("validation_split", 0.1),
            "task": app_task_key(record), "columns": role_mapping(data), "model": record.get("model") or "default",
            "unmapped": [r for r, c in (data.get("columns") or {}).items() if not c], "training": training}


def resume_config(run: RunInfo, checkpoint: Path) -> dict:
    """run.json for continuing ``run`` from ``checkpoint`` in its own folder, with its own settings."""
    from engine.data import DatasetArgs
    from engine.training.args import TrainingArgs
    record = run.record
    # only fields this engine knows: a record written by another version may have more or fewer
    data = {k: v for k, v in (record.get("data") or {}).items() if k in DatasetArgs.__dataclass_fields__}
    training = {k: v for k, v in (record.get("training") or {}).items() if k in TrainingArgs.__dataclass_fields__}
    training.update(output_dir=str(run.path), resume_from_checkpoint=str(checkpoint), distributed=False)
    return {"model": record.get("model") or "default", "task": record.get("task") or data.get("task_type"),
            "data": data, "training": training}
