"""Training never loses or deletes what it should keep (issue 17): an output-folder lock, `--overwrite`
that replaces a run whole and only once the new one has finished, fallback past a damaged checkpoint,
a full disk said as such, advice that is not circular, warnings off a terminal, Ctrl+C before
training, non-finite settings, bad input with exit code 2, and the kill -9 loop."""
import errno
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from engine.cli import main
from engine.errors import UsageError
from engine.files import LOCK_FILE, lock_folder
from engine.run_record import read_run_record, write_run_record
from engine.training.checkpoint import (checkpoint_dirs, checkpoint_problem, find_checkpoint, pick_checkpoint,
                                        rotate_checkpoints)
from tests.test_cli_train import assert_one_paragraph, bert_dir, data_file, run_cli, train_args  # noqa: F401 (fixtures)
from tests.trainer_helpers import of


def tree(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def contents(folder):
    """Every file's bytes, but the lock file's (a run writes its pid there)."""
    return {p: (folder / p).read_bytes() for p in tree(folder) if (folder / p).is_file() and p != LOCK_FILE}


def events_of(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def fake_embedding_run(folder):
    """What an embedding run leaves: a sentence-transformers layout and its record."""
    (folder / "1_Pooling").mkdir(parents=True)
    (folder / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": true}')
    (folder / "modules.json").write_text("[]")
    (folder / "model.safetensors").write_bytes(b"old weights")
    write_run_record(folder, {"run_id": "old", "status": "finished", "task": "sentence-similarity"})
    return folder


# -- 1. the output-folder lock -------------------------------------------------------------------------
def test_a_folder_being_trained_is_refused_to_a_second_run_and_to_export(bert_dir, data_file, tmp_path, capsys):
    out = fake_embedding_run(tmp_path / "run")
    lock = lock_folder(out)          # a run in progress (this process holds the lock)
    before = contents(out)
    try:
        for extra in ((), ("--overwrite",), ("--resume",)):
            code, _, err = run_cli(train_args(bert_dir, data_file, out, *extra), capsys)
            assert code == 2
            assert_one_paragraph(err, "in use by another run", f"pid {os.getpid()}", "nothing was written")
        code, _, err = run_cli(["export", "--model", str(bert_dir), "--to", str(out), "--overwrite"], capsys)
        assert code == 2 and f"pid {os.getpid()}" in err and "being written by a training run" in err
        # The API checks again under the lock: a run that passed the command's check still cannot write.
        from engine.training.config import build_run_config
        from engine.training.run import train_run
        cfg = build_run_config(model=str(bert_dir), task="text-classification", data=str(data_file),
                               columns={"text": "review", "label": "sentiment"}, output_dir=str(out), max_steps=1,
                               max_length=32)
        with pytest.raises(UsageError, match="in use by another run"):
            train_run(cfg, overwrite=True)
    finally:
        lock.release()
    assert contents(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_rotation_removes_only_its_own_or_dead_writers_temp_folders(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        for pid in (os.getpid(), sleeper.pid, dead.pid):
            (tmp_path / f".tmp-step-0000009-{pid}").mkdir()
        (tmp_path / "step-0000001").mkdir()
        rotate_checkpoints(tmp_path, 2)
        assert sorted(p.name for p in tmp_path.iterdir()) == [f".tmp-step-0000009-{sleeper.pid}", "step-0000001"]
    finally:
        sleeper.kill()
        sleeper.wait()


# -- 2. --overwrite replaces a run whole, and only once the new one has finished --------------------------
def test_overwrite_replaces_the_whole_run(bert_dir, data_file, tmp_path, capsys):
    out = fake_embedding_run(tmp_path / "run")
    code, _, err = run_cli(train_args(bert_dir, data_file, out, "--max-steps", "2", "--overwrite"), capsys)
    assert code == 0, err
    assert not (out / "modules.json").exists() and not (out / "1_Pooling").exists()
    record = read_run_record(out)
    assert record["status"] == "finished" and record["final_step"] == 2 and record["run_id"] != "old"
    assert record["training"]["output_dir"] == str(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]   # no replacement or old folder left beside it


def test_overwrite_never_deletes_a_folder_it_did_not_write(bert_dir, data_file, tmp_path, capsys):
    out = tmp_path / "mine"
    (out / "checkpoints").mkdir(parents=True)
    (out / "notes.txt").write_text("keep me")
    before = contents(out)
    code, _, err = run_cli(train_args(bert_dir, data_file, out, "--overwrite"), capsys)
    assert code == 2
    assert_one_paragraph(err, "not written by RACLATE", "nothing was deleted")
    assert contents(out) == before and tree(out) == ["checkpoints", "notes.txt"]


def test_a_failed_replacement_keeps_the_old_run_and_resumes_with_overwrite(bert_dir, data_file, tmp_path, capsys,
                                                                          monkeypatch):
    from engine.training import trainer as trainer_module
    out = fake_embedding_run(tmp_path / "run")
    before = contents(out)
    real = trainer_module.rotate_checkpoints
    calls = []

    def crash_after_two_checkpoints(*args, **kwargs):
        real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("the machine fell over")

    monkeypatch.setattr(trainer_module, "rotate_checkpoints", crash_after_two_checkpoints)
    steps = ["--max-steps", "6", "--save-steps", "2"]
    code, _, err = run_cli(train_args(bert_dir, data_file, out, *steps, "--overwrite"), capsys)
    staging = tmp_path / ".run.new-run"
    assert code == 1 and str(staging) in err and "--overwrite --resume" in err and "kept as it was" in err
    assert contents(out) == before                                      # the old run, byte for byte
    assert read_run_record(staging)["status"] == "crashed"
    assert [p.name for p in checkpoint_dirs(staging / "checkpoints")] == ["step-0000002", "step-0000004"]

    code, _, err = run_cli(train_args(bert_dir, data_file, out, *steps, "--resume"), capsys)
    assert code == 2 and "nothing to resume" in err and f"replacement in {staging}" in err   # the old run's

    monkeypatch.setattr(trainer_module, "rotate_checkpoints", real)
    events = tmp_path / "events.jsonl"
    code, _, err = run_cli(train_args(bert_dir, data_file, out, *steps, "--overwrite", "--resume",
                                      "--events", str(events)), capsys)
    assert code == 0, err
    assert of(events_of(events), "run_started")[0]["resumed_from_step"] == 4
    assert not (out / "modules.json").exists() and read_run_record(out)["status"] == "finished"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.jsonl", "run"]


def test_overwrite_with_resume_needs_an_unfinished_replacement(bert_dir, data_file, tmp_path, capsys):
    out = fake_embedding_run(tmp_path / "run")
    code, _, err = run_cli(train_args(bert_dir, data_file, out, "--overwrite", "--resume"), capsys)
    assert code == 2
    assert_one_paragraph(err, "unfinished replacement", "there is none", "--resume alone", "--overwrite alone")


# -- 3. a damaged checkpoint ---------------------------------------------------------------------------
def three_checkpoints(bert_dir, data_file, out, capsys):
    code, _, err = run_cli(train_args(bert_dir, data_file, out, "--max-steps", "6", "--save-steps", "2",
                                      "--save-total-limit", "3"), capsys)
    assert code == 0, err
    return checkpoint_dirs(out / "checkpoints")


def test_resume_latest_passes_over_a_damaged_checkpoint_and_says_so(bert_dir, data_file, tmp_path, capsys):
    out = tmp_path / "run"
    two, four, six = three_checkpoints(bert_dir, data_file, out, capsys)
    weights = six / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])                 # a write cut short
    (four / "optimizer.safetensors").unlink()
    assert "weights.safetensors is cut short" in checkpoint_problem(six)
    assert "optimizer.safetensors is missing" in checkpoint_problem(four)
    assert checkpoint_problem(two) is None
    path, passed_over = pick_checkpoint(out, "latest")
    assert path == two and len(passed_over) == 2 and "step-0000006" in passed_over[0]

    events = tmp_path / "events.jsonl"
    code, _, err = run_cli(train_args(bert_dir, data_file, out, "--max-steps", "8", "--resume", "--events",
                                      str(events)), capsys)
    assert code == 0, err
    seen = events_of(events)
    assert of(seen, "run_started")[0]["resumed_from_step"] == 2
    warned = [w["message"] for w in of(seen, "warning")]
    assert any("step-0000006 is damaged" in m and "resuming from step-0000002" in m for m in warned)
    assert "step-0000006 is damaged" in err                          # on stderr too, off a terminal


def test_no_usable_checkpoint_names_the_files(bert_dir, data_file, tmp_path, capsys):
    out = tmp_path / "run"
    dirs = three_checkpoints(bert_dir, data_file, out, capsys)
    for d in dirs:
        (d / "trainer_state.json").write_text("{not json")
    with pytest.raises(UsageError) as caught:
        find_checkpoint(out, "latest")
    assert all(str(d / "trainer_state.json") in str(caught.value) for d in dirs)
    code, _, err = run_cli(train_args(bert_dir, data_file, out, "--max-steps", "8", "--resume"), capsys)
    assert code == 2
    assert_one_paragraph(err, "No usable checkpoint", str(dirs[-1] / "trainer_state.json"), "does not parse")
    assert "internal" not in err.lower() and "traceback" not in err.lower()


# -- 4. a full disk --------------------------------------------------------------------------------------
@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"),
                                     RuntimeError("[write] Unable to write 8 bytes to file.")])
def test_a_full_disk_is_said_cleaned_up_and_recorded(bert_dir, data_file, tmp_path, capsys, monkeypatch, failure):
    import mlx.core as mx
    real = mx.save_safetensors

    def writer(path, *args, **kwargs):
        if "optimizer" in str(path):                                  # half of the checkpoint is on disk
            raise failure
        real(path, *args, **kwargs)

    monkeypatch.setattr(mx, "save_safetensors", writer)
    out = tmp_path / "run"
    events = tmp_path / "events.jsonl"
    code, _, err = run_cli(train_args(bert_dir, data_file, out, "--max-steps", "4", "--save-steps", "2",
                                      "--events", str(events)), capsys)
    assert code == 1
    assert_one_paragraph(err, "The disk is full", "checkpoint step-0000002", str(out / "checkpoints"), "MB")
    assert "--resume latest" in err and "Traceback" not in err
    assert os.listdir(out / "checkpoints") == []                     # the temporary folder is gone
    record = read_run_record(out)
    assert record["status"] == "failed" and "The disk is full" in record["error"]["message"]
    assert of(events_of(events), "error")[-1]["kind"] == "io"


# -- 5. no circular advice for a run that died before its first checkpoint ----------------------------------
def test_a_run_without_checkpoint_is_told_to_start_again_with_overwrite(bert_dir, data_file, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    write_run_record(out, {"run_id": "x", "status": "crashed"})
    code, _, err = run_cli(train_args(bert_dir, data_file, out), capsys)
    assert code == 2
    assert_one_paragraph(err, "no checkpoint", "--overwrite")
    assert "--resume" not in err
    code, _, err = run_cli(train_args(bert_dir, data_file, out, "--resume"), capsys)
    assert code == 2
    assert_one_paragraph(err, "nothing to resume", "--overwrite without --resume")
    assert "Start the run without --resume" not in err


# -- 6. warnings reach stderr off a terminal, also with --events ------------------------------------------
@pytest.mark.parametrize("events", ["-", "file"])
def test_warnings_go_to_stderr_once_each(bert_dir, data_file, tmp_path, capsys, events):
    target = "-" if events == "-" else str(tmp_path / "events.jsonl")
    code, _, err = run_cli(train_args(bert_dir, data_file, tmp_path / "run", "--lr", "1e12", "--max-grad-norm", "0",
                                      "--weight-decay", "0", "--scheduler", "constant", "--max-steps", "30",
                                      "--max-bad-steps", "3", "--events", target), capsys)
    assert code == 1
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) >= 3 and "non-finite" in warnings[0]
    assert len(warnings) == len(set(warnings))


# -- 7. Ctrl+C before training --------------------------------------------------------------------------
def test_ctrl_c_while_loading_the_model_says_nothing_was_saved(bert_dir, data_file, tmp_path, capsys, monkeypatch):
    import engine.models

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(engine.models, "load_model", interrupted)
    code, _, err = run_cli(train_args(bert_dir, data_file, tmp_path / "run"), capsys)
    assert code == 130
    assert_one_paragraph(err, "Stopped before training started; nothing was saved.")
    assert "second Ctrl+C" not in err and "--resume" not in err
    assert not (tmp_path / "run").exists()


# -- 8. non-finite settings -----------------------------------------------------------------------------
@pytest.mark.parametrize("flag,value", [("--lr", "nan"), ("--weight-decay", "inf"), ("--warmup", "nan"),
                                        ("--max-grad-norm", "-inf"), ("--epochs", "nan")])
def test_non_finite_settings_are_refused_with_the_flag(bert_dir, data_file, tmp_path, capsys, flag, value):
    code, _, err = run_cli(train_args(bert_dir, data_file, tmp_path / "run", f"{flag}={value}"), capsys)
    assert code == 2
    assert_one_paragraph(err, flag, "finite")
    assert not (tmp_path / "run").exists()


# -- 9. help text ----------------------------------------------------------------------------------------
def test_grad_checkpoint_help_shows_its_percentage():
    from engine.cli import build_parser
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    text = " ".join(train.format_help().split())
    assert "~30% slower" in text and "'option_strings'" not in text


# -- 10. bad input exits 2 -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scored_pairs(tmp_path_factory):
    path = tmp_path_factory.mktemp("pairs") / "scored.jsonl"
    rows = [{"text": f"a {w}", "text_pair": f"b {w}", "label": i / 10} for i, w in enumerate(
        ["good", "bad", "film", "book", "day", "meal", "great", "poor", "fine", "dull", "nice"])]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("loss,needle", [("mse", "does not fit"), ("squared_hinge", "unknown loss")])
def test_a_loss_that_does_not_fit_exits_2(bert_dir, scored_pairs, tmp_path, capsys, loss, needle):
    code, _, err = run_cli(["train", "--model", str(bert_dir), "--task", "sentence-similarity", "--data",
                            str(scored_pairs), "--output", str(tmp_path / "run"), "--max-length", "32",
                            "--max-steps", "2", "--loss", loss], capsys)
    assert code == 2
    assert_one_paragraph(err, needle)
    assert "report the traceback" not in err


def test_a_bad_hub_repo_id_exits_2_before_any_work(bert_dir, data_file, tmp_path, capsys):
    code, _, err = run_cli(train_args(bert_dir, data_file, tmp_path / "run", "--push-to-hub", "not a/valid//id"),
                           capsys)
    assert code == 2
    assert_one_paragraph(err, "not a valid Hub repository id")
    assert not (tmp_path / "run").exists()


# -- 11. kill -9 at random moments, then --resume latest, ten times -----------------------------------------
def complete_steps(out):
    """The step numbers of the checkpoint folders, each of which must verify."""
    dirs = checkpoint_dirs(out / "checkpoints")
    for d in dirs:
        assert checkpoint_problem(d) is None, f"{d} is half-written: {checkpoint_problem(d)}"
    return [int(d.name.split("-")[1]) for d in dirs]


def kill_at_a_random_moment(proc, rng, first: bool) -> list[str]:
    """SIGKILL ``proc`` while it writes a checkpoint (just after its "saving" phase), just after one
    (rotation, the next step), or (not the first run: that one must leave a checkpoint) after any
    event, loading and tokenizing included. Counted in events, not seconds, so a fast machine cannot
    finish the run first. Returns its stdout lines."""
    moment = "after" if first else rng.choice(["writing", "after", "any"])
    awaited = {"writing": lambda e: e["event"] == "phase" and e["name"] == "saving",
               "after": lambda e: e["event"] == "checkpoint", "any": lambda e: True}[moment]
    countdown = rng.randint(1, 3) if moment != "any" else rng.randint(1, 10)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if awaited(json.loads(line)):
            countdown -= 1
            if not countdown:
                time.sleep(rng.uniform(0, {"writing": 0.03, "after": 0.1, "any": 0.5}[moment]))
                break
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    return lines + proc.stdout.readlines()


@pytest.mark.slow
def test_kill_9_at_random_moments_never_resumes_from_a_half_written_checkpoint(bert_dir, data_file, tmp_path):
    rng = random.Random(17)
    out, total = tmp_path / "run", 60
    argv = [sys.executable, "-m", "engine.cli",
            *train_args(bert_dir, data_file, out, "--max-steps", str(total), "--save-steps", "1",
                        "--save-total-limit", "2", "--events", "-")]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    started, newest = time.monotonic(), []
    for attempt in range(11):
        proc = subprocess.Popen(argv + (["--resume", "latest"] if attempt else []), stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True, env=env)
        if attempt < 10:
            lines = kill_at_a_random_moment(proc, rng, first=not attempt)
        else:                                                               # the last one runs to the end
            lines = proc.stdout.readlines()
            assert proc.wait() == 0
        proc.stdout.close()
        events = [json.loads(line) for line in lines if line.strip()]
        if attempt and of(events, "run_started"):
            assert of(events, "run_started")[0]["resumed_from_step"] == newest[-1]
            assert not [w for w in of(events, "warning") if "damaged" in w["message"]]
        if attempt < 10:
            newest.append(complete_steps(out)[-1])                          # every one complete; the newest next
    assert of(events, "finished") and read_run_record(out)["final_step"] == total
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.startswith(".tmp")]
    print(f"\nkilled with these newest checkpoints: {newest}; {time.monotonic() - started:.0f} s in all")
