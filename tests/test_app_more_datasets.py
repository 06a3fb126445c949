"""Data page with several files: drop several (or "Add another file…"), each file with its own column
roles, the run config carries them all; one file stays exactly as before."""
from __future__ import annotations

import pytest
from PySide6.QtWidgets import QPushButton

from tests.test_app_support import (app_settings, data_page, drop_paths, project, screenshots, shot,  # noqa: F401
                                    wait_checked, wait_idle, write_jsonl)

pytestmark = pytest.mark.gui


def pairs_and_scored(folder):
    pairs = write_jsonl(folder / "pairs.jsonl", [{"question": f"Question {i}?", "answer": f"Answer {i}."}
                                                 for i in range(30)])
    scored = write_jsonl(folder / "scored.jsonl", [{"sentence1": f"A cat {i}", "sentence2": f"A dog {i}",
                                                    "score": i / 20} for i in range(20)])
    return pairs, scored


def test_drop_two_files_each_with_its_roles_in_the_run_config(qtbot, data_page, project, tmp_path, screenshots):
    pairs, scored = pairs_and_scored(tmp_path)
    with qtbot.waitSignal(project.datasets_changed, timeout=10_000):
        drop_paths(data_page, [pairs, scored])
    qtbot.waitUntil(lambda: project.preview is not None and bool(project.more), timeout=10_000)
    assert project.source == str(pairs) and [d["name"] for d in project.more] == ["scored"]
    assert project.more[0]["mapping"] == {"sentence1": "text", "sentence2": "text_pair", "score": "label"}
    box = data_page.more
    assert len(box.editors) == 1 and box.sampling_row.isVisibleTo(data_page)
    assert box.editors[0].combos["score"].currentData() == "label"

    box.editors[0].combos["score"].setCurrentIndex(box.editors[0].combos["score"].findData("ignore"))
    assert project.more[0]["mapping"]["score"] == "ignore"
    box.sampling.setCurrentIndex(box.sampling.findData("round-robin"))
    wait_checked(qtbot, project)
    assert project.blocking_problem() is None
    data = project.run_config(tmp_path / "out")["data"]
    assert data["sampling"] == "round-robin" and data["eval_data"] is None
    assert [(e["name"], e["path"]) for e in data["data"]] == [("pairs", str(pairs)), ("scored", str(scored))]
    assert data["data"][0]["columns"]["text"] == "question"
    assert data["data"][1]["columns"] == {"label": None, "negative": None, "text": "sentence1",
                                          "text_pair": "sentence2"}
    box.editors[0].combos["score"].setCurrentIndex(box.editors[0].combos["score"].findData("label"))
    wait_idle(qtbot, project)
    assert "✓" in box.statuses[0].text() and not any("set to ignore" in n for n in data_page._mapping_notes())
    shot(data_page, screenshots, "data_more_datasets")


def test_add_and_remove_a_file_and_one_file_is_unchanged(qtbot, data_page, project, tmp_path):
    pairs, scored = pairs_and_scored(tmp_path)
    data_page.open_paths([pairs])
    qtbot.waitUntil(lambda: project.preview is not None, timeout=10_000)
    wait_checked(qtbot, project)
    alone = project.run_config(tmp_path / "out")["data"]
    assert alone["data"] == str(pairs) and alone["columns"]["text"] == "question"
    assert not data_page.more.sampling_row.isVisibleTo(data_page) and data_page.more.add_button.isEnabled()

    with qtbot.waitSignal(project.datasets_changed, timeout=10_000):
        project.add_dataset(str(scored))
    assert len(data_page.more.editors) == 1
    project.add_dataset(str(scored))   # already there: said, not added twice
    assert len(project.more) == 1
    remove = [b for b in data_page.more.findChildren(QPushButton) if b.text() == "Remove"]
    remove[0].click()
    assert project.more == [] and data_page.more.editors == []
    wait_checked(qtbot, project)
    assert project.run_config(tmp_path / "out")["data"] == alone


def test_label_tasks_take_one_file(qtbot, data_page, project, tmp_path):
    reviews = write_jsonl(tmp_path / "reviews.jsonl", [{"text": f"review {i}", "label": ["pos", "neg"][i % 2]}
                                                      for i in range(20)])
    more = write_jsonl(tmp_path / "more.jsonl", [{"text": f"more {i}", "label": ["pos", "neg"][i % 2]}
                                                 for i in range(20)])
    data_page.open_paths([reviews])
    qtbot.waitUntil(lambda: project.preview is not None, timeout=10_000)
    assert project.task_key == "classification"
    assert not data_page.more.add_button.isEnabled() and "one file" in data_page.more.note.text()
    drop_paths(data_page, [reviews, more])   # dropped together anyway: said before training
    qtbot.waitUntil(lambda: bool(project.more), timeout=10_000)
    wait_idle(qtbot, project)
    assert "trains on one file" in project.blocking_problem()


def test_an_added_file_is_checked_with_its_own_roles(qtbot, data_page, project, tmp_path, screenshots):
    pairs, _ = pairs_and_scored(tmp_path)
    bad = write_jsonl(tmp_path / "graded.jsonl", [{"sentence1": f"A {i}", "sentence2": f"B {i}",
                                                   "score": ["high", "low"][i % 2]} for i in range(20)])
    data_page.open_paths([pairs])
    qtbot.waitUntil(lambda: project.preview is not None, timeout=10_000)
    project.add_dataset(str(bad))
    qtbot.waitUntil(lambda: bool(project.more) and project.more[0]["check"] is not None, timeout=30_000)
    assert project.more[0]["mapping"]["score"] == "ignore"   # words are no similarity scores: not guessed as one
    combo = data_page.more.editors[0].combos["score"]
    combo.setCurrentIndex(combo.findData("label"))
    qtbot.waitUntil(lambda: project.more[0]["check"] is not None, timeout=30_000)
    wait_idle(qtbot, project)
    problem = project.blocking_problem()
    assert problem.startswith("graded.jsonl: Fix the data first") and "score" in problem
    assert "✗" in data_page.more.statuses[0].text()
    shot(data_page, screenshots, "data_more_datasets_problem")
    combo.setCurrentIndex(combo.findData("ignore"))   # the scores left out: plain pairs
    qtbot.waitUntil(lambda: project.more[0]["check"] is not None, timeout=30_000)
    wait_idle(qtbot, project)
    assert project.blocking_problem() is None and "✓" in data_page.more.statuses[0].text()
