"""Core ML export (engine/outputs/coreml.py): an ML program built with coremltools' MIL builder from the
MLX weights (no torch) for tiny BERT and ModernBERT embedding models and classifiers. Conversion and a
spec check (inputs, outputs, flexible shapes, op list, the ops kept in fp32 under f16) run everywhere, with
the saved program run op by op in numpy against the engine; Core ML's own prediction runs on macOS only."""
import json
import platform

import numpy as np
import pytest

import mlx.core as mx
from engine import encode, load_model
from engine.outputs import coreml
from engine.outputs.export import ExportError, export_model
from engine.outputs.onnx import batches
from tests.test_export import assert_refused, LABELS, TEXTS, tiny_checkpoint

pytest.importorskip("coremltools")
LONG_AND_ODD = TEXTS + ["word " * 400, "Zürich, Ελλάδα, 東京 — naïve café 🙂"]
ON_MAC = platform.system() == "Darwin"


def _cos(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def _spec(path):
    import coremltools as ct
    return ct.models.MLModel(str(path), skip_model_load=True).get_spec()


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return tiny_checkpoint("bert", tmp_path_factory.mktemp("bert"))


@pytest.fixture(scope="module")
def bert_package(bert, tmp_path_factory):
    out = tmp_path_factory.mktemp("bert_package") / "out"
    return out, export_model(str(bert), out, fmt="coreml")


def test_embedding_package_spec_and_check(bert_package):
    out, result = bert_package
    check = result["check"]
    assert result["format"] == "coreml" and check["ok"] and check["reference"].startswith("coremltools")
    assert check["min_cosine"] >= 0.9999 and check["max_abs_diff"] <= 1e-4
    assert check["compute_precision"] == "float32" and check["predicted"] == ON_MAC
    spec = _spec(out / coreml.FILE)
    inputs = {i.name: i.type.multiArrayType for i in spec.description.input}
    assert list(inputs) == ["input_ids", "attention_mask", "token_type_ids"]
    for array in inputs.values():   # int32, 1…64 texts and 1…max length tokens
        ranges = [(r.lowerBound, r.upperBound) for r in array.shapeRange.sizeRanges]
        assert array.dataType == 131104 and ranges == [(1, coreml.MAX_BATCH), (1, 256)]
    assert [o.name for o in spec.description.output] == ["sentence_embedding"]
    assert {"layer_norm", "softmax", "gelu", "linear", "select"} <= set(check["ops"])
    record = json.loads((out / "raclate_run.json").read_text())
    assert record["export"]["ops"] == check["ops"] and record["export"]["runs"]["package"]["ok"]
    card = (out / "README.md").read_text()
    assert "## Core ML" in card and "ct.models.MLModel" in card and "min cosine" in card
    assert (out / "tokenizer.json").exists()


def test_f16_keeps_norms_and_softmax_in_fp32(bert, tmp_path):
    model, tok = load_model(str(bert), "text-classification", id2label=LABELS)
    model.save_pretrained(tmp_path / "src")
    tok.save_pretrained(str(tmp_path / "src"))
    check = export_model(str(tmp_path / "src"), tmp_path / "out", fmt="coreml", quantize="f16")["check"]
    assert check["ok"] and check["compared"] == "logits (texts and pairs)" and check["min_cosine"] >= coreml.F16_COSINE
    assert check["outputs"] == ["logits"] and check["fp32_ops"] > 0 and check["compute_precision"].startswith("float16")
    spec = _spec(tmp_path / "out" / coreml.FILE)
    function = spec.mlProgram.functions["main"]
    ops = function.block_specializations[function.opset].operations
    kinds = {(op.type, op.outputs[0].type.tensorType.dataType) for op in ops}
    assert ("linear", coreml.FLOAT16) in kinds            # the matrix products run in fp16 …
    assert ("layer_norm", coreml.FLOAT16) not in kinds     # … the norms and the softmax never do
    assert ("softmax", coreml.FLOAT16) not in kinds


def test_fp16_overflow_is_avoided(tmp_path, monkeypatch):
    """Residual values of a few hundred square past fp16's 65504 inside a layer norm: the f16 package keeps
    its norms in fp32 and stays finite and close; the same program with its norms run in fp16 does not."""
    from transformers import AutoTokenizer

    from engine.defaults import default_model_dir
    from tests.tiny_families import build
    model = build("bert", "sentence-similarity")
    hidden = model.backbone.embeddings.word_embeddings.weight.shape[-1]
    model.backbone.embeddings.LayerNorm.weight = mx.full((hidden,), 600.0)   # activations ≈ 600
    coreml.write(model, AutoTokenizer.from_pretrained(str(default_model_dir())), tmp_path, "f16")
    program = coreml.load_program(tmp_path / coreml.FILE)
    ids = np.array([[2, 5, 7, 9], [3, 4, 0, 0]], np.int32)
    feeds = {"input_ids": ids, "attention_mask": (ids > 0).astype(np.int32), "token_type_ids": np.zeros_like(ids)}
    ours = np.array(model(mx.array(ids), mx.array(feeds["attention_mask"])))
    safe = coreml.run_package(program, feeds)
    assert np.isfinite(safe).all() and _cos(ours, safe).min() >= coreml.F16_COSINE
    real = coreml.MIL_NUMPY["layer_norm"]
    monkeypatch.setitem(coreml.MIL_NUMPY, "layer_norm", lambda x, axes, **kw: real(x.astype(np.float16), axes, **kw))
    with np.errstate(all="ignore"):
        naive = coreml.run_package(program, feeds)
    assert not np.isfinite(naive).all() or _cos(ours, naive).min() < coreml.F16_COSINE


@pytest.mark.parametrize("task,kw", [("sentence-similarity", {"pooling": "cls"}),
                                     ("text-classification", {"id2label": LABELS})])
def test_modernbert(task, kw, tmp_path):
    """RoPE, the sliding window (the long text reaches past it), GeGLU, and the classifier head."""
    model, tok = load_model(str(tiny_checkpoint("modernbert", tmp_path / "base")), task, **kw)
    model.save_pretrained(tmp_path / "src")
    tok.save_pretrained(str(tmp_path / "src"))
    check = export_model(str(tmp_path / "src"), tmp_path / "out", fmt="coreml")["check"]
    assert check["ok"] and check["min_cosine"] >= 0.9999 and check["max_abs_diff"] <= 1e-4, check
    assert check["inputs"].keys() == {"input_ids", "attention_mask"}


def test_a_wrong_program_fails_the_check(bert, tmp_path, monkeypatch):
    """CLS pooling silently put in for mean pooling is caught by the check."""
    real = coreml._pool
    monkeypatch.setattr(coreml, "_pool", lambda ops, x, mask, mode: real(ops, x, mask, "cls"))
    with pytest.raises(ExportError, match="self-check failed.*coremltools"):
        export_model(str(bert), tmp_path / "out", fmt="coreml")


@pytest.mark.skipif(not ON_MAC, reason="Core ML predictions run on macOS only; elsewhere the self-check reads the "
                                       "package back and runs its program in numpy")
def test_prediction_on_macos(bert, bert_package):
    import coremltools as ct
    out, _ = bert_package
    model, tok = load_model(str(bert), "sentence-similarity")
    (batch,) = batches(model, tok, LONG_AND_ODD)
    feeds = {k: batch[k].astype(np.int32) for k in coreml.input_names(model)}
    theirs = ct.models.MLModel(str(out / coreml.FILE)).predict(feeds)["sentence_embedding"]
    assert _cos(encode(model, tok, LONG_AND_ODD), theirs).min() >= 0.9999


@pytest.mark.parametrize("family,task,kw,quantize,message", [
    ("bert", "sentence-similarity", {"use_late_interaction": True, "late_interaction_dim": 16}, None,
     "late-interaction"),
    ("bert", "token-classification", {"id2label": LABELS}, None, "not token-classification"),
    ("bert", "sentence-similarity", {"pooling": "max"}, None, "mean or CLS"),
    ("bert", "sentence-similarity", {}, "int8", "not int8"),
    ("qwen3", "sentence-similarity", {}, None, "not 'qwen3'"),
])
def test_refusals(bert, tmp_path, family, task, kw, quantize, message):
    src = bert if family == "bert" else tiny_checkpoint(family, tmp_path / "base")
    assert_refused(src, tmp_path, "coreml", task, message, quantize, **kw)
