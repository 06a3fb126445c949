"""Find hard negatives on the Data page: the dialog mines off the GUI thread exactly what engine.mining
mines, shows anchor / positive / negative with scores (closest calls first), drops the rows the user
unticks, writes the triplets to a new file beside the data (never over one) and switches the page
to it with the negative role mapped."""
from __future__ import annotations

import json
import threading

import pytest
from PySide6.QtCore import Qt

from tests.app_fixtures import app_models  # noqa: F401
from tests.test_app_support import app_settings, data_page, project, screenshots, shot, wait_idle  # noqa: F401

pytestmark = pytest.mark.gui

SETTINGS = {"num_negatives": 2, "range_min": 1, "range_max": 8, "margin": 0.001}


def test_output_path_never_reuses_a_file(tmp_path):
    from raclate_app.mining_dialog import output_path
    data = tmp_path / "pairs.jsonl"
    data.write_text("{}\n")
    assert output_path(str(data)) == tmp_path / "pairs.triplets.jsonl"
    (tmp_path / "pairs.triplets.jsonl").write_text("mine\n")
    assert output_path(str(data)) == tmp_path / "pairs.triplets-2.jsonl"
    (tmp_path / "pairs.triplets-2.summary.json").write_text("{}")   # a summary alone also takes the name
    assert output_path(str(data)) == tmp_path / "pairs.triplets-3.jsonl"


def test_find_hard_negatives_review_and_use(qtbot, data_page, project, app_models, tmp_path, screenshots,
                                            monkeypatch):
    from engine.inference import load_for_task
    from engine.mining import mine_hard_negatives, read_pairs
    from raclate_app import mining_dialog
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_bytes(app_models["data"]["pairs"].read_bytes())   # question / answer columns, 40 rows
    original = pairs.read_bytes()
    project.set_model(str(app_models["base"]))                     # a tiny BERT
    data_page.open_paths([pairs])
    wait_idle(qtbot, project)
    assert project.mapping == {"question": "text", "answer": "text_pair"} and data_page.mine_button.isVisible()
    shot(data_page, screenshots, "data_page_pairs")

    threads = []

    def recorded(*args, **kw):   # the encoding must run off the GUI thread
        threads.append(threading.current_thread() is threading.main_thread())
        return mine_hard_negatives(*args, **kw)
    monkeypatch.setattr(mining_dialog, "mine_hard_negatives", recorded)
    shown = []
    on_progress = mining_dialog.MiningDialog.on_progress
    monkeypatch.setattr(mining_dialog.MiningDialog, "on_progress",
                        lambda self, done, total, text: (shown.append(text), on_progress(self, done, total, text)))

    data_page.mine_button.click()
    dialog = data_page.mining_dialog
    assert dialog.isVisible()
    dialog.negatives.setValue(SETTINGS["num_negatives"])
    dialog.range_min.setValue(SETTINGS["range_min"])
    dialog.range_max.setValue(SETTINGS["range_max"])
    dialog.margin.setValue(SETTINGS["margin"])
    with qtbot.waitSignal(dialog.mined, timeout=60_000) as blocker:
        assert dialog.start()
    mined = blocker.args[0]
    assert threads == [False]
    assert {"Reading the pairs", "Loading the model", "Encoding queries", "Encoding documents"} <= set(shown)

    model, tokenizer, _, _ = load_for_task(str(app_models["base"]), "sentence-similarity")
    # The dialog encodes on a worker thread, one stream; on the main thread `encode` splits each batch over two
    # (engine/inference/encode.py: run_in_lanes), which moves scores by float rounding (~1e-7). Like for like:
    monkeypatch.setenv("RACLATE_INFERENCE_LANES", "1")
    theirs = mine_hard_negatives(model, tokenizer, read_pairs(pairs, {"text": "question", "text_pair": "answer"}),
                                 output_format="triplet", with_scores=True, **SETTINGS)
    assert mined.rows == theirs.rows and len(mined.rows) > 40
    table = dialog.model
    assert table.rowCount() == len(mined.rows) and table.columnCount() == 6
    shown = [mined.rows[int(i)] for i in table.order]
    gaps = [row["scores"][0] - row["scores"][1] for row in shown]
    assert gaps == sorted(gaps)   # closest calls first
    first = shown[0]
    assert [table.index(0, c).data() for c in (4, 5)] == [f"{score:.4f}" for score in first["scores"]]
    assert table.index(0, 1).data() == first["anchor"] and table.index(0, 3).data() == first["negative"]
    assert "kept" in dialog.status.text() and dialog.use_button.isEnabled()

    # the user judges the two closest calls false negatives
    for r in (0, 1):
        assert table.setData(table.index(r, 0), Qt.CheckState.Unchecked.value, Qt.ItemDataRole.CheckStateRole)
    assert table.index(0, 0).data(Qt.ItemDataRole.CheckStateRole) == Qt.CheckState.Unchecked
    assert f"{len(mined.rows) - 2:,} of {len(mined.rows):,} rows kept" in dialog.status.text()
    shot(dialog, screenshots, "mining_dialog")

    dropped = {int(table.order[0]), int(table.order[1])}
    target = tmp_path / "pairs.triplets.jsonl"
    with qtbot.waitSignal(dialog.triplets_written, timeout=30_000):
        dialog.use_button.click()
    qtbot.waitUntil(lambda: project.source == str(target) and project.mapping.get("negative") == "negative",
                    timeout=30_000)
    wait_idle(qtbot, project)
    assert pairs.read_bytes() == original                          # the user's file is untouched
    written = [json.loads(line) for line in target.read_text().splitlines()]
    assert written == [{k: row[k] for k in ("anchor", "positive", "negative")}
                       for i, row in enumerate(mined.rows) if i not in dropped]
    summary = json.loads((tmp_path / "pairs.triplets.summary.json").read_text())
    assert summary["dropped_in_review"] == 2 and summary["rows"] == len(written)
    assert project.mapping == {"anchor": "text", "positive": "text_pair", "negative": "negative"}
    assert project.task_key == "sentence-similarity" and not data_page.mine_button.isVisible()   # it has negatives
    shot(data_page, screenshots, "data_page_triplets")


def test_the_button_is_only_for_pair_data(qtbot, data_page, project, tmp_path):
    from tests.test_app_support import write_jsonl
    reviews = write_jsonl(tmp_path / "reviews.jsonl", [{"text": f"good {i}", "label": ["pos", "neg"][i % 2]}
                                                        for i in range(20)])
    data_page.open_paths([reviews])
    wait_idle(qtbot, project)
    assert project.task_key == "classification" and not data_page.mine_button.isVisible()
