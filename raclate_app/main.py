"""Entry point: `raclate-app [--demo] [FILE]` (pyproject's gui script) or `python -m raclate_app.main`."""
from __future__ import annotations

import argparse
import sys

import engine  # noqa: F401  (fast BLAS before anything imports mlx.core)
from PySide6.QtWidgets import QApplication

from raclate_app.settings import APPLICATION, ORGANIZATION


def make_app(argv=None) -> QApplication:
    """The QApplication (created once) with the app's names and icon; light/dark follows the system."""
    app = QApplication.instance()
    if app is None:
        app = QApplication(list(argv if argv is not None else sys.argv[:1]))
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationDisplayName(APPLICATION)
    from raclate_app.icon import app_icon
    app.setWindowIcon(app_icon())
    return app


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="raclate-app", description="RACLATE Tuner: fine-tune small transformers.")
    parser.add_argument("--demo", action="store_true",
                        help="Open with the bundled demo dataset (question/answer pairs, sentence similarity).")
    parser.add_argument("data", nargs="?", help="A data file or folder to open.")
    return parser.parse_args(argv)


def build_window(args: argparse.Namespace):
    from raclate_app.window import MainWindow
    window = MainWindow()
    if args.demo:
        window.load_demo()
    elif args.data:
        window.go_to("data")
        window.project.open_source(args.data)
    return window


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    app = make_app()
    window = build_window(args)
    window.show()
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
