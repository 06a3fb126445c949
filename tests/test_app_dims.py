"""Embedding dimension (Matryoshka) on the Playground and Evaluate pages: the sizes offered (the run's
Matryoshka dims, else truncations), search results ranked by the truncated, re-normalised vectors, and
Evaluate's metrics at that size equal to the engine's own Matryoshka evaluation (keys ``@D``)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tests.app_fixtures import app_models, open_run_page  # noqa: F401
from tests.test_app_eval import assert_same
from tests.test_app_support import app_settings, project, screenshots, shot  # noqa: F401

pytestmark = pytest.mark.gui


def test_dims_offered_are_the_runs_matryoshka_dims_else_truncations(app_models, tmp_path):
    from raclate_app.evaluation import Dims, ModelChoice, embedding_dims
    run = app_models["sentence-similarity"]
    assert embedding_dims(ModelChoice(str(run), str(run))) == Dims(32, (16, 8), False)   # hidden size 32
    copy = shutil.copytree(run, tmp_path / "matryoshka-run")
    record = json.loads((copy / "raclate_run.json").read_text())
    record["training"]["matryoshka_dims"] = [32, 24, 12]
    (copy / "raclate_run.json").write_text(json.dumps(record))
    assert embedding_dims(ModelChoice(str(copy), str(copy))) == Dims(32, (24, 12), True)
    assert embedding_dims(ModelChoice(str(copy))) == Dims(32, (24, 12), True)   # a folder: its record too


def test_at_dim_is_the_truncated_renormalised_embedding(app_models):
    from engine.inference import encode, load_for_task
    from raclate_app.evaluation import AtDim
    model, tokenizer, _, _ = load_for_task(str(app_models["sentence-similarity"]))
    texts = ["the good film", "a bad room today"]
    full = encode(model, tokenizer, texts)
    cut = encode(AtDim(model, 8), tokenizer, texts)
    expected = full[:, :8] / np.linalg.norm(full[:, :8], axis=1, keepdims=True)
    assert cut.shape == (2, 8) and np.allclose(cut, expected, atol=1e-5)


def test_playground_searches_at_the_chosen_dimension(qtbot, project, app_models, screenshots):
    from engine.inference import encode
    from raclate_app.pages.playground import PlaygroundPage
    page = open_run_page(qtbot, project, app_models, PlaygroundPage, 820)
    try:
        page.select_model(str(app_models["sentence-similarity"]))
        qtbot.waitUntil(lambda: page.dims.combo.count() == 3, timeout=60_000)
        combo = page.dims.combo
        assert [combo.itemText(i) for i in range(3)] == ["Full (32)", "16 (1/2)", "8 (1/4)"] and page.dims.isVisible()
        docs = [f"the {w} answer number {i}" for i, w in enumerate(("good", "bad", "film", "food", "room", "staff"))]
        page.corpus.setPlainText("\n".join(docs))
        page.query.setText("what is the good film?")
        with qtbot.waitSignal(page.answered, timeout=60_000) as full_answer:
            page.search_button.click()
        with qtbot.waitSignal(page.answered, timeout=60_000) as blocker:
            combo.setCurrentIndex(combo.findData(8))   # a new size searches again, without encoding the corpus
        result = blocker.args[0]
        assert result["dim"] == 8 and result["index"] is full_answer.args[0]["index"]
        loaded = page.loaded
        q = encode(loaded.model, loaded.tokenizer, ["what is the good film?"])[0][:8]
        d = encode(loaded.model, loaded.tokenizer, docs)[:, :8]
        cos = (d @ q) / (np.linalg.norm(d, axis=1) * np.linalg.norm(q))
        top = [r["index"] for r in result["results"]]
        assert top == list(np.argsort(-cos, kind="stable"))
        assert np.allclose([r["score"] for r in result["results"]], cos[top], atol=1e-5)
        assert "at 8 dimensions" in page.state.text()
        shot(page, screenshots, "playground_search_dims")
    finally:
        page.shutdown()


def test_evaluate_reports_metrics_at_the_chosen_dimension(qtbot, project, app_models, screenshots):
    from raclate_app.pages.evaluate import EvaluatePage
    page = open_run_page(qtbot, project, app_models, EvaluatePage, 860)
    try:
        run = app_models["sentence-similarity"]
        page.select_model(str(run))
        qtbot.waitUntil(lambda: page.dims.combo.count() == 3 and page.evaluate_button.isEnabled(), timeout=20_000)
        page.dims.combo.setCurrentIndex(page.dims.combo.findData(8))
        page.compare.setChecked(True)
        with qtbot.waitSignal(page.evaluated, timeout=120_000) as blocker:
            assert page.start()
        result = blocker.args[0]
        from engine.data import DatasetArgs, load_dataset
        from engine.inference import eval_batches, load_for_task, max_length_of
        from engine.metrics import evaluate_batches
        model, tokenizer, task, record = load_for_task(str(run))
        ds = load_dataset(DatasetArgs(**record["data"])).validation
        batches = eval_batches(model, tokenizer, task, ds, 32, max_length_of(model, tokenizer))
        at_8 = {k[:-2]: v for k, v in evaluate_batches(task, model, batches, matryoshka_dims=[8]).items()
                if k.endswith("@8")}   # the engine's Matryoshka evaluation
        assert result["dim"] == 8 and "at 8 dimensions" in result["choice"]
        assert_same(result["model"]["metrics"], at_8, tol=1e-5)
        assert "base" in result and "at 8 dimensions" in page.status.text()
        shot(page, screenshots, "evaluate_dims")
    finally:
        page.shutdown()
