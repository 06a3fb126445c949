"""`raclate train | eval | predict | export | launch | mine`: one module per subcommand, registered by ``add_subcommands``.

Each module has ``add_parser(subparsers)`` (which sets ``run``) and ``run(ns) -> exit code``. Errors
are one paragraph on stderr: bad input exits 2, a failure 1 (``--debug`` shows the traceback).
"""
from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
import traceback
from dataclasses import fields

import numpy as np

from engine.data.inputs import adopt, user_prompts
from engine.errors import UsageError, classify_error, exit_code
from engine.inference import load_for_task, untrained_head
from engine.tasks import task_names
from engine.training.args import TrainingArgs

COMMANDS = ("train", "evaluate", "predict", "export", "launch", "mine")


def add_subcommands(subparsers) -> None:
    for name in COMMANDS:
        importlib.import_module(f"engine.commands.{name}").add_parser(subparsers)


def guarded(run):
    """Wrap a subcommand: one-paragraph errors and exit codes (2 = bad input, 1 = failed)."""
    def wrapper(ns) -> int:
        try:
            return run(ns)
        except UsageError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            return 130
        except Exception as exc:  # noqa: BLE001 — every failure becomes one readable paragraph
            if getattr(ns, "debug", False):
                traceback.print_exc()
            kind, message, hint = classify_error(exc)
            print(f"error: {message}" + (f"\nhint: {hint}" if hint else ""), file=sys.stderr)
            return exit_code(kind)
    return wrapper


def add_common(parser, *, data: bool = True) -> None:
    parser.add_argument("--model", required=True, help="A model folder (e.g. a training --output), a Hub id, or 'default'.")
    parser.add_argument("--task", default=None, help="The model's task (default: read from the folder): "
                        f"{', '.join(task_names())}.")
    if data:
        parser.add_argument("--column", action="append", default=None, metavar="ROLE=NAME",
                            help="Map a data column to a role (text, text_pair, negative, label, tokens, labels); repeatable.")
        parser.add_argument("--batch-size", type=int, default=32, help="Texts per forward pass.")
        parser.add_argument("--max-length", type=int, default=None, help="Truncate texts to this many tokens "
                            "(default: the model's max_seq_length or 512).")
    parser.add_argument("--json", action="store_true", help="Print JSON even on a terminal.")
    parser.add_argument("--debug", action="store_true", help="Show tracebacks on errors.")


class NamedItems(argparse.Action):
    """A repeatable NAME=TEXT flag → {NAME: TEXT} (e.g. --prompt; the text keeps its spaces)."""

    def __call__(self, parser, namespace, value, option_string=None):
        name, sep, text = value.partition("=")
        if not sep or not name.strip():
            parser.error(f"{option_string} takes NAME=TEXT, got {value!r}")
        setattr(namespace, self.dest, {**(getattr(namespace, self.dest, None) or {}), name.strip(): text})


def add_input_options(parser) -> None:
    """How texts reach a model whose folder does not say (a Hub or plain model; a trained folder's run
    record already does): its chat template and prompts, as `raclate train` takes them."""
    helps = {f.name: f.metadata["help"] for f in fields(TrainingArgs)}
    parser.add_argument("--use-chat-template", action=argparse.BooleanOptionalAction, default=None,
                        help="Wrap each text in the tokenizer's chat template (default: as the model was trained).")
    parser.add_argument("--prompt", dest="prompts", action=NamedItems, default=None, metavar="NAME=TEXT",
                        help=helps["prompts"])
    parser.add_argument("--query-prompt", default=None, help=helps["query_prompt"])
    parser.add_argument("--document-prompt", default=None, help=helps["document_prompt"])


def load(ns):
    """(model, tokenizer, task, record) with the inputs given by flags (add_input_options); refuses a
    head that was never trained."""
    model, tokenizer, task, record = load_for_task(ns.model, ns.task)
    adopt(model.info, use_chat_template=getattr(ns, "use_chat_template", None),
          prompts=user_prompts(getattr(ns, "prompts", None), getattr(ns, "query_prompt", None),
                               getattr(ns, "document_prompt", None)))
    heads = untrained_head(model, task)
    if heads:
        raise UsageError(f"{ns.model} has no trained {task} head (missing: {', '.join(heads[:4])}). Pass a model "
                       f"trained for {task} (e.g. the --output of `raclate train --task {task}`), or the right --task.")
    return model, tokenizer, task, record


def plain(value):
    """JSON-safe: numpy scalars → floats, NaN → null."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(obj) -> str:
    return json.dumps(plain(obj), ensure_ascii=False)


def on_terminal(ns) -> bool:
    return sys.stdout.isatty() and not getattr(ns, "json", False)
