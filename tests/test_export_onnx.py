"""ONNX export (engine/outputs/onnx.py, engine/outputs/onnx_families.py): a graph built from the MLX
weights with `onnx`, run with onnxruntime, gives the engine's outputs (fp32: |Δ| ≤ 1e-4, cosine ≥ 0.9999;
int8: cosine ≥ 0.99 and top-10 retrieval overlap) for tiny BERT, ModernBERT, Gemma3 (EmbeddingGemma:
bidirectional, Dense layers) and Qwen3 embedding models and classifiers; what it cannot honour is
refused before any work."""
import json

import numpy as np
import pytest

import mlx.core as mx
from engine import encode, load_model
from engine.outputs import onnx as onnx_export
from engine.outputs.export import ExportError, export_model
from tests.test_export import LABELS, TEXTS, tiny_checkpoint

pytest.importorskip("onnxruntime")
LONG_AND_ODD = TEXTS + ["word " * 400, "Zürich, Ελλάδα, 東京 — naïve café 🙂"]


def _cos(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def _run(path, tok, texts, pairs=None):
    import onnxruntime as ort
    enc = tok(texts, pairs, padding=True, truncation=True, max_length=128, return_tensors="np")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {i.name: enc[i.name] for i in session.get_inputs()})[0], enc


def embedding_gemma(root):
    """An EmbeddingGemma-shaped sentence-transformers folder: bidirectional Gemma3 (sliding band 2 each
    side), mean pooling, two Dense layers without bias (32 → 64 → 32), normalised."""
    import torch
    from sentence_transformers import SentenceTransformer, models
    base = tiny_checkpoint("gemma3", root / "base", use_bidirectional_attention=True)
    torch.manual_seed(0)
    modules = [models.Transformer(str(base), max_seq_length=128), models.Pooling(32, "mean"),
               models.Dense(32, 64, bias=False, activation_function=torch.nn.Identity()),
               models.Dense(64, 32, bias=False, activation_function=torch.nn.Identity()), models.Normalize()]
    SentenceTransformer(modules=modules, device="cpu").save(str(root / "st"))
    return root / "st"


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return tiny_checkpoint("bert", tmp_path_factory.mktemp("bert"))


@pytest.fixture(scope="module")
def cls_dense(bert, tmp_path_factory):
    """A sentence-transformers folder with the traps conversions fall into: CLS pooling, a Dense layer
    (tanh), no normalisation."""
    import torch
    from sentence_transformers import SentenceTransformer, models
    root = tmp_path_factory.mktemp("cls_dense")
    torch.manual_seed(0)
    modules = [models.Transformer(str(bert), max_seq_length=128), models.Pooling(32, "cls"),
               models.Dense(32, 24, activation_function=torch.nn.Tanh())]
    SentenceTransformer(modules=modules, device="cpu").save(str(root))
    return root


def test_embedding_export_with_int8(bert, tmp_path, capsys):
    from engine.cli import main
    out = tmp_path / "out"
    assert main(["export", "--model", str(bert), "--to", str(out), "--format", "onnx", "--quantize", "int8",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    check = result["check"]
    assert result["format"] == "onnx" and check["ok"] and check["reference"].startswith("onnxruntime")
    assert check["max_abs_diff"] <= 1e-4 and check["min_cosine"] >= 0.9999
    assert set(check["files"]) == {"model", "pipeline", "model_int8", "pipeline_int8"}
    assert check["files"]["pipeline_int8"]["top10_overlap"] >= onnx_export.INT8_TOP10
    assert check["files"]["pipeline_int8"]["min_cosine"] >= 0.99
    record = json.loads((out / "raclate_run.json").read_text())
    assert record["export"]["files"] == check["files"]
    card = (out / "README.md").read_text()
    assert "## ONNX" in card and 'backend="onnx"' in card and "top-10 overlap" in card
    assert (out / "modules.json").exists()   # the sentence-transformers files ride along
    # Independently of the self-check: onnxruntime on the tokenizer's own batches, long and non-ASCII texts
    model, tok = load_model(str(bert), "sentence-similarity")
    ours = encode(model, tok, LONG_AND_ODD, max_length=128)
    theirs, _ = _run(out / "onnx/model_pipeline.onnx", tok, LONG_AND_ODD)
    assert _cos(ours, theirs).min() >= 0.9999 and np.abs(ours - theirs).max() <= 1e-4
    hidden, enc = _run(out / "onnx/model.onnx", tok, LONG_AND_ODD[:1])   # batch and length differ: dynamic axes
    ref = np.array(model.backbone(mx.array(enc["input_ids"].astype(np.int32)),
                                  mx.array(enc["attention_mask"].astype(np.int32))))
    assert hidden.shape == ref.shape and np.abs(hidden - ref).max() <= 1e-4
    quantized, _ = _run(out / "onnx/model_pipeline_qint8.onnx", tok, LONG_AND_ODD)
    assert _cos(ours, quantized).min() >= 0.99


def test_cls_pooling_and_dense_layers_survive(cls_dense, tmp_path):
    """What sentence-transformers computes from the folder (torch backend) is what the pipeline file gives."""
    from sentence_transformers import SentenceTransformer
    model, tok = load_model(str(cls_dense), "sentence-similarity")
    assert model.pooling == "cls" and len(model.dense) == 1 and not model.normalize
    result = export_model(str(cls_dense), tmp_path / "out", fmt="onnx")
    assert result["check"]["ok"] and result["check"]["pooling"] == "cls"
    st = SentenceTransformer(str(tmp_path / "out"), device="cpu")
    theirs, _ = _run(tmp_path / "out/onnx/model_pipeline.onnx", tok, LONG_AND_ODD)
    assert theirs.shape == (len(LONG_AND_ODD), 24)
    assert np.abs(st.encode(LONG_AND_ODD) - theirs).max() <= 1e-4


def test_classifier_export_reads_pairs(bert, tmp_path):
    model, tok = load_model(str(bert), "text-classification", id2label=LABELS)
    src = tmp_path / "clf"
    model.save_pretrained(src)
    tok.save_pretrained(str(src))
    result = export_model(str(src), tmp_path / "out", fmt="onnx", quantize="int8")
    check = result["check"]
    assert check["ok"] and check["compared"] == "logits (texts and pairs)" and check["max_abs_diff"] <= 1e-4
    assert check["files"]["model_int8"]["min_cosine"] >= 0.99
    logits, enc = _run(tmp_path / "out/onnx/model.onnx", tok, LONG_AND_ODD, LONG_AND_ODD[::-1])
    assert enc["token_type_ids"].any()   # the second text reads token type 1
    ours = model(*(mx.array(enc[k].astype(np.int32)) for k in ("input_ids", "attention_mask", "token_type_ids")))
    assert logits.shape == (len(LONG_AND_ODD), len(LABELS)) and np.abs(np.array(ours) - logits).max() <= 1e-4


def test_a_wrong_graph_fails_the_check(bert, tmp_path, monkeypatch):
    """A conversion slip (here: ReLU for GELU) is caught by the self-check; nothing is left at --to."""
    real = onnx_export.Graph.activation
    monkeypatch.setattr(onnx_export.Graph, "activation",
                        lambda self, x, name: real(self, x, "relu" if name == "gelu" else name))
    with pytest.raises(ExportError, match="self-check failed.*onnxruntime"):
        export_model(str(bert), tmp_path / "out", fmt="onnx")


@pytest.mark.parametrize("task,kw,fmt,quantize,message", [
    ("sentence-similarity", {"use_late_interaction": True, "late_interaction_dim": 16}, "onnx", None,
     "late-interaction"),
    ("masked-lm", {}, "onnx", None, "not masked-lm"),
    ("sentence-similarity", {}, "onnx", "q8_0", "int8 only"),
    ("sentence-similarity", {}, "sentence-transformers", "int8", "--quantize applies to onnx"),
])
def test_refusals(bert, tmp_path, task, kw, fmt, quantize, message):
    model, tok = load_model(str(bert), task, **kw)
    src = tmp_path / "src"
    model.save_pretrained(src)
    tok.save_pretrained(str(src))
    with pytest.raises(ExportError, match=message) as err:
        export_model(str(src), tmp_path / "out", fmt=fmt, quantize=quantize)
    assert err.value.kind == "export_refused" and not (tmp_path / "out").exists()


def test_other_families_are_refused(tmp_path):
    path = tiny_checkpoint("lfm2", tmp_path / "src")
    with pytest.raises(ExportError, match="supports the bert, modernbert, gemma3_text, qwen3 families, not 'lfm2'"):
        export_model(str(path), tmp_path / "out", fmt="onnx")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("family", ["modernbert", "gemma3", "qwen3"])
def test_other_families_embeddings_with_int8(family, tmp_path):
    """ModernBERT (global/local band, RoPE, GeGLU, no biases), EmbeddingGemma (bidirectional band, RoPE,
    Dense layers after pooling) and Qwen3 (causal, last-token pooling): both files, fp32 and int8."""
    src = embedding_gemma(tmp_path) if family == "gemma3" else tiny_checkpoint(family, tmp_path / "src")
    result = export_model(str(src), tmp_path / "out", fmt="onnx", quantize="int8")
    check = result["check"]
    assert check["ok"] and check["max_abs_diff"] <= 1e-4 and check["min_cosine"] >= 0.9999, check
    assert check["pooling"] == {"modernbert": "mean", "gemma3": "mean", "qwen3": "lasttoken"}[family]
    assert check["files"]["pipeline_int8"]["min_cosine"] >= 0.99
    assert check["files"]["pipeline_int8"]["top10_overlap"] >= onnx_export.INT8_TOP10
    # Independently: onnxruntime on the tokenizer's batches (long, non-ASCII; another batch and length)
    model, tok = load_model(str(src), "sentence-similarity")
    assert len(model.dense) == (2 if family == "gemma3" else 0)
    ours = encode(model, tok, LONG_AND_ODD, max_length=128)
    theirs, _ = _run(tmp_path / "out/onnx/model_pipeline.onnx", tok, LONG_AND_ODD)
    assert _cos(ours, theirs).min() >= 0.9999 and np.abs(ours - theirs).max() <= 1e-4
    hidden, enc = _run(tmp_path / "out/onnx/model.onnx", tok, LONG_AND_ODD[1:3])
    ref = np.array(model.backbone(*(mx.array(enc[k].astype(np.int32)) for k in ("input_ids", "attention_mask"))))
    real = enc["attention_mask"] > 0
    assert hidden.shape == ref.shape and np.abs(hidden[real] - ref[real]).max() <= 1e-4


@pytest.mark.parametrize("family", ["modernbert", "qwen3"])
def test_other_families_classifiers(family, tmp_path):
    """ModernBERT: CLS pooling, prediction head (dense, GELU, norm), classifier; Qwen3: score on the last
    real token."""
    model, tok = load_model(str(tiny_checkpoint(family, tmp_path / "base")), "text-classification", id2label=LABELS)
    src = tmp_path / "clf"
    model.save_pretrained(src)
    tok.save_pretrained(str(src))
    check = export_model(str(src), tmp_path / "out", fmt="onnx")["check"]
    assert check["ok"] and check["max_abs_diff"] <= 1e-4, check
    logits, enc = _run(tmp_path / "out/onnx/model.onnx", tok, LONG_AND_ODD)
    ours = model(*(mx.array(enc[k].astype(np.int32)) for k in ("input_ids", "attention_mask")))
    assert logits.shape == (len(LONG_AND_ODD), len(LABELS)) and np.abs(np.array(ours) - logits).max() <= 1e-4


@pytest.mark.parametrize("pooling", ["max", "lasttoken"])
def test_other_pooling_modes(bert, tmp_path, pooling):
    from engine.outputs.export import self_check, write_folder
    model, tok = load_model(str(bert), "sentence-similarity", pooling=pooling, normalize=False)
    write_folder(model, tok, tmp_path, "sentence-transformers")
    onnx_export.write(model, tok, tmp_path, None)
    report = self_check(model, tok, tmp_path, "onnx", TEXTS)
    assert report["ok"] and report["pooling"] == pooling and report["max_abs_diff"] <= 1e-4, report
