"""train_run (the pipeline behind the CLI and the GUI): the event contract, raclate_run.json, error
events, and that the engine never prints."""
import json
import math
from pathlib import Path

import pytest

from engine.data import DatasetArgs
from engine.events import EVENTS
from engine.training.run import RUN_FILE, train_run
from engine.training.args import TrainingArgs
from engine.training.config import RunConfig
from tests.trainer_helpers import of, sentiment_rows, tiny_bert_dir

STEP_FIELDS = {"step", "epoch", "loss", "learning_rate", "grad_norm", "examples_per_s", "tokens_per_s", "eta_s",
               "peak_memory_bytes"}
PHASES = {"loading_data", "tokenizing", "loading_model", "measuring", "compiling", "training", "evaluating",
          "saving"}


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return tiny_bert_dir(tmp_path_factory)


@pytest.fixture
def data_file(tmp_path):
    path = tmp_path / "reviews.jsonl"
    rows = [{"review": r["text"], "sentiment": ["neg", "pos"][r["label"]]} for r in sentiment_rows(40)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def config(bert_dir, data_file, out, **training):
    data = DatasetArgs(data=str(data_file), task_type="text-classification",
                       columns={"text": "review", "label": "sentiment"}, validation_split=0.2, max_length=32)
    args = dict(output_dir=str(out), batch_size=8, learning_rate=5e-3, max_steps=6, logging_steps=2, save_steps=3,
                max_length=32, seed=1)
    return RunConfig(str(bert_dir), "text-classification", data, TrainingArgs(**{**args, **training}))


def assert_plain_json(value):
    assert json.loads(json.dumps(value, allow_nan=False)) == value
    if isinstance(value, dict):
        for v in value.values():
            assert_plain_json(v)
    elif isinstance(value, list):
        for v in value:
            assert_plain_json(v)
    else:
        assert value is None or isinstance(value, (bool, int, float, str))


def test_event_contract_and_no_prints(bert_dir, data_file, tmp_path, capfd):
    events = []
    record = train_run(config(bert_dir, data_file, tmp_path / "run"), [events.append])
    out, _ = capfd.readouterr()
    assert out == "", "the engine must not print to stdout"

    for e in events:
        assert e["event"] in EVENTS and isinstance(e["time"], float)
        assert_plain_json(e)
    names = [e["event"] for e in events]
    assert names[0] == "phase" and names[-1] == "finished"
    assert {e["name"] for e in of(events, "phase")} <= PHASES
    started = of(events, "run_started")[0]
    assert started["total_steps"] == 6 and started["num_examples"] == 32 and started["resumed_from_step"] is None
    assert 0 < started["trainable_parameters"] == started["total_parameters"]
    assert started["config"]["training"]["max_steps"] == 6 and started["run_id"] == record["run_id"]
    steps = of(events, "step")
    assert [s["step"] for s in steps] == [2, 4, 6]
    for s in steps:
        assert set(s) == STEP_FIELDS | {"event", "time"}
        assert all(isinstance(s[k], float) for k in STEP_FIELDS - {"step", "peak_memory_bytes"})
        assert isinstance(s["step"], int) and isinstance(s["peak_memory_bytes"], int)
        assert math.isfinite(s["loss"]) and s["learning_rate"] > 0 and s["examples_per_s"] > 0
    assert [e["step"] for e in of(events, "eval")] == [0, 6]
    assert {"eval_loss", "accuracy"} <= set(of(events, "eval")[-1]["metrics"])
    checkpoints = of(events, "checkpoint")
    assert [c["step"] for c in checkpoints] == [3, 6]
    assert all(Path(c["path"]).parent == tmp_path / "run" / "checkpoints" for c in checkpoints)
    finished = events[-1]
    assert finished["output_dir"] == str(tmp_path / "run") and finished["stopped_early"] is False
    assert finished["metrics"] == of(events, "eval")[-1]["metrics"]

    saved = json.loads((tmp_path / "run" / RUN_FILE).read_text())
    assert saved["status"] == "finished" and saved["final_step"] == 6 and saved["seed"] == 1
    assert saved["metrics"]["accuracy"] == finished["metrics"]["accuracy"]
    assert {"mlx", "transformers", "python"} <= set(saved["versions"])
    assert saved["data"]["columns"] == {"text": "review", "label": "sentiment"}
    assert saved["label_info"]["names"] == ["neg", "pos"]
    assert [h["step"] for h in saved["history"] if h["event"] == "step"] == [2, 4, 6]
    assert (tmp_path / "run" / "config.json").exists() and (tmp_path / "run" / "tokenizer.json").exists()


def test_automatic_logging_interval():
    """logging_steps 0 (the default): every 10 steps, more often on short runs so their curves have points."""
    auto = TrainingArgs()
    assert auto.logging_steps == 0
    assert [auto.logging_interval(n) for n in (5, 250, 499, 500, 10_000)] == [1, 2, 4, 10, 10]
    assert TrainingArgs(logging_steps=3).logging_interval(5) == 3
    assert TrainingArgs(max_steps=7).total_steps(100) == 7 and TrainingArgs(num_train_epochs=1.5).total_steps(3) == 5


def test_resume_reports_where_it_started(bert_dir, data_file, tmp_path):
    out = tmp_path / "run"
    first = train_run(config(bert_dir, data_file, out, max_steps=3))
    events = []
    cfg = config(bert_dir, data_file, out, max_steps=6, resume_from_checkpoint="latest")
    second = train_run(cfg, [events.append])
    assert of(events, "run_started")[0]["resumed_from_step"] == 3
    assert [s["step"] for s in of(events, "step")] == [4, 6]
    assert second["run_id"] == first["run_id"]


def test_same_seed_same_weights_even_with_a_new_head(bert_dir, data_file, tmp_path):
    """The classifier head is new: its initial weights must come from the seed, not the clock."""
    import mlx.core as mx
    results = []
    for name in ("a", "b"):
        mx.random.seed(int(name == "b") * 999)   # whatever the global state was before the run
        train_run(config(bert_dir, data_file, tmp_path / name, max_steps=2))
        results.append(mx.load(str(tmp_path / name / "model.safetensors")))
    assert all(mx.array_equal(results[0][k], results[1][k]) for k in results[0])


def test_divergence_is_an_error_event(bert_dir, data_file, tmp_path):
    from engine.errors import TrainingError
    events = []
    cfg = config(bert_dir, data_file, tmp_path / "run", learning_rate=1e12, max_steps=30, max_bad_steps=3,
                 max_grad_norm=0.0, lr_scheduler_type="constant", weight_decay=0.0)
    with pytest.raises(TrainingError):
        train_run(cfg, [events.append])
    error = of(events, "error")[-1]
    assert error["kind"] == "diverged" and "learning rate (1e+12)" in error["hint"]
    assert len(of(events, "warning")) >= 3
    saved = json.loads((tmp_path / "run" / RUN_FILE).read_text())
    assert saved["status"] == "crashed" and saved["error"]["kind"] == "diverged"


def test_bad_model_is_an_error_event_and_writes_nothing(data_file, tmp_path):
    from engine.models import ModelError
    events = []
    with pytest.raises(ModelError):
        train_run(config(tmp_path / "no-such-model", data_file, tmp_path / "run"), [events.append])
    assert of(events, "error")[-1]["kind"] == "bad_model"
    assert not (tmp_path / "run").exists()
