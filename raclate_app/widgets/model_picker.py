"""Model choosers. ModelPicker: which model the Evaluate and Playground pages use — a run's final model,
one of its checkpoints (with the step and the metrics it had), or any model folder. ModelBox: the model
the Model page trains from — a recommended one, a folder or a Hub id, checked before the page says ready."""
from __future__ import annotations

from html import escape
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from engine.defaults import DEFAULT_MODEL_NAME
from engine.models import family_specs
from raclate_app import theme
from raclate_app.evaluation import ModelChoice
from raclate_app.tasks import get_task

STATUS_WORDS = {"finished": "finished", "stopped": "stopped early", "crashed": "crashed", "running": "training now"}


def metric_text(metrics: dict, names=None, limit: int = 2) -> str:
    keys = [k for k in (names or metrics) if k in metrics and not k.endswith("loss")][:limit] or list(metrics)[:1]
    return ", ".join(f"{k} {metrics[k]:.3f}" for k in keys)


class ModelPicker(QWidget):
    choice_changed = Signal(object)   # ModelChoice | None

    def __init__(self, title: str = "Model", parent=None):
        super().__init__(parent)
        self.combo = QComboBox()
        self.combo.setMinimumContentsLength(20)
        self.combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.folder_button = QPushButton("Choose folder…")
        self.folder_button.setToolTip("Any model folder: a run's output, an export, a downloaded model.")
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.setToolTip("Look for new runs in the runs folder.")
        self.info = QLabel(wordWrap=True)
        self.runs = []
        self.followed: str | None = None   # a new run's model, selected when the list of runs next arrives
        self.extra: list[ModelChoice] = []   # chosen folders that are not (or no longer) in the runs
        row = QHBoxLayout()
        row.addWidget(QLabel(f"<b>{title}</b>"))
        row.addWidget(self.combo, 1)
        row.addWidget(self.folder_button)
        row.addWidget(self.refresh_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.info)
        self.combo.currentIndexChanged.connect(self._on_index)
        self.folder_button.clicked.connect(self.choose_folder)
        self.set_runs([])

    def choice(self) -> ModelChoice | None:
        return self.combo.currentData()

    def set_runs(self, runs) -> None:
        """Fill the list (newest run first, each followed by its checkpoints); keep the selection."""
        keep = self.choice()
        self.runs = list(runs)
        self.combo.blockSignals(True)
        self.combo.clear()
        for run in self.runs:
            task = get_task(run.task_key).title
            metric = run.main_metric()
            shown = f" · {metric[0]} {metric[1]:.3f}" if metric else ""
            base = run.record.get("model")
            if run.has_model:
                self.combo.addItem(f"{run.name} — {task}, {STATUS_WORDS.get(run.status, run.status)}{shown}",
                                   ModelChoice(str(run.path), str(run.path), None, base, run.task_key))
            for ckpt in reversed(run.checkpoint_list):
                metrics = metric_text(ckpt.metrics)
                self.combo.addItem(f"      ↳ {run.name}: checkpoint at step {ckpt.step}"
                                   + (f" · {metrics}" if metrics else ""),
                                   ModelChoice(str(ckpt.path), str(run.path), ckpt.step, base, run.task_key))
        listed = {Path(self.combo.itemData(i).path) for i in range(self.combo.count())}
        for choice in self.extra:
            if Path(choice.path) not in listed:
                self.combo.addItem(f"{Path(choice.path).name} — {choice.path}", choice)
        if not self.combo.count():
            self.combo.addItem("No trained models yet: train one, or choose a model folder", None)
        self.combo.blockSignals(False)
        if self.followed:
            followed, self.followed = self.followed, None
            self.select_path(followed)
        else:
            self.select(keep)

    def follow(self, path: str) -> None:
        """Select the model at ``path`` (a run that just ended) once the next list of runs arrives."""
        self.followed = path

    def select(self, choice: ModelChoice | None) -> None:
        """Select ``choice`` (added as a folder when it is not in the list); None → the first item."""
        index = 0
        if choice is not None:
            index = next((i for i in range(self.combo.count())
                          if self.combo.itemData(i) is not None and self.combo.itemData(i).path == choice.path), -1)
            if index < 0:
                self.extra.append(choice)
                if self.combo.count() == 1 and self.combo.itemData(0) is None:
                    self.combo.removeItem(0)   # the "no trained models yet" line
                self.combo.addItem(f"{Path(choice.path).name} — {choice.path}", choice)
                index = self.combo.count() - 1
        changed = self.combo.currentIndex() != index
        self.combo.setCurrentIndex(index)
        if not changed:
            self._on_index(index)

    def select_path(self, path: str) -> None:
        """Select the item for a model or checkpoint folder (a folder outside the runs is added)."""
        for i in range(self.combo.count()):
            data = self.combo.itemData(i)
            if data is not None and Path(data.path) == Path(path):
                self.select(data)
                return
        run = next((r for r in self.runs if str(r.path) == str(path)), None)
        self.select(ModelChoice(str(path), str(run.path), None, run.record.get("model"), run.task_key) if run
                    else ModelChoice(str(path)))

    def choose_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Choose a model folder (with config.json)")
        if path:
            self.select_path(path)

    def _on_index(self, _index: int) -> None:
        choice = self.choice()
        muted = theme.hex_of(theme.muted_text())
        if choice is None:
            self.info.setText(f"<span style='color:{muted}'>Runs are read from the runs folder (Runs page); "
                              "a model folder can be chosen too.</span>")
        else:
            base = choice.base
            base_text = f" · started from {'all-MiniLM-L6-v2 (built in)' if base == 'default' else base}" if base else ""
            self.info.setText(f"<span style='color:{muted}'>{choice.path}{base_text}</span>")
        self.choice_changed.emit(choice)


BUILT_IN = "all-MiniLM-L6-v2 (built in)"
WHERE = {"built in": "built in, nothing to download", "cache": "in the Hugging Face cache on this machine",
         "hub": "not on this machine yet: downloaded from the Hugging Face Hub when training starts"}


def size_text(parameters: int) -> str:
    """22.7M, 149M, 1.2B: what the recommendations and summaries call a model's size."""
    if parameters >= 1e9:
        return f"{parameters / 1e9:.1f}B"
    return f"{parameters / 1e6:.1f}M" if parameters < 1e8 else f"{parameters / 1e6:.0f}M"


def recommended_models() -> list[tuple[str, str, str]]:
    """(model name, shown text, what it is good for) of every family's recommended checkpoints, smallest
    first; the embedded model is "default", marked built in."""
    rows = []
    for spec in family_specs().values():
        for rec in spec.recommended:
            built_in = rec.model_id == DEFAULT_MODEL_NAME
            label = BUILT_IN if built_in else rec.model_id
            rows.append((rec.parameters, "default" if built_in else rec.model_id,
                         f"{label} — {size_text(rec.parameters)}, {spec.name}: {rec.good_for}", rec.good_for))
    return [row[1:] for row in sorted(rows)]


class ModelBox(QWidget):
    """The Model page's model box: the recommended models of each family (size and what each is good for,
    from the family specs), the recent ones, a folder, or a Hub id typed in. It shows the project's
    check of the model (raclate_app.model_info.check_model): what it is, where it comes from, or why
    training could not start from it."""
    model_chosen = Signal(str)   # a model name: "default", a folder or a Hub id; never empty

    def __init__(self, parent=None):
        super().__init__(parent)
        self.combo = QComboBox(editable=True)
        # Return must not add the typed text as an item without a model name (it became "None").
        self.combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.combo.setMinimumContentsLength(28)
        self.combo.lineEdit().setPlaceholderText("a recommended model, a folder, or a Hub id such as "
                                                 "BAAI/bge-small-en-v1.5")
        self.combo.setToolTip("Pick a recommended model, type a Hub id (owner/name) or a folder and press Return.")
        self.folder_button = QPushButton("Choose folder…")
        self.folder_button.setToolTip("A model folder with config.json and .safetensors weights.")
        self.info = QLabel(wordWrap=True)
        self.recommended = recommended_models()
        row = QHBoxLayout()
        row.addWidget(self.combo, 1)
        row.addWidget(self.folder_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.info)
        self.combo.activated.connect(lambda _i: self.model_chosen.emit(self.chosen_model()))
        self.combo.lineEdit().editingFinished.connect(lambda: self.model_chosen.emit(self.chosen_model()))
        self.folder_button.clicked.connect(self.choose_folder)
        self.set_recent([])

    def set_recent(self, names) -> None:
        """The list: the recommended models, then the recent ones; what the box shows stays."""
        text = self.combo.currentText()
        listed = {name for name, _, _ in self.recommended}
        self.combo.blockSignals(True)
        self.combo.clear()
        for name, label, good_for in self.recommended:
            self.combo.addItem(label, name)
            self.combo.setItemData(self.combo.count() - 1, f"{name}: {good_for}", Qt.ItemDataRole.ToolTipRole)
        recent = [n for n in names if n and n not in listed]
        if recent:
            self.combo.insertSeparator(self.combo.count())
            for name in recent:
                self.combo.addItem(name, name)
        self.combo.setEditText(text)
        self.combo.blockSignals(False)
        view = self.combo.view()   # the popup as wide as its longest line: sizes and uses unelided
        view.setMinimumWidth(view.sizeHintForColumn(0) + view.verticalScrollBar().sizeHint().width() + 8)

    def chosen_model(self) -> str:
        """The model for what the box shows: a listed item's model, else the text as typed."""
        text = self.combo.currentText().strip()
        index = self.combo.findText(text)
        return (self.combo.itemData(index) if index >= 0 else None) or text or "default"

    def show_model(self, name: str) -> None:
        """Show the project's model (its list item, else its name) without emitting model_chosen."""
        index = self.combo.findData(name)
        self.combo.blockSignals(True)
        if index >= 0:
            self.combo.setCurrentIndex(index)
        self.combo.setEditText(self.combo.itemText(index) if index >= 0 else name)
        self.combo.blockSignals(False)

    def choose_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Choose a model folder (with config.json)")
        if path:
            self.model_chosen.emit(path)

    def show_check(self, check) -> None:
        """What the check found (None: still checking): the model's summary and where it comes from, or
        in red why training could not start from it."""
        muted = theme.hex_of(theme.muted_text())
        if check is None:
            self.info.setText(f"<span style='color:{muted}'>Checking the model …</span>")
            return
        summary = check.summary.describe() if check.summary and check.summary.config else ""
        if check.problem:
            red = theme.hex_of(theme.status_color("over"))
            self.info.setText(f"<span style='color:{red}'>{escape(check.problem)}</span>"
                              + (f"<br>{escape(summary)}" if summary else ""))
            return
        good_for = next((g for name, _, g in self.recommended if name == check.name), None)
        where = WHERE.get(check.where) or (str(check.summary.folder) if check.summary else "")
        lines = [summary or "No config.json yet: no preset or memory estimate until the download.",
                 f"<span style='color:{muted}'>{escape(where)}" + (f" · good for {escape(good_for)}" if good_for
                                                                  else "") + "</span>"]
        self.info.setText("<br>".join(lines))
