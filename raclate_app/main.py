"""Entry point: `raclate-app [--demo] [FILE]` (pyproject's gui script) or `python -m raclate_app.main`.

The app bundle (packaging/raclate.spec) has no Python to run `-m engine.cli` with, so its executable
is also the training child: `raclate-tuner --train-child ARGS…` is `python -m engine.cli ARGS…`
(raclate_app/supervisor.py chooses the command). `--smoke-test` is the bundle's self-check
(raclate_app/smoke.py).
"""
from __future__ import annotations

import argparse
import sys

import engine  # noqa: F401  (fast BLAS before anything imports mlx.core)
from PySide6.QtCore import QEvent, QObject
from PySide6.QtWidgets import QApplication

from raclate_app.settings import APPLICATION, ORGANIZATION

TRAIN_CHILD = "--train-child"


class FileOpener:
    """Files macOS asks the app to open — dropped on its Dock icon, “Open With”, a double-clicked
    document of a type in Info.plist — arrive as QFileOpenEvent on the QApplication. They are handed
    to ``handler`` (the window's open_paths); those that come before the window exists wait."""

    def __init__(self):
        self.handler = None
        self.pending: list[str] = []

    def set_handler(self, handler) -> None:
        self.handler = handler
        pending, self.pending = self.pending, []
        for path in pending:
            handler(path)

    def handle(self, event) -> bool:
        if event.type() != QEvent.Type.FileOpen:
            return False
        path = event.file() or event.url().toLocalFile()
        if path:
            if self.handler is None:
                self.pending.append(path)
            else:
                self.handler(path)
        return True


class RaclateApplication(QApplication):
    """The app's QApplication: QFileOpenEvent → FileOpener."""

    def __init__(self, argv):
        super().__init__(argv)
        self.file_opener = FileOpener()

    def event(self, event) -> bool:
        if self.file_opener.handle(event):
            return True
        return super().event(event)


class FileOpenFilter(QObject):
    """The same for a QApplication made elsewhere (tests): an event filter on it."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.file_opener = FileOpener()

    def eventFilter(self, obj, event) -> bool:
        return obj is QApplication.instance() and self.file_opener.handle(event)


def file_opener(app: QApplication) -> FileOpener:
    """The app's FileOpener (an event filter is installed once on a plain QApplication)."""
    if isinstance(app, RaclateApplication):
        return app.file_opener
    filt = app.findChild(FileOpenFilter, "raclate-file-open")
    if filt is None:
        filt = FileOpenFilter(app)
        filt.setObjectName("raclate-file-open")
        app.installEventFilter(filt)
    return filt.file_opener


def make_app(argv=None) -> QApplication:
    """The QApplication (created once) with the app's names and icon; light/dark follows the system."""
    app = QApplication.instance()
    if app is None:
        app = RaclateApplication(list(argv if argv is not None else sys.argv[:1]))
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationDisplayName(APPLICATION)
    from raclate_app.icon import app_icon
    app.setWindowIcon(app_icon())
    file_opener(app)   # from now on a file macOS sends waits for the window
    return app


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="raclate-app", description="RACLATE Tuner: fine-tune small transformers.")
    parser.add_argument("--demo", action="store_true",
                        help="Open with the bundled demo dataset (question/answer pairs, sentence similarity).")
    parser.add_argument("data", nargs="?", help="A data file or folder to open.")
    parser.add_argument("--smoke-test", action="store_true",
                        help="Self-check (used on the app bundle): open the window, load the demo dataset, train "
                             "2 steps in the child process, print JSON lines and exit 0 when all worked.")
    parser.add_argument("--smoke-model", metavar="DIR", default="default",
                        help="Model folder for --smoke-test (default: the embedded all-MiniLM-L6-v2).")
    parser.add_argument("--smoke-output", metavar="DIR", help="Where --smoke-test writes (default: a temp folder).")
    parser.add_argument("--smoke-timeout", metavar="S", type=float, default=600.0, help=argparse.SUPPRESS)
    # macOS before 10.9 passed a process serial number to apps opened from the Finder
    argv = sys.argv[1:] if argv is None else argv
    return parser.parse_args([a for a in argv if not a.startswith("-psn_")])


def build_window(args: argparse.Namespace):
    from raclate_app.window import MainWindow
    window = MainWindow()
    if args.demo:
        window.load_demo()
    elif args.data:
        window.go_to("data")
        window.project.open_source(args.data)
    return window


def open_file(window, path: str) -> None:
    """A file macOS sent (QFileOpenEvent): open it on the Data page and bring the window forward."""
    window.open_paths([path])
    if window.isMinimized():
        window.showNormal()
    window.raise_()
    window.activateWindow()


def train_child(argv: list[str]) -> int:
    """`--train-child ARGS…`: the engine CLI, as `python -m engine.cli ARGS…` would run it."""
    from engine.cli import main as cli_main
    return cli_main(argv)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == [TRAIN_CHILD]:
        return train_child(argv[1:])
    args = parse_args(argv)
    app = make_app()
    if args.smoke_test:
        from raclate_app.smoke import run_smoke_test
        return run_smoke_test(app, args)
    window = build_window(args)
    file_opener(app).set_handler(lambda path: open_file(window, path))
    window.show()
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
