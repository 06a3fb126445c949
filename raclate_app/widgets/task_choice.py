"""TaskChoiceBox: why the Data page picked its task, and when the data fits several tasks, a short
choice between them, each with its reason ("“rating” has 5 values (1–5): 5 classes")."""
from __future__ import annotations

from html import escape

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QButtonGroup, QFrame, QLabel, QRadioButton, QVBoxLayout

from raclate_app import theme
from raclate_app.tasks import TaskChoice, get_task


class TaskChoiceBox(QFrame):
    chosen = Signal(str)   # an app task key

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("taskChoice")
        self.header = QLabel(wordWrap=True)
        self.group = QButtonGroup(self)
        self.buttons: dict[str, QRadioButton] = {}
        self.lines = QVBoxLayout(self)
        self.lines.setContentsMargins(0, 0, 0, 0)
        self.lines.setSpacing(2)
        self.lines.addWidget(self.header)
        self.hide()

    def show_choices(self, choices: list[TaskChoice], current: str) -> None:
        """One line saying why for a single fitting task; a choice with the reasons for several."""
        for button in self.buttons.values():
            self.group.removeButton(button)
        while self.lines.count() > 1:
            item = self.lines.takeAt(1)
            if item.widget():
                item.widget().deleteLater()
        self.buttons.clear()
        muted = theme.hex_of(theme.muted_text())
        if len(choices) == 1:
            self.header.setText(f"<span style='color:{muted}'>Guessed from the columns: "
                                f"{escape(choices[0].reason)}.</span>")
        elif choices:
            self.header.setText("<b>The data fits more than one task.</b> Which one is it?")
            for choice in choices:
                button = QRadioButton(get_task(choice.key).title)
                button.setObjectName(f"choice:{choice.key}")
                reason = QLabel(f"<span style='color:{muted}'>{escape(choice.reason)}</span>", wordWrap=True)
                reason.setIndent(22)
                self.group.addButton(button)
                self.buttons[choice.key] = button
                button.toggled.connect(lambda on, k=choice.key: on and self.chosen.emit(k))
                self.lines.addWidget(button)
                self.lines.addWidget(reason)
        self.setVisible(bool(choices))
        self.set_current(current)

    def set_current(self, key: str) -> None:
        """Check the button of ``key`` (late interaction trains pairs as sentence similarity does)."""
        key = "sentence-similarity" if key == "late-interaction" else key
        self.group.setExclusive(False)   # the task may be one the data was not suggested for: then none is checked
        for k, button in self.buttons.items():
            button.blockSignals(True)
            button.setChecked(k == key)
            button.blockSignals(False)
        self.group.setExclusive(True)
