"""Runs page: runs from fixture folders with every status (a "running" record whose process is gone
is crashed), details, compare curves, the checkpoint picker, duplicate → the Data and Model & Task
pages, and resume from a checkpoint continuing the step count in a real child process."""
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
    assert "Same model and settings" in details                # the fixture runs differ only in their results
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
    assert record["status"] == "finished" and record["final_step"] == 4
    assert json.loads(train.config_path.read_text())["training"]["output_dir"] == str(copy)
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
