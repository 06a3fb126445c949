"""Playground: try a model on your own text. Classify (class probabilities as bars), search a corpus
of up to 100,000 documents (encoded once, with progress, then searched by blocked matrix products;
ranked results; a dense model at a smaller embedding size too, e.g. its Matryoshka dims; for
late-interaction models the query × document MaxSim map of a result),
fill masks (top tokens) and tag entities (coloured inline). The model loads and runs on the page's
own thread; the GUI thread only shows results."""
from __future__ import annotations

import sys
from html import escape
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QColor, QKeySequence, QShortcut
from PySide6.QtWidgets import (QAbstractItemView, QHBoxLayout, QHeaderView, QLabel, QLineEdit, QPlainTextEdit,
                               QProgressBar, QPushButton, QScrollArea, QSplitter, QStackedWidget, QTableWidget,
                               QTableWidgetItem, QTextBrowser, QVBoxLayout, QWidget)

from engine.run_record import read_run_record
from raclate_app import playground, theme
from raclate_app.evaluation import embedding_dims, load_choice
from raclate_app.runs import run_roots, scan_runs
from raclate_app.tasks import get_task
from raclate_app.widgets.bars import BarList
from raclate_app.widgets.dim_choice import DimChoice
from raclate_app.widgets.heatmap import MaxSimHeatmap
from raclate_app.widgets.model_picker import ModelPicker
from raclate_app.workers import Cancelled, Progress, Worker, model_thread_pool

PANELS = {"classification": 0, "regression": 0, "sentence-similarity": 1, "late-interaction": 1, "masked-lm": 2,
          "token-classification": 3}
ENTITY_HUES = (212, 140, 35, 270, 355, 180, 90, 320)


def load_with_pair_input(choice):
    """(the loaded model, whether it reads a second text) — on the model thread: both read files."""
    record = choice.record or read_run_record(Path(choice.path))   # an export carries its run's record too
    return load_choice(choice), playground.pair_input(record)


def _column(*widgets, stretch_last: bool = True) -> QWidget:
    host = QWidget()
    layout = QVBoxLayout(host)
    layout.setContentsMargins(0, 0, 0, 0)
    for i, w in enumerate(widgets):
        layout.addWidget(w, 1 if stretch_last and i == len(widgets) - 1 else 0)
    return host


def _row(*widgets) -> QHBoxLayout:
    row = QHBoxLayout()
    for w in widgets:
        row.addWidget(w, 1 if isinstance(w, (QLineEdit, QPlainTextEdit)) else 0)
    return row


class PlaygroundPage(QWidget):
    title = "Playground"
    next_requested = Signal()
    answered = Signal(object)   # every result, for tests and diagnostics

    def __init__(self, project, parent=None):
        super().__init__(parent)
        self.project = project
        self.worker = Worker(self, pool=model_thread_pool(self))
        self.loaded = None
        self.loaded_choice = None
        self.last: dict | None = None
        self.picker = ModelPicker("Model")
        self.state = QLabel(wordWrap=True)
        self.busy = QProgressBar(minimum=0, maximum=0, textVisible=False)
        self.busy.setFixedWidth(300)   # room for "Encoding documents: 12,345 of 100,000"
        self.index = None   # the corpus as the last search encoded it (engine.inference.CorpusIndex)
        self.cancel_button = QPushButton("Cancel")
        self.relay: Progress | None = None
        self.stack = QStackedWidget()
        self._build_classify()
        self._build_search()
        self._build_fill()
        self._build_tag()
        self.empty = QLabel("Pick a trained model above to try it.", alignment=Qt.AlignmentFlag.AlignCenter)
        self.stack.addWidget(self.empty)
        self.next_button = QPushButton("Next: Runs  →")
        bottom = QHBoxLayout()
        bottom.addStretch()
        bottom.addWidget(self.next_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.picker)
        state_row = QHBoxLayout()
        state_row.addWidget(self.state, 1)
        state_row.addWidget(self.busy)
        state_row.addWidget(self.cancel_button)
        layout.addLayout(state_row)
        layout.addWidget(self.stack, 1)
        layout.addLayout(bottom)
        self.picker.choice_changed.connect(self.on_picker_choice_changed)
        self.picker.refresh_button.clicked.connect(self.refresh_runs)
        self.next_button.clicked.connect(self.next_requested)
        self.cancel_button.clicked.connect(self.cancel)
        self._set_busy(False)
        QShortcut(QKeySequence("Ctrl+Return"), self, activated=self.run_current)
        self.stack.setCurrentWidget(self.empty)
        self.refresh_runs()

    # -- panels --------------------------------------------------------------------------------------
    def _build_classify(self) -> None:
        self.cls_text = QPlainTextEdit(placeholderText="Type a text to classify, e.g. “The staff were lovely.”")
        self.cls_text.setMaximumHeight(110)
        self.cls_pair = QLineEdit(placeholderText="Second text (only for models trained on text pairs)")
        self.cls_button = QPushButton("Classify")
        self.cls_bars = BarList()
        self.cls_value = QLabel(alignment=Qt.AlignmentFlag.AlignLeft)
        scroll = QScrollArea(widgetResizable=True, frameShape=QScrollArea.Shape.NoFrame)
        scroll.setWidget(_column(self.cls_value, self.cls_bars))
        panel = QWidget()
        layout = QVBoxLayout(panel)
        layout.addWidget(self.cls_text)
        layout.addLayout(_row(self.cls_pair, self.cls_button))
        layout.addWidget(scroll, 1)
        self.cls_button.clicked.connect(lambda: self.ask(playground.classify, self.cls_text.toPlainText(),
                                                         self.cls_pair.text()))
        self.stack.addWidget(panel)

    def _build_search(self) -> None:
        self.query = QLineEdit(placeholderText="A query, e.g. “how do I reset my password?”")
        self.search_button = QPushButton("Search")
        self.dims = DimChoice()
        self.corpus = QPlainTextEdit(placeholderText="The corpus: one document per line. Paste some, or take them "
                                                      "from the model's training data.")
        self.corpus_button = QPushButton("Take documents from the run's data")
        self.corpus_count = QLabel()
        self.count_timer = QTimer(self, singleShot=True, interval=300)   # counting 100k lines per keystroke lags
        self.hits = QTableWidget(0, 3)
        self.hits.setHorizontalHeaderLabels(["#", "Score", "Document"])
        self.hits.verticalHeader().hide()
        self.hits.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.hits.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.hits.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.hits.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.hits.horizontalHeader().setStretchLastSection(True)
        self.heatmap = MaxSimHeatmap()
        self.heat_scroll = QScrollArea(widgetResizable=True)
        self.heat_scroll.setWidget(self.heatmap)
        self.heat_title = QLabel(wordWrap=True)
        left = _column(QLabel("<b>Corpus</b> — one document per line"), self.corpus)
        corpus_row = QHBoxLayout()
        corpus_row.addWidget(self.corpus_button)
        corpus_row.addWidget(self.corpus_count, 1)
        left.layout().addLayout(corpus_row)
        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(self.hits)
        self.heat_box = _column(self.heat_title, self.heat_scroll)
        right.addWidget(self.heat_box)
        right.setSizes([180, 520])
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left)
        split.addWidget(right)
        split.setSizes([380, 880])
        split.setChildrenCollapsible(False)
        panel = QWidget()
        layout = QVBoxLayout(panel)
        layout.addLayout(_row(self.query, self.dims, self.search_button))
        layout.addWidget(split, 1)
        self.search_button.clicked.connect(self.search)
        self.dims.dim_changed.connect(self.on_dims_dim_changed)
        self.query.returnPressed.connect(self.search)
        self.corpus_button.clicked.connect(self.take_corpus)
        self.corpus.textChanged.connect(self.count_timer.start)
        self.count_timer.timeout.connect(self._count_corpus)
        self.hits.currentCellChanged.connect(lambda row, *_: self.show_maxsim(row))
        self.stack.addWidget(panel)

    def _build_fill(self) -> None:
        self.fill_text = QLineEdit(placeholderText="A sentence with [MASK] where a word is missing, e.g. "
                                                   "“Paris is the [MASK] of France.”")
        self.fill_button = QPushButton("Fill in")
        self.fill_results = QWidget()
        self.fill_layout = QVBoxLayout(self.fill_results)
        scroll = QScrollArea(widgetResizable=True, frameShape=QScrollArea.Shape.NoFrame)
        scroll.setWidget(self.fill_results)
        panel = QWidget()
        layout = QVBoxLayout(panel)
        layout.addLayout(_row(self.fill_text, self.fill_button))
        layout.addWidget(scroll, 1)
        self.fill_button.clicked.connect(lambda: self.ask(playground.fill_mask, self.fill_text.text()))
        self.fill_text.returnPressed.connect(self.fill_button.click)
        self.stack.addWidget(panel)

    def _build_tag(self) -> None:
        self.tag_text = QPlainTextEdit(placeholderText="A sentence to tag, e.g. “Angela Merkel visited Paris in May.”")
        self.tag_text.setMaximumHeight(110)
        self.tag_button = QPushButton("Tag entities")
        self.tag_view = QTextBrowser()
        panel = QWidget()
        layout = QVBoxLayout(panel)
        layout.addWidget(self.tag_text)
        row = QHBoxLayout()
        row.addStretch()
        row.addWidget(self.tag_button)
        layout.addLayout(row)
        layout.addWidget(self.tag_view, 1)
        self.tag_button.clicked.connect(lambda: self.ask(playground.tag, self.tag_text.toPlainText()))
        self.stack.addWidget(panel)

    # -- model ---------------------------------------------------------------------------------------
    def refresh_runs(self) -> None:
        self.project.worker.submit("playground-runs", scan_runs, run_roots(self.project.settings),
                                   on_done=self.on_runs_scanned, on_error=lambda exc: self.set_state(str(exc), "over"))

    def follow_run(self, path: str) -> None:
        """Select the model of a run that just ended, once the fresh list of runs holds it."""
        self.picker.follow(path)
        self.refresh_runs()

    def on_runs_scanned(self, runs) -> None:
        self.picker.set_runs(runs)

    def select_model(self, path: str) -> None:
        self.picker.select_path(path)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self.loaded is None and self.picker.choice() is not None and not self.worker.is_busy("load"):
            self.on_picker_choice_changed(self.picker.choice())   # loaded when first shown, not at start-up

    def on_picker_choice_changed(self, choice) -> None:
        self.loaded, self.loaded_choice, self.index = None, None, None
        if choice is not None and not self.isVisible():
            return   # no model in memory for a page nobody looks at; showEvent loads it
        if choice is None:
            self.stack.setCurrentWidget(self.empty)
            self.set_state("")
            return
        self.set_state(f"Loading {escape(choice.describe())} …")
        self.worker.submit("load", load_with_pair_input, choice,
                           on_done=lambda result: self.on_loaded(choice, *result),
                           on_error=lambda exc: self.set_state(f"<b>Could not load the model:</b> {escape(str(exc))}",
                                                               "over"))

    def on_loaded(self, choice, loaded, pair: bool | None = None) -> None:
        """``pair``: whether the model was trained on text pairs (None: unknown, the box stays)."""
        self.loaded, self.loaded_choice = loaded, choice
        task = get_task(loaded.task_key)
        self.stack.setCurrentIndex(PANELS.get(loaded.task_key, 1))
        self.corpus_button.setEnabled(bool(choice.run_dir))
        self.heat_box.setVisible(loaded.task_key == "late-interaction")   # dense models: the results take it all
        self.heat_title.setText("<b>MaxSim map</b> of the selected result: select a result to see how each "
                                "query token finds its best match in the document.")
        self.heatmap.clear()
        self.dims.set_dims(None)
        if loaded.task_key == "sentence-similarity":   # a dense model can be used at fewer dimensions
            self.project.worker.submit("playground-dims", embedding_dims, choice,
                                       on_done=lambda dims: self.on_dims_read(choice, dims))
        note = " Its head is new and untrained: answers are random." if loaded.untrained_head else ""
        self.set_state(f"<b>{escape(choice.describe())}</b> · {task.title}.{note}", "tight" if note else "ok")
        if loaded.task_key == "regression":
            self.cls_text.setPlaceholderText("Type a text: the model predicts a number.")
        self.cls_pair.setVisible(pair is not False)   # a single-text classifier has no second text
        if pair is False:
            self.cls_pair.clear()   # a hidden pair text must not ride along with the next question

    def on_dims_read(self, choice, dims) -> None:
        if choice == self.loaded_choice:   # not a model picked before the one shown now
            self.dims.set_dims(dims)

    def set_state(self, html: str, level: str = "unknown") -> None:
        color = theme.muted_text() if level == "unknown" else theme.status_color(level)
        self.state.setText(f"<span style='color:{theme.hex_of(color)}'>{html}</span>")

    # -- asking --------------------------------------------------------------------------------------
    def ask(self, fn, *args, on_done=None, **kw) -> bool:
        if self.loaded is None:
            return False
        self.set_state("Working …")
        relay = self.relay = Progress(self)
        relay.progressed.connect(self.on_progress)
        if fn is playground.search:   # the one question that can take a while: a large corpus
            kw["progress"] = relay
        self._set_busy(True)
        done = on_done or self.on_answer
        self.worker.submit("ask", fn, self.loaded, *args, **kw,
                           on_done=lambda result: (self._set_busy(False), done(result)),
                           on_error=self.on_failed)
        return True

    def on_progress(self, done: int, total: int, text: str) -> None:
        self.busy.setRange(0, max(total, 0))
        self.busy.setValue(done)
        self.busy.setTextVisible(total > 0)
        self.busy.setFormat(f"{text}: {done:,} of {total:,}" if total > 0 else text)

    def on_failed(self, exc: Exception) -> None:
        self._set_busy(False)
        self.set_state("Cancelled." if isinstance(exc, Cancelled) else escape(str(exc)),
                       "tight" if isinstance(exc, Cancelled) else "over")

    def cancel(self) -> None:
        if self.relay is not None:
            self.relay.cancel()

    def _set_busy(self, on: bool) -> None:
        self.busy.setRange(0, 0)
        self.busy.setTextVisible(False)
        self.busy.setVisible(on)
        self.cancel_button.setVisible(on)
        if not on:
            self.relay = None

    def run_current(self) -> None:
        index = self.stack.currentIndex()
        button = {0: self.cls_button, 1: self.search_button, 2: self.fill_button, 3: self.tag_button}.get(index)
        if button is not None:
            button.click()

    def on_answer(self, result: dict) -> None:
        self.last = result
        self.set_state(f"<b>{escape(self.loaded_choice.describe())}</b> · {get_task(self.loaded.task_key).title}.",
                       "ok")
        if "labels" in result:
            best = result["labels"][0]
            self.cls_value.setText(f"Predicted class: <b>{escape(best['label'])}</b> ({best['score'] * 100:.1f}%). "
                                   "Probabilities of every class:")
            self.cls_bars.set_items([(x["label"], x["score"]) for x in result["labels"]])
        elif "score" in result and "masks" not in result:
            self.cls_bars.clear()
            self.cls_value.setText(f"<span style='font-size:22px'><b>{result['score']:.4f}</b></span> predicted value")
        elif "masks" in result:
            self._show_fill(result)
        elif "entities" in result:
            self._show_tags(result)
        self.answered.emit(result)

    def _show_fill(self, result: dict) -> None:
        while self.fill_layout.count():
            item = self.fill_layout.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        for n, options in enumerate(result["masks"], 1):
            title = QLabel(f"<b>Mask {n}</b>" if len(result["masks"]) > 1 else "<b>Most likely words</b>")
            bars = BarList()
            bars.set_items([(o["token"], o["score"]) for o in options])
            best = QLabel(f"<span style='color:{theme.hex_of(theme.muted_text())}'>“{escape(options[0]['sequence'])}”"
                          "</span>", wordWrap=True)
            for w in (title, best, bars):
                self.fill_layout.addWidget(w)
        self.fill_layout.addStretch()

    def _show_tags(self, result: dict) -> None:
        text, types = result["text"], sorted({e["type"] for e in result["entities"]})
        colors = {t: QColor.fromHsl(ENTITY_HUES[i % len(ENTITY_HUES)], 170, 200 if not theme.is_dark() else 70)
                  for i, t in enumerate(types)}
        parts, at = [], 0
        for e in result["entities"]:
            parts.append(escape(text[at:e["char_start"]]))
            parts.append(f"<span style='background:{theme.hex_of(colors[e['type']])}'>&nbsp;"
                         f"{escape(text[e['char_start']:e['char_end']])} <b><small>{escape(e['type'])}</small></b>"
                         "&nbsp;</span>")
            at = e["char_end"]
        parts.append(escape(text[at:]))
        legend = " ".join(f"<span style='background:{theme.hex_of(colors[t])}'>&nbsp;{escape(t)}&nbsp;</span>"
                          for t in types) or "no entities found"
        rows = "".join(f"<tr><td>{escape(e['text'])}</td><td>{escape(e['type'])}</td><td align='right'>"
                       f"{e['score']:.2f}</td></tr>" for e in result["entities"])
        table = f"<table cellspacing='0' cellpadding='3'><tr><th align='left'>Entity</th><th align='left'>Type</th>" \
                f"<th>Confidence</th></tr>{rows}</table>" if rows else ""
        self.tag_view.setHtml(f"<p style='font-size:16px; line-height:170%'>{''.join(parts)}</p>"
                              f"<p>{legend}</p>{table}")

    # -- search --------------------------------------------------------------------------------------
    def documents(self) -> list[str]:
        return [line.strip() for line in self.corpus.toPlainText().splitlines() if line.strip()]

    def _count_corpus(self) -> None:
        n = len(self.documents())
        over = f" — the first {playground.MAX_CORPUS:,} are searched" if n > playground.MAX_CORPUS else ""
        self.corpus_count.setText(f"{n:,} document{'s' if n != 1 else ''}{over}")

    def take_corpus(self) -> None:
        choice = self.loaded_choice
        if choice is None:
            return
        self.corpus_count.setText("Reading the run's data …")
        self.project.worker.submit("playground-corpus", lambda: playground.data_corpus(choice.record),
                                   on_done=lambda docs: self.corpus.setPlainText("\n".join(docs)),
                                   on_error=lambda exc: self.corpus_count.setText(escape(str(exc))))

    def search(self) -> None:
        """Encode the corpus the first time (progress, Cancel), then search the kept index."""
        self.ask(playground.search, self.query.text(), self.documents(), index=self.index, dim=self.dims.dim(),
                 on_done=self.on_search)

    def on_dims_dim_changed(self, dim) -> None:
        if self.hits.rowCount() and self.query.text().strip():   # show the results at the new size
            self.search()

    def on_search(self, result: dict) -> None:
        self.index = result["index"]
        self.on_answer(result)
        size = f" at {result['dim']} dimensions" if result.get("dim") else ""
        self.set_state(f"<b>{escape(self.loaded_choice.describe())}</b> · searched {result['corpus']:,} documents"
                       f"{size} (encoded once: the next queries reuse them).", "ok")
        self.hits.setRowCount(len(result["results"]))
        for row, hit in enumerate(result["results"]):
            for col, value in enumerate((str(hit["rank"]), f"{hit['score']:.4f}", hit["text"])):
                item = QTableWidgetItem(value)
                item.setToolTip(hit["text"])
                if col < 2:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.hits.setItem(row, col, item)
        self.heatmap.clear("Select a result to see its MaxSim map.")
        if result["late"] and result["results"]:
            self.hits.selectRow(0)

    def show_maxsim(self, row: int) -> None:
        if self.last is None or not self.last.get("late") or not 0 <= row < len(self.last.get("results", [])):
            return
        doc = self.last["results"][row]["text"]
        self.ask(playground.maxsim_map, self.last["query"], doc, on_done=self.on_maxsim)

    def on_maxsim(self, result: dict) -> None:
        self.heatmap.set_map(result)
        expansion = sum(t == "[MASK]" for t in result["query_tokens"])
        self.heat_title.setText(
            f"<b>MaxSim {result['total']:.3f}</b> = the sum of the {len(result['row_max'])} row maxima: each query "
            "token (row) adds its best similarity to a document token (framed)."
            + (f" <span style='color:{theme.hex_of(theme.muted_text())}'>The {expansion} [MASK] rows are ColBERT's "
               "query expansion.</span>" if expansion else ""))
        self.set_state(f"<b>{escape(self.loaded_choice.describe())}</b> · MaxSim {result['total']:.3f} for the "
                       "selected document.", "ok")
        self.answered.emit(result)

    def shutdown(self) -> None:
        self.worker.pool.waitForDone(30_000)


if __name__ == "__main__":
    from raclate_app.pages import run_alone
    sys.exit(run_alone(PlaygroundPage))
