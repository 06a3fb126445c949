"""Train page: start a run in a child process (TrainingSupervisor), watch its phases, progress,
speed and live plots, stop it (checkpoint first), and go on from the saved model: evaluate it, try
it in the Playground, export it, or open its folder."""
from __future__ import annotations

import collections
import json
import math
import sys
import tempfile
import time
from html import escape
from pathlib import Path

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (QFileDialog, QFrame, QGroupBox, QHBoxLayout, QLabel, QLineEdit, QPlainTextEdit, QProgressBar,
                               QPushButton, QSplitter, QVBoxLayout, QWidget)

from engine.models.memory import human_bytes
from raclate_app import theme
from raclate_app.forms import gui_words
from raclate_app.memory import measurement_key, remember
from raclate_app.plots import LivePlots
from raclate_app.supervisor import TrainingSupervisor
from raclate_app.widgets.distributed import use_launcher

PHASES = (("loading_data", "Loading data"), ("loading_model", "Loading model"), ("tokenizing", "Tokenizing"),
          ("measuring", "Measuring"), ("compiling", "Compiling"),
          ("training", "Training"), ("evaluating", "Evaluating"), ("saving", "Saving"))
# What the progress bar says during a phase before the first step (the strip keeps short names: narrow windows).
PHASE_DETAILS = {"measuring": "Measuring the largest batch that fits…",
                 "compiling": "Compiling kernels (first run only)…"}


def format_duration(seconds) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "–"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def step_stats(e: dict, eta: bool) -> str:
    """The line under the progress bar for a step event; ``eta`` while the run goes on."""
    parts = [f"epoch {e.get('epoch', 0):.2f}"]
    if e.get("loss") is not None:
        parts.append(f"loss {e['loss']:.4f}")
    if e.get("examples_per_s"):
        parts.append(f"{e['examples_per_s']:.1f} examples/s")
    if e.get("tokens_per_s"):
        parts.append(f"{e['tokens_per_s']:,.0f} tokens/s")
    if eta:
        parts.append(f"ETA {format_duration(e.get('eta_s'))}")
    if e.get("peak_memory_bytes"):
        parts.append(f"peak memory {human_bytes(e['peak_memory_bytes'])}")
    return " · ".join(parts)


class TrainPage(QWidget):
    title = "Train"
    next_requested = Signal()
    running_changed = Signal(bool)
    model_saved = Signal(str)          # a run ended with a model in this folder
    evaluate_requested = Signal(str)   # the result banner's buttons, with the model folder
    try_requested = Signal(str)
    export_requested = Signal(str)

    def __init__(self, project, parent=None):
        super().__init__(parent)
        self.project = project
        self.supervisor: TrainingSupervisor | None = None
        self.last_config: dict | None = None
        self.config_path: Path | None = None
        self.config_dir: tempfile.TemporaryDirectory | None = None   # holds run.json while its run lasts
        self.output_dir: Path | None = None
        self.events: collections.deque = collections.deque(maxlen=200)
        self.result: dict | None = None
        self.total_steps = 0
        self.last_step: dict | None = None
        self.resumed: str | None = None   # the summary of a run resumed from the Runs page
        self.summary = QLabel(wordWrap=True)
        self.output_edit = QLineEdit()
        self.output_edit.setPlaceholderText(str(project.settings.runs_root() / "<date-time>-<task>"))
        self.output_edit.setToolTip("Leave empty for a new folder under the runs folder for every run.")
        self.output_button = QPushButton("Choose…")
        self.start_button = QPushButton("▶  Start training")
        self.start_button.setDefault(True)
        self.start_button.setMinimumHeight(34)
        self.stop_button = QPushButton("■  Stop")
        self.stop_button.setEnabled(False)
        self.stop_button.setToolTip("Finish the current step, save a checkpoint and the model, then stop.")
        self.blocking = QLabel(wordWrap=True)
        self.phase_labels = {key: QLabel(title) for key, title in PHASES}
        for key, detail in PHASE_DETAILS.items():
            self.phase_labels[key].setToolTip(detail)
        self.progress = QProgressBar(minimum=0, maximum=1, value=0, textVisible=True)
        self.progress.setFormat("Not started")
        self.stats = QLabel()
        self.plots = LivePlots()
        self.result_label = QLabel(wordWrap=True, textInteractionFlags=Qt.TextInteractionFlag.TextBrowserInteraction)
        self.result_label.setOpenExternalLinks(False)
        self.evaluate_button = QPushButton("Evaluate")
        self.evaluate_button.setToolTip("Metrics of the new model on its validation data, before and after.")
        self.try_button = QPushButton("Try it")
        self.try_button.setToolTip("Type your own text in the Playground and see what the new model makes of it.")
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("Write the model for sentence-transformers, PyLate or transformers; push it "
                                      "to the Hub.")
        self.open_button = QPushButton("Open folder")
        self.result_buttons = (self.evaluate_button, self.try_button, self.export_button, self.open_button)
        for button in self.result_buttons:
            button.hide()
        self.log = QPlainTextEdit(readOnly=True)
        self.log.setMaximumBlockCount(3000)
        self.log.setPlaceholderText("Messages from the training process appear here.")
        self._build()
        self.output_button.clicked.connect(self.choose_output)
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        self.open_button.clicked.connect(self.open_output)
        self.evaluate_button.clicked.connect(lambda: self.evaluate_requested.emit(self.saved_model()))
        self.try_button.clicked.connect(lambda: self.try_requested.emit(self.saved_model()))
        self.export_button.clicked.connect(lambda: self.export_requested.emit(self.saved_model()))
        self.result_label.linkActivated.connect(lambda _link: self.open_output())
        for sig in (project.report_changed, project.validation_started, project.mapping_changed,
                    project.source_changed, project.task_changed, project.model_changed, project.training_changed,
                    project.model_checked):
            sig.connect(self.refresh)
        self.set_phase(None)
        self.result_label.setText(self._muted("No run yet. Press Start training: progress and live plots appear "
                                              "below, and the result with a link to the model here."))
        self.refresh()

    def _build(self) -> None:
        out_row = QHBoxLayout()
        out_row.addWidget(QLabel("Output folder"))
        out_row.addWidget(self.output_edit, 1)
        out_row.addWidget(self.output_button)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.stop_button)
        buttons.addWidget(self.blocking, 1)
        phases = QHBoxLayout()
        self.phase_marks = {}
        for i, (key, _title) in enumerate(PHASES):
            if i:
                self.phase_marks[key] = QLabel("›")
                phases.addWidget(self.phase_marks[key])
            phases.addWidget(self.phase_labels[key])
        phases.addStretch()
        self.show_measuring(False)   # only runs with --batch-size auto measure
        top = QVBoxLayout()
        top.addWidget(self.summary)
        top.addLayout(out_row)
        top.addLayout(buttons)
        top.addLayout(phases)
        top.addWidget(self.progress)
        top.addWidget(self.stats)
        self.result_frame = QFrame(objectName="resultFrame")
        self.result_frame.setFrameShape(QFrame.Shape.StyledPanel)
        r_layout = QHBoxLayout(self.result_frame)
        r_layout.addWidget(self.result_label, 1)
        for button in self.result_buttons:
            r_layout.addWidget(button, 0, Qt.AlignmentFlag.AlignTop)
        # Always there, with a fixed height: a banner that appeared or grew at the end of a run would
        # re-lay out and repaint every plot in one frame.
        self.result_frame.setFixedHeight(self.result_frame.fontMetrics().lineSpacing() * 3 + 22)
        top.addWidget(self.result_frame)
        log_box = QGroupBox("Log")
        QVBoxLayout(log_box).addWidget(self.log)
        log_box.setMinimumHeight(110)
        body = QSplitter(Qt.Orientation.Vertical)
        body.addWidget(self.plots)
        body.addWidget(log_box)
        body.setStretchFactor(0, 3)
        body.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(body, 1)

    # -- state ---------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.supervisor is not None

    def refresh(self, *_args) -> None:
        p = self.project
        self.output_edit.setPlaceholderText(f"New folder each run: {p.settings.runs_root() / '<date-time>-<task>'}")
        values = p.training_values()
        data = Path(p.source).name if p.source else "no data yet"
        rows = f" ({p.preview.num_rows:,} rows)" if p.preview and p.preview.num_rows else ""
        model = "all-MiniLM-L6-v2 (built in)" if p.model == "default" else p.model
        self.summary.setText(f"<b>{p.task.title}</b> on <b>{data}</b>{rows} from <b>{model}</b> · "
                             f"{values['num_train_epochs']:g} epoch(s), batch {values['batch_size']}, "
                             f"learning rate {values['learning_rate']:.0e}, max length {values['max_length']}")
        if self.resumed is not None:   # a run resumed from the Runs page: its own settings, not the pages'
            self.summary.setText(self.resumed)
        problem = None if self.running else p.blocking_problem()
        self.start_button.setEnabled(not self.running and problem is None)
        if self.running:
            text, level = ("Stopping: saving a checkpoint …", "tight") if self.supervisor.stop_requested else \
                ("Training runs in its own process; the app stays usable.", "unknown")
        else:
            text, level = problem or "Ready.", p.blocking_level(problem)
        self.blocking.setText(f"<span style='color:{theme.hex_of(theme.status_color(level))}'>{text}</span>")

    @staticmethod
    def _muted(text: str) -> str:
        return f"<span style='color:{theme.hex_of(theme.muted_text())}'>{escape(text)}</span>"

    def show_measuring(self, on: bool) -> None:
        self.phase_labels["measuring"].setVisible(on)
        self.phase_marks["measuring"].setVisible(on)

    def set_phase(self, name: str | None) -> None:
        if name in PHASE_DETAILS:
            self.progress.setFormat(PHASE_DETAILS[name])
        if name == "measuring":
            self.show_measuring(True)
        seen = True
        for key, label in self.phase_labels.items():
            current = key == name
            if current:
                seen = False
            label.setEnabled(current or (name is not None and seen))
            font = label.font()
            font.setBold(current)
            label.setFont(font)
            label.setStyleSheet(f"color:{theme.hex_of(theme.status_color('info'))}" if current else "")

    def append_log(self, text: str) -> None:
        self.log.appendPlainText(text)

    # -- actions -------------------------------------------------------------------------------------
    def choose_output(self) -> None:
        root = self.project.settings.runs_root()
        path = QFileDialog.getExistingDirectory(self, "Folder for the trained model", str(root))
        if path:
            self.output_edit.setText(path)

    def _output_dir(self) -> Path:
        text = self.output_edit.text().strip()
        return Path(text).expanduser() if text else self.project.settings.new_output_dir(self.project.task_key)

    def start(self) -> bool:
        if self.running or self.project.blocking_problem():
            return False
        output_dir = self._output_dir()
        try:
            config = self.project.run_config(output_dir)
        except ValueError as exc:   # a setting the engine refuses (UsageError): say which, start nothing
            self.on_supervisor_run_failed({"kind": "bad_input", "message": str(exc), "hint": ""})
            return False
        return self.start_config(config, output_dir)

    def start_config(self, config: dict, output_dir: Path, note: str = "") -> bool:
        """Run ``config`` (a run.json dict) in the child process; the Runs page resumes runs this way."""
        if self.running:
            return False
        self.output_dir = Path(output_dir)
        self.resumed = None
        if config["training"].get("resume_from_checkpoint"):
            t = config["training"]
            self.resumed = (f"<b>Resuming {escape(self.output_dir.name)}</b> from "
                            f"{escape(Path(t['resume_from_checkpoint']).name)} · its own settings: "
                            f"batch {t.get('batch_size')}, learning rate {t.get('learning_rate', 0):.0e}, "
                            f"max length {t.get('max_length')}")
        self.config_dir = tempfile.TemporaryDirectory(prefix="raclate-run-")
        self.config_path = Path(self.config_dir.name) / "run.json"
        self.config_path.write_text(json.dumps(config, indent=2))
        self.last_config, self.result, self.total_steps = config, None, 0
        self.events.clear()
        self.plots.clear()
        self.log.clear()
        self.result_label.setText(self._muted("Training … the result and a link to the model appear here when "
                                              "the run ends."))
        for button in self.result_buttons:
            button.hide()
        self.progress.setRange(0, 0)   # busy until run_started says how many steps
        self.progress.setFormat("Starting …")
        self.show_measuring(False)
        self.stats.clear()
        self.last_step = None
        self.append_log((note + "\n" if note else "") + f"Config: {self.config_path}\nOutput: {self.output_dir}")
        settings = self.project.settings
        sup = TrainingSupervisor(self.config_path, stop_timeout_s=settings.stop_timeout_s(), nice=settings.child_nice(),
                                 parent=self)
        sup.run_started.connect(self.on_supervisor_run_started)
        sup.phase_changed.connect(self.set_phase)
        sup.step_logged.connect(self.on_supervisor_step_logged)
        sup.eval_logged.connect(self.on_supervisor_eval_logged)
        sup.checkpoint_saved.connect(lambda e: self.append_log(f"Checkpoint at step {e.get('step')}: {e.get('path')}"))
        sup.warning_raised.connect(lambda m: self.append_log(f"⚠ {m}"))
        sup.log_received.connect(self.append_log)
        sup.event_received.connect(self.events.append)
        sup.event_received.connect(self.on_supervisor_event_received)
        sup.run_finished.connect(self.on_supervisor_run_finished)
        sup.run_failed.connect(self.on_supervisor_run_failed)
        sup.finished.connect(self.on_supervisor_finished)
        use_launcher(sup, getattr(self.project, "launch_args", None))  # several processes / Macs
        self.supervisor = sup
        self.started_at = time.monotonic()
        sup.start()
        self.start_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        self.stop_button.setText("■  Stop")
        self.refresh()
        self.running_changed.emit(True)
        return True

    def stop(self) -> None:
        if not self.running:
            return
        if self.supervisor.stop_requested:   # a second press: do not wait for the checkpoint
            self.supervisor.request_kill()
            self.append_log("Force stop: the training process is killed; the last checkpoint stays.")
            return
        self.supervisor.request_stop()
        self.stop_button.setText("Force stop")
        self.stop_button.setToolTip("Kill the training process now; the last completed checkpoint stays valid.")
        self.append_log("Stopping: the current step finishes, then a checkpoint and the model are saved …")
        self.refresh()

    def open_output(self) -> None:
        target = (self.result or {}).get("output_dir") or self.output_dir
        if target:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(target)))

    def saved_model(self) -> str:
        """The folder of the last run's model ("" when it saved none)."""
        out = (self.result or {}).get("output_dir") or self.output_dir
        return str(out) if out and (Path(out) / "config.json").exists() else ""

    # -- supervisor slots ----------------------------------------------------------------------------
    def on_supervisor_run_started(self, e: dict) -> None:
        self.total_steps = int(e.get("total_steps") or 0)
        start = int(e.get("resumed_from_step") or 0)
        self.progress.setRange(0, max(self.total_steps, 1))
        self.progress.setValue(start)
        self.progress.setFormat("Step %v of %m")
        self.plots.set_total_steps(self.total_steps)
        trainable, total = e.get("trainable_parameters"), e.get("total_parameters")
        params = f"; {trainable / 1e6:.1f}M of {total / 1e6:.1f}M parameters trained" if trainable and total else ""
        self.append_log(f"Run {e.get('run_id')}: {e.get('num_examples'):,} examples, {self.total_steps} steps{params}.")

    def on_supervisor_step_logged(self, e: dict) -> None:
        step = int(e.get("step") or 0)
        self.progress.setValue(min(step, self.progress.maximum()))
        self.last_step = e
        self.stats.setText(step_stats(e, eta=True))
        self.plots.add_step(e)

    def on_supervisor_eval_logged(self, e: dict) -> None:
        self.plots.add_eval(e)
        shown = ", ".join(f"{k} {v:.4f}" for k, v in (e.get("metrics") or {}).items() if isinstance(v, (int, float)))
        self.append_log(f"Evaluation at step {e.get('step')}: {shown}")

    def on_supervisor_event_received(self, e: dict) -> None:
        """--batch-size auto: say what was measured, and keep it for the Model page's memory figure."""
        if e.get("event") != "batch_size_chosen" or not self.last_config:
            return
        peaks = ", ".join(f"{m['batch_size']}: {human_bytes(m['peak_memory_bytes'])}" for m in e.get("measured", []))
        self.append_log(f"Batch size {e.get('batch_size')} (the largest that fits: {e.get('largest_fitting')}; budget "
                        f"{human_bytes(e.get('budget_bytes'))}, {e.get('budget_source')}). Measured peaks: {peaks}.")
        c = self.last_config
        remember(self.project.settings, measurement_key(c["model"], c["task"], c["training"]), e)

    def on_supervisor_run_finished(self, e: dict) -> None:
        self.result = e
        out = e.get("output_dir") or str(self.output_dir)
        ok = theme.hex_of(theme.status_color("ok"))
        tight = theme.hex_of(theme.status_color("tight"))
        metrics = ", ".join(f"{k} {v:.4f}" for k, v in (e.get("metrics") or {}).items() if isinstance(v, (int, float)))
        if e.get("incomplete"):
            ckpt = (e.get("checkpoint") or {}).get("path")
            head = f"<span style='color:{tight}'><b>Stopped.</b></span> " + (
                f"The last checkpoint is {ckpt}." if ckpt else "Training had not started, so nothing was saved.")
        elif e.get("stopped_early"):
            head = f"<span style='color:{tight}'><b>Stopped early</b></span>; the model so far is saved."
        else:
            head = f"<span style='color:{ok}'><b>✓ Finished.</b></span> The model is saved."
        link = escape(out).replace("/", "/\u200b")   # let a long path wrap at its slashes
        self.result_label.setText(f"{head} Saved in <a href='open'>{link}</a>"
                                  + (f"<br>Final evaluation: {metrics}" if metrics else ""))
        self.open_button.setVisible(Path(out).exists())
        model = self.saved_model()
        for button in (self.evaluate_button, self.try_button, self.export_button):
            button.setVisible(bool(model))
        if model:
            self.model_saved.emit(model)
        self.progress.setFormat("Done — step %v of %m" if not e.get("stopped_early") else "Stopped at step %v of %m")
        self.project.notice.emit(f"Training finished: {out}")

    def on_supervisor_run_failed(self, e: dict) -> None:
        self.result = {**e, "failed": True}
        over = theme.hex_of(theme.status_color("over"))
        hint = gui_words(e.get("hint") or "")
        self.result_label.setText(f"<span style='color:{over}'><b>Training stopped with an error:</b></span> "
                                  f"{escape(str(e.get('message', '')))}"
                                  + (f"<br><b>What to try:</b> {escape(hint)}" if hint else ""))
        self.result_label.setToolTip(f"{e.get('message', '')}\n\n{hint}")
        self.progress.setFormat("Failed")
        if e.get("stderr") and not self.log.toPlainText().strip().endswith(e["stderr"].strip()[-200:]):
            self.append_log(e["stderr"])
        self.project.notice.emit("Training failed: " + str(e.get("message", "")))

    def on_supervisor_finished(self) -> None:
        sup, self.supervisor = self.supervisor, None
        if self.config_dir is not None:   # the child has read run.json; last_config keeps it for diagnostics
            self.config_dir.cleanup()
            self.config_dir = None
        if self.progress.maximum() == 0:
            self.progress.setRange(0, 1)
        self.set_phase(None)
        if self.last_step is not None:   # the run is over: no time left to estimate
            self.stats.setText(step_stats(self.last_step, eta=False))
        self.stop_button.setEnabled(False)
        self.stop_button.setText("■  Stop")
        self.refresh()   # the plot timer draws the last points (a flush here would redraw all plots at once)
        self.running_changed.emit(False)
        if sup is not None:
            sup.deleteLater()


if __name__ == "__main__":
    from raclate_app.pages import run_alone
    sys.exit(run_alone(TrainPage))
