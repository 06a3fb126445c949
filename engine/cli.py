"""`raclate`: train | eval | predict | export | launch | mine from the command line. Each subcommand is a
module in engine/commands/ that adds its parser and runs; this module only builds the parser and
dispatches (entry point ``engine.cli:main``, also ``python -m engine.cli``)."""
from __future__ import annotations

import argparse
import sys

from engine.commands import add_subcommands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="raclate", description="Fine-tune small transformers with MLX.")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    return parser


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    return ns.run(ns)


if __name__ == "__main__":
    sys.exit(main())
