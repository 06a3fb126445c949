"""Evaluate page: every task's numbers equal the engine's metrics computed directly, the confusion
matrix holds every example, before/after shows both columns, another file is mapped with the
editor, checkpoints evaluate, and Cancel stops the job."""
from __future__ import annotations

import math

import pytest

from tests.app_fixtures import app_models, open_run_page, trained_run  # noqa: F401
from tests.test_app_support import app_settings, project, screenshots, shot  # noqa: F401

pytestmark = pytest.mark.gui


@pytest.fixture
def page(qtbot, project, app_models):
    from raclate_app.pages.evaluate import EvaluatePage
    page = open_run_page(qtbot, project, app_models, EvaluatePage, 860)
    yield page
    page.shutdown()


def evaluate(qtbot, page, path, *, compare=True, timeout=120_000) -> dict:
    page.select_model(str(path))
    page.compare.setChecked(compare)
    qtbot.waitUntil(lambda: page.evaluate_button.isEnabled(), timeout=20_000)
    with qtbot.waitSignal(page.evaluated, timeout=timeout) as blocker:
        assert page.start()
    return blocker.args[0]


def engine_metrics(run_dir, *, file=None, columns=None) -> dict:
    """The engine's own numbers: the folder loaded as `raclate eval` loads it, the run's validation split
    (or ``file``), `remap_labels` + collated `eval_batches` + `evaluate_batches`."""
    from engine.data import DatasetArgs, load_dataset
    from engine.inference import eval_batches, evaluate_file, load_for_task, max_length_of, remap_labels
    from engine.metrics import evaluate_batches
    from engine.run_record import read_run_record
    model, tokenizer, task, _ = load_for_task(str(run_dir))
    if file is not None:
        return evaluate_file(model, tokenizer, task, str(file), columns=columns)["metrics"]
    data = read_run_record(run_dir)["data"]
    loaded = load_dataset(DatasetArgs(**data))
    ds, info = loaded.validation, loaded.label_info
    if task in ("text-classification", "token-classification"):
        ds, info = remap_labels(ds, info, model, task)
    model.eval()
    return evaluate_batches(task, model, eval_batches(model, tokenizer, task, ds, 32, max_length_of(model, tokenizer)),
                            info)


def assert_same(ours: dict, theirs: dict, tol: float = 1e-6) -> None:
    scalars = {k: v for k, v in theirs.items() if isinstance(v, float)}
    assert scalars and set(scalars) <= set(ours)
    for name, value in scalars.items():
        assert math.isclose(ours[name], value, rel_tol=tol, abs_tol=tol) or (math.isnan(ours[name]) and math.isnan(value)), \
            (name, ours[name], value)


def metric_rows(page) -> dict[str, list[str]]:
    table = page.results.metrics
    return {table.item(r, 0).toolTip(): [table.item(r, c).text() if table.item(r, c) else "" for c in range(4)]
            for r in range(table.rowCount())}


def test_classification_matches_the_engine_with_confusion_matrix_and_before_after(qtbot, page, app_models,
                                                                                   screenshots):
    run = app_models["classification"]
    result = evaluate(qtbot, page, run)
    metrics = result["model"]["metrics"]
    assert_same(metrics, engine_metrics(run))
    assert set(metrics["per_class"]) == {"neg", "neu", "pos"}
    assert page.results.per_class.rowCount() == 3
    confusion = page.results.confusion
    assert confusion.matrix.sum() == result["model"]["rows"] == 12   # 48 rows, validation split 0.25
    assert confusion.names == ["neg", "neu", "pos"] and len(confusion.texts) == 9
    # before/after: both columns, and the change is this model minus the base model
    assert "base" in result and not page.results.metrics.isColumnHidden(1) and not page.results.metrics.isColumnHidden(3)
    rows = metric_rows(page)
    base, ours = result["base"]["metrics"]["accuracy"], metrics["accuracy"]
    assert rows["accuracy"][1] == f"{base:.4f}" and rows["accuracy"][2] == f"{ours:.4f}"
    assert rows["accuracy"][3] == f"{ours - base:+.4f}"
    tabs = [page.results.tabs.tabText(i) for i in range(page.results.tabs.count())]
    wrong = metrics["misclassified"]
    assert tabs == ["Per class", "Confusion matrix", f"Misclassified ({len(wrong)})"]
    shot(page, screenshots, "evaluate_classification")
    page.results.tabs.setCurrentIndex(1)
    shot(page, screenshots, "evaluate_confusion_matrix")


def test_classification_lists_the_misclassified_examples_worst_first(qtbot, page, app_models, screenshots):
    result = evaluate(qtbot, page, app_models["classification"], compare=False)
    metrics, rows = result["model"]["metrics"], result["model"]["rows"]
    wrong = metrics["misclassified"]
    assert wrong and len(wrong) == rows - round(metrics["accuracy"] * rows)      # every wrong one (under 50)
    assert len(wrong) == rows - sum(metrics["confusion_matrix"][i][i] for i in range(3))
    assert all(w["label"] != w["predicted"] and w["confidence"] >= w["label_score"] for w in wrong)
    assert [w["label_score"] for w in wrong] == sorted(w["label_score"] for w in wrong)   # worst first
    table = page.results.wrong
    page.results.tabs.setCurrentWidget(page.results.wrong_box)
    assert table.rowCount() == len(wrong)
    first = [table.item(0, c).text() for c in range(4)]
    assert first == [wrong[0]["text"], wrong[0]["label"], wrong[0]["predicted"], f"{wrong[0]['confidence'] * 100:.1f}%"]
    assert first[0].startswith("the ") and "worst first" in page.results.wrong_note.text()
    shot(page, screenshots, "evaluate_misclassified")


def test_regression_on_another_file_mapped_with_the_editor(qtbot, page, app_models):
    run, file = app_models["regression"], app_models["data"]["regression"]
    page.select_model(str(run))
    page.open_file(str(file))
    qtbot.waitUntil(lambda: page.file == str(file) and page.mapping.isVisible(), timeout=20_000)
    assert page.file_mapping == {"text": "text", "score": "label"}    # "score" is guessed as the number
    assert page.mapping.combos["score"].currentData() == "label"
    result = evaluate(qtbot, page, run, compare=False)
    assert result["model"]["rows"] == 40 and "base" not in result
    ours = result["model"]["metrics"]
    assert_same(ours, engine_metrics(run, file=file, columns={"text": "text", "label": "score"}))
    assert {"pearson", "spearman"} <= set(ours) and page.results.metrics.isColumnHidden(1)
    # a required role left unmapped blocks the button and says which
    combo = page.mapping.combos["score"]
    combo.setCurrentIndex(combo.findData("ignore"))
    assert not page.evaluate_button.isEnabled() and "score" in page.status.text()


@pytest.mark.parametrize("key", ["sentence-similarity", "late-interaction"])
def test_retrieval_matches_the_engine_and_lists_the_worst_queries(qtbot, page, app_models, screenshots, key):
    run, file = app_models[key], app_models["data"]["pairs"]
    page.open_file(str(file))
    page.select_model(str(run))
    qtbot.waitUntil(lambda: page.file == str(file), timeout=20_000)
    result = evaluate(qtbot, page, run)
    ours = result["model"]
    assert_same(ours["metrics"], engine_metrics(run, file=file), tol=1e-5)
    assert set(ours["metrics"]) >= {"ndcg@10", "mrr@10", "recall@1", "recall@5", "recall@10", "map"}
    assert ours["queries"] == ours["corpus"] == 40
    worst = ours["worst"]
    assert worst and worst[0]["gold_rank"] >= worst[-1]["gold_rank"] > 1 and worst[0]["retrieved"]
    first = worst[0]
    assert first["query"].startswith("what is") and first["gold"].startswith("the ")
    assert not first["retrieved"][0]["relevant"]            # something else came first
    tree = page.results.worst
    assert tree.topLevelItemCount() == len(worst) and tree.topLevelItem(0).text(0) == first["query"]
    assert tree.topLevelItem(0).child(0).text(0) == f"right document: {first['gold']}"
    page.results.tabs.setCurrentWidget(tree)
    shot(page, screenshots, f"evaluate_{key.replace('-', '_')}")


def test_token_classification_entity_f1_per_type(qtbot, page, app_models):
    run = app_models["token-classification"]
    result = evaluate(qtbot, page, run, compare=False)
    theirs = engine_metrics(run)
    assert_same(result["model"]["metrics"], theirs)
    assert result["model"]["metrics"]["per_type"] == theirs["per_type"]
    assert page.results.tabs.tabText(0) == "Per entity type"


def test_masked_lm_perplexity_without_blocking_the_gui(qtbot, page, app_models, screenshots):
    from tests.test_app_support import Heartbeat
    run = app_models["masked-lm"]
    heartbeat = Heartbeat(10)
    heartbeat.start()
    result = evaluate(qtbot, page, run)          # two models loaded and run on the page's model thread
    heartbeat.stop()
    print(f"GUI heartbeat while evaluating: {heartbeat.summary()}")
    assert heartbeat.worst_work_ms < 50, heartbeat.summary()   # the GUI thread's own work per gap: the 50 ms budget
    assert_same(result["model"]["metrics"], engine_metrics(run))
    assert result["model"]["metrics"]["perplexity"] > 1 and "perplexity" in metric_rows(page)
    assert not page.results.tabs.isVisible()
    shot(page, screenshots, "evaluate_masked_lm")


def test_a_checkpoint_evaluates_and_cancel_stops(qtbot, page, trained_run, screenshots):
    from raclate_app.runs import scan_runs
    page.picker.set_runs(scan_runs([trained_run.parent]))
    step2 = trained_run / "checkpoints" / "step-0000002"
    items = [page.picker.combo.itemText(i) for i in range(page.picker.combo.count())]
    assert any("checkpoint at step 2" in t for t in items) and any("checkpoint at step 4" in t for t in items)
    result = evaluate(qtbot, page, step2)
    assert result["choice"].endswith("checkpoint at step 2") and result["model"]["rows"] == 12
    assert "accuracy" in result["model"]["metrics"] and "base" in result
    shot(page, screenshots, "evaluate_checkpoint")
    # cancel: the job stops at its next progress report, and the page can run again
    failures = []
    page.worker.signals.job_failed.connect(lambda *_a: failures.append(1))
    assert page.start()
    page.cancel()
    qtbot.waitUntil(lambda: not page.worker.is_busy("evaluate"), timeout=60_000)
    assert failures and "Cancelled" in page.status.text() and page.progress.format() == "Cancelled"
    assert page.evaluate_button.isEnabled()
