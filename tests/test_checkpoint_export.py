"""A run's checkpoint folder (RUN/checkpoints/step-N: weights only) loads, evaluates and exports as a
model folder: the run's record names the base model, the task and the head."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.app_fixtures import app_models, trained_run  # noqa: F401


def test_a_checkpoint_loads_as_its_run_trained_it(trained_run):
    import mlx.core as mx

    from engine.inference import folder_kind, load_for_task, load_run_checkpoint
    from engine.run_record import read_run_record
    step2 = trained_run / "checkpoints" / "step-0000002"
    assert folder_kind(str(step2)) == ("text-classification", False, False)
    model, tokenizer, task, record = load_for_task(str(step2))
    assert task == "text-classification" and record["checkpoint"] == str(step2) and record["final_step"] == 2
    assert model.info.new_weights == []                                # every weight came from the checkpoint
    theirs, _ = load_run_checkpoint(read_run_record(trained_run), step2)
    ids = mx.array(tokenizer(["the food was great"], return_tensors="np")["input_ids"].astype(np.int32))
    mask = mx.ones(ids.shape, dtype=mx.int32)
    assert np.array_equal(np.array(model(ids, mask)), np.array(theirs(ids, mask)))
    final, _, _, _ = load_for_task(str(trained_run))
    assert not np.allclose(np.array(model(ids, mask)), np.array(final(ids, mask)))   # step 2, not the end


def test_export_from_a_checkpoint_writes_a_checked_model(trained_run, tmp_path):
    from engine.outputs.export import export_model
    step2 = trained_run / "checkpoints" / "step-0000002"
    out = tmp_path / "step2-export"
    result = export_model(str(step2), out, fmt="transformers")
    assert result["check"]["ok"] and result["task"] == "text-classification"
    config = json.loads((out / "config.json").read_text())
    assert sorted(config["id2label"].values()) == ["neg", "neu", "pos"]
    record = json.loads((out / "raclate_run.json").read_text())
    assert record["exported_from"] == str(step2) and record["final_step"] == 2
    state = json.loads((step2 / "trainer_state.json").read_text())
    assert record["metrics"] == state["metrics"]                      # the checkpoint's evaluation, not the run's


def test_a_lone_checkpoint_says_what_is_missing(trained_run, tmp_path):
    import shutil

    from engine.errors import ModelError
    from engine.inference import load_for_task
    lone = tmp_path / "lone" / "step-0000002"
    shutil.copytree(trained_run / "checkpoints" / "step-0000002", lone)
    with pytest.raises(ModelError, match="checkpoint without its run"):
        load_for_task(str(lone))
