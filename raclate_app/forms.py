"""Settings forms built from the TrainingArgs dataclass: each field's type picks its editor, its
default is the editor's start value and its ``metadata["help"]`` is the tooltip. There is no
second table of defaults here, only labels and sensible editor ranges.

An optional number (``float | None``: None is the model config's own value) gets a "use the model's
value" check box beside its spin box; an optional text (``str | None``) a line edit, empty = None."""
from __future__ import annotations

import math
from dataclasses import MISSING, Field, fields

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QHBoxLayout, QLabel, QLineEdit,
                               QSpinBox, QWidget)

from engine.training.args import BATCH_SAMPLERS, SCHEDULERS, TrainingArgs, flag

LABELS = {
    "num_train_epochs": "Epochs", "batch_size": "Batch size", "learning_rate": "Learning rate",
    "max_length": "Max length (tokens)", "gradient_accumulation_steps": "Gradient accumulation",
    "grad_checkpoint": "Gradient checkpointing", "lr_scheduler_type": "Scheduler", "warmup_ratio": "Warmup fraction",
    "warmup_steps": "Warmup steps", "freeze_embeddings": "Freeze embeddings", "eval_steps": "Evaluate every (steps)",
    "save_steps": "Checkpoint every (steps)", "seed": "Seed", "max_steps": "Max steps", "weight_decay": "Weight decay",
    "logging_steps": "Log every (steps)", "max_grad_norm": "Gradient clipping", "save_total_limit": "Checkpoints kept",
    "group_by_length": "Group batches by length", "dropout": "Dropout", "query_prompt": "Query prompt",
    "document_prompt": "Document prompt", "lora_rank": "LoRA rank", "lora_alpha": "LoRA alpha",
    "lora_dropout": "LoRA dropout", "lora_targets": "LoRA targets", "dora": "DoRA",
    "save_adapter": "Also save the adapter (PEFT)", "batch_sampler": "Batches",
}
BASIC = ("num_train_epochs", "batch_size", "learning_rate", "max_length")
ADVANCED = ("gradient_accumulation_steps", "grad_checkpoint", "lr_scheduler_type", "warmup_ratio", "warmup_steps",
            "freeze_embeddings", "group_by_length", "eval_steps", "save_steps", "seed", "max_steps", "weight_decay",
            "max_grad_norm", "logging_steps", "save_total_limit", "dropout", "query_prompt", "document_prompt",
            "lora_rank", "lora_alpha", "lora_dropout", "lora_targets", "dora", "save_adapter", "batch_sampler")
RANGES = {  # editor limits (not defaults): (minimum, maximum, step, decimals)
    "num_train_epochs": (0.1, 1000, 0.5, 2), "batch_size": (1, 4096, 1, 0), "max_length": (8, 32768, 32, 0),
    "gradient_accumulation_steps": (1, 1024, 1, 0), "warmup_ratio": (0.0, 0.99, 0.01, 2),
    "warmup_steps": (0, 1_000_000, 10, 0), "eval_steps": (0, 1_000_000, 50, 0), "save_steps": (0, 1_000_000, 50, 0),
    "seed": (0, 2 ** 31 - 1, 1, 0), "max_steps": (-1, 10_000_000, 10, 0), "weight_decay": (0.0, 1.0, 0.01, 3),
    "max_grad_norm": (0.0, 100.0, 0.1, 2), "logging_steps": (0, 100_000, 1, 0), "save_total_limit": (1, 100, 1, 0),
    "dropout": (0.0, 0.95, 0.05, 2), "lora_rank": (0, 1024, 4, 0), "lora_alpha": (0.5, 4096, 4, 1),
    "lora_dropout": (0.0, 0.9, 0.05, 2),
}
CHOICES = {"lr_scheduler_type": SCHEDULERS, "batch_sampler": BATCH_SAMPLERS}
SPECIAL = {"max_steps": "use epochs", "eval_steps": "start and end", "save_steps": "only at the end",
           "warmup_steps": "use fraction", "max_grad_norm": "no clipping", "logging_steps": "auto",
           "lora_rank": "off (every weight trains)"}


def training_field(name: str) -> Field:
    return next(f for f in fields(TrainingArgs) if f.name == name)


def default_of(f: Field):
    return f.default if f.default is not MISSING else f.default_factory()


def label_of(name: str) -> str:
    return LABELS.get(name, name.replace("_", " ").capitalize())


class SciSpinBox(QDoubleSpinBox):
    """A spin box for learning rates: shows 5e-05, steps by ×/÷ 2 instead of adding 0.01."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setDecimals(12)
        self.setRange(1e-9, 1.0)

    def textFromValue(self, value: float) -> str:
        return f"{value:.3g}"

    def valueFromText(self, text: str) -> float:
        try:
            return float(text)
        except ValueError:
            return self.value()

    def validate(self, text, pos):
        from PySide6.QtGui import QValidator
        try:
            float(text)
            return QValidator.State.Acceptable, text, pos
        except ValueError:
            return QValidator.State.Intermediate, text, pos

    def stepBy(self, steps: int) -> None:
        self.setValue(self.value() * math.pow(2.0, steps))


class OptionalNumber(QWidget):
    """A number the model may keep: checked "use the model's value" is None; unchecked, the spin box's value."""
    value_changed = Signal()

    def __init__(self, spin: QSpinBox | QDoubleSpinBox, parent=None):
        super().__init__(parent)
        self.spin = spin
        self.use_model = QCheckBox("use the model's value")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.use_model)
        layout.addWidget(spin)
        self.set_value(None)
        self.use_model.toggled.connect(self.on_use_model_toggled)
        spin.valueChanged.connect(self.value_changed)

    def value(self):
        return None if self.use_model.isChecked() else self.spin.value()

    def set_value(self, value) -> None:
        self.use_model.setChecked(value is None)
        self.spin.setEnabled(value is not None)
        if value is not None:
            self.spin.setValue(value)

    def on_use_model_toggled(self, on: bool) -> None:
        self.spin.setEnabled(not on)
        self.value_changed.emit()


class TextEditor(QLineEdit):
    """Optional text: empty is None; spaces are kept (a prompt such as "query: " ends in one)."""

    def __init__(self, parent=None):
        super().__init__(parent, placeholderText="(none)")


def _spin_box(name: str, kind: str) -> QSpinBox | QDoubleSpinBox:
    lo, hi, step, decimals = RANGES.get(name, (0, 10 ** 9, 1, 0 if kind.startswith("int") else 4))
    box = QSpinBox() if kind.startswith("int") else QDoubleSpinBox()
    box.setRange(lo, hi)
    box.setSingleStep(step)
    if isinstance(box, QDoubleSpinBox):
        box.setDecimals(decimals)
    if name in SPECIAL:
        box.setSpecialValueText(SPECIAL[name])
    return box


def editor_for(f: Field) -> QWidget:
    kind = str(f.type).replace(" ", "")
    default = default_of(f)
    if f.name in CHOICES:
        box = QComboBox()
        for choice in CHOICES[f.name]:
            box.addItem(choice, choice)
        box.setCurrentIndex(box.findData(default))
        return box
    if kind.startswith("bool"):
        box = QCheckBox()
        box.setChecked(bool(default))
        return box
    if f.name == "learning_rate":
        box = SciSpinBox()
        box.setValue(default)
        return box
    if kind.startswith(("int", "float")) and kind.endswith("|None"):
        box = OptionalNumber(_spin_box(f.name, kind))
        box.set_value(default)
        return box
    if kind.startswith(("int", "float")):
        box = _spin_box(f.name, kind)
        box.setValue(default)
        return box
    if kind == "str|None":
        box = TextEditor()
        box.setText(default or "")
        return box
    return QLineEdit(placeholderText="(empty)")


def read_editor(w: QWidget):
    if isinstance(w, QComboBox):
        return w.currentData()
    if isinstance(w, QCheckBox):
        return w.isChecked()
    if isinstance(w, QSpinBox):
        return int(w.value())
    if isinstance(w, QDoubleSpinBox):
        return float(w.value())
    if isinstance(w, OptionalNumber):
        return w.value()
    if isinstance(w, TextEditor):
        return w.text() or None
    return w.text().strip() or None


def write_editor(w: QWidget, value) -> None:
    w.blockSignals(True)
    if isinstance(w, QComboBox):
        w.setCurrentIndex(max(w.findData(value), 0))
    elif isinstance(w, QCheckBox):
        w.setChecked(bool(value))
    elif isinstance(w, (QSpinBox, QDoubleSpinBox)):
        w.setValue(value)
    elif isinstance(w, OptionalNumber):
        w.set_value(value)
    else:
        w.setText("" if value is None else str(value))
    w.blockSignals(False)


class SettingsForm(QWidget):
    """A QFormLayout with one row per named TrainingArgs field."""
    values_changed = Signal(dict)

    def __init__(self, names, parent=None):
        super().__init__(parent)
        self.editors: dict[str, QWidget] = {}
        layout = QFormLayout(self)
        layout.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.FieldsStayAtSizeHint)
        for name in names:
            f = training_field(name)
            editor = editor_for(f)
            editor.setObjectName(f"setting:{name}")
            editor.setToolTip(f.metadata.get("help", ""))
            editor.setMinimumWidth(240 if isinstance(editor, TextEditor) else 120)   # room for a prompt
            label = QLabel(label_of(name))
            label.setToolTip(f.metadata.get("help", ""))
            label.setBuddy(editor)
            layout.addRow(label, editor)
            self.editors[name] = editor
            signal = (editor.currentIndexChanged if isinstance(editor, QComboBox) else
                      editor.toggled if isinstance(editor, QCheckBox) else
                      editor.valueChanged if isinstance(editor, (QSpinBox, QDoubleSpinBox)) else
                      editor.value_changed if isinstance(editor, OptionalNumber) else editor.editingFinished)
            signal.connect(self._emit)

    def values(self) -> dict:
        return {name: read_editor(w) for name, w in self.editors.items()}

    def set_values(self, values: dict) -> None:
        for name, value in values.items():
            if name in self.editors:
                write_editor(self.editors[name], value)
        self._emit()

    def _emit(self, *_args) -> None:
        self.values_changed.emit(self.values())


def gui_words(text: str) -> str:
    """Engine hints name CLI flags (--batch-size, --grad-accum); in the app, name the setting instead.
    The flag → field mapping comes from TrainingArgs itself."""
    import re
    flags = {flag(f): f.name for f in fields(TrainingArgs)}
    flags["--model"] = None

    def swap(match):
        word = match.group(0)
        if word not in flags:
            return word
        name = flags[word]
        return "the model (Model & Task page)" if name is None else f"“{label_of(name)}”"
    return re.sub(r"--[a-z][a-z-]*", swap, text)
