"""Issue 18, after training: the finished banner leads on (Evaluate, Try it, Export) and the new run
becomes the selection there; no stale ETA after a Stop; the preset line says what the fields hold;
plots with their legend outside, integer step ticks, bounded metric axes and an empty-state
message; export defaults outside the runs folder and asks before replacing; the Playground's second
text box only for pair classifiers."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from tests.app_fixtures import app_models, open_run_page  # noqa: F401
from tests.test_app_support import (app_settings, dispose, model_page, project, screenshots, shot,  # noqa: F401
                                    wait_idle, window)

pytestmark = pytest.mark.gui


def copy_run(source: Path, dest: Path, started: float, **data) -> Path:
    """A copy of a tiny run under ``dest`` with its own start time (and data settings)."""
    shutil.copytree(source, dest)
    record = json.loads((dest / "raclate_run.json").read_text())
    record.update(started=started, run_id=dest.name)
    record["data"].update(data)
    (dest / "raclate_run.json").write_text(json.dumps(record))
    return dest


def finished(out: Path, **extra) -> dict:
    return {"event": "finished", "time": 0, "output_dir": str(out), "metrics": {"accuracy": 0.75},
            "stopped_early": False, **extra}


# -- 1. the finished banner -----------------------------------------------------------------------------
def test_finished_banner_offers_evaluate_try_and_export_and_selects_the_new_run(qtbot, window, app_models,
                                                                                 screenshots):
    root = window.settings.runs_root()
    old = copy_run(app_models["classification"], root / "2025-01-01-120000-classification", time.time() - 3600)
    evaluate, playground, train = (window.pages[k] for k in ("evaluate", "playground", "train"))
    for page in (evaluate, playground):
        page.refresh_runs()
        qtbot.waitUntil(lambda p=page: p.picker.choice() is not None and p.picker.choice().path == str(old),
                        timeout=20_000)
    assert not train.evaluate_button.isVisible()                      # no run yet: nothing to lead on to
    new = copy_run(app_models["classification"], root / "2025-01-02-120000-classification", time.time())
    window.go_to("train")
    train.output_dir = new
    train.on_supervisor_run_finished(finished(new))
    train.on_supervisor_finished()                                    # the child is gone: lists refresh
    for button in (train.evaluate_button, train.try_button, train.export_button, train.open_button):
        assert button.isVisible(), button.text()
    for page in (evaluate, playground):                               # the new run is selected, not the old
        qtbot.waitUntil(lambda p=page: p.picker.choice() is not None and p.picker.choice().path == str(new),
                        timeout=20_000)
    wait_idle(qtbot, window.project)
    shot(window, screenshots, "train_finished_banner")
    train.evaluate_button.click()
    assert window.current_page_key() == "evaluate" and evaluate.picker.choice().path == str(new)
    assert evaluate.picker.choice().run_dir == str(new) and evaluate.use_validation.isEnabled()
    window.go_to("train")
    train.try_button.click()
    assert window.current_page_key() == "playground" and playground.picker.choice().path == str(new)
    qtbot.waitUntil(lambda: playground.loaded is not None, timeout=60_000)
    window.go_to("train")
    train.export_button.click()
    dialog = window.export_dialog
    assert dialog.model_path == str(new) and dialog.isVisible()
    qtbot.waitUntil(lambda: dialog.task_key == "classification", timeout=20_000)
    dialog.close()


def test_a_stop_before_any_model_offers_no_result_buttons(qtbot, project, tmp_path):
    from raclate_app.pages.train import TrainPage
    page = TrainPage(project)
    qtbot.addWidget(page)
    page.show()
    out = tmp_path / "run"
    out.mkdir()
    saved = []
    page.model_saved.connect(saved.append)
    page.on_supervisor_run_finished(finished(out, stopped_early=True, incomplete=True, checkpoint=None))
    assert not saved and not page.evaluate_button.isVisible() and not page.try_button.isVisible()
    assert "Stopped" in page.result_label.text()


# -- 2. ETA and the preset line -------------------------------------------------------------------------
def test_stop_clears_the_eta(qtbot, project, tmp_path, screenshots):
    from raclate_app.pages.train import TrainPage
    page = TrainPage(project)
    qtbot.addWidget(page)
    page.resize(1200, 760)
    page.show()
    page.on_supervisor_step_logged({"step": 3, "epoch": 0.3, "loss": 0.91, "examples_per_s": 40.0, "eta_s": 12})
    assert "ETA 0:12" in page.stats.text()
    page.on_supervisor_run_finished(finished(tmp_path, stopped_early=True, incomplete=True,
                                             checkpoint={"path": str(tmp_path / "checkpoints" / "step-3")}))
    page.on_supervisor_finished()
    assert "ETA" not in page.stats.text() and "loss 0.9100" in page.stats.text()
    shot(page, screenshots, "train_stopped_no_eta")


def test_the_preset_line_says_what_the_fields_hold(qtbot, project, screenshots, model_page):  # noqa: F811
    page = model_page
    preset = page.summary.preset
    assert f"max length {preset['max_length']}" in page.preset_label.text()
    assert "changed" not in page.preset_label.text()
    page.basic.set_values({"max_length": 32})
    text = page.preset_label.text()
    assert "changed: max length 32" in text, text
    page.basic.set_values({"max_length": preset["max_length"]})
    assert "changed" not in page.preset_label.text()
    page.basic.set_values({"max_length": 32, "batch_size": 4})
    assert "max length 32" in page.preset_label.text() and "batch size 4" in page.preset_label.text()
    shot(page, screenshots, "model_preset_changed")
    wait_idle(qtbot, project)


# -- 3. plots -------------------------------------------------------------------------------------------
@pytest.fixture
def plots(qtbot):
    from raclate_app.plots import LivePlots
    widget = LivePlots()
    widget.resize(1100, 620)
    widget.show()
    yield widget
    dispose(widget)


def test_plot_legends_sit_outside_the_curves(plots):
    assert plots.loss_plot.getPlotItem().legend is None            # no legend box inside the plot area
    for name in ("loss", "smoothed", "eval loss"):
        assert name in plots.loss_legend.text()
    assert plots.loss_legend.isVisible()
    assert plots.loss_legend.geometry().bottom() <= plots.loss_plot.geometry().top() \
        or plots.loss_legend.geometry().top() >= plots.loss_plot.geometry().bottom()


def test_step_axes_have_integer_ticks(plots):
    plots.set_total_steps(5)
    for step in range(1, 6):
        plots.add_step({"step": step, "loss": 1.0 / step, "learning_rate": 1e-4})
    plots.add_eval({"step": 2, "metrics": {"accuracy": 0.5}})
    plots.flush()
    for plot in plots.plots:
        axis = plot.getPlotItem().getAxis("bottom")
        lo, hi = plot.getPlotItem().getViewBox().viewRange()[0]
        values = [v for _spacing, level in axis.tickValues(lo, hi, axis.width()) for v in level]
        assert values and all(float(v).is_integer() for v in values), values
    assert plots.loss_plot.getPlotItem().getAxis("bottom").tickStrings([0, 1, 2], 1, 1) == ["0", "1", "2"]


@pytest.mark.parametrize("values, bounds", [((0.0, 0.02, 0.05), (0.0, 1.0)), ((0.97, 1.0), (0.0, 1.0)),
                                            ((0.5,), (0.0, 1.0)), ((-0.95, 1.0), (-1.0, 1.0))])
def test_bounded_metric_axes_stay_in_their_range(plots, values, bounds):
    name = "spearman_cosine" if bounds[0] < 0 else "accuracy"
    for step, value in enumerate(values):
        plots.add_eval({"step": step, "metrics": {name: value, "ndcg@10": min(abs(value), 1.0)}})
    plots.flush()
    lo, hi = plots.eval_plot.getPlotItem().getViewBox().viewRange()[1]
    assert bounds[0] <= lo <= min(values) and max(values) <= hi <= bounds[1], (lo, hi)
    assert hi - lo > max(values) - min(values)                        # some room, a lone value too


def test_unbounded_metrics_are_not_clamped(plots):
    from raclate_app.plots import metric_bounds
    assert metric_bounds("perplexity") is None and metric_bounds("mse") is None
    assert metric_bounds("macro_f1") == metric_bounds("recall@5") == metric_bounds("ndcg@10") == (0.0, 1.0)
    assert metric_bounds("pearson") == (-1.0, 1.0)
    plots.add_eval({"step": 1, "metrics": {"perplexity": 40.0}})
    plots.add_eval({"step": 2, "metrics": {"perplexity": 12.0}})
    plots.flush()
    lo, hi = plots.eval_plot.getPlotItem().getViewBox().viewRange()[1]
    assert lo < 12.0 and hi > 40.0


def test_empty_plots_show_a_message_instead_of_bare_axes(qtbot, plots, screenshots):
    loss, eval_plot = plots.loss_plot, plots.eval_plot
    assert loss.empty_label.isVisible() and "Waiting for the first step" in loss.empty_label.text()
    assert plots.lr_plot.empty_label.isVisible() and "No evaluation yet" in eval_plot.empty_label.text()
    assert not loss.getPlotItem().getAxis("left").isVisible()
    shot(plots, screenshots, "plots_empty")
    for step in range(1, 4):
        plots.add_step({"step": step, "loss": 1.0 / step, "learning_rate": 1e-4})
    plots.flush()
    assert not loss.empty_label.isVisible() and loss.getPlotItem().getAxis("left").isVisible()
    assert eval_plot.empty_label.isVisible()
    plots.add_eval({"step": 3, "metrics": {"eval_loss": 0.4, "accuracy": 0.6, "macro_f1": 0.55}})
    plots.flush()
    assert not eval_plot.empty_label.isVisible()
    shot(plots, screenshots, "plots_filled")
    plots.clear()
    plots.flush()
    assert loss.empty_label.isVisible() and eval_plot.empty_label.isVisible()


# -- 4. export ------------------------------------------------------------------------------------------
def test_export_defaults_outside_the_runs_folder(qtbot, app_models, screenshots):
    from raclate_app.widgets.export_dialog import EXPORTS_ROOT, ExportDialog
    source = app_models["classification"]
    dialog = ExportDialog(str(source), "classification")
    qtbot.addWidget(dialog)
    dialog.show()
    shot(dialog, screenshots, "export_default_folder")
    folder = Path(dialog.folder.text())
    assert folder.parent == EXPORTS_ROOT and folder.name.startswith(source.name)
    assert not folder.is_relative_to(app_models["runs"]) and not folder.is_relative_to(source.parent)
    checkpoint = ExportDialog(str(source / "checkpoints" / "step-4"), "classification")
    qtbot.addWidget(checkpoint)
    assert Path(checkpoint.folder.text()).name.startswith(f"{source.name}-step-4")


def test_export_into_an_existing_folder_asks_before_replacing(qtbot, app_models, tmp_path, monkeypatch,
                                                              screenshots):
    from raclate_app.widgets.export_dialog import ExportDialog
    dialog = ExportDialog(str(app_models["classification"]), "classification")
    qtbot.addWidget(dialog)
    dialog.show()
    out = tmp_path / "clf"
    dialog.folder.setText(str(out))
    asked = []
    monkeypatch.setattr(dialog, "ask_replace", lambda path: asked.append(path) or False)
    assert dialog.start()                                            # a new folder: no question
    qtbot.waitUntil(lambda: dialog.relay is None, timeout=180_000)
    assert dialog.result and not asked
    assert not dialog.start()                                        # it exists now: asked, "No" writes nothing
    assert asked == [str(out)] and dialog.relay is None and "--" not in dialog.status.text()
    question = dialog.replace_question(str(out))
    question.show()
    assert "Replace the existing folder?" in question.text() and str(out) in question.informativeText()
    assert question.defaultButton() is question.button(question.StandardButton.No)
    shot(question, screenshots, "export_replace_question")
    question.close()
    monkeypatch.setattr(dialog, "ask_replace", lambda path: asked.append(path) or True)
    assert dialog.start()                                            # "Yes": replaced
    qtbot.waitUntil(lambda: dialog.relay is None, timeout=180_000)
    assert dialog.result and dialog.error is None, dialog.status.text()
    foreign = tmp_path / "photos"                                    # not written by RACLATE: refused
    foreign.mkdir()
    (foreign / "holiday.jpg").write_text("x")
    dialog.folder.setText(str(foreign))
    assert dialog.start()
    qtbot.waitUntil(lambda: dialog.relay is None, timeout=180_000)
    assert dialog.error and "--" not in dialog.error and "not written by RACLATE" in dialog.error, dialog.error
    assert (foreign / "holiday.jpg").exists()
    shot(dialog, screenshots, "export_refused_foreign_folder")


# -- 5. the Playground's second text --------------------------------------------------------------------
def test_second_text_only_for_pair_classifiers(qtbot, project, app_models, tmp_path, screenshots):
    from raclate_app.pages.playground import PlaygroundPage
    from tests.app_fixtures import write_jsonl
    data = write_jsonl(tmp_path / "nli.jsonl", [{"premise": f"a {i}", "hypothesis": f"b {i}", "label": "pos"}
                                                for i in range(8)])
    # folders outside the runs (as exports are): their own raclate_run.json says what they read
    pair = copy_run(app_models["classification"], tmp_path / "exports" / "nli-classifier", time.time(),
                    data=str(data), columns={"text": "premise", "text_pair": "hypothesis"})
    single = copy_run(app_models["classification"], tmp_path / "exports" / "review-classifier", time.time())
    page = open_run_page(qtbot, project, app_models, PlaygroundPage, 700)

    def load(path):
        page.select_model(str(path))
        qtbot.waitUntil(lambda: page.loaded is not None and page.loaded_choice.path == str(path), timeout=60_000)
        assert page.stack.currentIndex() == 0

    try:
        load(app_models["classification"])                            # a run: text only
        assert not page.cls_pair.isVisible()
        shot(page, screenshots, "playground_single_text")
        load(pair)
        assert page.cls_pair.isVisible()
        shot(page, screenshots, "playground_pair")
        page.cls_pair.setText("left over")
        load(single)
        assert not page.cls_pair.isVisible() and page.cls_pair.text() == ""
    finally:
        page.shutdown()


def test_pair_input_reads_the_run_record(tmp_path):
    from raclate_app.playground import pair_input
    from tests.app_fixtures import write_jsonl
    single = write_jsonl(tmp_path / "single.jsonl", [{"text": "a", "label": "x"}])
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"sentence1": "a", "sentence2": "b", "label": "x"}])
    task = "text-classification"
    assert pair_input({"task": task, "data": {"data": str(single), "columns": {}}}) is False
    assert pair_input({"task": task, "data": {"data": str(pairs), "columns": {}}}) is True        # guessed
    assert pair_input({"task": task, "data": {"data": str(pairs), "columns": {"text_pair": None}}}) is False
    assert pair_input({"task": task, "data": {"data": "gone.csv", "columns": {"text_pair": "b"}}}) is True
    assert pair_input({"task": task, "data": {"data": str(tmp_path / "gone.csv"), "columns": {}}}) is None
    assert pair_input({}) is None                                                                 # no record
