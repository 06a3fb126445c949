"""The Data page's source widgets: the open/Hub bar with the text encoding, the empty state with the
demo button, the validation-split box, and turning dropped URLs into paths."""
from __future__ import annotations

import codecs
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QComboBox, QFrame, QGroupBox, QHBoxLayout, QLabel, QLineEdit, QPushButton,
                               QRadioButton, QSlider, QVBoxLayout, QWidget)

from raclate_app import theme

DATA_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".json", ".parquet")
FILE_FILTER = "Data files (*.csv *.tsv *.jsonl *.ndjson *.json *.parquet);;All files (*)"
READABLE = "RACLATE reads .csv, .tsv, .jsonl, .json and .parquet files, or a folder of them"
VALIDATION_WORDS = ("validation", "valid", "val", "dev", "eval")
# (what the combo shows, the Python codec); None reads UTF-8 and, when the file is not, the encoding
# the engine recognises in it.
ENCODINGS = (("Automatic (UTF-8)", None), ("UTF-8", "utf-8"), ("Latin-1 (ISO-8859-1)", "latin-1"),
             ("Windows-1252 (Western Europe)", "cp1252"), ("UTF-16", "utf-16"), ("ISO-8859-15", "iso8859-15"),
             ("Windows-1250 (Central Europe)", "cp1250"), ("Windows-1251 (Cyrillic)", "cp1251"),
             ("Shift JIS (Japanese)", "shift_jis"), ("GB18030 (Chinese)", "gb18030"), ("Mac Roman", "mac-roman"))


def dropped_paths(mime) -> list[Path]:
    """Every local file and folder among dropped URLs."""
    urls = mime.urls() if mime is not None and mime.hasUrls() else []
    return [Path(url.toLocalFile()) for url in urls if url.isLocalFile()]


def is_readable(path: Path) -> bool:
    return path.is_dir() or path.suffix.lower() in DATA_SUFFIXES


def paths_from_mime(mime) -> list[Path]:
    """Local data files and folders among dropped URLs (anything else is left out)."""
    return [p for p in dropped_paths(mime) if is_readable(p)]


def refusal(paths: list[Path]) -> str:
    """What to say when none of the dropped files can be read."""
    names = ", ".join(p.name for p in paths[:3]) + (" …" if len(paths) > 3 else "")
    return f"Cannot open {names}: {READABLE}. Save the data in one of these formats (a .txt with one text per " \
           "line: as a .csv whose first line is a column name such as text)."


def split_train_validation(paths: list[Path]) -> tuple[Path | None, Path | None]:
    """Two dropped files where one is named like a validation file → (train, validation)."""
    if not paths:
        return None, None
    if len(paths) >= 2:
        def is_val(p):
            from engine.data.mapping import split_words
            return any(w in VALIDATION_WORDS for w in split_words(p.stem))
        vals = [p for p in paths if is_val(p)]
        trains = [p for p in paths if not is_val(p)]
        if vals and trains:
            return trains[0], vals[0]
    return paths[0], None


class SourceBar(QWidget):
    open_file_requested = Signal()
    open_folder_requested = Signal()
    hub_requested = Signal(str, str, str)   # id, subset, split
    encoding_chosen = Signal(object)        # a codec name, or None for automatic

    def __init__(self, parent=None):
        super().__init__(parent)
        self.open_button = QPushButton("Open file…")
        self.open_button.setToolTip("Open a .csv, .tsv, .jsonl, .json or .parquet file (Ctrl+O)")
        self.folder_button = QPushButton("Open folder…")
        self.folder_button.setToolTip("A folder with train/validation/test files")
        self.hub_id = QLineEdit(placeholderText="Hub dataset, e.g. sentence-transformers/all-nli")
        self.hub_subset = QLineEdit(placeholderText="subset")
        self.hub_split = QLineEdit(placeholderText="split (train)")
        self.hub_subset.setMaximumWidth(120)
        self.hub_split.setMaximumWidth(110)
        self.hub_button = QPushButton("Load")
        self.encoding = QComboBox()
        self.encoding.setAccessibleName("Text encoding")
        self.encoding.setToolTip("The text encoding of CSV, TSV and JSON files. Automatic reads UTF-8, and a file "
                                 "that is not UTF-8 in the encoding it seems to be in.")
        for title, codec in ENCODINGS:
            self.encoding.addItem(title, codec)
        self.encoding.setMinimumWidth(96)   # may shrink below its names: the window must still fit small screens
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.open_button)
        layout.addWidget(self.folder_button)
        layout.addSpacing(16)
        layout.addWidget(QLabel("or"))
        layout.addWidget(self.hub_id, 1)
        layout.addWidget(self.hub_subset)
        layout.addWidget(self.hub_split)
        layout.addWidget(self.hub_button)
        layout.addSpacing(8)
        layout.addWidget(QLabel("Encoding"))
        layout.addWidget(self.encoding)
        self.open_button.clicked.connect(self.open_file_requested)
        self.folder_button.clicked.connect(self.open_folder_requested)
        self.hub_button.clicked.connect(self._emit_hub)
        self.hub_id.returnPressed.connect(self._emit_hub)
        self.encoding.activated.connect(lambda _i: self.encoding_chosen.emit(self.encoding.currentData()))

    def set_encoding(self, codec: str | None) -> None:
        """Show ``codec`` (an item is added for one the list does not have, e.g. a detected one)."""
        index = next((i for i in range(self.encoding.count()) if _same_codec(self.encoding.itemData(i), codec)), -1)
        if index < 0:
            self.encoding.addItem(f"{codec} (detected)", codec)
            index = self.encoding.count() - 1
        self.encoding.setCurrentIndex(index)

    def _emit_hub(self) -> None:
        if self.hub_id.text().strip():
            self.hub_requested.emit(self.hub_id.text().strip(), self.hub_subset.text().strip(),
                                    self.hub_split.text().strip())


def encoding_title(codec: str | None) -> str:
    """What the Encoding box calls ``codec``."""
    return next((title for title, c in ENCODINGS if c is not None and _same_codec(c, codec)), str(codec))


def _same_codec(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a is b
    return codecs.lookup(a).name == codecs.lookup(b).name


class EmptyState(QFrame):
    """What a first-time user sees: where to drop data, and the demo button."""
    demo_requested = Signal()
    recent_requested = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("emptyState")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setStyleSheet("#emptyState { border: 2px dashed palette(mid); border-radius: 12px; }")
        title = QLabel("<h2>Drop your training data here</h2>", alignment=Qt.AlignmentFlag.AlignCenter)
        text = QLabel("A .csv, .tsv, .jsonl, .json or .parquet file, or a folder with train and validation files.\n"
                      "Only the first rows are read for the preview, so large files open at once.",
                      alignment=Qt.AlignmentFlag.AlignCenter, wordWrap=True)
        self.demo_button = QPushButton("Try the demo dataset")
        self.demo_button.setDefault(True)
        self.demo_button.setMinimumHeight(36)
        demo_text = QLabel("403 French questions about Linux commands → the English descriptions of their "
                           "manual pages, 100 held out: the built-in all-MiniLM-L6-v2 finds few of them before "
                           "training. Press Train right after.", wordWrap=True,
                           alignment=Qt.AlignmentFlag.AlignCenter)
        demo_text.setStyleSheet(f"color: {theme.hex_of(theme.muted_text())}")
        self.recent_box = QVBoxLayout()
        layout = QVBoxLayout(self)
        layout.addStretch(2)
        layout.addWidget(title)
        layout.addWidget(text)
        layout.addSpacing(18)
        row = QHBoxLayout()
        row.addStretch()
        row.addWidget(self.demo_button)
        row.addStretch()
        layout.addLayout(row)
        layout.addWidget(demo_text)
        layout.addSpacing(12)
        layout.addLayout(self.recent_box)
        layout.addStretch(3)
        self.demo_button.clicked.connect(self.demo_requested)

    def set_recent(self, files: list[str]) -> None:
        while self.recent_box.count():
            item = self.recent_box.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        files = [f for f in files if Path(f).exists()][:5]
        if files:
            self.recent_box.addWidget(QLabel("<b>Recent files</b>", alignment=Qt.AlignmentFlag.AlignCenter))
        for f in files:
            link = QLabel(f"<a href='{f}'>{Path(f).name}</a> <span style='color:"
                          f"{theme.hex_of(theme.muted_text())}'>{Path(f).parent}</span>",
                          alignment=Qt.AlignmentFlag.AlignCenter)
            link.linkActivated.connect(self.recent_requested)
            self.recent_box.addWidget(link)


class SplitBox(QGroupBox):
    """Validation data: hold out a fraction of the training rows, or use a separate file."""
    fraction_changed = Signal(float)
    eval_file_requested = Signal()
    eval_file_cleared = Signal()

    def __init__(self, parent=None):
        super().__init__("Validation data", parent)
        self.auto = QRadioButton("Hold out part of the training rows")
        self.separate = QRadioButton("Use a separate file")
        self.slider = QSlider(Qt.Orientation.Horizontal, minimum=0, maximum=40, value=10, singleStep=1, pageStep=5)
        self.slider.setAccessibleName("Validation split percent")
        self.slider_label = QLabel()
        self.slider_label.setMinimumWidth(110)
        self.file_label = QLabel("no file", wordWrap=True)
        self.choose = QPushButton("Choose…")
        self.note = QLabel(wordWrap=True)
        self.note.setStyleSheet(f"color: {theme.hex_of(theme.muted_text())}")
        row = QHBoxLayout()
        row.addSpacing(20)
        row.addWidget(self.slider, 1)
        row.addWidget(self.slider_label)
        file_row = QHBoxLayout()
        file_row.addSpacing(20)
        file_row.addWidget(self.file_label, 1)
        file_row.addWidget(self.choose)
        layout = QVBoxLayout(self)
        layout.addWidget(self.auto)
        layout.addLayout(row)
        layout.addWidget(self.separate)
        layout.addLayout(file_row)
        layout.addWidget(self.note)
        self.auto.setChecked(True)
        self.slider.valueChanged.connect(lambda v: self.fraction_changed.emit(v / 100))
        self.choose.clicked.connect(self.eval_file_requested)
        self.separate.clicked.connect(self.eval_file_requested)
        self.auto.toggled.connect(self._on_auto_toggled)

    def _on_auto_toggled(self, checked: bool) -> None:
        if checked:
            self.eval_file_cleared.emit()

    def update_from(self, project) -> None:
        pv = project.preview
        folder_split = bool(pv and "validation" in (pv.splits or {}))
        for w in (self.auto, self.separate, self.slider, self.choose):
            w.blockSignals(True)
        self.slider.setValue(round(project.validation_split * 100))
        self.auto.setChecked(not project.eval_file)
        self.separate.setChecked(bool(project.eval_file))
        for w in (self.auto, self.separate, self.slider, self.choose):
            w.blockSignals(False)
        self.file_label.setText(Path(project.eval_file).name if project.eval_file else "no file chosen")
        self.slider.setEnabled(not project.has_validation_split)
        total = pv.num_rows if pv else None
        pct = self.slider.value()
        held = f" ({round((total or 0) * pct / 100):,} rows)" if total else ""
        self.slider_label.setText(f"{pct}%{held}" if pct else "none")
        self.auto.setEnabled(not folder_split)
        self.separate.setEnabled(not folder_split)
        self.note.setText("The folder has its own validation split; it is used as is." if folder_split else
                          "No validation: training runs without evaluation." if not project.has_validation_split
                          and pct == 0 else "")
        self.note.setVisible(bool(self.note.text()))
