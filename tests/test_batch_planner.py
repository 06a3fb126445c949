"""--batch-size auto (engine/training/batch_planner.py): the power-of-two search, the measured choice
on a tiny model under a small budget, trial steps that leave the run as it was, --effective-batch,
resume with the recorded batch, and the settings' checks."""
import gc

import pytest

from engine.training.args import TrainingArgs, batch_size_value
from engine.training.batch_planner import search
from tests.test_app_support import app_settings, model_page, project  # noqa: F401  (the GUI test's fixtures)
from tests.trainer_helpers import dataset, labels, load, max_diff, of, sentiment_rows, tiny_bert_dir, train, weights

GB = 2 ** 30


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return tiny_bert_dir(tmp_path_factory)


def test_search_doubles_until_a_batch_is_over_the_budget():
    measured, predicted = search(lambda b: 100 + 10 * b, budget=100 + 10 * 40, limit=1024)
    assert sorted(measured) == [8, 16, 32, 64] and not predicted   # 32 fits, 64 does not


def test_search_halves_when_the_first_trial_is_over_and_stops_at_the_data():
    assert sorted(search(lambda b: 100 + 10 * b, budget=100 + 10 * 3, limit=1024)[0]) == [2, 4, 8]
    assert sorted(search(lambda b: 100 + 10 * b, budget=10 ** 9, limit=20)[0]) == [8, 16]   # 20 rows: 16 at most


def test_search_does_not_try_a_batch_that_would_pass_the_machines_memory():
    tried = []
    measured, predicted = search(lambda b: tried.append(b) or 100 + 10 * b, budget=100 + 10 * 40, limit=1024,
                                 ceiling=100 + 10 * 60)
    assert tried == [8, 16, 32] and predicted == {64} and measured[64] == 100 + 10 * 64   # on the line, not run


def classify(bert_dir, rows, **args):
    model, tok = load(bert_dir, "text-classification", num_labels=2)
    trainer, result, events = train(model, tok, "text-classification", dataset(rows), label_info=labels(),
                                    **{"max_length": 64, **args})
    return model, trainer, events


def long_rows(n: int) -> list[dict]:
    """Rows of 64 tokens: their activations, not just the fixed weights and AdamW state, set the peak."""
    return sentiment_rows(n, words=70)


def peaks(bert_dir, rows) -> dict[int, int]:
    """{batch: measured peak} of an auto run that fits everything, its model gone again (the peak counts
    every MLX array of the process, as a run's own process would hold only its one model)."""
    events = classify(bert_dir, rows, batch_size="auto", memory_budget=64.0, max_steps=1)[2]
    gc.collect()
    return {m["batch_size"]: m["peak_memory_bytes"] for m in of(events, "batch_size_chosen")[0]["measured"]}


def test_auto_picks_the_largest_power_of_two_under_a_small_budget(bert_dir):
    rows = long_rows(64)
    peak = peaks(bert_dir, rows)
    assert sorted(peak) == [8, 16, 32, 64]   # all fit 64 GB; 64 rows
    # the weights, gradients and AdamW moments (~30 MB) set the peak up to batch 16; activations from there
    assert peak[8] < peak[32] < peak[64] and peak[64] - peak[32] > 0.5 * (peak[32] - peak[8])

    budget = (peak[32] + peak[64]) / 2   # a small budget: 32 fits, 64 does not
    _, trainer, events = classify(bert_dir, rows, batch_size="auto", memory_budget=budget / GB, max_steps=1)
    chosen = of(events, "batch_size_chosen")[0]
    measured = {m["batch_size"]: m["peak_memory_bytes"] for m in chosen["measured"]}
    b = chosen["batch_size"]
    assert b == 32 and measured[b] <= chosen["budget_bytes"] < measured[2 * b]
    assert trainer.args.batch_size == 32
    assert of(events, "run_started")[0]["config"]["training"]["batch_size"] == 32


def test_an_auto_run_trains_exactly_as_the_batch_it_chose(bert_dir):
    # The trial steps put the weights back and the dropout masks start from the seed again.
    rows = sentiment_rows(32)
    auto, trainer, events = classify(bert_dir, rows, batch_size="auto", max_steps=3)
    fixed, _, _ = classify(bert_dir, rows, batch_size=trainer.args.batch_size, max_steps=3)
    assert of(events, "batch_size_chosen")[0]["batch_size"] == 32   # the default budget fits the whole tiny set
    assert max_diff(weights(auto), weights(fixed)) == 0.0


def test_an_effective_batch_that_does_not_fit_is_made_up_by_accumulation(bert_dir):
    rows = long_rows(64)
    peak = peaks(bert_dir, rows)
    _, trainer, events = classify(bert_dir, rows, batch_size="auto", memory_budget=(peak[32] + peak[64]) / 2 / GB,
                                  effective_batch=80, max_steps=1)
    assert (trainer.args.batch_size, trainer.args.gradient_accumulation_steps) == (27, 3)   # 32 fits: 3 × 27 ≥ 80
    warning = " ".join(e["message"] for e in of(events, "warning"))
    assert "A batch of 80 does not fit" in warning and "3 gradient accumulation steps" in warning


def test_resume_keeps_the_recorded_batch(bert_dir, tmp_path):
    rows = sentiment_rows(32)
    out = tmp_path / "run"
    _, first, _ = classify(bert_dir, rows, batch_size="auto", max_steps=2, save_steps=1, output_dir=str(out))
    _, trainer, events = classify(bert_dir, rows, batch_size="auto", memory_budget=0.000001, max_steps=3,
                                  output_dir=str(out), resume_from_checkpoint="latest")
    assert not of(events, "batch_size_chosen")   # not measured again (the tiny budget would fit nothing)
    assert trainer.args.batch_size == first.args.batch_size == 32


def test_auto_batch_settings_are_checked():
    assert TrainingArgs(batch_size="Auto").batch_size == "auto"
    assert TrainingArgs(batch_size="24").batch_size == 24   # a run.json may hold the number as text
    assert batch_size_value("auto") == "auto" and batch_size_value("16") == 16
    with pytest.raises(ValueError, match="whole number or 'auto'"):
        batch_size_value("big")
    with pytest.raises(ValueError, match="--memory-budget is the limit of --batch-size auto"):
        TrainingArgs(batch_size=16, memory_budget=4.0)
    with pytest.raises(ValueError, match="leave --grad-accum at 1"):
        TrainingArgs(batch_size="auto", effective_batch=64, gradient_accumulation_steps=2)
    with pytest.raises(ValueError, match="--distributed"):
        TrainingArgs(batch_size="auto", distributed=True)


def test_measured_peaks_replace_the_estimate_between_and_beyond_the_batches_measured():
    from raclate_app.memory import measured_peak
    measured = [{"batch_size": 8, "peak_memory_bytes": 100}, {"batch_size": 16, "peak_memory_bytes": 180}]
    assert measured_peak(measured, 16) == 180
    assert measured_peak(measured, 12) == 140 and measured_peak(measured, 32) == 340   # a straight line
    assert measured_peak([], 8) is None


@pytest.mark.gui
def test_model_page_asks_for_auto_and_shows_what_a_run_measured(qtbot, project, model_page):  # noqa: F811
    from raclate_app.memory import measurement_key, remember
    page = model_page
    page.auto_batch.setChecked(True)
    assert project.training["batch_size"] == "auto" and not page.basic.editors["batch_size"].isEnabled()
    assert "Measured" not in page.memory_detail.text()   # nothing measured yet: the formula's estimate
    key = measurement_key(project.model, project.task.engine_task, project.training_values())
    remember(project.settings, key, {"batch_size": 32, "largest_fitting": 32, "budget_bytes": 4 * GB,
                                     "measured": [{"batch_size": 32, "peak_memory_bytes": 3 * GB},
                                                  {"batch_size": 64, "peak_memory_bytes": 5 * GB}]})
    page.update_memory()
    assert "Measured on this machine by a run with these settings: 3.0 GB at batch 32" in page.memory_detail.text()
    page.auto_batch.setChecked(False)   # the spin box's own number again
    assert isinstance(project.training["batch_size"], int) and page.basic.editors["batch_size"].isEnabled()


def test_the_first_step_is_the_compiling_phase(bert_dir):
    # Time to the first step: the app shows "compiling kernels" until the first step has run.
    events = classify(bert_dir, sentiment_rows(16), max_steps=2)[2]
    order = [e.get("name", e["event"]) for e in events if e["event"] in ("phase", "step")]
    assert order[order.index("compiling"):] == ["compiling", "training", "step", "step"]


def test_the_self_checks_library_is_imported_while_the_run_trains(monkeypatch):
    import sys
    import threading

    from engine.training import run
    from tests.tiny_families import build
    pytest.importorskip("torch")
    model = build("bert")   # an embedding model: its output is checked with sentence-transformers
    monkeypatch.setitem(run.REFERENCE_LIBRARIES, "sentence-transformers", "tabnanny")   # a harmless stand-in
    monkeypatch.delitem(sys.modules, "tabnanny", raising=False)
    run._preload_reference(model)
    for thread in threading.enumerate():
        if thread.name == "raclate-preload-reference":
            thread.join()
    assert "tabnanny" in sys.modules


def test_the_command_line_takes_auto_with_a_budget_and_an_effective_batch(tmp_path):
    from engine.cli import build_parser
    from engine.commands.train import resolve_train_config
    from engine.defaults import RESOURCES_DIR
    ns = build_parser().parse_args(["train", "--model", "default", "--task", "sentence-similarity", "--data",
                                    str(RESOURCES_DIR / "demo" / "pairs.jsonl"), "--output", str(tmp_path / "out"),
                                    "--batch-size", "auto", "--memory-budget", "2.5", "--effective-batch", "64"])
    args = resolve_train_config(ns).training
    assert (args.batch_size, args.memory_budget, args.effective_batch) == ("auto", 2.5, 64)
    with pytest.raises(SystemExit):   # argparse: "invalid batch_size_value value: 'lots'"
        build_parser().parse_args(["train", "--batch-size", "lots"])
