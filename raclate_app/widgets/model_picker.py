"""ModelPicker: which model the Evaluate and Playground pages use — a run's final model, one of its
checkpoints (with the step and the metrics it had), or any model folder."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

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
        self.select(keep)

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
