"""The pages of the main window, in the order of the flow. To add a page (Evaluate, Playground,
Runs): write a QWidget subclass taking ``(project, parent)`` with ``title`` and ``next_requested``,
and add one PageSpec line here; the sidebar, View menu shortcuts and the Next buttons follow."""
from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class PageSpec:
    key: str
    title: str
    module: str
    cls: str
    hint: str

    def load(self):
        return getattr(importlib.import_module(self.module), self.cls)


PAGES: tuple[PageSpec, ...] = (
    PageSpec("data", "Data", "raclate_app.pages.data", "DataPage", "Choose and check the training data"),
    PageSpec("model", "Model & Task", "raclate_app.pages.model", "ModelPage", "What to train, from which model"),
    PageSpec("train", "Train", "raclate_app.pages.train", "TrainPage", "Run, watch and stop training"),
    PageSpec("evaluate", "Evaluate", "raclate_app.pages.evaluate", "EvaluatePage", "Metrics of a trained model, before/after"),
    PageSpec("playground", "Playground", "raclate_app.pages.playground", "PlaygroundPage", "Try a model on your own text"),
    PageSpec("runs", "Runs", "raclate_app.pages.runs", "RunsPage", "Past runs: compare, duplicate, resume, export"),
)


def run_alone(page_cls, argv=None) -> int:
    """`python -m raclate_app.pages.<page> [--demo] [--screenshot PNG]`: one page on the demo data."""
    from PySide6.QtCore import QTimer

    from raclate_app.main import make_app
    from raclate_app.state import Project
    parser = argparse.ArgumentParser(description=f"{page_cls.__name__} on its own.")
    parser.add_argument("--no-demo", action="store_true", help="Start empty instead of with the demo dataset.")
    parser.add_argument("--screenshot", metavar="PNG", help="Save a screenshot once the data is in, then quit.")
    args = parser.parse_args(argv)
    app = make_app(sys.argv[:1])
    project = Project()
    page = page_cls(project)
    page.resize(1200, 800)
    page.show()
    if not args.no_demo:
        project.load_demo()
    if args.screenshot:
        def shoot():
            if project.worker.is_busy():
                QTimer.singleShot(200, shoot)
                return
            page.grab().save(args.screenshot)
            print(args.screenshot)
            app.quit()
        QTimer.singleShot(500, shoot)
    return app.exec()
