"""Issue 17, models: a config.json that describes an impossible model is refused before anything is
built (the memory guard), a tokenizer_class that is no tokenizer is refused before transformers
loads it, and an ``auto_map`` pointing at code that is not there is not copied into outputs."""
import json

import pytest

import engine.models as models
from engine.defaults import default_model_dir
from engine.errors import ModelError, classify_error, exit_code
from engine.models import load_model, memory


def checkpoint(folder, *, config=None, tokenizer_config=None):
    """The embedded model's files, linked into ``folder``; config.json and tokenizer_config.json are
    copies with ``config`` / ``tokenizer_config`` merged in (a None value removes the key)."""
    source = default_model_dir()
    for f in source.iterdir():
        if f.name not in ("config.json", "tokenizer_config.json"):
            (folder / f.name).symlink_to(f)
    for name, changes in (("config.json", config), ("tokenizer_config.json", tokenizer_config)):
        data = json.loads((source / name).read_text())
        data.update(changes or {})
        (folder / name).write_text(json.dumps({k: v for k, v in data.items() if v is not None}))
    return folder


@pytest.fixture
def nothing_built(monkeypatch):
    """Fails the test if a model is built or a weight is read: the guard must come first."""
    def refuse(*_a, **_k):
        raise AssertionError("the model was built or its weights read before the config was checked")
    monkeypatch.setattr(models.get_family("bert"), "Model", refuse)
    monkeypatch.setattr(models, "read_weights", refuse)


@pytest.mark.parametrize("field, value", [("num_hidden_layers", 1_000_000), ("vocab_size", 1e10),
                                          ("hidden_size", -4), ("num_attention_heads", "12"),
                                          ("intermediate_size", True)])
def test_impossible_sizes_are_refused_naming_the_file_and_field(tmp_path, nothing_built, field, value):
    folder = checkpoint(tmp_path, config={field: value})
    with pytest.raises(ModelError) as err:
        load_model(str(folder))
    assert str(folder / "config.json") in str(err.value) and field in str(err.value)
    assert exit_code(classify_error(err.value)[0]) == 2


def test_heads_that_do_not_divide_the_hidden_size_are_refused(tmp_path, nothing_built):
    folder = checkpoint(tmp_path, config={"num_attention_heads": 7})   # hidden size 384
    with pytest.raises(ModelError, match=r"config.json.*num_attention_heads.*384"):
        load_model(str(folder))


def test_a_model_larger_than_the_machine_is_refused_with_the_estimate(tmp_path, nothing_built, monkeypatch):
    # every size within its range, together ≈ 70 G parameters: far beyond a 16 GB machine
    folder = checkpoint(tmp_path, config={"num_hidden_layers": 1024, "hidden_size": 4096, "num_attention_heads": 32,
                                          "intermediate_size": 16384})
    monkeypatch.setattr(memory, "machine_memory", lambda: (16 * 2 ** 30, "test machine"))
    with pytest.raises(ModelError) as err:
        load_model(str(folder))
    text = str(err.value)
    assert "config.json" in text and "16.0 GB" in text and "test machine" in text and "billion parameters" in text


def test_training_memory_counts_batch_and_length(tmp_path, monkeypatch):
    """The embedded model (22.7M parameters) loads in 2 GB, but training it at batch 512 × 512 tokens
    does not fit: refused before the model is built, with what to lower."""
    monkeypatch.setattr(memory, "machine_memory", lambda: (2 * 2 ** 30, "test machine"))
    model, _ = load_model(str(default_model_dir()))
    assert model.info.args.num_hidden_layers == 6
    monkeypatch.setattr(models.get_family("bert"), "Model", lambda *_: pytest.fail("built before the guard"))
    with pytest.raises(ModelError, match=r"batch 512 × 512 tokens.*2.0 GB.*--batch-size"):
        load_model(str(default_model_dir()), training={"batch_size": 512, "max_length": 512})


def test_parameter_count_comes_from_the_safetensors_header_without_reading_weights(tmp_path):
    from engine.models.loading import safetensors_parameters
    assert 22.5e6 < safetensors_parameters(default_model_dir()) < 23e6
    (tmp_path / "model.safetensors").write_bytes(b"damaged")
    assert safetensors_parameters(tmp_path) is None
    config = json.loads((default_model_dir() / "config.json").read_text())
    assert abs(memory.formula_parameters(config) - safetensors_parameters(default_model_dir())) < 0.02 * 22.7e6


@pytest.mark.parametrize("where", ["tokenizer_config.json", "config.json"])
def test_tokenizer_class_must_be_a_tokenizer(tmp_path, monkeypatch, where):
    """"AutoModel" made tokenizer loading call torch.load on a pytorch_model.bin."""
    changes = {"tokenizer_class": "AutoModel"}
    folder = checkpoint(tmp_path, config=changes if where == "config.json" else None,
                        tokenizer_config=changes if where == "tokenizer_config.json" else {"tokenizer_class": None})
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04 not a real pickle")
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load was called"))
    with pytest.raises(ModelError, match=rf"{where}.*tokenizer_class 'AutoModel'"):
        load_model(str(folder))


def test_a_real_tokenizer_class_still_loads(tmp_path):
    folder = checkpoint(tmp_path, tokenizer_config={"tokenizer_class": "BertTokenizerFast"})
    _, tokenizer = load_model(str(folder))
    assert tokenizer("hello")["input_ids"][0] == tokenizer.cls_token_id


def test_auto_map_is_not_copied_into_saved_configs(tmp_path):
    auto_map = {"AutoModel": "modeling_x.XModel", "AutoTokenizer": ["tokenization_x.XTokenizer", None]}
    (tmp_path / "in").mkdir()
    folder = checkpoint(tmp_path / "in", config={"auto_map": auto_map}, tokenizer_config={"auto_map": auto_map})
    model, tokenizer = load_model(str(folder), "text-classification", num_labels=2)
    out = tmp_path / "out"
    model.save_pretrained(out)
    tokenizer.save_pretrained(str(out))
    for name in ("config.json", "tokenizer_config.json"):
        saved = json.loads((out / name).read_text())
        assert "auto_map" not in saved and "trust_remote_code" not in saved, name


def test_train_refuses_a_run_that_cannot_fit_before_writing_anything(tmp_path, monkeypatch, capsys):
    from engine.cli import main
    from engine.defaults import RESOURCES_DIR
    monkeypatch.setattr(memory, "machine_memory", lambda: (2 * 2 ** 30, "test machine"))
    out = tmp_path / "out"
    code = main(["train", "--model", "default", "--task", "text-classification", "--data",
                 str(RESOURCES_DIR / "demo" / "reviews.csv"), "--output", str(out), "--batch-size", "512",
                 "--max-length", "512", "--max-steps", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "batch 512 × 512 tokens" in err and "2.0 GB" in err, err
    assert not out.exists()


def test_gradcache_keeps_one_mini_batch_of_activations():
    from engine.training.args import TrainingArgs
    plain = memory.training_memory(TrainingArgs(batch_size=1024, loss="mnrl"), "sentence-similarity")
    cached = memory.training_memory(TrainingArgs(batch_size=1024, loss="cached_mnrl", mini_batch_size=32),
                                    "sentence-similarity")
    assert plain["batch_size"] == 1024 and cached["batch_size"] == 32 and not cached["vocab_logits"]
    assert memory.training_memory(TrainingArgs(), "masked-lm")["vocab_logits"]
