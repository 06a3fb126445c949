"""Issue 17, commands: `raclate predict` checks --output before the model loads and streams its
results block by block (it held every result: 1.22 GB for 50,000 embeddings); `raclate launch -n 1`
runs (it always failed with a JSON parse error)."""
import io
import json
import sys

import numpy as np
import pytest

import engine.commands.predict as predict
from engine.cli import main
from engine.defaults import RESOURCES_DIR, default_model_dir

DEMO = RESOURCES_DIR / "demo"
TEXTS = [f"text number {i} " + "word " * (i % 7) for i in range(40)]


@pytest.fixture
def never_loaded(monkeypatch):
    monkeypatch.setattr(predict, "load", lambda ns: pytest.fail("the model was loaded before --output was checked"))


@pytest.mark.parametrize("output, message", [
    ("{file}/out.jsonl", "is not a folder this user may write to"),
    ("{folder}", "is a folder"),
    ("{folder}/vectors.jsonl", "give --output a .npy file"),
])
def test_a_bad_output_is_refused_before_the_model_loads(tmp_path, capsys, never_loaded, output, message):
    (tmp_path / "file").write_text("")
    path = output.format(file=tmp_path / "file", folder=tmp_path)
    assert main(["predict", "--model", "default", "--text", "hi", "--output", path]) == 2
    assert message in capsys.readouterr().err


def test_a_read_only_folder_is_refused_before_the_model_loads(tmp_path, capsys, never_loaded):
    import os
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.access(locked, os.W_OK):
        pytest.skip("running as a user who may write anywhere")
    assert main(["predict", "--model", "default", "--text", "hi", "--output", str(locked / "v.npy")]) == 2
    assert "may write to" in capsys.readouterr().err


def test_vectors_for_a_classifier_are_refused_before_the_model_loads(tmp_path, capsys, never_loaded):
    assert main(["predict", "--model", "default", "--task", "text-classification", "--text", "hi",
                 "--output", str(tmp_path / "x.npy")]) == 2
    assert "JSON lines" in capsys.readouterr().err


class CountingStdout(io.StringIO):
    """stdout that counts the JSON lines written so far."""
    isatty = staticmethod(lambda: False)

    @property
    def lines(self) -> int:
        return self.getvalue().count("\n")


def _record_blocks(monkeypatch, out: CountingStdout) -> list:
    """Each encode call: (texts in it, lines already on stdout when it started)."""
    calls, encode = [], predict.inference.encode

    def counting(model, tok, texts, **kw):
        calls.append((len(texts), out.lines))
        return encode(model, tok, texts, **kw)
    monkeypatch.setattr(predict.inference, "encode", counting)
    return calls


def test_embeddings_stream_to_stdout_block_by_block(monkeypatch):
    out = CountingStdout()
    calls = _record_blocks(monkeypatch, out)
    monkeypatch.setattr(sys, "stdout", out)
    args = ["predict", "--model", "default", "--batch-size", "1"] + sum((["--text", t] for t in TEXTS), [])
    assert main(args) == 0
    block = predict.STREAM_BATCHES
    assert [n for n, _ in calls] == [block, block, len(TEXTS) - 2 * block]        # bounded by the block size
    assert [before for _, before in calls] == [0, block, 2 * block]              # each block written before the next
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["text"] for r in rows] == TEXTS and len(rows[0]["embedding"]) == 384


def test_npy_output_is_filled_block_by_block_and_matches_one_pass(tmp_path, monkeypatch):
    from engine import encode, load_model
    out = CountingStdout()
    calls = _record_blocks(monkeypatch, out)
    monkeypatch.setattr(sys, "stdout", out)
    target = tmp_path / "sub" / "vectors.npy"
    args = ["predict", "--model", "default", "--batch-size", "1", "--output", str(target)]
    assert main(args + sum((["--text", t] for t in TEXTS), [])) == 0
    assert len(calls) == 3 and all(n <= predict.STREAM_BATCHES for n, _ in calls)
    vectors = np.load(target)
    model, tok = load_model(str(default_model_dir()))
    assert vectors.shape == (len(TEXTS), 384)
    assert np.abs(vectors - encode(model, tok, TEXTS)).max() < 1e-5
    assert [json.loads(line)["dim"] for line in out.getvalue().splitlines()] == [384] * len(TEXTS)
    assert sorted(p.name for p in target.parent.iterdir()) == ["vectors.npy"]       # no temporary file left


def test_a_failure_midway_leaves_the_previous_output_in_place(tmp_path, monkeypatch, capsys):
    target = tmp_path / "vectors.npy"
    np.save(target, np.zeros((1, 1), np.float32))
    encode, calls = predict.inference.encode, []

    def failing(*a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise MemoryError("out of memory")
        return encode(*a, **kw)
    monkeypatch.setattr(predict.inference, "encode", failing)
    args = ["predict", "--model", "default", "--batch-size", "1", "--output", str(target)]
    assert main(args + sum((["--text", t] for t in TEXTS), [])) == 1
    assert np.load(target).shape == (1, 1) and [p.name for p in tmp_path.iterdir()] == ["vectors.npy"]


# -- launch ---------------------------------------------------------------------------------------
def test_launch_one_process_runs_train_directly(tmp_path, capsys):
    assert main(["launch", "-n", "1", "--dry-run", "--", "train", "--model", "default"]) == 0
    command = capsys.readouterr().out.strip()
    assert "mlx.launch" not in command and "host file" not in command
    assert command.startswith(sys.executable) and command.endswith("train --model default --distributed")


def test_launch_one_process_reaches_the_train_command(tmp_path, capsys):
    """With mlx.launch, the one process got an empty host file and failed on joining; now the run
    gets as far as its data (missing here: exit 2, naming the file)."""
    missing = tmp_path / "missing.csv"
    code = main(["launch", "-n", "1", "--", "train", "--model", "default", "--task", "text-classification",
                 "--data", str(missing), "--output", str(tmp_path / "out"), "--max-steps", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "missing.csv" in err and "parse error" not in err, err
