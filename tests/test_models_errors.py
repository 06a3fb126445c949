"""Bad model input gives a clear message."""
import json

import pytest

import mlx.core as mx
from engine import load_model
from engine.models import ModelError
from engine.defaults import default_model_dir


def test_missing_folder(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_model(str(tmp_path / "nope"))


def test_folder_without_config(tmp_path):
    with pytest.raises(ModelError, match="has no config.json"):
        load_model(str(tmp_path))


def test_unknown_model_type(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt_neox"}))
    with pytest.raises(ModelError, match="'gpt_neox' is not supported.*bert"):
        load_model(str(tmp_path))


def test_pickle_only_checkpoint_is_refused(tmp_path):
    (tmp_path / "config.json").write_text((default_model_dir() / "config.json").read_text())
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(ModelError, match="only PyTorch pickle weights.*pytorch_model.bin"):
        load_model(str(tmp_path))


def test_shape_mismatch_names_the_weight(tmp_path):
    config = json.loads((default_model_dir() / "config.json").read_text())
    config["intermediate_size"] = 100
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model.safetensors").symlink_to(default_model_dir() / "model.safetensors")
    with pytest.raises(ModelError, match=r"Weight encoder.layer.\d.(intermediate|output).dense.weight .* has shape \((1536, 384|384, 1536)\) but the config asks for \((100, 384|384, 100)\)"):
        load_model(str(tmp_path))


def test_corrupt_safetensors(tmp_path):
    (tmp_path / "config.json").write_text((default_model_dir() / "config.json").read_text())
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match="could not be read as safetensors"):
        load_model(str(tmp_path))


def test_missing_weights(tmp_path):
    (tmp_path / "config.json").write_text((default_model_dir() / "config.json").read_text())
    weights = mx.load(str(default_model_dir() / "model.safetensors"))
    weights.pop("encoder.layer.0.attention.self.query.weight")
    mx.save_safetensors(str(tmp_path / "model.safetensors"), weights)
    with pytest.raises(ModelError, match="lacks weights.*encoder.layer.0.attention.self.query.weight"):
        load_model(str(tmp_path))


def test_unknown_task():
    with pytest.raises(ModelError, match="Unknown task 'translation'"):
        load_model("default", task="translation")


def test_hub_id_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="some-org/some-model.*offline"):
        load_model("some-org/some-model")
