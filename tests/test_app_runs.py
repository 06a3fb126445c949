"""Runs page: runs from fixture folders with every status (a "running" record whose process is gone
is crashed), details, compare curves (legend beside the plots; task, model and data among what
differs), the checkpoint picker, duplicate → the Data and Model & Task pages, resume from a checkpoint
continuing the step count in a real child process, and runs named, renamed, filtered, moved to the
trash and exported from a checkpoint."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from tests.app_fixtures import app_models, trained_run, write_jsonl  # noqa: F401
from tests.test_app_support import (app_settings, project, screenshots, shot, wait_checked, wait_idle,  # noqa: F401
                                    window)

pytestmark = pytest.mark.gui


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def write_run(folder, *, status, started, task="text-classification", metrics=None, pid=None, losses=(2.0, 1.5, 1.2),
              accuracy=(0.4, 0.7), model="default", data="reviews.jsonl", late=False, error=None, model_files=True):
    folder.mkdir(parents=True)
    history = [{"event": "step", "time": 0, "step": s, "loss": v, "learning_rate": 1e-4}
               for s, v in enumerate(losses, 1)]
    history += [{"event": "eval", "time": 0, "step": s, "metrics": {"eval_loss": 1.0 / (i + 1), "accuracy": a}}
                for i, (s, a) in enumerate(zip((0, len(losses)), accuracy))]
    record = {"run_id": folder.name, "status": status, "started": started, "pid": pid, "host": os.uname().nodename,
              "model": model, "task": task, "data": {"data": data, "validation_split": 0.1, "columns": {}},
              "training": {"num_train_epochs": 3.0, "batch_size": 16, "learning_rate": 5e-5, "max_length": 128,
                           "max_steps": -1, "use_late_interaction": late},
              "metrics": metrics or {}, "history": history, "label_info": {"is_regression": False}}
    if error:
        record["error"] = {"kind": "out_of_memory", "message": error, "hint": "Lower the batch size."}
    (folder / "raclate_run.json").write_text(json.dumps(record))
    if model_files:
        (folder / "config.json").write_text("{}")
    return folder


@pytest.fixture
def runs_root(app_settings, tmp_path):
    root = app_settings.runs_root()
    now = time.time()
    write_run(root / "2025-03-01-100000-classification", status="finished", started=now - 5000,
              metrics={"eval_loss": 0.41, "accuracy": 0.875, "macro_f1": 0.86})
    write_run(root / "2025-03-02-100000-classification", status="stopped", started=now - 4000,
              metrics={"accuracy": 0.71}, losses=(2.2, 1.9, 1.7, 1.65), accuracy=(0.3, 0.71))
    write_run(root / "2025-03-03-100000-sentence-similarity", status="crashed", started=now - 3000,
              task="sentence-similarity", error="Ran out of memory: bad_alloc", model_files=False)
    write_run(root / "2025-03-04-100000-late-interaction", status="running", started=now - 2000, pid=dead_pid(),
              task="sentence-similarity", late=True, model_files=False)
    write_run(root / "2025-03-05-100000-masked-lm", status="running", started=now - 1, pid=os.getpid(),
              task="masked-lm", model_files=False)
    (root / "not-a-run").mkdir()
    return root


@pytest.fixture
def page(qtbot, project, runs_root):
    from raclate_app.pages.runs import RunsPage
    page = RunsPage(project)
    qtbot.addWidget(page)
    page.resize(1280, 820)
    page.show()
    qtbot.waitUntil(lambda: len(page.runs) == 5, timeout=20_000)
    return page


def test_lists_every_run_with_its_status(qtbot, page, screenshots):
    rows = {page.table.item(r, 1).text(): [page.table.item(r, c).text() for c in range(8)]
            for r in range(page.table.rowCount())}
    assert list(rows) == ["2025-03-05-100000-masked-lm", "2025-03-04-100000-late-interaction",
                          "2025-03-03-100000-sentence-similarity", "2025-03-02-100000-classification",
                          "2025-03-01-100000-classification"]                       # newest first
    status = {name: row[2] for name, row in rows.items()}
    assert status == {"2025-03-05-100000-masked-lm": "running",            # this process: alive
                      "2025-03-04-100000-late-interaction": "crashed",     # "running" but its process is gone
                      "2025-03-03-100000-sentence-similarity": "crashed",
                      "2025-03-02-100000-classification": "stopped",
                      "2025-03-01-100000-classification": "finished"}
    finished = rows["2025-03-01-100000-classification"]
    assert finished[3] == "Classification" and finished[4] == "all-MiniLM-L6-v2 (built in)"
    assert finished[5] == "reviews.jsonl" and "epochs 3" in finished[7] and "batch 16" in finished[7]
    assert finished[6] == "accuracy 0.8750"
    assert rows["2025-03-04-100000-late-interaction"][3] == "Late interaction (ColBERT)"
    crashed_row = list(rows).index("2025-03-03-100000-sentence-similarity")
    assert "bad_alloc" in page.table.item(crashed_row, 2).toolTip()
    page.table.selectRow(crashed_row)
    assert "Ran out of memory" in page.details.toPlainText()
    assert not page.buttons["export"].isEnabled() and not page.buttons["resume"].isEnabled()
    page.table.selectRow(1)
    assert "ended without a word" in page.details.toPlainText()
    page.table.selectRow(4)
    assert page.buttons["duplicate"].isEnabled() and page.buttons["export"].isEnabled()
    shot(page, screenshots, "runs_list")


def test_compare_two_runs_on_one_plot(qtbot, page, screenshots):
    from PySide6.QtCore import QItemSelectionModel
    model = page.table.selectionModel()
    page.table.selectRow(3)
    model.select(page.table.model().index(4, 0), QItemSelectionModel.SelectionFlag.Select |
                 QItemSelectionModel.SelectionFlag.Rows)
    assert len(page.selected_runs()) == 2
    compare = page.compare
    names = {"2025-03-02-100000-classification", "2025-03-01-100000-classification"}
    assert set(compare.curve_names(compare.loss_plot)) == names
    assert compare.metric_combo.currentText() == "accuracy"
    assert set(compare.curve_names(compare.metric_plot)) == names
    data = {c.name(): c.getData() for c in compare.loss_plot.getPlotItem().listDataItems()}
    assert list(data["2025-03-02-100000-classification"][1]) == [2.2, 1.9, 1.7, 1.65]
    assert "Comparing 2 runs" in compare.hint.text()
    details = page.details.toPlainText()
    assert "accuracy" in details and "0.8750" in details and "0.7100" in details
    assert "Same task, model, data and settings" in details    # the fixture runs differ only in their results
    assert not page.buttons["duplicate"].isEnabled()          # one run at a time
    shot(page, screenshots, "runs_compare")


def test_checkpoint_picker_shows_step_and_metrics(qtbot, project, trained_run, screenshots):
    from raclate_app.runs import read_run
    from raclate_app.widgets.run_compare import CheckpointPicker
    run = read_run(trained_run)
    dialog = CheckpointPicker(run)
    qtbot.addWidget(dialog)
    dialog.show()
    table = dialog.table
    headers = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]
    assert headers[:2] == ["Step", "Saved"] and "accuracy" in headers and "eval_loss" in headers
    assert [table.item(r, 0).text() for r in range(table.rowCount())] == ["4", "2"]    # newest first
    assert table.item(0, headers.index("accuracy")).text() != "–"
    assert dialog.selected().step == 4
    shot(dialog, screenshots, "runs_checkpoint_picker")
    export = CheckpointPicker(run, purpose="export")                  # the same list picks what to export
    qtbot.addWidget(export)
    export.show()
    assert export.windowTitle().startswith("Export") and export.buttons.buttons()[0].text() in ("Export…", "Cancel")
    shot(export, screenshots, "runs_checkpoint_picker_export")
    # train_run records its process, so a reader can tell a live run from a dead one
    assert run.record["pid"] == os.getpid() and run.record["host"] == os.uname().nodename
    assert run.status == "finished" and run.has_model


def test_duplicate_fills_the_data_and_model_pages(qtbot, window, app_models, tmp_path):
    data = write_jsonl(tmp_path / "stars.jsonl", [{"review": f"good {i}", "stars": ["1", "5"][i % 2],
                                                   "source": "web"} for i in range(30)])
    root = window.settings.runs_root()
    folder = write_run(root / "2025-04-01-100000-classification", status="finished", started=time.time(),
                       model=str(app_models["base"]), data=str(data))
    record = json.loads((folder / "raclate_run.json").read_text())
    record["data"]["columns"] = {"text": "review", "label": "stars", "text_pair": None}
    record["training"].update(batch_size=8, learning_rate=3e-4, max_length=64, num_train_epochs=2.0, seed=7,
                              output_dir=str(folder), resume_from_checkpoint="latest")
    (folder / "raclate_run.json").write_text(json.dumps(record))
    runs = window.pages["runs"]
    runs.refresh()
    qtbot.waitUntil(lambda: len(runs.runs) == 1, timeout=20_000)
    runs.table.selectRow(0)
    runs.buttons["duplicate"].click()
    p = window.project
    qtbot.waitUntil(lambda: p.source == str(data) and p.mapping.get("review") == "text", timeout=30_000)
    assert window.current_page_key() == "data"
    assert p.task_key == "classification" and p.model == str(app_models["base"])
    assert p.mapping == {"review": "text", "stars": "label", "source": "ignore"}
    model_page = window.pages["model"]
    qtbot.waitUntil(lambda: model_page.summary is not None and model_page.summary.name == p.model, timeout=30_000)
    wait_checked(qtbot, p)
    values = p.training_values()
    assert (values["batch_size"], values["learning_rate"], values["max_length"], values["num_train_epochs"],
            values["seed"]) == (8, 3e-4, 64, 2.0, 7)                                   # not the BERT preset
    assert values["resume_from_checkpoint"] is None and values["output_dir"] == ""     # a new run, not this one
    forms = {**model_page.basic.values(), **model_page.advanced.values()}
    assert forms["batch_size"] == 8 and forms["max_length"] == 64 and forms["seed"] == 7
    assert "duplicated run" in model_page.preset_label.text()
    assert p.check.report.ok and p.blocking_problem() is None
    assert window.pages["data"].mapping.combos["review"].currentData() == "text"


@pytest.mark.slow
def test_resume_from_the_picker_continues_the_step_count(qtbot, window, trained_run, tmp_path, monkeypatch,
                                                         screenshots):
    copy = tmp_path / "resumable" / trained_run.name
    shutil.copytree(trained_run, copy)
    from engine.run_record import set_run_name
    set_run_name(copy, "first try")                                   # a name survives the resume
    window.settings.set_json("runs/extra", [str(copy.parent)])
    runs = window.pages["runs"]
    runs.refresh()
    qtbot.waitUntil(lambda: len(runs.runs) == 1, timeout=20_000)
    runs.table.selectRow(0)
    assert runs.buttons["resume"].isEnabled()
    run = runs.current_run()
    assert [c.step for c in run.checkpoints()] == [2, 4]
    monkeypatch.setattr(runs, "pick_checkpoint", lambda r: r.checkpoints()[0])          # step 2, as picked
    train = window.pages["train"]
    steps, started = [], []
    runs.buttons["resume"].click()
    assert window.current_page_key() == "train" and train.running
    train.supervisor.step_logged.connect(steps.append)
    train.supervisor.run_started.connect(started.append)
    qtbot.waitUntil(lambda: not train.running, timeout=240_000)
    assert train.result and not train.result.get("failed"), train.log.toPlainText()
    assert started and started[0]["resumed_from_step"] == 2
    assert [e["step"] for e in steps] == [3, 4]                                          # the count goes on
    assert train.progress.value() == 4 and "Resuming" in train.log.toPlainText()
    record = json.loads((copy / "raclate_run.json").read_text())
    assert record["status"] == "finished" and record["final_step"] == 4 and record["name"] == "first try"
    assert train.last_config["training"]["output_dir"] == str(copy)
    shot(window, screenshots, "runs_resumed_on_train_page")
    qtbot.waitUntil(lambda: runs.runs and runs.runs[0].status == "finished", timeout=20_000)   # refreshed


def test_runs_page_leads_to_evaluate_and_export(qtbot, window, app_models, screenshots):
    window.settings.set_json("runs/extra", [str(app_models["runs"])])
    window.refresh_runs()
    runs = window.pages["runs"]
    qtbot.waitUntil(lambda: len(runs.runs) == 6, timeout=20_000)
    window.go_to("runs")
    row = next(i for i, r in enumerate(runs.runs) if r.task_key == "classification")
    runs.table.selectRow(row)
    shot(window, screenshots, "window_runs")
    runs.buttons["evaluate"].click()
    evaluate = window.pages["evaluate"]
    assert window.current_page_key() == "evaluate"
    assert evaluate.picker.choice().path == str(app_models["classification"])
    qtbot.waitUntil(evaluate.evaluate_button.isEnabled, timeout=20_000)
    with qtbot.waitSignal(evaluate.evaluated, timeout=120_000):
        evaluate.start()
    shot(window, screenshots, "window_evaluate")
    window.go_to("runs")
    runs.buttons["export"].click()
    dialog = window.export_dialog
    assert dialog.isVisible() and dialog.model_path == str(app_models["classification"])
    assert dialog.format.currentData() == "transformers"
    dialog.close()
    playground = window.pages["playground"]
    qtbot.waitUntil(lambda: len(playground.picker.runs) == 6, timeout=20_000)
    playground.select_model(str(app_models["late-interaction"]))
    assert playground.loaded is None and not playground.worker.is_busy()     # nothing loads off screen …
    window.go_to("playground")
    qtbot.waitUntil(lambda: playground.loaded is not None, timeout=60_000)   # … only once the page shows
    playground.corpus.setPlainText("the good film answer is 1\nthe staff was awful\nthe price is fine")
    playground.query.setText("what is the good film?")
    playground.search_button.click()
    qtbot.waitUntil(lambda: bool(playground.heatmap.q_tokens), timeout=60_000)
    shot(window, screenshots, "window_playground")


def test_compare_legend_sits_beside_the_curves_and_axes_stay_in_bounds(qtbot, page):
    from PySide6.QtCore import QItemSelectionModel
    page.table.selectRow(3)
    page.table.selectionModel().select(page.table.model().index(4, 0), QItemSelectionModel.SelectionFlag.Select |
                                       QItemSelectionModel.SelectionFlag.Rows)
    compare = page.compare
    for plot in (compare.loss_plot, compare.metric_plot):
        assert plot.getPlotItem().legend is None                  # nothing drawn over the curves
    legend = compare.legend.text()
    assert "2025-03-02-100000-classification" in legend and "2025-03-01-100000-classification" in legend
    low, high = compare.metric_plot.getPlotItem().getViewBox().viewRange()[1]
    assert compare.metric_combo.currentText() == "accuracy" and 0 <= low < 0.3 and 0.71 < high <= 1
    bare = write_run(page.runs[0].path.parent / "bare", status="crashed", started=time.time(), losses=(), accuracy=())
    from raclate_app.runs import read_run
    compare.set_runs([read_run(bare)])                            # nothing recorded: a message, not bare axes
    assert compare.loss_plot.empty and compare.metric_plot.empty and compare.loss_plot.empty_label.isVisible()


def test_settings_that_differ_name_the_task_model_and_data(qtbot, page, runs_root):
    write_run(runs_root / "2025-03-06-100000-sentence-similarity", status="finished", started=time.time(),
              task="sentence-similarity", model="BAAI/bge-small-en-v1.5", data="/data/faq.jsonl",
              metrics={"ndcg@10": 0.9})
    page.refresh()
    qtbot.waitUntil(lambda: len(page.runs) == 6, timeout=20_000)
    from PySide6.QtCore import QItemSelectionModel
    newest = next(i for i, r in enumerate(page.runs) if r.path.name.startswith("2025-03-06"))
    finished = next(i for i, r in enumerate(page.runs) if r.path.name.startswith("2025-03-01"))
    page.table.selectRow(newest)
    page.table.selectionModel().select(page.table.model().index(finished, 0),
                                       QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows)
    details = page.details.toPlainText()
    assert "task: Sentence similarity | Classification" in details
    assert "model: BAAI/bge-small-en-v1.5 | all-MiniLM-L6-v2 (built in)" in details
    assert "data: faq.jsonl | reviews.jsonl" in details


def test_name_and_rename_a_run(qtbot, page, monkeypatch, screenshots):
    from engine.errors import UsageError
    from engine.run_record import read_run_record, set_run_name
    row = next(i for i, r in enumerate(page.runs) if r.path.name == "2025-03-01-100000-classification")
    folder = page.runs[row].path
    page.table.selectRow(row)
    assert page.buttons["rename"].isEnabled()
    monkeypatch.setattr(page, "ask_name", lambda run: "  baseline,\n lr 5e-5 ")
    page.buttons["rename"].click()
    qtbot.waitUntil(lambda: any(r.name == "baseline, lr 5e-5" for r in page.runs), timeout=20_000)
    assert read_run_record(folder)["name"] == "baseline, lr 5e-5"      # one line, in the run record
    row = next(i for i, r in enumerate(page.runs) if r.path == folder)
    assert page.table.item(row, 1).text() == "baseline, lr 5e-5" and str(folder) in page.table.item(row, 1).toolTip()
    assert page.current_run().path == folder                            # still selected after the refresh
    details = page.details.toPlainText()
    assert "baseline, lr 5e-5" in details and folder.name in details
    shot(page, screenshots, "runs_renamed")
    monkeypatch.setattr(page, "ask_name", lambda run: "")               # blank: the folder's name again
    page.buttons["rename"].click()
    qtbot.waitUntil(lambda: any(r.name == folder.name for r in page.runs), timeout=20_000)
    assert "name" not in read_run_record(folder)
    running = next(i for i, r in enumerate(page.runs) if r.status == "running")
    page.table.selectRow(running)
    assert not page.buttons["rename"].isEnabled()
    with pytest.raises(UsageError, match="still running"):              # it would rewrite its record at the end
        set_run_name(page.runs[running].path, "x")
    with pytest.raises(UsageError, match="not a run folder"):
        set_run_name(folder.parent / "not-a-run", "x")


def test_filter_by_words_task_and_date(qtbot, page, runs_root, screenshots):
    write_run(runs_root / "2024-01-01-100000-classification", status="finished", started=time.time() - 86400 * 40,
              model="BAAI/bge-small-en-v1.5", metrics={"accuracy": 0.5})
    page.refresh()
    qtbot.waitUntil(lambda: len(page.runs) == 6, timeout=20_000)

    def shown():
        return [page.runs[r].path.name for r in range(len(page.runs)) if not page.table.isRowHidden(r)]
    assert len(shown()) == 6
    page.search.setText("bge")                                          # the model
    assert shown() == ["2024-01-01-100000-classification"]
    page.search.setText("MASKED")                                       # the task, any case
    assert shown() == ["2025-03-05-100000-masked-lm"] and "1</b> of 6 runs" in page.where.text()
    assert page.current_run() is None or page.current_run().path.name in shown()
    page.search.clear()
    page.task_filter.setCurrentIndex(page.task_filter.findData("classification"))
    assert shown() == ["2025-03-02-100000-classification", "2025-03-01-100000-classification",
                       "2024-01-01-100000-classification"]
    page.date_filter.setCurrentIndex(page.date_filter.findText("Last 30 days"))
    assert shown() == ["2025-03-02-100000-classification", "2025-03-01-100000-classification"]
    page.table.selectAll()
    assert {r.path.name for r in page.selected_runs()} == set(shown())  # hidden rows are never acted on
    shot(page, screenshots, "runs_filtered")
    page.task_filter.setCurrentIndex(0)
    page.date_filter.setCurrentIndex(0)
    assert len(shown()) == 6


def test_delete_moves_a_run_to_the_trash_after_asking(qtbot, page, runs_root, tmp_path, monkeypatch, screenshots):
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QMessageBox
    trash = tmp_path / "xdg-data"
    trash.mkdir()
    monkeypatch.setenv("XDG_DATA_HOME", str(trash))                      # the freedesktop trash lives here
    folder = runs_root / "2025-03-02-100000-classification"
    page.table.selectRow(next(i for i, r in enumerate(page.runs) if r.path == folder))
    asked = []

    def answer(button):
        box = QApplication.activeModalWidget()
        asked.append(box.informativeText())
        shot(box, screenshots, "runs_delete_question")
        box.button(button).click()
    QTimer.singleShot(100, lambda: answer(QMessageBox.StandardButton.Cancel))
    page.buttons["delete"].click()                                      # the real question, cancelled
    assert str(folder) in asked[0] and folder.is_dir()
    QTimer.singleShot(100, lambda: answer(QMessageBox.StandardButton.Yes))
    page.buttons["delete"].click()
    qtbot.waitUntil(lambda: len(page.runs) == 4, timeout=20_000)
    assert not folder.exists() and (trash / "Trash" / "files" / folder.name / "raclate_run.json").is_file()
    assert "Moved to the trash" in page.notice.text()
    # a running run is refused: the button is off, and so is the action itself
    running = next(i for i, r in enumerate(page.runs) if r.status == "running")
    page.table.selectRow(running)
    assert not page.buttons["delete"].isEnabled()
    monkeypatch.setattr(page, "confirm_delete", lambda runs: pytest.fail("asked about a running run"))
    page.delete()
    assert "still training" in page.notice.text() and page.runs[running].path.is_dir()
    # a folder whose run record is gone is no run folder any more: left alone
    from raclate_app.runs import deletable
    gone = next(r for r in page.runs if r.path.name == "2025-03-01-100000-classification")
    (gone.path / "raclate_run.json").unlink()
    assert "not a run folder" in deletable(gone)


def test_export_from_a_checkpoint(qtbot, window, trained_run, tmp_path, monkeypatch, screenshots):
    import shutil
    copy = tmp_path / "runs-extra" / trained_run.name
    shutil.copytree(trained_run, copy)
    window.settings.set_json("runs/extra", [str(copy.parent)])
    runs = window.pages["runs"]
    runs.refresh()
    qtbot.waitUntil(lambda: len(runs.runs) == 1, timeout=20_000)
    window.go_to("runs")
    runs.table.selectRow(0)
    assert runs.buttons["export_checkpoint"].isEnabled()
    step2 = copy / "checkpoints" / "step-0000002"
    monkeypatch.setattr(runs, "pick_checkpoint", lambda run, purpose: next(
        c for c in run.checkpoints() if c.step == 2) if purpose == "export" else None)
    runs.buttons["export_checkpoint"].click()
    dialog = window.export_dialog
    assert dialog.isVisible() and dialog.model_path == str(step2)
    qtbot.waitUntil(lambda: dialog.task_key == "classification", timeout=20_000)   # read from the run's record
    assert dialog.format.currentData() == "transformers"
    assert dialog.folder.text().endswith(f"{trained_run.name}-step-0000002-transformers")
    dialog.folder.setText(str(tmp_path / "exported"))
    dialog._folder_edited = True
    from PySide6.QtWidgets import QLabel
    assert any("checkpoint at step 2" in label.text() for label in dialog.findChildren(QLabel))
    shot(dialog, screenshots, "runs_export_checkpoint_dialog")
    assert dialog.start()
    qtbot.waitUntil(lambda: dialog.result is not None or dialog.error is not None, timeout=120_000)
    assert dialog.result and dialog.result["check"]["ok"], dialog.error
    record = json.loads((tmp_path / "exported" / "raclate_run.json").read_text())
    assert record["exported_from"] == str(step2) and record["final_step"] == 2
    shot(dialog, screenshots, "runs_export_checkpoint_done")
    dialog.close()


def test_renamed_and_trashed_runs_update_the_evaluate_and_playground_lists(qtbot, window, runs_root, tmp_path,
                                                                         monkeypatch):
    (tmp_path / "xdg-data").mkdir()
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    runs, evaluate, playground = window.pages["runs"], window.pages["evaluate"], window.pages["playground"]
    window.refresh_runs()                                               # the fixture runs came after the window
    qtbot.waitUntil(lambda: len(runs.runs) == len(evaluate.picker.runs) == len(playground.picker.runs) == 5,
                    timeout=20_000)

    def picker_texts(page):
        return [page.picker.combo.itemText(i) for i in range(page.picker.combo.count())]
    runs.table.selectRow(next(i for i, r in enumerate(runs.runs) if r.path.name == "2025-03-01-100000-classification"))
    monkeypatch.setattr(runs, "ask_name", lambda run: "baseline")
    runs.buttons["rename"].click()
    qtbot.waitUntil(lambda: any(t.startswith("baseline — ") for t in picker_texts(evaluate)), timeout=20_000)
    qtbot.waitUntil(lambda: any(t.startswith("baseline — ") for t in picker_texts(playground)), timeout=20_000)
    runs.table.selectRow(next(i for i, r in enumerate(runs.runs) if r.name == "baseline"))
    monkeypatch.setattr(runs, "confirm_delete", lambda chosen: True)
    runs.buttons["delete"].click()
    qtbot.waitUntil(lambda: len(evaluate.picker.runs) == 4 and len(playground.picker.runs) == 4, timeout=20_000)
    assert not any(t.startswith("baseline") for t in picker_texts(evaluate))
