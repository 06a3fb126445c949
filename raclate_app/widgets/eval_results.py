"""EvalResults: what the Evaluate page shows after a run — the metrics (this model, the base model and
the change), then per task: per-class scores, the confusion matrix and the misclassified examples
(worst first), the worst queries with what was retrieved instead, or per-entity-type scores."""
from __future__ import annotations

import math
from html import escape

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (QHeaderView, QLabel, QSplitter, QTableWidget, QTableWidgetItem, QTabWidget, QTreeWidget,
                               QTreeWidgetItem, QVBoxLayout, QWidget)

from engine.metrics import greater_is_better
from raclate_app import theme
from raclate_app.widgets.heatmap import ConfusionMatrixView

NAMES = {"ndcg@10": "NDCG@10", "mrr@10": "MRR@10", "recall@1": "Recall@1", "recall@5": "Recall@5",
         "recall@10": "Recall@10", "map": "MAP", "accuracy": "Accuracy", "macro_f1": "Macro-F1",
         "pearson": "Pearson", "spearman": "Spearman", "mse": "Mean squared error", "mae": "Mean absolute error",
         "precision": "Entity precision", "recall": "Entity recall", "f1": "Entity F1", "perplexity": "Perplexity",
         "pearson_cosine": "Pearson (score vs label)", "spearman_cosine": "Spearman (score vs label)"}


def scalar_metrics(metrics: dict) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:,.2f}" if abs(value) >= 100 else f"{value:.4f}"


def _item(text: str, align_right: bool = True, tip: str = "") -> QTableWidgetItem:
    item = QTableWidgetItem(text)
    item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
    if align_right:
        item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    if tip:
        item.setToolTip(tip)
    return item


def _table(headers: list[str]) -> QTableWidget:
    table = QTableWidget(0, len(headers))
    table.setHorizontalHeaderLabels(headers)
    table.verticalHeader().hide()
    table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
    table.setAlternatingRowColors(True)
    header = table.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)   # names take the room, numbers stay tight
    header.setStretchLastSection(False)
    return table


class EvalResults(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.result: dict | None = None
        self.summary = QLabel(wordWrap=True)
        self.metrics = _table(["Metric", "Base model", "This model", "Change"])
        self.per_class = _table(["Class", "Precision", "Recall", "F1", "Support"])
        self.confusion = ConfusionMatrixView()
        self.worst = QTreeWidget()
        self.worst.setHeaderLabels(["Query / retrieved instead", "Rank of the right document", "Score"])
        self.worst.setWordWrap(True)
        self.worst.setAlternatingRowColors(True)
        self.worst.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.worst.header().setStretchLastSection(False)
        self.per_type = _table(["Entity type", "Precision", "Recall", "F1", "Support"])
        self.wrong = _table(["Text", "True label", "Predicted", "Confidence"])
        self.wrong.setWordWrap(False)
        self.wrong_note = QLabel(wordWrap=True)
        self.wrong_box = QWidget()
        wrong_layout = QVBoxLayout(self.wrong_box)
        wrong_layout.setContentsMargins(0, 4, 0, 0)
        wrong_layout.addWidget(self.wrong_note)
        wrong_layout.addWidget(self.wrong, 1)
        self.tabs = QTabWidget()
        split = QSplitter(Qt.Orientation.Horizontal)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.summary)
        left_layout.addWidget(self.metrics, 1)
        split.addWidget(left)
        split.addWidget(self.tabs)
        split.setChildrenCollapsible(False)
        split.setSizes([460, 760])
        left.setMinimumWidth(380)
        self.split = split
        self.placeholder = QLabel(wordWrap=True, alignment=Qt.AlignmentFlag.AlignCenter)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.placeholder, 1)
        layout.addWidget(split, 1)
        self.show_message("The results appear here: the task's metrics for this model and its base model side by "
                          "side, and per class, per entity type or the worst queries with what was retrieved instead.")

    def show_message(self, text: str, level: str = "unknown") -> None:
        color = theme.muted_text() if level == "unknown" else theme.status_color(level)
        self.placeholder.setText(f"<span style='color:{theme.hex_of(color)}'>{escape(text)}</span>")
        self.placeholder.show()
        self.split.hide()
        self.metrics.setRowCount(0)
        self.tabs.clear()

    # -- results -------------------------------------------------------------------------------------
    def show_result(self, result: dict) -> None:
        self.result = result
        self.placeholder.hide()
        self.split.show()
        ours, base = result["model"], result.get("base")
        rows = f"{ours['rows']:,} rows"
        if "queries" in ours:
            rows += f" ({ours['queries']:,} queries, a corpus of {ours['corpus']:,} documents)"
        text = f"<b>{escape(result['choice'])}</b> on {rows}."
        if base:
            name = str(result["base_name"])
            name = "all-MiniLM-L6-v2 (built in)" if name == "default" else name.rstrip("/").rsplit("/", 1)[-1]
            text += f" Compared with the base model it started from, <b>{escape(name)}</b>."
            if result.get("base_untrained_head"):
                text += (f" <span style='color:{theme.hex_of(theme.muted_text())}'>The base model has no "
                         f"{escape(ours['task_key'])} head yet (a new, untrained one), so its scores are chance "
                         "level.</span>")
        self.summary.setText(self._headline(ours, base) + text)
        self._fill_metrics(scalar_metrics(ours["metrics"]), scalar_metrics(base["metrics"]) if base else None)
        self.tabs.clear()
        metrics = ours["metrics"]
        if "per_class" in metrics:
            self._fill_scores(self.per_class, metrics["per_class"])
            self.tabs.addTab(self.per_class, "Per class")
            names = list(metrics["per_class"])
            self.confusion.set_matrix(metrics["confusion_matrix"], names)
            self.tabs.addTab(self.confusion, "Confusion matrix")
        if "misclassified" in metrics:
            self._fill_wrong(metrics["misclassified"], ours["rows"])
            self.tabs.addTab(self.wrong_box, f"Misclassified ({len(metrics['misclassified'])})")
        if "per_type" in metrics:
            self._fill_scores(self.per_type, metrics["per_type"])
            self.tabs.addTab(self.per_type, "Per entity type")
        if ours.get("worst") is not None:
            self._fill_worst(ours["worst"])
            self.tabs.addTab(self.worst, f"Worst queries ({len(ours['worst'])})")
        self.tabs.setVisible(self.tabs.count() > 0)

    @staticmethod
    def _headline(ours: dict, base: dict | None) -> str:
        """The task's main metric in large type, with the base model's value and the change."""
        from raclate_app.runs import MAIN_METRICS
        values = scalar_metrics(ours["metrics"])
        name = next((n for n in MAIN_METRICS.get(ours.get("task_key"), ()) if n in values), None)
        if name is None:
            return ""
        line = f"<span style='font-size:20px'><b>{NAMES.get(name, name)} {fmt(values[name])}</b></span>"
        before = scalar_metrics(base["metrics"]).get(name) if base else None
        if before is not None and not math.isnan(before) and not math.isnan(values[name]):
            delta = values[name] - before
            good = (delta > 0) == greater_is_better(name)
            color = theme.hex_of(theme.status_color("ok" if good else "over")) if abs(delta) > 1e-12 else ""
            line += (f" &nbsp; base model {fmt(before)}, <span style='color:{color}'>{delta:+.4f}</span>")
        return line + "<br>"

    def _fill_metrics(self, ours: dict, base: dict | None) -> None:
        self.metrics.setColumnHidden(1, base is None)
        self.metrics.setColumnHidden(3, base is None)
        self.metrics.setRowCount(len(ours))
        for row, (name, value) in enumerate(ours.items()):
            self.metrics.setItem(row, 0, _item(NAMES.get(name, name), False, name))
            self.metrics.setItem(row, 2, _item(fmt(value)))
            if base is None:
                continue
            before = base.get(name)
            self.metrics.setItem(row, 1, _item(fmt(before)))
            if before is None or math.isnan(before) or math.isnan(value):
                self.metrics.setItem(row, 3, _item("–"))
                continue
            delta = value - before
            better = (delta > 0) == greater_is_better(name)
            item = _item(f"{delta:+.4f}" if abs(delta) < 100 else f"{delta:+,.2f}")
            if abs(delta) > 1e-12:
                item.setForeground(QColor(theme.status_color("ok" if better else "over")))
            self.metrics.setItem(row, 3, item)

    def _fill_scores(self, table: QTableWidget, scores: dict) -> None:
        table.setRowCount(len(scores))
        for row, (name, s) in enumerate(scores.items()):
            table.setItem(row, 0, _item(str(name), False))
            for col, key in enumerate(("precision", "recall", "f1"), 1):
                table.setItem(row, col, _item(f"{s.get(key, 0):.3f}"))
            table.setItem(row, 4, _item(f"{s.get('support', 0):,}"))

    def _fill_wrong(self, rows: list[dict], total: int) -> None:
        """The wrong predictions, worst first (least probability on the right label)."""
        muted = theme.hex_of(theme.muted_text())
        self.wrong_note.setText(f"<span style='color:{muted}'>" + (
            f"The {len(rows)} examples the model got most wrong, worst first: the least probability on the right "
            "label. Confidence is the probability of the predicted label." if rows else
            f"Every one of the {total:,} examples was classified right.") + "</span>")
        over = QColor(theme.status_color("over"))
        self.wrong.setRowCount(len(rows))
        for row, item in enumerate(rows):
            text = item["text"] + (f"  ‖  {item['text_pair']}" if item.get("text_pair") else "")
            tip = (f"{text}\n\nRow {item['row'] + 1}: {item['label']} (probability {item['label_score']:.3f}), "
                   f"predicted {item['predicted']} ({item['confidence']:.3f})")
            self.wrong.setItem(row, 0, _item(text, False, tip))
            self.wrong.setItem(row, 1, _item(item["label"], False))
            predicted = _item(item["predicted"], False)
            predicted.setForeground(over)
            self.wrong.setItem(row, 2, predicted)
            self.wrong.setItem(row, 3, _item(f"{item['confidence'] * 100:.1f}%"))

    def _fill_worst(self, worst: list[dict]) -> None:
        self.worst.clear()
        ok, over = QColor(theme.status_color("ok")), QColor(theme.status_color("over"))
        for item in worst:
            top = QTreeWidgetItem([item["query"], f"{item['gold_rank']}", ""])
            top.setToolTip(0, f"Query: {item['query']}\n\nRight document: {item['gold']}")
            font = top.font(0)
            font.setBold(True)
            top.setFont(0, font)
            gold = QTreeWidgetItem([f"right document: {item['gold']}", f"rank {item['gold_rank']}",
                                    f"{item['gold_score']:.3f}"])
            gold.setForeground(0, ok)
            gold.setToolTip(0, item["gold"])
            top.addChild(gold)
            for rank, doc in enumerate(item["retrieved"], 1):
                mark = "✓ " if doc["relevant"] else ""
                child = QTreeWidgetItem([f"{rank}. {mark}{doc['text']}", "", f"{doc['score']:.3f}"])
                child.setToolTip(0, doc["text"])
                if not doc["relevant"]:
                    child.setForeground(0, over)
                top.addChild(child)
            self.worst.addTopLevelItem(top)
            top.setExpanded(len(worst) <= 5 or self.worst.topLevelItemCount() <= 3)
        for col in (1, 2):
            self.worst.resizeColumnToContents(col)
