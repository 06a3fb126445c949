"""Big files (issue 18): Start is allowed once the first rows passed their check while every row is
checked in the background; a fatal problem only that full check finds stops a run before it trains
(and the training child refuses such data itself: bad_data, exit 2); the exact row count replaces
the preview's estimate. The start-to-Start time on 200,000 rows is printed, not asserted."""
from __future__ import annotations

import threading
import time

import pyarrow as pa
import pyarrow.csv as pcsv
import pytest

from benchmarks.validation import make_csv
from tests.test_app_support import (app_settings, drop_paths, screenshots, shot, wait_checked,  # noqa: F401
                                    window, write_jsonl)

pytestmark = pytest.mark.gui
ROWS = 200_000


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory):
    return make_csv(tmp_path_factory.mktemp("big") / "reviews.csv", ROWS)


@pytest.fixture
def gated_full_check(monkeypatch):
    """The full check waits until the test sets the returned event (the sample check runs as it is)."""
    import raclate_app.state as state
    gate, started = threading.Event(), threading.Event()
    full_check = state.check_data

    def check_when_let_go(args, tokenizer=None, progress=None):
        started.set()
        assert gate.wait(120)
        return full_check(args, None, progress=progress)   # no token count: a minute on 200,000 rows here
    monkeypatch.setattr(state, "check_data", check_when_let_go)
    gate.started = started
    yield gate
    gate.set()


def test_start_after_the_sample_check_and_the_exact_row_count_after_the_full_one(qtbot, window, big_csv,
                                                                                gated_full_check, screenshots):
    p, train, data = window.project, window.pages["train"], window.pages["data"]
    qtbot.waitUntil(lambda: p.tokenizer is not None, timeout=60_000)   # loaded while the app starts
    window.go_to("data")
    t0 = time.perf_counter()
    drop_paths(window, [big_csv])
    qtbot.waitUntil(train.start_button.isEnabled, timeout=60_000)
    seconds = time.perf_counter() - t0
    print(f"\nstart-to-Start-enabled on {ROWS:,} rows: {seconds:.2f} s (drop → preview → sample check)")
    assert gated_full_check.started.is_set() and not gated_full_check.is_set()
    assert p.full_checking and p.check.sample and p.check.report.ok and p.task_key == "classification"
    assert "≈" in data.info_label.text()
    assert "The first 2,000 rows are ready" in data.blocking.text()
    assert "about the first 2,000 rows; checking every row" in data.report.toPlainText()
    shot(window, screenshots, "big_file_sample_passed")

    gated_full_check.set()
    qtbot.waitUntil(lambda: not p.full_checking, timeout=600_000)
    assert p.check.report.ok and not p.check.sample and p.check.rows == ROWS
    assert sum(p.check.report.num_rows.values()) == ROWS
    assert p.preview.num_rows == ROWS and not p.preview.num_rows_is_estimate
    assert f"{ROWS:,} rows" in data.info_label.text() and "≈" not in data.info_label.text()
    assert f"({ROWS:,} rows)" in train.summary.text()
    assert "The data is ready for training" in data.blocking.text() and train.start_button.isEnabled()
    shot(window, screenshots, "big_file_checked")


def _labels_missing_after_the_sample(path, n=3000):
    texts = [f"Review {i}: the {('lid', 'pages', 'motor')[i % 3]} was {('fine', 'bad')[i % 2]}." for i in range(n)]
    labels = [None if i == n - 10 else ("books", "toys", "garden")[i % 3] for i in range(n)]
    pcsv.write_csv(pa.table({"text": texts, "category": labels}), path)
    return path


def _waiting_child(tmp_path, monkeypatch):
    """The training child replaced by one that loads data forever (until Stop), as a slow start would."""
    from raclate_app.supervisor import TrainingSupervisor
    script = tmp_path / "child.sh"
    script.write_text("#!/bin/sh\ntrap 'exit 130' INT\n"
                      "echo '{\"event\": \"phase\", \"time\": 0, \"name\": \"loading_data\"}'\n"
                      "while true; do sleep 0.1; done\n")
    script.chmod(0o755)
    monkeypatch.setattr(TrainingSupervisor, "command", lambda self: [str(script)])


def test_a_fatal_problem_the_full_check_finds_stops_the_run_before_training(qtbot, window, tmp_path, monkeypatch,
                                                                           gated_full_check, screenshots):
    _waiting_child(tmp_path, monkeypatch)
    p, train = window.project, window.pages["train"]
    p.open_source(str(_labels_missing_after_the_sample(tmp_path / "reviews.csv")))
    qtbot.waitUntil(train.start_button.isEnabled, timeout=60_000)   # the first 2,000 rows are fine
    assert p.full_checking
    window.go_to("train")
    assert train.start()
    qtbot.waitUntil(lambda: train.phase_labels["loading_data"].font().bold(), timeout=20_000)
    finished = []
    train.supervisor.run_finished.connect(finished.append)
    gated_full_check.set()
    qtbot.waitUntil(lambda: not train.running, timeout=60_000)
    assert finished and finished[0]["incomplete"] and not p.full_checking
    log = train.log.toPlainText()
    assert "The full data check found a problem, so the run stops before training" in log
    assert "1 row(s) have no label" in log
    assert "1 row(s) have no label" in train.blocking.text() and not train.start_button.isEnabled()
    assert "Stopped." in train.result_label.text()
    shot(window, screenshots, "big_file_run_stopped")


@pytest.mark.slow
def test_the_training_child_refuses_bad_data_as_bad_data_exit_2(qtbot, window, tmp_path, screenshots):
    """Whatever the app checked, the child checks the data again before it loads the model: a fatal
    finding is an error event (bad_data), exit code 2, and the page shows it."""
    p, train = window.project, window.pages["train"]
    rows = [{"text": f"review {i}", "label": None if i == 7 else "ab"[i % 2]} for i in range(30)]
    p.open_source(str(write_jsonl(tmp_path / "bad.jsonl", rows)))
    qtbot.waitUntil(lambda: p.preview is not None, timeout=20_000)
    p.set_task("classification")
    wait_checked(qtbot, p)
    assert not train.start_button.isEnabled()
    out = tmp_path / "out"
    assert train.start_config(p.run_config(out), out)   # past the page's own check, as a stale check would be
    failures = []
    train.supervisor.run_failed.connect(failures.append)
    qtbot.waitUntil(lambda: not train.running, timeout=120_000)
    assert failures and failures[0]["kind"] == "bad_data" and failures[0]["returncode"] == 2, failures
    assert "have no label" in train.result_label.text() and "What to try" in train.result_label.text()
    window.go_to("train")
    shot(window, screenshots, "child_refused_bad_data")
