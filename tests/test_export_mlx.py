"""MLX export (engine/outputs/mlx_export.py): a folder that mlx-embeddings loads (``mlx_embeddings.load``)
gives the engine's embeddings (cosine ≥ 0.9999), and its 8- and 4-bit forms keep the thresholds written in
the module (cosine and top-10 retrieval overlap), for tiny BERT, ModernBERT and Qwen3 models; what
mlx-embeddings would compute differently is refused before any work."""
import json

import numpy as np
import pytest

import mlx.core as mx
from engine import encode, load_model
from engine.outputs import mlx_export
from engine.outputs.export import ExportError, export_model
from tests.test_export import assert_refused, TEXTS, tiny_checkpoint

pytest.importorskip("mlx_embeddings")
LONG_AND_ODD = TEXTS + ["word " * 400, "Zürich, Ελλάδα, 東京 — naïve café 🙂"]


def _cos(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def _mlx_embeddings(folder, texts):
    """What a user of the folder gets: mlx-embeddings' own loader and the folder's tokenizer."""
    from mlx_embeddings import load
    model, tokenizer = load(str(folder))
    enc = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="np")
    out = model(mx.array(enc["input_ids"]), attention_mask=mx.array(enc["attention_mask"]))
    return np.array(out.text_embeds), model


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return tiny_checkpoint("bert", tmp_path_factory.mktemp("bert"))


def test_embedding_export_loads_in_mlx_embeddings(bert, tmp_path, capsys):
    from engine.cli import main
    out = tmp_path / "out"
    assert main(["export", "--model", str(bert), "--to", str(out), "--format", "mlx", "--json"]) == 0
    check = json.loads(capsys.readouterr().out)["check"]
    assert check["ok"] and check["reference"].startswith("mlx-embeddings") and check["min_cosine"] >= 0.9999
    assert check["rows"] == 4 and check["quantized_layers"] == 0
    record = json.loads((out / "raclate_run.json").read_text())
    assert record["export"]["min_cosine"] == check["min_cosine"] and record["export"]["format"] == "mlx"
    card = (out / "README.md").read_text()
    assert "## MLX (mlx-embeddings)" in card and "from mlx_embeddings import load" in card and "min cosine" in card
    # Independently of the self-check: the folder's tokenizer, long and non-ASCII texts
    model, tok = load_model(str(bert), "sentence-similarity")
    theirs, _ = _mlx_embeddings(out, LONG_AND_ODD)
    ours = encode(model, tok, LONG_AND_ODD, max_length=128)
    assert _cos(ours, theirs).min() >= 0.9999


@pytest.mark.parametrize("quantize", ["int8", "int4"])
def test_quantized_exports_keep_their_thresholds(bert, tmp_path, quantize):
    import mlx.nn as nn
    result = export_model(str(bert), tmp_path / "out", fmt="mlx", quantize=quantize)
    check, need = result["check"], mlx_export.QUANTIZED_MIN[quantize]
    assert check["ok"] and check["quantize"] == quantize and check["quantized_layers"] > 0
    assert check["mean_cosine"] >= need["mean_cosine"] and check["top10_overlap"] >= need["top10_overlap"]
    config = json.loads((tmp_path / "out/config.json").read_text())
    assert config["quantization"]["bits"] == mlx_export.BITS[quantize]
    theirs, loaded = _mlx_embeddings(tmp_path / "out", LONG_AND_ODD)
    assert any(isinstance(m, nn.QuantizedLinear) for _, m in loaded.named_modules())
    model, tok = load_model(str(bert), "sentence-similarity")
    assert _cos(encode(model, tok, LONG_AND_ODD, max_length=128), theirs).mean() >= need["mean_cosine"]
    assert mlx_export.tolerance(quantize) in (tmp_path / "out/README.md").read_text()


@pytest.mark.parametrize("family", ["modernbert", "qwen3"])
def test_other_families(family, tmp_path):
    """ModernBERT (RoPE bases and its sliding window from the config) and Qwen3 (last token: the folder's
    tokenizer pads on the right, which mlx-embeddings' -inf mask needs)."""
    src = tiny_checkpoint(family, tmp_path / "src")
    result = export_model(str(src), tmp_path / "out", fmt="mlx")
    assert result["check"]["ok"] and result["check"]["min_cosine"] >= 0.9999, result["check"]
    model, tok = load_model(str(src), "sentence-similarity")
    theirs, _ = _mlx_embeddings(tmp_path / "out", LONG_AND_ODD)
    assert np.isfinite(theirs).all() and _cos(encode(model, tok, LONG_AND_ODD, max_length=128), theirs).min() >= 0.9999
    if family == "qwen3":
        assert json.loads((tmp_path / "out/tokenizer_config.json").read_text())["padding_side"] == "right"


def test_a_wrong_folder_fails_the_check(bert, tmp_path, monkeypatch):
    """A conversion slip (here a config value mlx-embeddings reads) is caught, and recorded as failed."""
    real = mlx_export.mlx_config
    monkeypatch.setattr(mlx_export, "mlx_config", lambda model: dict(real(model), layer_norm_eps=1.0))
    with pytest.raises(ExportError, match="self-check failed.*mlx-embeddings"):
        export_model(str(bert), tmp_path / "out", fmt="mlx")
    assert json.loads((tmp_path / "out/raclate_run.json").read_text())["export"]["ok"] is False


@pytest.mark.parametrize("family,task,kw,quantize,message", [
    ("bert", "sentence-similarity", {"use_late_interaction": True, "late_interaction_dim": 16}, None,
     "dense embedding models"),
    ("bert", "text-classification", {"id2label": ["a", "b"]}, None, "not text-classification"),
    ("bert", "sentence-similarity", {"pooling": "cls"}, None, "mean pooling then L2"),
    ("bert", "sentence-similarity", {}, "q8_0", "int8 or int4"),
    ("gemma3", "sentence-similarity", {}, None, "not 'gemma3_text'"),
])
def test_refusals(bert, tmp_path, family, task, kw, quantize, message):
    src = bert if family == "bert" else tiny_checkpoint(family, tmp_path / "base")
    assert_refused(src, tmp_path, "mlx", task, message, quantize, **kw)
