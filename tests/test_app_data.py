"""Data page: drop → preview + guessed roles, live validation, fatal problems block training,
lazy preview of a large file, the demo button and "what the model sees"."""
from __future__ import annotations

import time

import pytest

from tests.test_app_support import (app_settings, data_page, drop_paths, project, screenshots, shot, wait_checked,  # noqa: F401
                                    wait_idle, window, write_jsonl)

pytestmark = pytest.mark.gui


def test_drop_shows_preview_and_whole_word_guess(qtbot, data_page, project, tmp_path, screenshots):
    rows = [{"question": f"Question {i}?", "answer": f"Answer number {i}.", "context": f"ctx {i}"} for i in range(30)]
    path = write_jsonl(tmp_path / "qa.jsonl", rows)
    with qtbot.waitSignal(project.source_changed, timeout=10_000):
        drop = drop_paths(data_page, [path])
    assert drop.isAccepted()
    model = data_page.table_model
    assert model.rowCount() == 30 and model.columns == ["question", "answer", "context"]
    assert model.data(model.index(0, 0)) == "Question 0?"
    # whole words only: "context" is not taken for "text"
    assert project.mapping == {"question": "text", "answer": "text_pair", "context": "ignore"}
    combos = data_page.mapping.combos
    assert [combos[c].currentData() for c in ("question", "answer", "context")] == ["text", "text_pair", "ignore"]
    assert "→ text" in model.headerData(0, __import__("PySide6.QtCore").QtCore.Qt.Orientation.Horizontal)
    # mapped columns are tinted, ignored ones are not
    from PySide6.QtCore import Qt
    assert model.data(model.index(0, 0), Qt.ItemDataRole.BackgroundRole) is not None
    assert model.data(model.index(0, 2), Qt.ItemDataRole.BackgroundRole) is None
    wait_checked(qtbot, project)
    assert project.check.report.ok and project.blocking_problem() is None
    shot(data_page, screenshots, "data_dropped")


def test_drop_on_window_with_validation_file(qtbot, window, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", [{"anchor": f"a {i}", "positive": f"p {i}"} for i in range(20)])
    dev = write_jsonl(tmp_path / "dev.jsonl", [{"anchor": f"x {i}", "positive": f"y {i}"} for i in range(5)])
    window.go_to("train")
    with qtbot.waitSignal(window.project.source_changed, timeout=10_000):
        drop_paths(window, [dev, train])
    assert window.current_page_key() == "data"
    p = window.project
    assert p.source == str(train) and p.eval_file == str(dev) and p.has_validation_split
    assert not window.pages["data"].split_box.slider.isEnabled()
    wait_checked(qtbot, p)
    assert p.check.report.num_rows == {"train": 20, "validation": 5}
    assert p.data_args()["validation_split"] == 0.0


def test_role_change_updates_report_and_rows_are_clickable(qtbot, data_page, project, tmp_path, screenshots):
    rows = [{"text": f"review {i}", "label": ["pos", "neg"][i % 2], "summary": "" if i in (3, 7, 12) else f"s{i}"}
            for i in range(40)]
    path = write_jsonl(tmp_path / "reviews.jsonl", rows)
    data_page.open_paths([path])
    qtbot.waitUntil(lambda: project.preview is not None, timeout=10_000)
    assert project.task_key == "classification"        # suggested from the columns
    wait_checked(qtbot, project)
    assert not project.check.report.findings
    with qtbot.waitSignal(project.report_changed, timeout=20_000):
        data_page.mapping.combos["summary"].setCurrentIndex(data_page.mapping.combos["summary"].findData("text"))
    wait_checked(qtbot, project)
    assert project.mapping["summary"] == "text" and project.mapping["text"] == "ignore"   # the role moved
    empty = [f for f in project.check.report.findings if f.code == "empty_text"]
    assert empty and empty[0].count == 3 and empty[0].examples == [4, 8, 13]   # jsonl line numbers
    html = data_page.report.toHtml()
    assert "3 empty" in html and "line 8" in html
    data_page.table.clearSelection()
    finding = data_page.report.findings.index(empty[0])
    data_page.report.anchorClicked.emit(__import__("PySide6.QtCore").QtCore.QUrl(f"row:{finding}:1"))
    assert data_page.table.currentIndex().row() == 7                  # line 8 → row index 7
    shot(data_page, screenshots, "data_report_warning")


def test_fatal_problem_disables_train_with_a_message(qtbot, window, tmp_path, screenshots):
    rows = [{"query": f"q {i}", "document": f"d {i}", "score": "high" if i % 5 == 0 else 0.5} for i in range(25)]
    path = write_jsonl(tmp_path / "scored.jsonl", rows)
    p = window.project
    p.set_task("sentence-similarity")
    with qtbot.waitSignal(p.source_changed, timeout=10_000):
        drop_paths(window, [path])
    assert p.mapping == {"query": "text", "document": "text_pair", "score": "label"}
    wait_checked(qtbot, p)
    assert not p.check.report.ok
    train = window.pages["train"]
    assert not train.start_button.isEnabled()
    message = train.blocking.text()
    assert "Fix the data first" in message and "score" in message.lower()
    assert "Fix the data first" in window.pages["data"].blocking.text()
    window.go_to("train")
    shot(window, screenshots, "train_blocked_by_data")
    assert not train.start()                                              # the guard holds programmatically too
    # ignoring the bad score column fixes it: the engine keeps an ignored role unmapped
    combo = window.pages["data"].mapping.combos["score"]
    combo.setCurrentIndex(combo.findData("ignore"))
    wait_checked(qtbot, p)
    assert p.check.report.ok and train.start_button.isEnabled()
    assert p.data_args()["columns"]["label"] is None
    # a required role left unmapped says which one
    combo = window.pages["data"].mapping.combos["document"]
    combo.setCurrentIndex(combo.findData("ignore"))
    assert not train.start_button.isEnabled() and "text pair" in train.blocking.text()


def test_ignoring_a_guessed_column_takes_effect(qtbot, project, tmp_path):
    rows = [{"query": f"q {i}", "document": f"d {i}", "score": "high" if i % 5 == 0 else 0.5} for i in range(25)]
    project.set_task("sentence-similarity")
    project.open_source(str(write_jsonl(tmp_path / "scored.jsonl", rows)))
    qtbot.waitUntil(lambda: project.preview is not None, timeout=10_000)
    project.set_role("score", "ignore")
    wait_checked(qtbot, project)
    assert project.check.report.ok and project.check.columns == {"text": "query", "text_pair": "document"}


def test_fatal_findings_keep_counts_and_lengths(qtbot, project, tmp_path):
    """The check uses load_dataset(strict=False): a fatal finding still shows row counts and lengths."""
    rows = [{"query": f"q {i}", "document": f"d {i}", "score": "high" if i % 5 == 0 else 0.5} for i in range(25)]
    project.set_task("sentence-similarity")
    project.open_source(str(write_jsonl(tmp_path / "scored.jsonl", rows)))
    qtbot.waitUntil(lambda: project.preview is not None and project.tokenizer is not None, timeout=60_000)
    wait_checked(qtbot, project)
    report = project.check.report
    assert not report.ok and sum(report.num_rows.values()) == 25 and report.length_histogram


def test_large_file_previews_at_once(qtbot, data_page, project, tmp_path, monkeypatch):
    path = tmp_path / "big.jsonl"
    line = '{"question": "What is item %d?", "answer": "It is item number %d."}\n'
    with open(path, "w") as fh:
        for start in range(0, 1_000_000, 100_000):
            fh.write("".join(line % (i, i) for i in range(start, start + 100_000)))
    monkeypatch.setattr(project, "schedule_validation", lambda: None)   # this test is about the preview only
    t0 = time.perf_counter()
    with qtbot.waitSignal(project.source_changed, timeout=10_000):
        data_page.open_paths([path])
    elapsed = time.perf_counter() - t0
    print(f"preview of a 1,000,000-row file: {elapsed * 1000:.0f} ms")
    assert elapsed < 3.0
    assert data_page.table_model.rowCount() == 200
    assert project.preview.num_rows_is_estimate and 900_000 < project.preview.num_rows < 1_100_000
    assert "≈" in data_page.info_label.text()


def test_report_link_past_the_preview_reads_the_rows_there(qtbot, data_page, project, tmp_path, monkeypatch):
    rows = [{"question": f"Question {i}?", "answer": f"Answer {i}."} for i in range(5000)]
    path = write_jsonl(tmp_path / "long.jsonl", rows)
    monkeypatch.setattr(project, "schedule_validation", lambda: None)   # only the rows matter here
    with qtbot.waitSignal(project.source_changed, timeout=10_000):
        data_page.open_paths([path])
    assert data_page.table_model.rowCount() == 200
    data_page.on_report_row_clicked(str(path), 4321, "train")          # a finding's example: line 4321
    qtbot.waitUntil(lambda: data_page.table_model.offset > 0, timeout=10_000)
    model, row = data_page.table_model, data_page.table.currentIndex().row()
    assert model.rows[row]["question"] == "Question 4320?"
    assert model.headerData(row, __import__("PySide6.QtCore").QtCore.Qt.Orientation.Vertical) == "4321"
    assert "showing rows" in data_page.info_label.text() and project.preview.num_rows == 5000
    data_page.show_row(2)                                               # back near the top
    qtbot.waitUntil(lambda: data_page.table_model.offset == 0, timeout=10_000)
    assert model.rows[data_page.table.currentIndex().row()]["question"] == "Question 2?"


def test_demo_button_and_what_the_model_sees(qtbot, data_page, project, screenshots):
    assert data_page.stack.currentIndex() == 0 and data_page.empty.demo_button.isVisible()
    shot(data_page, screenshots, "data_empty")
    with qtbot.waitSignal(project.source_changed, timeout=10_000):
        data_page.empty.demo_button.click()
    assert project.task_key == "sentence-similarity" and project.model == "default"
    assert project.source.endswith("commands") and project.has_validation_split   # its own held-out questions
    qtbot.waitUntil(lambda: project.tokenizer is not None, timeout=60_000)
    wait_checked(qtbot, project)
    assert project.blocking_problem() is None
    data_page.table.selectRow(2)
    qtbot.waitUntil(lambda: data_page.model_sees.rendered is not None
                    and "dossier" in data_page.model_sees.rendered["inputs"][0]["text"], timeout=20_000)
    rendered = data_page.model_sees.rendered
    first = rendered["inputs"][0]
    assert [i["role"] for i in rendered["inputs"]] == ["text", "text_pair"]
    assert first["tokens"][0] == "[CLS]" and first["tokens"][-1] == "[SEP]"
    assert "[CLS]" in data_page.model_sees.toPlainText()
    hist = project.check.report.length_histogram        # with the tokenizer in, lengths are checked too
    assert hist and hist["max"] > 0
    shot(data_page, screenshots, "data_demo")


def test_token_classification_file_suggests_the_task(qtbot, data_page, project, screenshots):
    from engine.defaults import RESOURCES_DIR
    data_page.open_paths([RESOURCES_DIR / "demo" / "ner.jsonl"])
    qtbot.waitUntil(lambda: project.preview is not None, timeout=10_000)
    assert project.task_key == "token-classification"
    assert project.mapping == {"tokens": "tokens", "ner_tags": "labels"}
    combo = data_page.mapping.combos["tokens"]
    assert [combo.itemData(i) for i in range(combo.count())] == ["tokens", "labels", "ignore"]
    qtbot.waitUntil(lambda: project.tokenizer is not None, timeout=60_000)
    data_page.table.selectRow(0)
    qtbot.waitUntil(lambda: data_page.model_sees.rendered is not None, timeout=20_000)
    assert "B-PER" in data_page.model_sees.rendered["labels"]
    wait_checked(qtbot, project)
    assert project.check.report.ok
    shot(data_page, screenshots, "data_ner")


def test_unreadable_file_shows_the_engine_message(qtbot, data_page, project, tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"text": "fine"}\n{"text": oops}\n')
    with qtbot.waitSignal(project.source_failed, timeout=10_000):
        data_page.open_paths([path])
    assert data_page.error_label.isVisible()
    assert "line 2" in data_page.error_label.text() and "Fix" in data_page.error_label.text()
