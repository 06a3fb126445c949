"""`raclate-app --smoke-test [--smoke-model DIR] [--smoke-output DIR]`: a self-check of an installed
or packaged app (tests/test_packaging.py runs it on the PyInstaller bundle, offscreen).

It opens the main window, loads the demo dataset, trains 2 steps through the Train page — so in the
bundle the child process is the bundle's own executable (`--train-child`) — and checks that the
model was written. Progress goes to stdout as JSON lines ({"smoke": stage, "t": seconds since the
smoke test began, ...}); the exit code is 0 when everything worked, 1 on a failure, 3 on a timeout.
Settings go to a private INI file in the output folder, never the user's.
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from PySide6.QtCore import QSettings, QTimer

T0 = time.monotonic()
SETTINGS = {"max_steps": 2, "batch_size": 8, "max_length": 64, "eval_steps": 0, "save_steps": 0}


def say(stage: str, **info) -> None:
    print(json.dumps({"smoke": stage, "t": round(time.monotonic() - T0, 2), **info}), flush=True)


def run_smoke_test(app, args) -> int:
    from raclate_app.settings import AppSettings
    from raclate_app.window import MainWindow

    out = Path(args.smoke_output or tempfile.mkdtemp(prefix="raclate-smoke-")).absolute()
    out.mkdir(parents=True, exist_ok=True)
    settings = AppSettings(QSettings(str(out / "settings.ini"), QSettings.Format.IniFormat))
    settings.set("runs/root", str(out / "runs"))
    window = MainWindow(settings=settings)
    window.resize(1200, 800)
    window.show()
    project, train = window.project, window.pages["train"]
    state = {"stage": "demo", "code": None, "since": time.monotonic()}

    def finish(code: int, stage: str, **info) -> None:
        if state["code"] is None:
            state["code"] = code
            say(stage, ok=code == 0, **info)
            app.exit(code)

    def on_finished(event: dict) -> None:
        model_dir = Path(event.get("output_dir") or out / "model")
        files = sorted(p.name for p in model_dir.iterdir()) if model_dir.is_dir() else []
        ok = "config.json" in files and any(f.endswith(".safetensors") for f in files) and not event.get("incomplete")
        finish(0 if ok else 1, "finished", output_dir=str(model_dir), files=files,
               metrics={k: v for k, v in (event.get("metrics") or {}).items() if isinstance(v, (int, float))})

    def on_failed(event: dict) -> None:
        finish(1, "train_failed", message=str(event.get("message")), hint=str(event.get("hint")),
               stderr=str(event.get("stderr", ""))[-4000:])

    def busy() -> bool:
        return project.worker.is_busy() or project._timer.isActive() or project.validating

    def tick() -> None:
        if state["code"] is not None:
            return
        stage = state["stage"]
        if time.monotonic() - T0 > args.smoke_timeout:
            finish(3, "timeout", stage=stage, log=train.log.toPlainText()[-4000:])
            return
        if stage == "demo" and project.preview is not None and not busy():
            say("demo_loaded", rows=project.preview.num_rows, source=project.source)
            project.set_model(args.smoke_model)
            project.set_training(SETTINGS)
            state["stage"] = "model"
        elif stage == "model" and project.tokenizer_model == args.smoke_model and not busy():
            if project.tokenizer is None:
                finish(1, "tokenizer_failed", error=repr(project.tokenizer_error))
                return
            problem = project.blocking_problem()
            if problem:
                finish(1, "blocked", problem=problem)
                return
            train.output_edit.setText(str(out / "model"))
            window.start_training()
            if train.supervisor is None:
                finish(1, "not_started", problem=project.blocking_problem())
                return
            train.supervisor.run_finished.connect(on_finished)
            train.supervisor.run_failed.connect(on_failed)
            say("training_started", command=train.supervisor.command()[:2])
            state["stage"] = "training"
        QTimer.singleShot(100, tick)

    project.source_failed.connect(lambda exc: finish(1, "data_failed", error=str(exc)))
    QTimer.singleShot(0, lambda: say("window_shown", frozen=bool(getattr(sys, "frozen", False)),
                                     executable=sys.executable))
    project.load_demo()
    QTimer.singleShot(100, tick)
    code = app.exec()
    if train.supervisor is not None:   # a timeout or failure while the child still runs
        train.supervisor.request_kill()
        train.supervisor.wait(10_000)
    return state["code"] if state["code"] is not None else code
