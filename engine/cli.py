"""`raclate`: train | eval | predict | export from the command line. Flags come from the
TrainingArgs / DatasetArgs dataclasses (one source of truth); events are JSON lines (--events)."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

from engine.data.args import DatasetArgs
from engine.training_args import TrainingArgs

TASK_CHOICES = ("sentence-similarity", "sentence-transformers", "feature-extraction", "text-classification",
                "masked-lm", "token-classification")
# DatasetArgs fields the CLI takes from elsewhere (--task, --column, TrainingArgs' max_length/seed).
DATA_SKIP = {"task_type", "columns", "max_length", "seed", "is_regression"}


class CliError(Exception):
    """Bad command-line input: printed as one paragraph, exit code 2."""


def _flag(f) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _add_dataclass_flags(parser, cls, skip=()):
    """One flag per field: bools are switches, Optional[bool] too; help text from the field."""
    for f in fields(cls):
        if f.name in skip or not f.metadata.get("cli", True):
            continue
        help_text = f.metadata.get("help", "")
        kind = str(f.type)
        if f.name == "resume_from_checkpoint":
            parser.add_argument(_flag(f), dest=f.name, nargs="?", const="latest", default=argparse.SUPPRESS,
                                metavar="PATH|latest", help=help_text + " Bare --resume means latest.")
        elif kind.startswith("bool"):
            parser.add_argument(_flag(f), dest=f.name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=help_text)
        else:
            typ = int if kind.startswith("int") else float if kind.startswith("float") else str
            parser.add_argument(_flag(f), dest=f.name, type=typ, default=argparse.SUPPRESS,
                                metavar=f.name.upper(), help=help_text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="raclate", description="Fine-tune small transformers with MLX.")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="Fine-tune a model on a dataset.",
                           description="Fine-tune a model. The final model goes to --output; checkpoints "
                                       "to OUTPUT/checkpoints.")
    train.add_argument("--model", default=argparse.SUPPRESS,
                       help="A model folder, a Hub id, or 'default' (the embedded all-MiniLM-L6-v2).")
    train.add_argument("--task", default=argparse.SUPPRESS, help=f"One of: {', '.join(TASK_CHOICES)}.")
    train.add_argument("--column", action="append", default=argparse.SUPPRESS, metavar="ROLE=NAME",
                       help="Map a data column to a role (text, text_pair, negative, label, tokens, labels); repeatable.")
    train.add_argument("--config", metavar="run.json", help="Settings file ({model, task, data:{...}, training:{...}}) "
                                                            "or the same JSON inline; flags given on the command line win.")
    train.add_argument("--events", metavar="FILE|-", help="Write JSON-line events to FILE or stdout ('-').")
    train.add_argument("--overwrite", action="store_true", help="Replace an existing run in --output.")
    train.add_argument("--debug", action="store_true", help="Show tracebacks on errors.")
    _add_dataclass_flags(train, TrainingArgs)
    _add_dataclass_flags(train, DatasetArgs, skip=DATA_SKIP)
    from engine.commands import add_subcommands
    add_subcommands(sub)  # eval, predict, export
    return parser


def parse_columns(items) -> dict:
    mapping = {}
    for item in items or []:
        role, sep, name = item.partition("=")
        if not sep or not role.strip() or not name.strip():
            raise CliError(f"--column expects ROLE=NAME (e.g. --column text=question), got {item!r}.")
        mapping[role.strip()] = name.strip()
    return mapping


def resolve_train_config(ns: argparse.Namespace) -> dict:
    """Merge --config and flags → {model, task, data: DatasetArgs, training: TrainingArgs}."""
    cfg = {"model": None, "task": None, "data": {}, "training": {}}
    if ns.config:
        try:
            # Inline JSON too: `raclate launch` passes it that way to machines that lack the file.
            text = ns.config if ns.config.lstrip().startswith("{") else Path(ns.config).read_text()
            loaded = json.loads(text)
        except (OSError, json.JSONDecodeError) as exc:
            raise CliError(f"Could not read --config {ns.config}: {exc}.") from None
        for key in cfg:
            if key in loaded:
                cfg[key] = loaded[key]
    given = vars(ns)
    cfg["model"] = given.get("model", cfg["model"])
    cfg["task"] = given.get("task", cfg["task"])
    train_names = {f.name for f in fields(TrainingArgs)}
    data_names = {f.name for f in fields(DatasetArgs)} - DATA_SKIP
    cfg["training"].update({k: v for k, v in given.items() if k in train_names})
    cfg["data"].update({k: v for k, v in given.items() if k in data_names})
    if "column" in given:
        cfg["data"]["columns"] = {**cfg["data"].get("columns", {}), **parse_columns(given["column"])}
    if not cfg["model"]:
        raise CliError("No model given. Pass --model with a folder, a Hub id, or 'default'.")
    if not cfg["task"]:
        raise CliError(f"No task given. Pass --task with one of: {', '.join(TASK_CHOICES)}.")
    if cfg["task"] not in TASK_CHOICES:
        raise CliError(f"Unknown task {cfg['task']!r}. Use one of: {', '.join(TASK_CHOICES)}.")
    if not cfg["data"].get("data"):
        raise CliError("No training data given. Pass --data with a .jsonl/.json/.csv/.tsv/.parquet file, "
                       "a folder, or a Hub dataset id.")
    if not cfg["training"].get("output_dir"):
        raise CliError("No output folder given. Pass --output with a new folder for the model.")
    training = cfg["training"]
    cfg["data"].update(task_type=cfg["task"], max_length=training.get("max_length", 256),
                       seed=training.get("seed", 42), is_regression=training.get("is_regression"))
    try:
        cfg["training"] = TrainingArgs.from_dict(training)
        cfg["data"] = DatasetArgs(**cfg["data"])
    except (TypeError, ValueError) as exc:
        raise CliError(str(exc)) from None
    return cfg


def check_output_dir(out: Path, resume: str | None, overwrite: bool) -> None:
    """Refuse to write over a folder that is not a run, a run without --resume/--overwrite, or a
    --resume with no checkpoint to resume from (before any data or model is loaded)."""
    if resume:
        from engine.checkpoint import find_checkpoint
        try:
            find_checkpoint(out, resume)
        except FileNotFoundError as exc:
            raise CliError(str(exc)) from None
    if not out.exists() or not any(out.iterdir()):
        return
    is_run = (out / "raclate_run.json").exists() or (out / "checkpoints").is_dir()
    if not is_run:
        raise CliError(f"Output folder {out} already exists and is not a RACLATE run; nothing was written. "
                       "Choose a new folder (or an empty one).")
    if not resume and not overwrite:
        raise CliError(f"Output folder {out} already holds a run. Pass --resume to continue it, "
                       "--overwrite to replace it, or choose a new folder.")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    if ns.command == "train":
        from engine.run import run_training
        return run_training(ns)
    if getattr(ns, "run", None):  # eval, predict, export (engine/commands/)
        return ns.run(ns)
    parser.error(f"unknown command {ns.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
