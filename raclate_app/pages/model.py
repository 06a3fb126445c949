"""Model & Task page: the task (with a one-line explanation each), the model (built-in, a folder,
a Hub id or a recent one) with presets per architecture, basic and folded advanced settings built
from TrainingArgs, and a memory estimate against this machine with a "largest batch that fits"."""
from __future__ import annotations

import sys

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QButtonGroup, QCheckBox, QComboBox, QGridLayout, QGroupBox, QHBoxLayout, QLabel,
                               QPushButton, QRadioButton, QScrollArea, QToolButton, QVBoxLayout, QWidget)

from engine.models import memory, spec_for, task_refusal
from engine.tasks import EMBEDDING_TASKS
from engine.training.args import AUTO
from raclate_app import theme
from raclate_app.forms import ADVANCED, BASIC, SettingsForm, training_field, write_editor
from raclate_app.memory import measured_for, measured_peak, measurement_key, suggestion, verdict
from raclate_app.tasks import APP_TASKS
from raclate_app.widgets.distributed import DistributedSection
from raclate_app.widgets.model_picker import ModelBox

# The attention control's choices → TrainingArgs.bidirectional
ATTENTION = {"as the model's config says": None, "bidirectional": True, "causal": False}
LORA_RANK = 16   # what "Train adapters only (LoRA)" sets; the advanced settings change it
# The base-weights control beside it → TrainingArgs.quantize_base (QLoRA; only with adapters)
QUANTIZE = {"full-precision base": None, "8-bit base (QLoRA)": 8, "4-bit base (QLoRA)": 4}
PROMPTS = ("query_prompt", "document_prompt")   # applied by embedding models only (the engine refuses others)


class ModelPage(QWidget):
    title = "Model & Task"
    next_requested = Signal()
    validity_changed = Signal()   # ``refusal`` changed: the task can (no longer) be trained on this model

    def __init__(self, project, parent=None):
        super().__init__(parent)
        self.project = project
        self.summary = None
        self.refusal: str | None = None   # why the chosen task cannot be trained on this model's family
        self.available, self.available_source = memory.machine_memory()
        self.task_group = QButtonGroup(self)
        self.task_buttons: dict[str, QRadioButton] = {}
        self.model_box = ModelBox()
        self.preset_label = QLabel(wordWrap=True)
        self.preset: tuple[str, dict] | None = None   # (family, values) of the preset last applied
        self.task_problem = QLabel(wordWrap=True)   # a task this family's output could not be loaded for
        self.task_problem.hide()
        # TrainingArgs.bidirectional: only families with the switch (FamilySpec.supports_bidirectional)
        self.attention_combo = QComboBox()
        for text in ATTENTION:
            self.attention_combo.addItem(text)
        self.attention_combo.setToolTip(training_field("bidirectional").metadata["help"])
        self.basic = SettingsForm(BASIC)
        self.advanced = SettingsForm(ADVANCED)
        # Sets the advanced form's lora_rank (LORA_RANK when on, 0 off); the form keeps rank, alpha and targets.
        self.lora_check = QCheckBox("Train adapters only (LoRA)")
        self.lora_check.setToolTip(training_field("lora_rank").metadata["help"])
        self.quantize_combo = QComboBox()
        for text in QUANTIZE:
            self.quantize_combo.addItem(text)
        self.quantize_combo.setToolTip(training_field("quantize_base").metadata["help"])
        self.quantize_combo.setEnabled(False)
        self.advanced.hide()
        self.advanced_toggle = QToolButton(text="Advanced settings", checkable=True)
        self.advanced_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.advanced_toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.advanced_toggle.setAutoRaise(True)
        self.distributed = DistributedSection()
        self.distributed.hide()
        self.memory_label = QLabel(wordWrap=True)
        self.memory_detail = QLabel(wordWrap=True)
        self.memory_hint = QLabel(wordWrap=True)
        self.fit_button = QPushButton("Use the largest batch that fits")
        # TrainingArgs.batch_size "auto": the run measures the largest batch under the memory budget
        self.auto_batch = QCheckBox("Measure the largest batch that fits when the run starts")
        self.auto_batch.setToolTip(training_field("batch_size").metadata["help"])
        self.blocking = QLabel(wordWrap=True)
        self.next_button = QPushButton("Next: Train  →")
        self._build()
        self._connect()
        self.on_task_changed(project.task_key)
        self._fill_models()
        project.set_training({**self.basic.values(), **self.advanced.values()})
        self.on_model_changed(project.model)
        self._update_blocking()

    def _build(self) -> None:
        tasks = QGroupBox("Task")
        grid = QGridLayout(tasks)
        muted = theme.hex_of(theme.muted_text())
        for i, task in enumerate(APP_TASKS):
            button = QRadioButton(task.title)
            button.setObjectName(f"task:{task.key}")
            blurb = QLabel(f"<span style='color:{muted}'>{task.blurb}</span>", wordWrap=True)
            blurb.setIndent(22)
            grid.addWidget(button, 2 * (i // 2), i % 2)
            grid.addWidget(blurb, 2 * (i // 2) + 1, i % 2)
            self.task_group.addButton(button)
            self.task_buttons[task.key] = button
            button.toggled.connect(lambda on, k=task.key: on and self.project.set_task(k))
        grid.setColumnStretch(0, 1)
        grid.setColumnStretch(1, 1)

        model = QGroupBox("Model")
        model_layout = QVBoxLayout(model)
        model_layout.addWidget(self.model_box)
        model_layout.addWidget(self.preset_label)
        attention_row = QHBoxLayout()
        attention_row.addWidget(QLabel("Attention"))
        attention_row.addWidget(self.attention_combo)
        attention_row.addStretch()
        model_layout.addLayout(attention_row)
        model_layout.addWidget(self.task_problem)

        settings = QGroupBox("Training settings")
        s_layout = QVBoxLayout(settings)
        s_layout.addWidget(self.basic)
        lora_row = QHBoxLayout()
        lora_row.addWidget(self.lora_check)
        lora_row.addWidget(self.quantize_combo)
        lora_row.addStretch()
        s_layout.addLayout(lora_row)
        s_layout.addWidget(self.advanced_toggle)
        s_layout.addWidget(self.advanced)
        s_layout.addWidget(self.distributed)

        mem = QGroupBox("Memory")
        m_layout = QVBoxLayout(mem)
        m_layout.addWidget(self.memory_label)
        m_layout.addWidget(self.memory_detail)
        m_layout.addWidget(self.memory_hint)
        m_layout.addWidget(self.fit_button, 0, Qt.AlignmentFlag.AlignLeft)
        m_layout.addWidget(self.auto_batch)

        left, right = QVBoxLayout(), QVBoxLayout()
        left.addWidget(tasks)
        left.addWidget(model)
        left.addStretch()
        right.addWidget(settings)
        right.addWidget(mem)
        right.addStretch()
        columns = QHBoxLayout()
        columns.addLayout(left, 3)
        columns.addLayout(right, 2)
        body = QWidget()
        body.setLayout(columns)
        scroll = QScrollArea(widgetResizable=True, frameShape=QScrollArea.Shape.NoFrame)
        scroll.setWidget(body)
        bottom = QHBoxLayout()
        bottom.addWidget(self.blocking, 1)
        bottom.addWidget(self.next_button)
        layout = QVBoxLayout(self)
        layout.addWidget(scroll, 1)
        layout.addLayout(bottom)

    def _connect(self) -> None:
        p = self.project
        self.model_box.model_chosen.connect(p.set_model)
        self.attention_combo.currentIndexChanged.connect(
            lambda _i: p.set_training({"bidirectional": ATTENTION[self.attention_combo.currentText()]}))
        self.advanced_toggle.toggled.connect(self.on_advanced_toggled)
        self.lora_check.toggled.connect(self.on_lora_toggled)
        self.quantize_combo.currentIndexChanged.connect(
            lambda _i: p.set_training({"quantize_base": QUANTIZE[self.quantize_combo.currentText()]}))
        # The Train page starts its supervised child through `raclate launch` with these options.
        self.distributed.settings_changed.connect(
            lambda: setattr(p, "launch_args", self.distributed.launch_args()))
        for form in (self.basic, self.advanced):
            form.values_changed.connect(self.on_form_changed)
        self.fit_button.clicked.connect(self.use_largest_batch)
        self.auto_batch.toggled.connect(self.on_auto_batch_toggled)
        self.next_button.clicked.connect(self.next_requested)
        p.task_changed.connect(self.on_task_changed)
        p.model_changed.connect(self.on_model_changed)
        p.model_checked.connect(self.on_model_checked)
        p.training_changed.connect(self.on_training_changed)
        p.mapping_changed.connect(self.update_memory)
        for sig in (p.report_changed, p.validation_started, p.mapping_changed, p.source_changed):
            sig.connect(self._update_blocking)

    # -- task & model -------------------------------------------------------------------------------
    def on_task_changed(self, key: str) -> None:
        button = self.task_buttons.get(key)
        if button and not button.isChecked():
            button.blockSignals(True)
            button.setChecked(True)
            button.blockSignals(False)
        self.update_family_controls()
        self.update_prompts()
        self.update_memory()

    def update_prompts(self) -> None:
        """Prompts only for embedding models (one vector per text): another task clears and locks them."""
        task = self.project.task
        usable = task.engine_task in EMBEDDING_TASKS and not task.training.get("use_late_interaction")
        for name in PROMPTS:
            editor = self.advanced.editors[name]
            editor.setEnabled(usable)
            editor.setToolTip(training_field(name).metadata["help"] if usable else
                              "Prompts are for sentence similarity (one vector per text) only.")
            if not usable and editor.text():
                write_editor(editor, None)
        if not usable:
            self.on_form_changed()

    def _fill_models(self) -> None:
        self.model_box.set_recent(self.project.settings.recent("models"))

    def on_model_changed(self, name: str) -> None:
        self.summary = None
        self.model_box.show_model(name)
        self.on_model_checked()

    def on_model_checked(self) -> None:
        """The project's check of the model: its summary, preset and memory estimate, or why training
        could not start from it (None: still checking)."""
        check = self.project.model_check
        if check is not None and check.name != self.project.model:
            return
        self.model_box.show_check(check)
        self.summary = check.summary if check else None
        if check is not None and check.problem is None:
            self._fill_models()   # the project offers it among the recent models now
            self.model_box.show_model(check.name)
        if self.summary is not None and self.summary.config:
            self.apply_preset()
        else:
            self.preset_label.clear()
        self.update_family_controls()
        self.update_memory()

    def update_family_controls(self) -> None:
        """What the model's family allows: the attention switch, and whether its output for the chosen
        task would load outside this app (the engine refuses such a run; the reason shows here)."""
        spec = spec_for(self.summary.model_type) if self.summary else None
        switchable = bool(spec and spec.supports_bidirectional)
        self.attention_combo.setEnabled(switchable)
        self.attention_combo.setToolTip(training_field("bidirectional").metadata["help"] if switchable else
                                        "Only families with an attention switch (Gemma 3) can change it.")
        if not switchable and self.attention_combo.currentIndex() != 0:
            self.attention_combo.setCurrentIndex(0)   # the model's own attention; the engine refuses a setting
        refusal = spec and task_refusal(spec.model_type, self.project.task.engine_task) or None
        changed, self.refusal = refusal != self.refusal, refusal
        self.task_problem.setText(f"<span style='color:{theme.hex_of(theme.status_color('over'))}'>"
                                  f"{self.refusal}</span>" if self.refusal else "")
        self.task_problem.setVisible(bool(self.refusal))
        self._update_blocking()
        if changed:
            self.validity_changed.emit()

    def on_training_changed(self) -> None:
        """Settings set from elsewhere (a duplicated run) show in the forms."""
        from raclate_app.forms import read_editor, write_editor
        auto = self.project.training.get("batch_size") == AUTO
        for form in (self.basic, self.advanced):
            for name, editor in form.editors.items():
                if name == "batch_size" and auto:   # the spin box keeps its number for when auto is unticked
                    continue
                if name in self.project.training and read_editor(editor) != self.project.training[name]:
                    write_editor(editor, self.project.training[name])
        self.auto_batch.blockSignals(True)
        self.auto_batch.setChecked(auto)
        self.auto_batch.blockSignals(False)
        self.basic.editors["batch_size"].setEnabled(not auto)
        self.lora_check.blockSignals(True)
        self.lora_check.setChecked(bool(self.project.training.get("lora_rank")))
        self.lora_check.blockSignals(False)
        lora = bool(self.project.training.get("lora_rank"))
        if not lora and self.project.training.get("quantize_base"):   # a quantized base needs adapters
            self.project.set_training({"quantize_base": None})
        self.quantize_combo.blockSignals(True)
        self.quantize_combo.setCurrentIndex(list(QUANTIZE.values()).index(self.project.training.get("quantize_base")))
        self.quantize_combo.setEnabled(lora)
        self.quantize_combo.blockSignals(False)
        index = list(ATTENTION.values()).index(self.project.training.get("bidirectional"))
        if index != self.attention_combo.currentIndex():
            self.attention_combo.blockSignals(True)
            self.attention_combo.setCurrentIndex(index)
            self.attention_combo.blockSignals(False)
        self.update_memory()

    def apply_preset(self) -> None:
        self.preset = None
        if self.project.keep_settings_for == self.project.model:   # a duplicated run keeps its own settings
            self.project.keep_settings_for = None
            self.preset_label.setText(f"<span style='color:{theme.hex_of(theme.muted_text())}'>Settings copied "
                                      "from the duplicated run (no preset applied).</span>")
            return
        preset = self.summary.preset if self.summary else None
        if not preset:
            self.preset_label.setText("No preset for this architecture; the settings stay as they are.")
            return
        values = dict(preset)
        limit = self.summary.config.get("max_position_embeddings")
        if limit:
            values["max_length"] = min(values["max_length"], int(limit))
        self.preset = (self.summary.family_name, values)
        self.basic.set_values(values)
        self.update_preset_line()

    def update_preset_line(self) -> None:
        """The preset applied, and the settings changed since: the line never claims a value the
        fields no longer hold."""
        if self.preset is None:
            return
        name, values = self.preset
        words = {"batch_size": "batch size {}", "learning_rate": "learning rate {:.0e}", "max_length": "max length {}"}
        now = self.project.training_values()
        changed = [words[k].format(now[k]) for k in words if now.get(k) != values[k]]
        preset = ", ".join(words[k].format(values[k]) for k in words)
        self.preset_label.setText(f"<span style='color:{theme.hex_of(theme.muted_text())}'>{name} preset: {preset}"
                                  + (f" (changed: {', '.join(changed)})." if changed else " applied.") + "</span>")

    def showEvent(self, event) -> None:   # a run may have measured these settings since (Train page)
        super().showEvent(event)
        self.update_memory()

    # -- settings & memory ----------------------------------------------------------------------------
    def on_advanced_toggled(self, on: bool) -> None:
        self.advanced.setVisible(on)
        self.distributed.setVisible(on)
        self.advanced_toggle.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)

    def on_lora_toggled(self, on: bool) -> None:
        rank = self.advanced.values()["lora_rank"]
        if on != bool(rank):
            self.advanced.set_values({"lora_rank": LORA_RANK if on else 0})   # → on_form_changed, memory

    def on_auto_batch_toggled(self, on: bool) -> None:
        self.basic.editors["batch_size"].setEnabled(not on)
        self.on_form_changed()

    def on_form_changed(self, _values=None) -> None:
        values = {**self.basic.values(), **self.advanced.values()}
        if self.auto_batch.isChecked():
            values["batch_size"] = AUTO
        self.project.set_training(values)
        self.update_preset_line()
        self.update_memory()

    def _estimate_kwargs(self) -> dict:
        p = self.project
        values = p.training_values()
        texts = 1
        if p.task.engine_task == "sentence-similarity":
            texts = max(2, sum(1 for r in p.engine_columns() if r.startswith(("text", "negative"))))
        return {"texts_per_example": texts, "grad_checkpoint": bool(values["grad_checkpoint"]),
                "freeze_embeddings": bool(values["freeze_embeddings"]),
                "vocab_logits": p.task.engine_task == "masked-lm", "lora_rank": int(values.get("lora_rank") or 0),
                "quantize_base": values.get("quantize_base")}

    def update_memory(self) -> None:
        s = self.summary
        if not s or not s.config or not s.parameters:
            self.memory_label.setText("Memory estimate: needs the model's config.json.")
            self.memory_detail.clear()
            self.memory_hint.clear()
            self.fit_button.setEnabled(False)
            return
        p, values = self.project, self.project.training_values()
        kw = self._estimate_kwargs()
        fitting = memory.largest_batch(s.config, s.parameters, values["max_length"], self.available or 0, **kw)
        # A run with these settings measured its steps (--batch-size auto): the measurement replaces the formula.
        measured = measured_for(p.settings, measurement_key(p.model, p.task.engine_task, values))
        if measured and measured.get("largest"):
            fitting = int(measured["largest"])
        batch = (fitting or 1) if values["batch_size"] == AUTO else values["batch_size"]
        est = memory.estimate(s.config, s.parameters, batch, values["max_length"], **kw)
        peak = measured_peak(measured["measured"], batch) if measured else None
        level = verdict(peak or est.total, self.available)
        color = theme.hex_of(theme.status_color(level))
        words = {"ok": "fits", "tight": "tight", "over": "does not fit", "unknown": "machine memory unknown"}[level]
        self.memory_label.setText(f"<span style='color:{color}; font-size:15px'><b>{'' if peak else '≈ '}"
                                  f"{memory.human_bytes(peak or est.total)}</b> of {memory.human_bytes(self.available)}"
                                  f" — {words}</span>")
        self.memory_label.setProperty("level", level)
        seen = (f"Measured on this machine by a run with these settings: {memory.human_bytes(peak)} at batch {batch} "
                f"(the estimate below says {memory.human_bytes(est.total)}). " if peak else "")
        self.memory_detail.setText(
            f"<span style='color:{theme.hex_of(theme.muted_text())}'>{seen}Estimate: weights "
            f"{memory.human_bytes(est.weights)} · gradients {memory.human_bytes(est.gradients)} · AdamW "
            f"{memory.human_bytes(est.optimizer)} · activations {memory.human_bytes(est.activations)} for batch "
            f"{batch} × {kw['texts_per_example']} text(s) × {values['max_length']} tokens (worst case: every text at "
            f"the max length; shorter texts use less). Machine: {self.available_source}."
            "</span>")
        self.memory_hint.setText(suggestion(level, grad_checkpoint=kw["grad_checkpoint"],
                                                   batch_size=batch, fitting_batch=fitting))
        self.memory_hint.setVisible(bool(self.memory_hint.text()))
        self.fit_button.setEnabled(fitting > 0)
        self.fit_button.setToolTip(f"Sets the batch size to {fitting}." if fitting else "Even batch size 1 does not fit.")
        self._fitting = fitting

    def use_largest_batch(self) -> None:
        if getattr(self, "_fitting", 0):
            self.auto_batch.setChecked(False)
            self.basic.set_values({"batch_size": self._fitting})

    def _update_blocking(self) -> None:
        problem = self.refusal or self.project.blocking_problem()
        level = self.project.blocking_level(problem)
        color = theme.muted_text() if level == "unknown" else theme.status_color(level)
        self.blocking.setText(f"<span style='color:{theme.hex_of(color)}'>{problem or '✓ Ready to train.'}</span>")


if __name__ == "__main__":
    from raclate_app.pages import run_alone
    sys.exit(run_alone(ModelPage))
