"""GGUF export (engine/outputs/gguf.py): tiny BERT, ModernBERT and EmbeddingGemma embedding models written
as llama.cpp's `bert`, `modern-bert` and `gemma-embedding` architectures in f32 / f16 / q8_0 read back
with gguf.GGUFReader with llama.cpp's names, shapes and metadata (sliding-window pattern, RoPE bases,
Dense layers), and their dequantized weights give the engine's embeddings (f32/f16 cosine ≥ 0.9999, q8_0
≥ 0.99 with top-10 retrieval overlap)."""
import json

import numpy as np
import pytest

from engine import load_model
from engine.outputs import gguf as gguf_export
from engine.outputs.export import ExportError, export_model
from engine.outputs.gguf import read_back
from engine.outputs.onnx import CORPUS
from tests import tiny_families
from tests.test_export import tiny_checkpoint
from tests.test_export_onnx import embedding_gemma

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


@pytest.mark.parametrize("family,quantize", [("modernbert", None), ("gemma3", None), ("gemma3", "q8_0")])
def test_modernbert_and_embeddinggemma(family, quantize, tmp_path):
    """llama.cpp's modern-bert (no biases, fused qkv, per-layer local/global pattern, two RoPE bases) and
    gemma-embedding (norms stored as 1 + w, two Dense layers with their sizes) read back as written."""
    import gguf
    src = embedding_gemma(tmp_path) if family == "gemma3" else tiny_checkpoint(family, tmp_path / "src")
    check = export_model(str(src), tmp_path / "out", fmt="gguf", quantize=quantize)["check"]
    assert check["ok"] and check["min_cosine"] >= (0.99 if quantize else 0.9999), check
    meta, weights, types = read_back(tmp_path / "out" / "model.gguf")
    model, tok = load_model(str(src), "sentence-similarity")
    arch = gguf.MODEL_ARCH_NAMES[{"modernbert": gguf.MODEL_ARCH.MODERN_BERT,
                                  "gemma3": gguf.MODEL_ARCH.GEMMA_EMBEDDING}[family]]
    assert meta["general.architecture"] == arch and meta[f"{arch}.attention.causal"] is False
    assert meta[f"{arch}.pooling_type"] == 1 and meta["tokenizer.ggml.model"] == "bert"   # MEAN; a WordPiece vocab
    args = model.info.args
    assert meta[f"{arch}.attention.sliding_window_pattern"] == [t == "sliding_attention" for t in args.layer_types]
    if family == "modernbert":   # tiny: layers full, local, full; window 64; thetas 160000 / 10000
        assert meta[f"{arch}.attention.sliding_window_pattern"] == [False, True, False]
        assert meta[f"{arch}.attention.sliding_window"] == 64 and meta[f"{arch}.rope.freq_base"] == 160000.0
        assert meta[f"{arch}.rope.freq_base_swa"] == 10000.0
        assert "blk.0.attn_norm.weight" not in weights and weights["blk.1.attn_norm.weight"].shape == (32,)
        assert weights["blk.0.attn_qkv.weight"].shape == (96, 32) and weights["blk.0.ffn_up.weight"].shape == (96, 32)
        assert not any(name.endswith(".bias") for name in weights)
        ref, stored = model.backbone.layers[1].attn.Wqkv.weight, weights["blk.1.attn_qkv.weight"]
    else:   # EmbeddingGemma: Dense 32 → 64 → 32 after mean pooling; window 4; thetas 10000 / 100
        assert meta[f"{arch}.dense_2_feat_in"] == 32 and meta[f"{arch}.dense_2_feat_out"] == 64
        assert meta[f"{arch}.dense_3_feat_in"] == 64 and meta[f"{arch}.dense_3_feat_out"] == 32
        assert weights["dense_2.weight"].shape == (64, 32) and weights["dense_3.weight"].shape == (32, 64)
        assert meta[f"{arch}.attention.sliding_window"] == 4 and meta[f"{arch}.attention.head_count_kv"] == 2
        assert meta[f"{arch}.rope.freq_base"] == 10000.0 and meta[f"{arch}.rope.freq_base_swa"] == 100.0
        norm = np.array(model.backbone.layers[0].post_attention_layernorm.weight)
        assert np.abs(weights["blk.0.post_attention_norm.weight"] - (1 + norm)).max() <= 1e-6
        ref, stored = model.dense[0].linear.weight, weights["dense_2.weight"]
    ref = np.array(ref)
    assert np.abs(stored - ref).max() <= (np.abs(ref).max() / 127 if quantize else 0.0)
    assert ("Q8_0" in types.values()) == (quantize == "q8_0")


def _byte_level_bpe(bos="[CLS]", eos="[SEP]"):
    """A small byte-level BPE tokenizer (ModernBERT's kind) that puts [CLS] … [SEP] around a text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(list(CORPUS) * 4, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["[PAD]", "[UNK]", bos, eos, "[MASK]"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A {eos}", special_tokens=[
        (bos, tok.token_to_id(bos)), (eos, tok.token_to_id(eos))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token=bos,
                                   sep_token=eos, mask_token="[MASK]")


def test_byte_level_bpe_vocabulary(tmp_path):
    """ModernBERT's own tokenizer is byte-level BPE: written as llama.cpp's gpt2 model with its merges,
    BOS/EOS the tokens the tokenizer adds."""
    import gguf
    tok = _byte_level_bpe()
    model = tiny_families.build("modernbert", "sentence-similarity", vocab_size=len(tok))
    gguf_export.write(model, tok, tmp_path, None)
    reader = gguf.GGUFReader(str(tmp_path / "model.gguf"))
    field = lambda key: reader.fields[key].contents()  # noqa: E731
    assert field("tokenizer.ggml.model") == "gpt2" and field("tokenizer.ggml.pre") == "modern-bert"
    assert field("tokenizer.ggml.tokens") == tok.convert_ids_to_tokens(list(range(len(tok))))
    merges = json.loads(tok.backend_tokenizer.to_str())["model"]["merges"]
    assert field("tokenizer.ggml.merges") == [" ".join(m) if isinstance(m, list) else m for m in merges]
    assert field("tokenizer.ggml.bos_token_id") == tok.cls_token_id and field("tokenizer.ggml.add_bos_token")
    assert field("tokenizer.ggml.eos_token_id") == tok.sep_token_id and field("tokenizer.ggml.add_eos_token")
    assert field("tokenizer.ggml.token_type")[tok.cls_token_id] == gguf.TokenType.CONTROL


def test_sentencepiece_vocabulary_is_refused(tmp_path):
    """A byte-fallback BPE (SentencePiece-style, Gemma's) is refused before the file is written."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast
    spm = Tokenizer(models.BPE(vocab={"<unk>": 0, "a": 1}, merges=[], unk_token="<unk>", byte_fallback=True))
    tok = PreTrainedTokenizerFast(tokenizer_object=spm, unk_token="<unk>")
    model = tiny_families.build("gemma3_text", "sentence-similarity", use_bidirectional_attention=True)
    with pytest.raises(ExportError, match="WordPiece and byte-level BPE.*SentencePiece") as err:
        gguf_export.write(model, tok, tmp_path, None)
    assert err.value.kind == "export_refused" and not (tmp_path / "model.gguf").exists()


@pytest.mark.parametrize("family,config,message", [
    ("gemma3", {}, "attends both ways"),
    ("modernbert", {"attention_bias": True}, "no bias weights"),
    ("lfm2", {}, "supports the bert, modernbert, gemma3_text families, not 'lfm2'"),
])
def test_gguf_family_refusals(family, config, message, tmp_path):
    src = tiny_checkpoint(family, tmp_path / "src", **config)
    with pytest.raises(ExportError, match=message) as err:
        export_model(str(src), tmp_path / "out", fmt="gguf")
    assert err.value.kind == "export_refused" and not (tmp_path / "out").exists()
