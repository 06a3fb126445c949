"""`raclate train`: fine-tune a model. Flags come from the TrainingArgs / DatasetArgs fields (one source
of truth); --config and the flags go through the same builder as the app (engine.training.config);
events are JSON lines (--events), and a terminal shows a progress bar.

Exit codes: 0 done (or stopped with a checkpoint), 2 bad input (flags, data, model, an output folder in
use), 1 a failure while training, 130 a Ctrl+C that stopped at once (a second one, or one before training).

Warnings always go to stderr, once each, wherever the events go."""
from __future__ import annotations

import argparse
import json
import signal
import sys
import traceback
from dataclasses import fields
from pathlib import Path

from engine.commands import NamedItems
from engine.data.args import DatasetArgs
from engine.data.mapping import parse_column_items
from engine.errors import UsageError, exit_code
from engine.events import JsonLineWriter, make_event
from engine.tasks import ALIASES, task_names
from engine.training.args import TrainingArgs, flag
from engine.training.config import (DATA_FIELDS, TRAINING_FIELDS, RunConfig, build_run_config,
                                    check_output_dir)
from engine.training.distributed import init_world, launch_rank
from engine.training.run import classify_error, train_run

SETTINGS = frozenset({"model", "task"}) | TRAINING_FIELDS | DATA_FIELDS   # the flags that feed the builder


def add_parser(sub) -> None:
    train = sub.add_parser("train", help="Fine-tune a model on a dataset.",
                           description="Fine-tune a model. The final model goes to --output; checkpoints "
                                       "to OUTPUT/checkpoints.")
    train.add_argument("--model", default=argparse.SUPPRESS,
                       help="A model folder, a Hub id, or 'default' (the embedded all-MiniLM-L6-v2).")
    train.add_argument("--task", default=argparse.SUPPRESS, help=f"One of: {', '.join(task_names())} "
                       f"(aliases: {', '.join(a for a in ALIASES if '_' not in a)}).")
    train.add_argument("--column", action="append", default=argparse.SUPPRESS, metavar="[DATASET:]ROLE=NAME",
                       help="Map a data column to a role (text, text_pair, negative, label, tokens, labels); "
                            "repeatable. With several --data, DATASET:ROLE=NAME maps a column of that dataset only "
                            "(DATASET: its file stem), ROLE=NAME a column of every dataset.")
    train.add_argument("--config", metavar="run.json", help="Settings file ({model, task, data:{...}, training:{...}}) "
                                                            "or the same JSON inline; flags given on the command line win.")
    train.add_argument("--events", metavar="FILE|-", help="Write JSON-line events to FILE or stdout ('-').")
    train.add_argument("--overwrite", action="store_true", help="Replace an existing run in --output.")
    train.add_argument("--debug", action="store_true", help="Show tracebacks on errors.")
    _add_dataclass_flags(train, TrainingArgs, TRAINING_FIELDS)
    _add_dataclass_flags(train, DatasetArgs, DATA_FIELDS - {"columns"})   # columns: --column
    train.set_defaults(run=run_training)


def _add_dataclass_flags(parser, cls, names) -> None:
    """One flag per field (defaults stay with the dataclass: a flag not given is not set); bools are
    switches, Optional[bool] too; help text from the field."""
    for f in fields(cls):
        if f.name not in names or not f.metadata.get("cli", True):
            continue
        help_text = f.metadata.get("help", "").replace("%", "%%")   # argparse %-formats help text
        kind = str(f.type)
        if f.name in ("data", "eval_data"):   # repeatable: several datasets in one run
            parser.add_argument(flag(f), dest=f.name, action="append", default=argparse.SUPPRESS,
                                metavar=f.name.upper(), help=help_text)
        elif f.name == "resume_from_checkpoint":
            parser.add_argument(flag(f), dest=f.name, nargs="?", const="latest", default=argparse.SUPPRESS,
                                metavar="PATH|latest", help=help_text + " Bare --resume means latest.")
        elif kind.startswith("bool"):
            parser.add_argument(flag(f), dest=f.name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=help_text)
        elif kind.startswith("dict"):
            parser.add_argument(flag(f), dest=f.name, action=NamedItems, default=argparse.SUPPRESS,
                                metavar="NAME=TEXT", help=help_text)
        else:
            typ = f.metadata.get("parse") or (int if kind.startswith("int") else
                                              float if kind.startswith("float") else str)
            parser.add_argument(flag(f), dest=f.name, type=typ, default=argparse.SUPPRESS,
                                metavar=f.name.upper(), help=help_text)


def read_config(text: str | None) -> dict:
    """--config: a run.json file, or the same JSON inline (`raclate launch` passes it that way to
    machines that lack the file)."""
    if not text:
        return {}
    try:
        return json.loads(text if text.lstrip().startswith("{") else Path(text).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"Could not read --config {text}: {exc}.") from None


def resolve_train_config(ns: argparse.Namespace) -> RunConfig:
    """--config, then the flags given (they win) → the run's config."""
    given = {k: v for k, v in vars(ns).items() if k in SETTINGS}
    for name in ("data", "eval_data"):   # one --data is a path, as in run.json; several are a list
        if name in given and len(given[name]) == 1:
            given[name] = given[name][0]
    if "column" in ns:
        given["columns"], given["dataset_columns"] = column_items(ns.column)
    return build_run_config(read_config(ns.config), **given)


def column_items(items) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """--column items → ({role: column} for every dataset, {dataset: {role: column}} from DATASET:ROLE=NAME).

    >>> column_items(["text=q", "nli:label=score"])
    ({'text': 'q'}, {'nli': {'label': 'score'}})
    """
    every, per_dataset = [], {}
    for item in items:
        dataset, colon, rest = item.partition("=")[0].partition(":")
        if colon and rest.strip():
            per_dataset.setdefault(dataset.strip(), []).append(item.split(":", 1)[1])
        else:
            every.append(item)
    return parse_column_items(every), {name: parse_column_items(v) for name, v in per_dataset.items()}


class Progress:
    """The CLI's way of showing events on stderr: every warning, once, wherever the events go; and a
    tqdm bar for the steps when ``enabled`` (a terminal)."""

    def __init__(self, enabled: bool):
        self.enabled, self.bar, self.warned = enabled, None, set()

    def __call__(self, event: dict) -> None:
        name = event["event"]
        if name == "warning":
            if event["message"] not in self.warned:
                self.warned.add(event["message"])
                (self.bar.write if self.bar else lambda m: print(m, file=sys.stderr))(f"warning: {event['message']}")
            return
        if not self.enabled:
            return
        from tqdm import tqdm
        if name == "batch_size_chosen":   # --batch-size auto
            peaks = ", ".join(f"{m['batch_size']}: {m['peak_memory_bytes'] / 2 ** 30:.2f} GB"
                              for m in event["measured"])
            print(f"batch size {event['batch_size']} (budget {event['budget_bytes'] / 2 ** 30:.2f} GB; measured "
                  f"peaks {peaks})", file=sys.stderr)
        elif name == "run_started":
            self.bar = tqdm(total=event["total_steps"], initial=event.get("resumed_from_step") or 0,
                            unit="step", dynamic_ncols=True, file=sys.stderr)
            self.bar.write(f"parameters: {event['trainable_parameters']:,} trainable, "
                           f"{event['frozen_parameters']:,} frozen, {event['total_parameters']:,} in all")
        elif name == "step" and self.bar is not None:
            self.bar.update(event["step"] - self.bar.n)
            if event.get("loss") is not None:
                self.bar.set_postfix(loss=f"{event['loss']:.4f}", lr=f"{event['learning_rate']:.2e}")
        elif name == "eval" and self.bar is not None:
            shown = {k: round(v, 4) for k, v in event["metrics"].items() if isinstance(v, (int, float))}
            self.bar.write(f"eval @ step {event['step']}: {shown}")
        elif name == "finished" and self.bar is not None:
            self.bar.close()


def run_training(ns) -> int:
    """`raclate train` behind argparse: events to --events and the terminal, signals restored after."""
    import datasets
    datasets.disable_progress_bars()  # the CLI shows phases and its own bar, not one bar per map()
    main = launch_rank() == 0   # in a distributed run only rank 0 writes events (and the other outputs)
    writer = JsonLineWriter(ns.events) if ns.events and main else None
    callbacks = ([writer] if writer else []) + [Progress(enabled=main and sys.stderr.isatty() and ns.events != "-")]
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _train_command(ns, writer, callbacks, previous)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if writer:
            writer.close()


def _train_command(ns, writer, callbacks, previous) -> int:
    rank = launch_rank()
    world = None

    def fail(kind, message, hint, code, emitted=False):
        if writer and not emitted:
            writer(make_event("error", kind=kind, message=message, hint=hint))
        if world is not None and not emitted:
            world.fail(message)
        where = f" (rank {rank})" if rank else ""
        print(f"error{where}: {message}" + (f"\nhint: {hint}" if hint else ""), file=sys.stderr)
        return code

    def fatal(kind, message, hint):   # a peer lost while this process is stuck in a collective
        if writer:
            writer(make_event("error", kind=kind, message=message, hint=hint))

    try:
        if getattr(ns, "distributed", False):  # join first: a rank that fails below tells the others why
            world = init_world(getattr(ns, "peer_timeout", TrainingArgs.peer_timeout), fatal_handlers=[fatal])
        cfg = resolve_train_config(ns)
        args = cfg.training
        if args.distributed:
            world = init_world(args.peer_timeout, fatal_handlers=[fatal])
        if rank == 0:  # the other ranks never write the output folder (it may not exist on their machine)
            check_output_dir(Path(args.output_dir), args.resume_from_checkpoint, ns.overwrite)
    except UsageError as exc:
        return fail("bad_input", str(exc), "", 2)
    except Exception as exc:  # DataError from DatasetArgs validation, ...
        if ns.debug:
            traceback.print_exc()
        return fail(*classify_error(exc), 2)

    def install_stop(trainer):
        def on_signal(signum, frame):
            if trainer.stop_requested:  # a second Ctrl+C: stop now
                raise KeyboardInterrupt
            trainer.request_stop()  # finish the step, write a checkpoint, save the model
        for sig in previous:
            signal.signal(sig, on_signal)

    reported = []   # the error event of the run: it knows more than the exception (e.g. where a replacement is)
    try:
        record = train_run(cfg, callbacks + [lambda e: reported.append(e) if e["event"] == "error" else None],
                           overwrite=ns.overwrite, stop_handler=install_stop)
    except BaseException as exc:
        if ns.debug:
            traceback.print_exc()
        kind, message, hint = (reported[-1][k] for k in ("kind", "message", "hint")) if reported else classify_error(exc)
        code = 130 if isinstance(exc, KeyboardInterrupt) else exit_code(kind)
        return fail(kind, message, hint, code, emitted=True)   # train_run told the events and the peers
    if ns.events != "-" and rank == 0:
        metrics = {k: round(v, 4) for k, v in (record.get("metrics") or {}).items() if isinstance(v, (int, float))}
        print(f"{record['status']}: model saved to {args.output_dir}" + (f" — {metrics}" if metrics else ""))
    return 0
