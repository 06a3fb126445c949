"""Export round trips: every task's folder loads in its own library (sentence-transformers, PyLate,
transformers) and gives the engine's outputs (cosine ≥ 0.9999, logits within 1e-4), for BERT,
ModernBERT and Qwen3 tiny random models built here with the embedded tokenizer."""
import json

import numpy as np
import pytest

import mlx.core as mx
from engine import encode, load_model
from engine.defaults import default_model_dir
from engine.outputs.export import ExportError, check_format, export_model, self_check, write_folder

pytestmark = pytest.mark.parity

VOCAB = 30522  # the embedded (BERT) tokenizer's size: texts, not random ids, go through these models
TEXTS = ["What is the capital of France?", "Hello, world!",
         "Fine-tuning adapts a pretrained model to one task; it's quick (and cheap).", "ok"]
LABELS = ["negative", "neutral", "positive"]
TAGS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


def tiny_config(family: str, **kw):
    """A tiny transformers config of ``family`` for the embedded (BERT) tokenizer; ``kw`` override."""
    import transformers
    small = dict(vocab_size=VOCAB, hidden_size=32, num_attention_heads=4, max_position_embeddings=256)
    if family == "bert":
        return transformers.BertConfig(**{**small, "num_hidden_layers": 2, "intermediate_size": 64, **kw})
    if family == "modernbert":
        return transformers.ModernBertConfig(**{
            **small, "num_hidden_layers": 3, "intermediate_size": 48, "global_attn_every_n_layers": 2,
            "local_attention": 64, "initializer_range": 0.2, "pad_token_id": 0, "bos_token_id": 101,
            "eos_token_id": 102, "cls_token_id": 101, "sep_token_id": 102, **kw})
    if family == "gemma3":  # window 4 (2 each side when bidirectional): query expansion reaches past it
        return transformers.Gemma3TextConfig(**{
            **small, "num_hidden_layers": 2, "num_key_value_heads": 2, "head_dim": 8, "intermediate_size": 64,
            "sliding_window": 4, "sliding_window_pattern": 2, "query_pre_attn_scalar": 8, "pad_token_id": 0,
            "rope_parameters": {"sliding_attention": {"rope_type": "default", "rope_theta": 100.0},
                                "full_attention": {"rope_type": "default", "rope_theta": 10000.0}}, **kw})
    if family == "lfm2":
        return transformers.Lfm2Config(**{
            **small, "num_hidden_layers": 2, "num_key_value_heads": 2, "intermediate_size": 64,
            "layer_types": ["conv", "full_attention"], "block_multiple_of": 16, **kw})
    if family == "t5gemma":
        encoder = dict(small, num_hidden_layers=2, num_key_value_heads=2, head_dim=8, intermediate_size=64,
                       sliding_window=4, query_pre_attn_scalar=8)
        return transformers.T5GemmaConfig(encoder=encoder, decoder=dict(encoder, num_hidden_layers=1),
                                          vocab_size=VOCAB, **kw)
    # No pad_token_id: the export must take it from the tokenizer for transformers' last-token classifier.
    return transformers.Qwen3Config(**{**small, "num_hidden_layers": 2, "num_key_value_heads": 2, "head_dim": 8,
                                       "intermediate_size": 64, "tie_word_embeddings": False,
                                       "rope_parameters": {"rope_type": "default", "rope_theta": 1000.0}, **kw})


BASE_CLASSES = {"bert": "BertModel", "modernbert": "ModernBertModel", "qwen3": "Qwen3Model",
                "gemma3": "Gemma3TextModel", "lfm2": "Lfm2Model", "t5gemma": "T5GemmaModel"}


def tiny_checkpoint(family: str, path, **kw):
    """A random HF base model (non-trivial norms and biases) + the embedded tokenizer, saved to ``path``;
    ``kw`` override the tiny config."""
    import torch
    import transformers
    from transformers import AutoTokenizer
    torch.manual_seed(0)
    model = getattr(transformers, BASE_CLASSES[family])(tiny_config(family, **kw)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(str(default_model_dir())).save_pretrained(path)
    return path


@pytest.fixture(scope="module", params=["bert", "modernbert", "qwen3"])
def base(request, tmp_path_factory):
    return request.param, tiny_checkpoint(request.param, tmp_path_factory.mktemp(request.param))


def _cos(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def _export(model, tok, out, fmt):
    write_folder(model, tok, out, fmt)
    report = self_check(model, tok, out, fmt, TEXTS)
    assert report["ok"], report
    return report


def test_sentence_transformers_export(base, tmp_path):
    from sentence_transformers import SentenceTransformer
    family, path = base
    model, tok = load_model(str(path), "sentence-similarity")
    model.info.prompts = {"query": "query: ", "document": ""}
    report = _export(model, tok, tmp_path, "sentence-transformers")
    assert report["reference"].startswith("sentence-transformers") and report["min_cosine"] >= 0.9999
    assert report["pooling"] == model.pooling and report["normalize"] is True
    st = SentenceTransformer(str(tmp_path), device="cpu")
    assert st.prompts["query"] == "query: "
    for kw, prompt_name in (({}, None), ({"prompt_name": "query"}, "query")):
        theirs = st.encode(TEXTS, **kw)
        ours = encode(model, tok, TEXTS, prompt_name=prompt_name)
        assert _cos(ours, theirs).min() >= 0.9999


def test_pylate_export(base, tmp_path):
    from pylate import models
    family, path = base
    model, tok = load_model(str(path), "sentence-similarity", use_late_interaction=True, late_interaction_dim=16)
    assert len(tok) == VOCAB + 2 and model.info.config["vocab_size"] == VOCAB + 2  # [Q] and [D]
    report = _export(model, tok, tmp_path, "pylate")
    assert report["reference"].startswith("pylate")
    modules = json.loads((tmp_path / "modules.json").read_text())
    assert [m["type"] for m in modules] == ["sentence_transformers.models.Transformer", "pylate.models.Dense.Dense"]
    st_cfg = json.loads((tmp_path / "config_sentence_transformers.json").read_text())
    assert st_cfg["query_prefix"] == "[Q] " and st_cfg["similarity_fn_name"] == "MaxSim"
    colbert = models.ColBERT(str(tmp_path), device="cpu")
    for is_query in (True, False):
        theirs = colbert.encode(TEXTS, is_query=is_query)
        ours = encode(model, tok, TEXTS, is_query=is_query)
        for a, b in zip(ours, theirs):
            assert a.shape == b.shape  # queries: 32 expanded tokens; documents: no punctuation
            assert _cos(a, b).min() >= 0.9999
    # Our own loader reads the folder back as the same ColBERT model (auto-detected).
    again, tok2 = load_model(str(tmp_path))
    assert again.info.colbert == model.info.colbert
    for a, b in zip(encode(again, tok2, TEXTS, is_query=False), encode(model, tok, TEXTS, is_query=False)):
        assert np.abs(a - b).max() <= 1e-5


@pytest.mark.parametrize("task,kw,auto", [
    ("text-classification", {"id2label": LABELS}, "AutoModelForSequenceClassification"),
    ("text-classification", {"is_regression": True}, "AutoModelForSequenceClassification"),
    ("token-classification", {"id2label": TAGS}, "AutoModelForTokenClassification"),
    ("masked-lm", {}, "AutoModelForMaskedLM"),
], ids=["classification", "regression", "token-classification", "masked-lm"])
def test_transformers_export(base, tmp_path, task, kw, auto):
    import torch
    import transformers
    family, path = base
    if family == "qwen3" and task == "masked-lm":  # causal: there is nothing to export
        from engine.models import ModelError
        with pytest.raises(ModelError, match="causal"):
            load_model(str(path), task, **kw)
        return
    mx.random.seed(0)
    model, tok = load_model(str(path), task, **kw)
    report = _export(model, tok, tmp_path, "transformers")
    assert report["compared"].startswith("logits") and report["max_abs_diff"] <= 1e-4
    ref = getattr(transformers, auto).from_pretrained(str(tmp_path)).eval()
    config = ref.config
    if task != "masked-lm":
        names = ["score"] if kw.get("is_regression") else kw["id2label"]
        assert config.id2label == dict(enumerate(names)) and config.label2id == {n: i for i, n in enumerate(names)}
    if task == "text-classification":
        assert config.problem_type == ("regression" if kw.get("is_regression") else "single_label_classification")
    enc = tok(TEXTS, padding=True, return_tensors="np")
    ids, mask = enc["input_ids"].astype(np.int32), enc["attention_mask"].astype(np.int32)
    ours = np.array(model(mx.array(ids), mx.array(mask)))
    with torch.no_grad():
        theirs = ref(input_ids=torch.tensor(ids).long(), attention_mask=torch.tensor(mask).long()).logits.numpy()
    sel = mask > 0 if ours.ndim == 3 else slice(None)
    assert np.abs(ours[sel] - theirs[sel]).max() <= 1e-4


def test_bare_encoder_export(tmp_path):
    import torch
    from transformers import AutoModel
    path = tiny_checkpoint("bert", tmp_path / "src")
    model, tok = load_model(str(path), "sentence-similarity")
    report = _export(model, tok, tmp_path / "out", check_format(model, "transformers"))
    assert report["compared"] == "hidden states"
    assert not (tmp_path / "out" / "modules.json").exists()
    assert AutoModel.from_pretrained(str(tmp_path / "out")).config.model_type == "bert"
    with pytest.raises(ExportError, match="dense embedding model.*pylate"):
        check_format(model, "pylate")


def test_self_check_mismatch_is_an_error(tmp_path, monkeypatch):
    """A folder that does not reproduce the model fails the export, and the card says so."""
    import engine.outputs.export as export
    path = tiny_checkpoint("bert", tmp_path / "src")
    real_write = export.write_folder

    def broken_write(model, tok, out, fmt):
        real_write(model, tok, out, fmt)
        from safetensors.numpy import load_file, save_file
        weights = load_file(str(out / "model.safetensors"))
        key = next(k for k in weights if k.endswith("classifier.weight"))
        weights[key] = weights[key] + 0.5
        save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})

    monkeypatch.setattr(export, "write_folder", broken_write)
    clf = tmp_path / "clf"
    model, tok = load_model(str(path), "text-classification", id2label=LABELS)
    model.save_pretrained(clf)
    tok.save_pretrained(str(clf))
    with pytest.raises(ExportError, match="self-check failed.*logits.*differ"):
        export_model(str(clf), tmp_path / "out")
    assert "**FAILED**" in (tmp_path / "out" / "README.md").read_text()


def test_export_command_writes_card_and_run_record(tmp_path, capsys):
    """`raclate export` on a dense model: ST folder, card with the check, raclate_run.json with it."""
    from engine.cli import main
    path = tiny_checkpoint("bert", tmp_path / "src")
    assert main(["export", "--model", str(path), "--to", str(tmp_path / "out"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["format"] == "sentence-transformers" and result["check"]["ok"]
    card = (tmp_path / "out" / "README.md").read_text()
    assert "library_name: sentence-transformers" in card and "## Export check" in card
    assert "max abs difference" in card and "| pooling | mean |" in card
    record = json.loads((tmp_path / "out" / "raclate_run.json").read_text())
    assert record["export"]["max_abs_diff"] == result["check"]["max_abs_diff"]
    # An existing folder is not overwritten without --overwrite; a wrong format is refused (bad input: 2).
    assert main(["export", "--model", str(path), "--to", str(tmp_path / "out")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["export", "--model", str(path), "--to", str(tmp_path / "o2"), "--format", "pylate"]) == 2
    assert "cannot be written in the pylate format" in capsys.readouterr().err


def test_colbert_collator_matches_pylate_tokenize(base, tmp_path):
    """The trainer's late-interaction batches are PyLate's: same ids and attention for queries
    (prefix after [CLS], [MASK] expansion) and documents, and PyLate's scoring masks."""
    from pylate import models
    from engine.models.pylate import ColBERTCollator
    family, path = base
    model, tok = load_model(str(path), "sentence-similarity", use_late_interaction=True, late_interaction_dim=16)
    write_folder(model, tok, tmp_path, "pylate")
    colbert = models.ColBERT(str(tmp_path), device="cpu")
    rows = [{"text": q, "text_pair": d} for q, d in zip(TEXTS, reversed(TEXTS))]
    batch = ColBERTCollator(tok, model.info.colbert, pad_to_multiple_of=1)(rows)
    for x, is_query, texts in ((batch["inputs"][0], True, TEXTS), (batch["inputs"][1], False, TEXTS[::-1])):
        ref = colbert.tokenize(texts, is_query=is_query)
        assert np.array_equal(np.array(x["input_ids"]), ref["input_ids"].numpy())
        assert np.array_equal(np.array(x["attention_mask"]), ref["attention_mask"].numpy())
        score = np.array(x["score_mask"])
        if is_query:
            assert score.all()  # every expansion position is scored
        else:
            skip = colbert.skiplist_mask(ref["input_ids"], colbert.skiplist).numpy() & ref["attention_mask"].numpy().astype(bool)
            assert np.array_equal(score.astype(bool), skip)


def test_loads_a_folder_pylate_saved(tmp_path):
    """A ColBERT folder written by PyLate itself (its own settings) loads here, auto-detected, and
    encodes as PyLate does: non-default lengths and attention to the expansion tokens included."""
    from pylate import models
    path = tiny_checkpoint("bert", tmp_path / "src")
    colbert = models.ColBERT(str(path), device="cpu", embedding_size=16, query_length=12, document_length=20,
                             attend_to_expansion_tokens=True)
    colbert.save(str(tmp_path / "pylate"))
    colbert = models.ColBERT(str(tmp_path / "pylate"), device="cpu")
    model, tok = load_model(str(tmp_path / "pylate"))
    assert model.info.late_interaction and model.info.colbert["query_length"] == 12
    assert model.info.colbert["attend_to_expansion_tokens"] is True
    long_doc = "word " * 60  # truncated to document_length
    for is_query, texts in ((True, TEXTS), (False, TEXTS + [long_doc])):
        for a, b in zip(encode(model, tok, texts, is_query=is_query), colbert.encode(texts, is_query=is_query)):
            assert a.shape == b.shape and _cos(a, b).min() >= 0.9999


@pytest.mark.parametrize("fmt,task,kw", [
    ("sentence-transformers", "sentence-similarity", {}),
    ("pylate", "sentence-similarity", {"use_late_interaction": True, "late_interaction_dim": 16}),
    ("transformers", "token-classification", {"id2label": TAGS}),
])
def test_self_check_without_the_reference_library_uses_the_engine(tmp_path, monkeypatch, fmt, task, kw):
    import engine.outputs.export as export
    monkeypatch.setattr(export, "_installed", lambda *names: False)  # as on a machine without torch
    path = tiny_checkpoint("bert", tmp_path / "src")
    model, tok = load_model(str(path), task, **kw)
    report = _export(model, tok, tmp_path / "out", fmt)
    assert report["reference"].startswith("engine loader") and report["max_abs_diff"] <= 1e-5


@pytest.mark.parametrize("fmt,library", [("onnx", "onnx"), ("gguf", "gguf"), ("mlx", "mlx_embeddings"),
                                         ("coreml", "coremltools")])
def test_a_missing_runtime_library_names_its_extra(tmp_path, monkeypatch, fmt, library):
    """Without its runtime library a format is refused before any work, naming the pip extra to install."""
    import importlib.util
    src = tiny_checkpoint("bert", tmp_path / "bert")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == library else real(name, *a))
    with pytest.raises(ExportError, match=rf"pip install 'raclate-tuner\[{fmt}\]'") as err:
        export_model(str(src), tmp_path / "out", fmt=fmt)
    assert err.value.kind == "export_refused" and not (tmp_path / "out").exists()


def assert_refused(src, tmp_path, fmt: str, task: str, message: str, quantize=None, **load_kw) -> None:
    """``src`` loaded for ``task`` (with ``load_kw``) and saved, then exported as ``fmt``: refused with
    ``message`` before any work (no output folder)."""
    model, tok = load_model(str(src), task, **load_kw)
    model.save_pretrained(tmp_path / "src")
    tok.save_pretrained(str(tmp_path / "src"))
    with pytest.raises(ExportError, match=message) as err:
        export_model(str(tmp_path / "src"), tmp_path / "out", fmt=fmt, quantize=quantize)
    assert err.value.kind == "export_refused" and not (tmp_path / "out").exists()
