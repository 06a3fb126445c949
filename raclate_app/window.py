"""MainWindow: the page list (Data → Model & Task → Train), menus with the usual shortcuts, a status
bar, drag-and-drop of data anywhere on the window, remembered geometry, and the quit guard."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QByteArray, QSize, Qt
from PySide6.QtGui import QAction, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (QApplication, QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QMainWindow, QMessageBox,
                               QStackedWidget, QWidget)

from raclate_app import theme
from raclate_app.diagnostics import diagnostics_text
from raclate_app.icon import app_icon
from raclate_app.pages import PAGES
from raclate_app.settings import AppSettings
from raclate_app.state import Project
from raclate_app.widgets.source import dropped_paths


class MainWindow(QMainWindow):
    def __init__(self, project: Project | None = None, settings: AppSettings | None = None):
        super().__init__()
        self.settings = settings or (project.settings if project else AppSettings())
        self.project = project or Project(self.settings, self)   # dies with the window
        self.setWindowTitle("RACLATE Tuner")
        self.setWindowIcon(app_icon())
        self.setAcceptDrops(True)
        self._quit_after_stop = False
        self.visited: set[str] = set()   # pages the user has seen: only those get a tick
        self.sidebar = QListWidget()
        self.sidebar.setIconSize(QSize(0, 0))
        self.sidebar.setSpacing(2)
        self.sidebar.setFixedWidth(170)
        self.stack = QStackedWidget()
        self.pages: dict[str, object] = {}
        for number, spec in enumerate(PAGES, 1):
            page = spec.load()(self.project, self)
            self.pages[spec.key] = page
            self.stack.addWidget(page)
            item = QListWidgetItem(f"{number}   {spec.title}")
            item.setData(Qt.ItemDataRole.UserRole, spec.key)
            item.setToolTip(spec.hint)
            item.setSizeHint(QSize(160, 40))
            self.sidebar.addItem(item)
            page.next_requested.connect(lambda k=spec.key: self.go_next(k))
        self.sidebar.currentRowChanged.connect(self.on_sidebar_current_row_changed)
        central = QWidget()
        row = QHBoxLayout(central)
        row.setContentsMargins(6, 6, 0, 0)
        row.setSpacing(6)
        row.addWidget(self.sidebar)
        row.addWidget(self.stack, 1)
        self.setCentralWidget(central)
        self.status_label = QLabel()
        self.statusBar().addPermanentWidget(self.status_label)
        self._build_menus()
        self.project.notice.connect(self.on_project_notice)
        for sig in (self.project.source_changed, self.project.task_changed, self.project.model_changed,
                    self.project.report_changed, self.project.mapping_changed, self.project.validation_started,
                    self.project.source_opening, self.project.model_checked):
            sig.connect(self.update_status)
        self.pages["model"].validity_changed.connect(self.update_status)   # a refusal found after the model loads
        train = self.pages.get("train")
        if train is not None:
            train.running_changed.connect(self.on_train_running_changed)
            self.project.data_refused.connect(self.on_project_data_refused)
        self._connect_pages()
        self.restore_state()
        self.update_status()
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.on_app_about_to_quit)

    def _connect_pages(self) -> None:
        """Runs page and result banner actions that lead to other pages; finished runs refresh the
        lists of runs, and a new model becomes the one Evaluate and Playground show."""
        runs = self.pages.get("runs")
        if runs is None or "evaluate" not in self.pages:
            return
        from raclate_app.pages.runs import apply_duplicate
        runs.duplicate_requested.connect(lambda s: (apply_duplicate(self.project, s), self.go_to("data")))
        runs.resume_requested.connect(self.resume_run)
        runs.export_requested.connect(self.export_model)
        runs.evaluate_requested.connect(self.evaluate_model)
        runs.runs_changed.connect(self.refresh_runs)   # a renamed or deleted run: the other pages' lists too
        train = self.pages["train"]
        train.running_changed.connect(lambda on: on or self.refresh_runs())
        train.model_saved.connect(self.follow_new_model)
        train.evaluate_requested.connect(self.evaluate_model)
        train.try_requested.connect(self.try_model)
        train.export_requested.connect(self.export_model)

    def follow_new_model(self, path: str) -> None:
        for key in ("evaluate", "playground"):
            self.pages[key].follow_run(path)

    def evaluate_model(self, path: str) -> None:
        self._show_model("evaluate", path)

    def try_model(self, path: str) -> None:
        self._show_model("playground", path)

    def _show_model(self, key: str, path: str) -> None:
        page = self.pages[key]
        if not any(Path(r.path) == Path(path) for r in page.picker.runs):
            page.picker.set_runs(self.pages["runs"].runs)   # the Runs page's list is the freshest
        page.select_model(path)
        self.go_to(key)

    def refresh_runs(self) -> None:
        for key in ("runs", "evaluate", "playground"):
            page = self.pages.get(key)
            if page is not None:
                (page.refresh if key == "runs" else page.refresh_runs)()

    def resume_run(self, config: dict, run) -> None:
        from raclate_app.runs import history
        self.go_to("train")
        train = self.pages["train"]
        checkpoint = Path(config["training"]["resume_from_checkpoint"])
        note = f"Resuming {run.name} from {checkpoint.name}."
        if not train.start_config(config, run.path, note):
            self.statusBar().showMessage("A training run is already running: stop it first.", 8000)
            return
        step = next((c.step for c in run.checkpoints() if c.path == checkpoint), 0)
        for event in history(run):   # the curves so far, up to the checkpoint; the child adds the rest
            if event.get("step", 0) <= step:
                (train.plots.add_step if event.get("event") == "step" else train.plots.add_eval)(event)

    def export_model(self, path: str | None = None) -> None:
        """The export dialog for ``path`` (default: the run selected on the Runs page, else a folder)."""
        from PySide6.QtWidgets import QFileDialog

        from raclate_app.widgets.export_dialog import ExportDialog
        runs = self.pages.get("runs")
        run = runs.current_run() if runs is not None else None
        if not path and run is not None and run.has_model:
            path = str(run.path)
        path = path or QFileDialog.getExistingDirectory(self, "The model folder to export")
        if not path:
            return
        task = run.task_key if run is not None and str(run.path) == str(path) else None
        dialog = ExportDialog(path, task, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        self.export_dialog = dialog

    # -- menus ------------------------------------------------------------------------------------
    def _action(self, menu, text, slot, shortcut=None, tip="") -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.setStatusTip(tip)
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _build_menus(self) -> None:
        data = self.pages["data"]
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self.open_action = self._action(file_menu, "&Open Data File…", lambda: (self.go_to("data"),
                                        data.open_file_dialog()), QKeySequence.StandardKey.Open)
        self._action(file_menu, "Open Data &Folder…", lambda: (self.go_to("data"), data.open_folder_dialog()),
                     "Ctrl+Shift+O")
        self.recent_menu = file_menu.addMenu("Open &Recent")
        self.recent_menu.aboutToShow.connect(self.fill_recent_menu)
        self._action(file_menu, "Try the &Demo Dataset", self.load_demo)
        file_menu.addSeparator()
        self._action(file_menu, "&Export Model…", lambda: self.export_model(), "Ctrl+E",
                     "Write a model folder for sentence-transformers, PyLate or transformers; push it to the Hub")
        file_menu.addSeparator()
        self.quit_action = self._action(file_menu, "&Quit", self.close, QKeySequence.StandardKey.Quit)
        self.quit_action.setMenuRole(QAction.MenuRole.QuitRole)
        train_menu = bar.addMenu("&Training")
        self.start_action = self._action(train_menu, "&Start Training", self.start_training, "Ctrl+Return")
        self.stop_action = self._action(train_menu, "S&top Training", self.stop_training, "Ctrl+.")
        view = bar.addMenu("&View")
        for number, spec in enumerate(PAGES, 1):
            self._action(view, spec.title, lambda _=False, k=spec.key: self.go_to(k), f"Ctrl+{number}")
        help_menu = bar.addMenu("&Help")
        self._action(help_menu, "&Copy Diagnostics", self.copy_diagnostics,
                     tip="Versions, machine, run config, last events and log → clipboard")
        about = self._action(help_menu, "&About RACLATE Tuner", self.about)
        about.setMenuRole(QAction.MenuRole.AboutRole)

    def fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        files = self.settings.recent("files")
        for path in files:
            action = self.recent_menu.addAction(Path(path).name)
            action.setToolTip(path)
            action.setStatusTip(path)
            action.setEnabled(Path(path).exists())
            action.triggered.connect(lambda _=False, p=path: (self.go_to("data"), self.project.open_source(p)))
        if not files:
            self.recent_menu.addAction("No recent files").setEnabled(False)
        else:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear Recent", lambda: self.settings.clear_recent("files"))

    # -- navigation -------------------------------------------------------------------------------
    def go_to(self, key: str) -> None:
        keys = [s.key for s in PAGES]
        if key in keys:
            self.sidebar.setCurrentRow(keys.index(key))

    def go_next(self, key: str) -> None:
        keys = [s.key for s in PAGES]
        if keys.index(key) + 1 < len(keys):
            self.go_to(keys[keys.index(key) + 1])

    def on_sidebar_current_row_changed(self, row: int) -> None:
        self.stack.setCurrentIndex(row)
        if 0 <= row < len(PAGES):
            self.visited.add(PAGES[row].key)
            self.update_status()

    def current_page_key(self) -> str:
        return PAGES[max(self.sidebar.currentRow(), 0)].key

    def load_demo(self) -> None:
        self.go_to("data")
        self.project.load_demo()

    def start_training(self) -> None:
        self.go_to("train")
        if not self.pages["train"].start():
            problem = self.project.blocking_problem()
            if problem:
                self.statusBar().showMessage(problem, 8000)

    def stop_training(self) -> None:
        self.pages["train"].stop()

    def on_project_data_refused(self, problem: str, data: dict) -> None:
        """The full data check found a fatal problem the first rows did not show: a run started on that
        data stops before it trains (its child would refuse the data as well, only later)."""
        train = self.pages["train"]
        run = train.supervisor
        config = (train.last_config or {}).get("data") or {}
        if run is None or run.training_started or any(config.get(k) != v for k, v in data.items()):
            return
        train.append_log(f"The full data check found a problem, so the run stops before training: {problem}")
        run.request_stop()   # nothing to checkpoint yet: the child just ends
        self.statusBar().showMessage("Training stopped before it began: " + problem, 10000)

    # -- drag and drop ----------------------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:
        if dropped_paths(event.mimeData()):   # any local file: one the app cannot read is refused with a message
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        paths = dropped_paths(event.mimeData())
        if not paths:
            return
        self.go_to("data")   # where the data opens, or where the page says why it cannot
        if self.pages["data"].open_paths(paths):
            event.acceptProposedAction()

    def open_paths(self, paths) -> bool:
        """Open data files on the Data page (macOS Dock icon / “Open With”: raclate_app.main)."""
        if self.pages["data"].open_paths([Path(p) for p in paths]):
            self.go_to("data")
            return True
        return False

    # -- status -----------------------------------------------------------------------------------
    def update_status(self, *_args) -> None:
        p = self.project
        data = Path(p.source).name if p.source else "no data"
        model = "default model" if p.model == "default" else Path(p.model).name or p.model
        state = ""
        if self.pages["train"].running:
            state = " · training …"
        self.status_label.setText(f"{data} · {p.task.title} · {model}{state}")
        model_page = self.pages["model"]
        ready = {"data": p.preview is not None and p.check is not None and p.check.report.ok,
                 "model": p.blocking_problem() is None and not model_page.refusal}
        for number, spec in enumerate(PAGES, 1):   # a tick on the steps the user has seen and that are done
            done = " ✓" if spec.key in self.visited and ready.get(spec.key) else ""
            self.sidebar.item(number - 1).setText(f"{number}   {spec.title}{done}")
        # Next on Model & Task leads on to training, which needs data first
        model_page.next_button.setEnabled(p.preview is not None)
        model_page.next_button.setToolTip("" if p.preview is not None else "Open training data first.")

    def on_project_notice(self, text: str) -> None:
        self.statusBar().showMessage(text, 8000)

    def on_train_running_changed(self, running: bool) -> None:
        self.update_status()
        self.stop_action.setEnabled(running)
        if not running and self._quit_after_stop:
            self.close()

    # -- help -------------------------------------------------------------------------------------
    def copy_diagnostics(self) -> str:
        text = diagnostics_text(self.project, self.pages.get("train"))
        QGuiApplication.clipboard().setText(text)
        self.statusBar().showMessage("Diagnostics copied to the clipboard.", 5000)
        return text

    def about(self) -> None:
        QMessageBox.about(self, "About RACLATE Tuner",
                          "<h3>RACLATE Tuner</h3><p>Fine-tune small transformers with MLX.</p>"
                          f"<p style='color:{theme.hex_of(theme.muted_text())}'>Help → Copy Diagnostics puts "
                          "versions and the last run's log on the clipboard.</p>")

    # -- settings and quitting --------------------------------------------------------------------
    def restore_state(self) -> None:
        geometry = self.settings.get("window/geometry")
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
        else:
            self.resize(1360, 860)
        self.go_to(self.settings.get("window/page", "data"))

    def save_state(self) -> None:
        self.settings.set("window/geometry", self.saveGeometry())
        self.settings.set("window/page", self.current_page_key())
        self.settings.q.sync()

    def ask_stop_training(self) -> str:
        """"stop" (stop, then quit), "kill" (quit now) or "cancel"; a method so tests can answer it."""
        box = QMessageBox(QMessageBox.Icon.Warning, "Training is running",
                          "Training is still running. Stop it (the current step finishes and a checkpoint is "
                          "saved) and quit when it is done?", parent=self)
        stop = box.addButton("Stop and Quit", QMessageBox.ButtonRole.AcceptRole)
        kill = box.addButton("Quit Now", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(stop)
        box.exec()
        return "stop" if box.clickedButton() is stop else "kill" if box.clickedButton() is kill else "cancel"

    def on_app_about_to_quit(self) -> None:
        """Last resort (the quit guard normally stopped the run): never leave a trainer behind, and never
        destroy a running QThread."""
        train = self.pages.get("train")
        if train is not None and train.supervisor is not None:
            train.supervisor.request_kill()
            train.supervisor.wait(5000)

    def closeEvent(self, event) -> None:
        train = self.pages["train"]
        if train.running:
            answer = self.ask_stop_training()
            if answer == "cancel":
                self._quit_after_stop = False
                event.ignore()
                return
            self._quit_after_stop = True
            if answer == "kill":
                train.supervisor.request_kill()
            elif not train.supervisor.stop_requested:
                train.stop()
            self.statusBar().showMessage("Stopping the training run; the window closes when it has stopped.")
            event.ignore()
            return
        for page in self.pages.values():   # cancel evaluations, wait for model threads
            if hasattr(page, "shutdown"):
                page.shutdown()
        self.project.cancel_full_check()   # a big file's check would keep the app from quitting
        self.save_state()
        super().closeEvent(event)
