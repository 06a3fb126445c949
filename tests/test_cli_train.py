"""`raclate train`: clear errors for bad input, JSON-line events to a file or stdout, and the process
level guarantees: SIGKILL + --resume latest ends where an uninterrupted run ends, SIGINT stops cleanly
with a checkpoint that resumes."""
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from engine.cli import main
from tests.trainer_helpers import of, sentiment_rows, tiny_bert_dir


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return tiny_bert_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "reviews.jsonl"
    rows = [{"review": r["text"], "sentiment": ["neg", "pos"][r["label"]]} for r in sentiment_rows(200)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def train_args(bert_dir, data_file, out, *extra):
    return ["train", "--model", str(bert_dir), "--task", "text-classification", "--data", str(data_file),
            "--column", "text=review", "--column", "label=sentiment", "--output", str(out),
            "--batch-size", "8", "--lr", "3e-3", "--max-length", "32", "--seed", "5", *extra]


def run_cli(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_paragraph(err, *needles):
    assert err.startswith("error: ") and "Traceback" not in err
    assert "\n\n" not in err.strip() and len(err.strip().splitlines()) <= 2
    for needle in needles:
        assert needle in err


# -- bad input: exit code 2, one paragraph, no traceback ------------------------------------------
def test_unknown_task(bert_dir, data_file, tmp_path, capsys):
    argv = train_args(bert_dir, data_file, tmp_path / "out")
    argv[argv.index("text-classification")] = "summarisation"
    code, _, err = run_cli(argv, capsys)
    assert code == 2
    assert_one_paragraph(err, "Unknown task 'summarisation'", "text-classification")


def test_missing_data(bert_dir, tmp_path, capsys):
    code, _, err = run_cli(["train", "--model", str(bert_dir), "--task", "text-classification",
                            "--output", str(tmp_path / "out")], capsys)
    assert code == 2
    assert_one_paragraph(err, "--data")


def test_bad_column_syntax(bert_dir, data_file, tmp_path, capsys):
    code, _, err = run_cli(train_args(bert_dir, data_file, tmp_path / "out", "--column", "review"), capsys)
    assert code == 2
    assert_one_paragraph(err, "ROLE=NAME", "'review'")


def test_column_that_does_not_exist(bert_dir, data_file, tmp_path, capsys):
    code, _, err = run_cli(train_args(bert_dir, data_file, tmp_path / "out", "--column", "text=body"), capsys)
    assert code == 2
    assert_one_paragraph(err, "body")
    assert not (tmp_path / "out").exists()


def test_bad_setting_value(bert_dir, data_file, tmp_path, capsys):
    code, _, err = run_cli(train_args(bert_dir, data_file, tmp_path / "out", "--scheduler", "polynomial"), capsys)
    assert code == 2
    assert_one_paragraph(err, "lr_scheduler_type", "linear, cosine, constant")


def test_output_folder_that_is_not_a_run(bert_dir, data_file, tmp_path, capsys):
    out = tmp_path / "photos"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"\xff\xd8")
    code, _, err = run_cli(train_args(bert_dir, data_file, out), capsys)
    assert code == 2
    assert_one_paragraph(err, "not a RACLATE run", "nothing was written")
    assert sorted(p.name for p in out.iterdir()) == ["holiday.jpg"]


def test_unknown_model(data_file, tmp_path, capsys):
    events = tmp_path / "events.jsonl"
    code, _, err = run_cli(train_args(tmp_path / "no-such-model", data_file, tmp_path / "out",
                                      "--events", str(events)), capsys)
    assert code == 2
    assert_one_paragraph(err, "no-such-model", "does not exist")
    assert not (tmp_path / "out").exists()
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert [e for e in lines if e["event"] == "error"] == [lines[-1]] and lines[-1]["kind"] == "bad_model"


def test_debug_shows_the_traceback(data_file, tmp_path, capsys):
    code, _, err = run_cli(train_args(tmp_path / "no-such-model", data_file, tmp_path / "out", "--debug"), capsys)
    assert code == 2 and "Traceback" in err and "error: " in err


def test_existing_run_needs_resume_or_overwrite(bert_dir, data_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(train_args(bert_dir, data_file, out, "--max-steps", "2"), capsys)[0] == 0
    code, _, err = run_cli(train_args(bert_dir, data_file, out, "--max-steps", "2"), capsys)
    assert code == 2
    assert_one_paragraph(err, "already holds a run", "--resume", "--overwrite")
    code, out_text, _ = run_cli(train_args(bert_dir, data_file, out, "--max-steps", "3", "--overwrite"), capsys)
    assert code == 0 and out_text.startswith("finished: model saved to")
    assert json.loads((out / "raclate_run.json").read_text())["final_step"] == 3


def test_resume_without_a_checkpoint(bert_dir, data_file, tmp_path, capsys):
    code, _, err = run_cli(train_args(bert_dir, data_file, tmp_path / "new", "--resume"), capsys)
    assert code == 2
    assert_one_paragraph(err, "No checkpoint to resume from", "without --resume")
    assert not (tmp_path / "new").exists()
    code, _, err = run_cli(train_args(bert_dir, data_file, tmp_path / "new", "--resume", str(tmp_path)), capsys)
    assert code == 2
    assert_one_paragraph(err, "is not a checkpoint folder")


# -- flags come from the dataclasses ----------------------------------------------------------------
def test_every_training_setting_has_a_flag_with_help(tmp_path):
    from dataclasses import fields
    from engine.cli import build_parser
    from engine.commands.train import resolve_train_config
    from engine.training.args import TrainingArgs
    parser = build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    by_dest = {a.dest: a for a in train._actions}
    for f in fields(TrainingArgs):
        if f.metadata.get("cli", True):
            assert f.name in by_dest and by_dest[f.name].help, f.name
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"model": "m", "task": "masked-lm", "data": {"data": "d.jsonl"},
                                  "training": {"output_dir": "o", "learning_rate": 1e-4, "batch_size": 4}}))
    ns = parser.parse_args(["train", "--config", str(config), "--lr", "3e-5", "--no-compile", "--grad-checkpoint",
                            "--resume"])
    cfg = resolve_train_config(ns)
    args = cfg.training
    assert (args.learning_rate, args.batch_size, args.compile, args.grad_checkpoint) == (3e-5, 4, False, True)
    assert args.resume_from_checkpoint == "latest" and cfg.data.task_type == "masked-lm"


def test_family_preset_fills_what_was_not_given_and_a_flag_wins(bert_dir):
    from engine.cli import build_parser
    from engine.commands.train import resolve_train_config
    from engine.models import preset_for
    from engine.training.args import TrainingArgs
    preset = preset_for(str(bert_dir))   # BERT's, max_length capped at the tiny model's 64 positions
    assert preset["batch_size"] != 3 and preset["max_length"] != TrainingArgs.max_length
    base = ["train", "--model", str(bert_dir), "--task", "text-classification", "--data", "d.jsonl", "--output", "o"]
    args = resolve_train_config(build_parser().parse_args(base + ["--batch-size", "3"])).training
    assert args.batch_size == 3                                   # given: wins over the preset
    assert (args.learning_rate, args.max_length) == (preset["learning_rate"], preset["max_length"])
    cfg = resolve_train_config(build_parser().parse_args(base[:2] + ["nobody/not-here"] + base[3:]))
    assert (cfg.training.batch_size, cfg.training.max_length) == (TrainingArgs.batch_size, TrainingArgs.max_length)
    assert cfg.data.max_length == cfg.training.max_length and cfg.data.seed == TrainingArgs.seed


def test_import_direction():
    """engine/cli.py → engine/commands → the library: nothing else in engine imports engine.cli, and
    only engine/cli.py imports engine.commands."""
    import ast
    from pathlib import Path

    import engine
    root = Path(engine.__file__).parent
    for path in root.rglob("*.py"):
        name = path.relative_to(root.parent).with_suffix("").as_posix().replace("/", ".")
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported.update(a.name for a in node.names)
        assert "engine.cli" not in imported, name
        if not name.startswith(("engine.cli", "engine.commands")):
            assert not any(m.startswith("engine.commands") for m in imported), name


# -- events ---------------------------------------------------------------------------------------
def test_events_to_stdout_and_to_a_file_are_the_same_stream(bert_dir, data_file, tmp_path, capsys):
    code, out, _ = run_cli(train_args(bert_dir, data_file, tmp_path / "a", "--max-steps", "4",
                                      "--logging-steps", "2", "--events", "-"), capsys)
    assert code == 0
    stdout_events = [json.loads(line) for line in out.splitlines()]   # nothing but JSON lines on stdout
    events_file = tmp_path / "events.jsonl"
    code, out, _ = run_cli(train_args(bert_dir, data_file, tmp_path / "b", "--max-steps", "4",
                                      "--logging-steps", "2", "--events", str(events_file)), capsys)
    assert code == 0 and out.startswith("finished:")
    file_events = [json.loads(line) for line in events_file.read_text().splitlines()]
    strip = lambda events: [(e["event"], e.get("step"), e.get("name")) for e in events]
    assert strip(stdout_events) == strip(file_events)
    assert stdout_events[-1]["event"] == "finished" and stdout_events[-1]["stopped_early"] is False
    assert [e["step"] for e in of(stdout_events, "step")] == [2, 4]
    losses = [(a["loss"], b["loss"]) for a, b in zip(of(stdout_events, "step"), of(file_events, "step"))]
    assert all(a == pytest.approx(b, abs=1e-6) for a, b in losses)   # same seed, same run


# -- process level: SIGKILL + resume, SIGINT --------------------------------------------------------
def start(argv, stderr_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "engine.cli", *argv, "--events", "-"], stdout=subprocess.PIPE,
                            stderr=open(stderr_path, "w"), text=True, env=env, cwd=os.getcwd())


def read_until(proc, predicate) -> list[dict]:
    events = []
    for line in proc.stdout:
        events.append(json.loads(line))
        if predicate(events[-1]):
            return events
    raise AssertionError(f"the run ended (rc={proc.wait()}) before the awaited event; last: {events[-1:]}")


def final_weights(out):
    import mlx.core as mx
    return {k: np.array(v) for k, v in mx.load(str(out / "model.safetensors")).items()}


@pytest.mark.slow
def test_sigkill_then_resume_latest_matches_an_uninterrupted_run(bert_dir, data_file, tmp_path):
    steps = ["--max-steps", "120", "--save-steps", "10", "--logging-steps", "1", "--warmup", "0.1"]
    ref = subprocess.run([sys.executable, "-m", "engine.cli", *train_args(bert_dir, data_file, tmp_path / "ref", *steps)],
                         capture_output=True, text=True)
    assert ref.returncode == 0, ref.stderr

    out = tmp_path / "killed"
    proc = start(train_args(bert_dir, data_file, out, *steps), tmp_path / "killed.err")
    events = read_until(proc, lambda e: e["event"] == "checkpoint" and e["step"] >= 30)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    proc.stdout.close()
    assert not of(events, "finished")
    latest = sorted(p.name for p in (out / "checkpoints").iterdir() if p.name.startswith("step-"))[-1]
    killed_at = int(latest.split("-")[1])
    assert killed_at < 120 and killed_at % 23 != 0          # 23 batches per epoch: stopped mid-epoch

    resumed = subprocess.run([sys.executable, "-m", "engine.cli",
                              *train_args(bert_dir, data_file, out, *steps, "--resume", "latest", "--events", "-")],
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    resumed_events = [json.loads(line) for line in resumed.stdout.splitlines()]
    assert of(resumed_events, "run_started")[0]["resumed_from_step"] == killed_at
    assert of(resumed_events, "finished")[0]["stopped_early"] is False

    a, b = final_weights(tmp_path / "ref"), final_weights(out)
    diff = max(float(np.abs(a[k] - b[k]).max()) for k in a)
    print(f"\nSIGKILL at step ≥ {killed_at}, resumed from step {killed_at}: max |Δw| vs uninterrupted = {diff:.3g}")
    assert diff <= 1e-5


@pytest.mark.slow
def test_sigint_stops_cleanly_with_a_checkpoint_that_resumes(bert_dir, data_file, tmp_path):
    out = tmp_path / "run"
    steps = ["--max-steps", "500", "--save-steps", "0", "--logging-steps", "1"]
    proc = start(train_args(bert_dir, data_file, out, *steps), tmp_path / "run.err")
    events = read_until(proc, lambda e: e["event"] == "step" and e["step"] >= 3)
    proc.send_signal(signal.SIGINT)
    events += [json.loads(line) for line in proc.stdout]
    assert proc.wait() == 0, (tmp_path / "run.err").read_text()
    finished = events[-1]
    assert finished["event"] == "finished" and finished["stopped_early"] is True
    stopped_at = of(events, "step")[-1]["step"]
    assert 3 <= stopped_at < 500
    checkpoint = of(events, "checkpoint")[-1]
    assert checkpoint["step"] == stopped_at and os.path.isdir(checkpoint["path"])
    assert json.loads((out / "raclate_run.json").read_text())["status"] == "stopped"
    assert "Traceback" not in (tmp_path / "run.err").read_text()

    resumed = subprocess.run([sys.executable, "-m", "engine.cli",
                              *train_args(bert_dir, data_file, out, "--max-steps", str(stopped_at + 5),
                                          "--resume", "--events", "-")], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    resumed_events = [json.loads(line) for line in resumed.stdout.splitlines()]
    assert of(resumed_events, "run_started")[0]["resumed_from_step"] == stopped_at
    assert of(resumed_events, "finished")[0]["stopped_early"] is False
