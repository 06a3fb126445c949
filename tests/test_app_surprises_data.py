"""The Data page and the app state without surprises (issue 18): the task each file fits, explained, with
a choice when several fit; one state every page follows (also after a relaunch and a failed open); the
text encoding of a file; files the app cannot read are refused with a message."""
from __future__ import annotations

import json

import pytest

from tests.test_app_support import (app_settings, data_page, drop_paths, project, screenshots, shot, wait_checked,  # noqa: F401
                                    wait_idle, window, write_jsonl)

pytestmark = pytest.mark.gui
CATEGORIES = ("sports", "tech", "politics", "business")


def ratings_csv(path, n=60):
    path.write_text("review_text,rating\n" + "".join(f"the food at place {i} was fine,{i % 5 + 1}\n" for i in range(n)))
    return path


def open_and_wait(qtbot, page, path):
    with qtbot.waitSignal(page.project.source_changed, timeout=20_000):
        page.open_paths([path])


# -- task inference -------------------------------------------------------------------------------------------
def test_a_rating_is_a_label_and_the_page_asks_classes_or_score(qtbot, data_page, project, tmp_path, screenshots):
    open_and_wait(qtbot, data_page, ratings_csv(tmp_path / "reviews.csv"))
    assert project.task_key == "classification"                          # never masked LM with a label at hand
    assert project.mapping == {"review_text": "text", "rating": "label"}
    box = data_page.choice_box
    assert box.isVisible() and list(box.buttons) == ["classification", "regression"]
    assert box.buttons["classification"].isChecked()
    reasons = " ".join(label.text() for label in box.findChildren(type(box.header)))
    assert "“rating” has 5 values (1–5): 5 classes" in reasons and "number from 1 to 5" in reasons
    assert data_page.task_combo.currentData() == "classification"
    wait_checked(qtbot, project)
    assert project.blocking_problem() is None
    shot(data_page, screenshots, "data_task_choice")
    box.buttons["regression"].click()                                      # the other reading of the same column
    assert project.task_key == "regression" and project.mapping["rating"] == "label"
    assert data_page.task_combo.currentData() == "regression" and not box.buttons["classification"].isChecked()
    wait_checked(qtbot, project)
    assert project.blocking_problem() is None and project.training_values()["is_regression"] is True


def test_switching_task_keeps_the_label_and_speaks_gui_words(qtbot, data_page, project, tmp_path, screenshots):
    open_and_wait(qtbot, data_page, ratings_csv(tmp_path / "reviews.csv"))
    data_page.task_combo.setCurrentIndex(data_page.task_combo.findData("masked-lm"))
    data_page.task_combo.setCurrentIndex(data_page.task_combo.findData("classification"))
    assert project.mapping["rating"] == "label"                           # not left on ignore
    combo = data_page.mapping.combos["rating"]
    combo.setCurrentIndex(combo.findData("ignore"))
    wait_checked(qtbot, project)
    text = data_page.report.toPlainText() + data_page.blocking.text()
    assert "label_field" not in text and "columns={" not in text
    assert "Column roles" in text and "rating" in text
    assert "ready" not in data_page.blocking.text()
    shot(data_page, screenshots, "data_missing_label")


def test_the_task_follows_each_file(qtbot, data_page, project, tmp_path):
    big = tmp_path / "big.csv"
    with open(big, "w") as fh:
        fh.write("text,category\n")
        for start in range(0, 200_000, 20_000):
            fh.write("".join(f"news story {i} about this and that,{CATEGORIES[i % 4]}\n"
                             for i in range(start, start + 20_000)))
    project.schedule_validation = lambda: None   # only the task matters here, not the full check of 200k rows
    open_and_wait(qtbot, data_page, big)
    assert project.task_key == "classification" and project.mapping == {"text": "text", "category": "label"}
    assert not data_page.choice_box.buttons and "4 values" in data_page.choice_box.header.text()
    faq = write_jsonl(tmp_path / "faq.jsonl", [{"question": f"q {i}?", "answer": f"a {i}."} for i in range(20)])
    open_and_wait(qtbot, data_page, faq)
    assert project.task_key == "sentence-similarity" and data_page.task_combo.currentData() == "sentence-similarity"
    assert project.mapping == {"question": "text", "answer": "text_pair"}
    notes = write_jsonl(tmp_path / "notes.jsonl", [{"text": f"a note about item {i}"} for i in range(20)])
    open_and_wait(qtbot, data_page, notes)
    assert project.task_key == "masked-lm" and project.settings.get("task/last") == "masked-lm"


# -- one state ------------------------------------------------------------------------------------------------
def test_after_a_relaunch_the_task_box_and_the_roles_agree(qtbot, app_settings, tmp_path, screenshots):
    from raclate_app.window import MainWindow
    app_settings.set("task/last", "classification")
    win = MainWindow(settings=app_settings)
    qtbot.addWidget(win)
    win.resize(1360, 860)
    win.show()
    data, model = win.pages["data"], win.pages["model"]
    assert win.project.task_key == "classification"
    assert data.task_combo.currentData() == "classification" and model.task_buttons["classification"].isChecked()
    path = write_jsonl(tmp_path / "reviews.jsonl", [{"text": f"review {i} here", "label": "ab"[i % 2]}
                                                    for i in range(20)])
    with qtbot.waitSignal(win.project.source_changed, timeout=20_000):
        data.open_paths([path])
    assert data.task_combo.currentData() == "classification" and data.mapping._task.key == "classification"
    assert data.mapping.summary.text().startswith("Classification needs")
    wait_idle(qtbot, win.project)
    shot(win, screenshots, "window_relaunch_data")


def test_a_failed_open_unloads_the_previous_file(qtbot, window, tmp_path, screenshots):
    p, data, train = window.project, window.pages["data"], window.pages["train"]
    good = write_jsonl(tmp_path / "faq.jsonl", [{"question": f"q {i}?", "answer": f"a {i}."} for i in range(20)])
    with qtbot.waitSignal(p.source_changed, timeout=20_000):
        drop_paths(window, [good])
    wait_checked(qtbot, p)
    assert train.start_button.isEnabled()
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "fine"}\n{"text": oops}\n')
    with qtbot.waitSignal(p.source_failed, timeout=20_000):
        drop_paths(window, [broken])
    wait_idle(qtbot, p)
    assert p.preview is None and p.source == "" and p.check is None
    assert not train.start_button.isEnabled() and "Choose training data" in train.blocking.text()
    assert "ready" not in data.blocking.text() and not data.next_button.isEnabled()
    assert "Opening" not in window.statusBar().currentMessage()
    assert "broken.jsonl" in window.statusBar().currentMessage()
    assert data.error_label.isVisible() and "no data is loaded" in data.error_label.text()
    assert "line 2" in data.error_label.text()
    assert window.status_label.text().startswith("no data")
    assert "✓" not in window.sidebar.item(0).text()
    shot(window, screenshots, "data_open_failed")


def test_the_previous_report_goes_at_once(qtbot, data_page, project, tmp_path):
    first = write_jsonl(tmp_path / "faq.jsonl", [{"question": f"q {i}?", "answer": f"a {i}."} for i in range(20)])
    open_and_wait(qtbot, data_page, first)
    wait_checked(qtbot, project)
    assert "No problems" in data_page.report.toPlainText()
    second = write_jsonl(tmp_path / "more.jsonl", [{"question": f"q {i}?", "answer": f"a {i}."} for i in range(7)])
    project.validate_now()                     # a check of the first file still running …
    data_page.open_paths([second])              # … when the next file is dropped
    assert project.check is None and "Opening more.jsonl" in data_page.report.toPlainText()
    assert "Opening" in data_page.blocking.text() and project.blocking_problem().startswith("Opening")
    wait_checked(qtbot, project)
    assert sum(project.check.report.num_rows.values()) == 7             # the first file's late report was dropped


def test_ticks_only_on_visited_pages_and_next_needs_data(qtbot, window, screenshots):
    data, model = window.pages["data"], window.pages["model"]
    assert not data.next_button.isEnabled() and not model.next_button.isEnabled()
    shot(window, screenshots, "window_no_data_next_disabled")
    window.load_demo()
    wait_checked(qtbot, window.project)
    assert data.next_button.isEnabled() and model.next_button.isEnabled()
    assert window.sidebar.item(0).text().endswith("✓")
    assert "✓" not in window.sidebar.item(1).text()                       # Model & Task was never opened
    data.next_button.click()
    assert window.current_page_key() == "model" and window.sidebar.item(1).text().endswith("✓")


# -- encodings ----------------------------------------------------------------------------------------------
def test_a_latin1_file_reads_in_its_encoding(qtbot, data_page, project, tmp_path, screenshots):
    path = tmp_path / "avis.csv"
    lines = ["review_text,rating", "the coffee was good,4", "Très bon café et gâteau,5", "Un peu trop sucré,2"]
    path.write_bytes(("\n".join(lines + [f"plain review {i},{i % 5 + 1}" for i in range(30)]) + "\n").encode("latin-1"))
    open_and_wait(qtbot, data_page, path)
    model = data_page.table_model
    assert model.data(model.index(1, 0)) == "Très bon café et gâteau"
    assert project.encoding == "cp1252" and data_page.source_bar.encoding.currentData() == "cp1252"
    note = data_page.encoding_note
    assert note.isVisible() and "Line 3 of avis.csv is not UTF-8" in note.text() and "Windows-1252" in note.text()
    wait_checked(qtbot, project)
    assert project.check.report.ok
    assert project.data_args()["encoding"] == "cp1252"
    assert project.run_config(tmp_path / "out")["data"]["encoding"] == "cp1252"
    shot(data_page, screenshots, "data_latin1")
    # a wrong choice says why and what to choose; the right one reads the same characters
    bar = data_page.source_bar
    with qtbot.waitSignal(project.source_failed, timeout=20_000):
        bar.encoding.setCurrentIndex(bar.encoding.findData("utf-8"))
        bar.encoding.activated.emit(bar.encoding.currentIndex())
    assert project.preview is None and data_page.error_label.isVisible()
    text = data_page.error_label.text()
    assert "line 3" in text and "Encoding" in text and "--encoding" not in text
    assert bar.encoding.currentData() == "utf-8"
    shot(data_page, screenshots, "data_wrong_encoding")
    with qtbot.waitSignal(project.source_changed, timeout=20_000):
        bar.encoding.setCurrentIndex(bar.encoding.findData("latin-1"))
        bar.encoding.activated.emit(bar.encoding.currentIndex())
    assert project.preview is not None and model.data(model.index(1, 0)) == "Très bon café et gâteau"
    assert project.encoding == "latin-1" and not data_page.error_label.isVisible() and not note.isVisible()
    wait_idle(qtbot, project)


# -- files it cannot read -------------------------------------------------------------------------------------
def test_a_dropped_txt_is_refused_with_a_message(qtbot, window, tmp_path, screenshots):
    notes = tmp_path / "notes.txt"
    notes.write_text("one text per line\nanother one\n")
    window.go_to("train")
    drop = drop_paths(window, [notes])
    assert not drop.isAccepted()
    data = window.pages["data"]
    assert window.current_page_key() == "data" and data.error_label.isVisible()
    text = data.error_label.text()
    for word in ("notes.txt", ".csv", ".tsv", ".jsonl", ".json", ".parquet", "folder"):
        assert word in text, word
    assert "notes.txt" in window.statusBar().currentMessage()
    assert window.project.preview is None
    shot(window, screenshots, "data_txt_refused")


def test_choices_survive_a_json_roundtrip_of_the_run_config(qtbot, data_page, project, tmp_path):
    """The run config the Train page writes holds the inferred task and mapping (and no encoding for UTF-8)."""
    open_and_wait(qtbot, data_page, ratings_csv(tmp_path / "reviews.csv"))
    wait_checked(qtbot, project)
    config = json.loads(json.dumps(project.run_config(tmp_path / "out")))
    assert config["task"] == "text-classification" and config["training"]["is_regression"] is False
    assert config["data"]["columns"]["label"] == "rating" and config["data"]["encoding"] is None
