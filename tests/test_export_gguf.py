"""GGUF export (engine/outputs/gguf.py): a tiny BERT embedding model written as llama.cpp's `bert`
architecture in f32 / f16 / q8_0 reads back with gguf.GGUFReader with llama.cpp's names, shapes and
metadata, and its dequantized weights give the engine's embeddings (f32/f16 cosine ≥ 0.9999, q8_0
≥ 0.99 with top-10 retrieval overlap). llama.cpp itself does not run here (no llama-cpp-python wheel)."""
import json

import numpy as np
import pytest

from engine import load_model
from engine.outputs.export import ExportError, export_model
from engine.outputs.gguf import read_back
from tests.test_export import tiny_checkpoint

pytest.importorskip("gguf")


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return tiny_checkpoint("bert", tmp_path_factory.mktemp("bert"))


@pytest.mark.parametrize("quantize,stored", [(None, {"F32"}), ("f16", {"F16", "F32"}), ("q8_0", {"Q8_0", "F32"})])
def test_gguf_export_reads_back(bert, tmp_path, capsys, quantize, stored):
    from engine.cli import main
    out = tmp_path / "out"
    assert main(["export", "--model", str(bert), "--to", str(out), "--format", "gguf", "--json"]
                + (["--quantize", quantize] if quantize else [])) == 0
    check = json.loads(capsys.readouterr().out)["check"]
    assert check["ok"] and set(check["tensor_types"]) == stored
    assert check["min_cosine"] >= (0.99 if quantize == "q8_0" else 0.9999)
    if quantize == "q8_0":
        assert check["top10_overlap"] >= 0.8
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "model.gguf", "raclate_run.json"]
    assert json.loads((out / "raclate_run.json").read_text())["export"]["min_cosine"] == check["min_cosine"]
    assert "llama-embedding" in (out / "README.md").read_text()
    # Independently: llama.cpp's names, shapes (HF's [out, in] as ggml's ne [in, out]) and keys
    meta, weights, _ = read_back(out / "model.gguf")
    model, tok = load_model(str(bert), "sentence-similarity")
    assert meta["general.architecture"] == "bert" and meta["bert.pooling_type"] == 1   # MEAN
    assert meta["bert.block_count"] == 2 and meta["bert.attention.causal"] is False
    assert meta["tokenizer.ggml.model"] == "bert" and meta["tokens"] == len(tok)
    assert meta["tokenizer.ggml.bos_token_id"] == tok.cls_token_id
    assert meta["tokenizer.ggml.seperator_token_id"] == tok.sep_token_id
    assert weights["token_embd.weight"].shape == (len(tok), 32) and weights["blk.1.ffn_up.weight"].shape == (64, 32)
    assert not any(name.startswith("pooler") for name in weights)
    ref = np.array(model.backbone.encoder.layer[1].intermediate.dense.weight)
    bound = {None: 0.0, "f16": 1e-3, "q8_0": 1 / 127}[quantize] * np.abs(ref).max()
    assert np.abs(weights["blk.1.ffn_up.weight"] - ref).max() <= bound


def test_gguf_vocabulary_is_llama_cpp_wordpiece(bert, tmp_path):
    import gguf
    export_model(str(bert), tmp_path / "out", fmt="gguf")
    reader = gguf.GGUFReader(str(tmp_path / "out" / "model.gguf"))
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    types = reader.fields["tokenizer.ggml.token_type"].contents()
    _, tok = load_model(str(bert), "sentence-similarity")
    assert tokens[tok.cls_token_id] == "[CLS]" and types[tok.cls_token_id] == gguf.TokenType.CONTROL
    word = tok.convert_tokens_to_ids("the")
    piece = next(i for t, i in tok.get_vocab().items() if t.startswith("##") and len(t) > 3)
    assert tokens[word] == "\u2581the" and types[word] == gguf.TokenType.NORMAL
    assert tokens[piece] == tok.convert_ids_to_tokens(piece)[2:]


@pytest.mark.parametrize("task,kw,quantize,message", [
    ("sentence-similarity", {"use_late_interaction": True, "late_interaction_dim": 16}, None, "late interaction"),
    ("text-classification", {"num_labels": 2}, None, "dense embedding models"),
    ("sentence-similarity", {"pooling": "max"}, None, "not max"),
    ("sentence-similarity", {}, "int8", "not int8"),
])
def test_gguf_refusals(bert, tmp_path, task, kw, quantize, message):
    model, tok = load_model(str(bert), task, **kw)
    src = tmp_path / "src"
    model.save_pretrained(src)
    tok.save_pretrained(str(src))
    with pytest.raises(ExportError, match=message) as err:
        export_model(str(src), tmp_path / "out", fmt="gguf", quantize=quantize)
    assert err.value.kind == "export_refused" and not (tmp_path / "out").exists()


def test_missing_gguf_names_the_extra(bert, tmp_path, monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a))
    with pytest.raises(ExportError, match=r"pip install 'raclate-tuner\[gguf\]'"):
        export_model(str(bert), tmp_path / "out", fmt="gguf")
