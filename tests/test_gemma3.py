"""Gemma3 text parity vs transformers in both attention modes (sliding band, local/global RoPE,
query_pre_attn_scalar), the bidirectional switch, task heads, save round trips, an
EmbeddingGemma-style sentence-transformers pipeline, and gradient checkpointing."""
import json

import numpy as np
import pytest

import mlx.core as mx
import mlx.nn as nn
from engine import encode, load_model
from engine.defaults import default_model_dir
from engine.models import ModelError
from tests.helpers import max_diff_masked, padded_batch, save_tiny, torch_out

pytestmark = pytest.mark.parity

VOCAB = 120
LENGTHS = (7, 4, 9, 12)  # longer than the sliding window, so the band matters


def tiny_gemma3_config(bidirectional=False, window=4, vocab_size=VOCAB, **kw):
    from transformers import Gemma3TextConfig
    return Gemma3TextConfig(
        vocab_size=vocab_size, hidden_size=64, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
        head_dim=16, intermediate_size=128, max_position_embeddings=128, sliding_window=window,
        sliding_window_pattern=2, query_pre_attn_scalar=24, pad_token_id=0,
        rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 100.0},
                         "full_attention": {"rope_type": "default", "rope_theta": 10000.0}},
        use_bidirectional_attention=bidirectional, **kw)


def token_classification_class():
    """transformers 5.24 has no Gemma3 token-classification class; this is the generic one it would be."""
    from transformers import Gemma3TextConfig
    from transformers.modeling_layers import GenericForTokenClassification
    from transformers.models.gemma3.modeling_gemma3 import Gemma3PreTrainedModel

    class Gemma3TextForTokenClassification(GenericForTokenClassification, Gemma3PreTrainedModel):
        config_class = Gemma3TextConfig
        input_modalities = ("text",)
    return Gemma3TextForTokenClassification


def twin(ref, cls, config):
    """The same weights under another config (e.g. the other attention direction)."""
    other = cls(config).eval()
    other.load_state_dict(ref.state_dict())
    return other


def edit_config(path, **changes):
    cfg = json.loads((path / "config.json").read_text())
    for k, v in changes.items():
        if v is None:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    (path / "config.json").write_text(json.dumps(cfg))


def run(model, ids, mask, hidden=False):
    out = model.hidden_states(mx.array(ids), mx.array(mask)) if hidden else model(mx.array(ids), mx.array(mask))
    return np.array(out)


@pytest.mark.parametrize("window", [4, 5])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["causal", "bidirectional"])
def test_hidden_states_match_transformers(tmp_path, bidirectional, window):
    from transformers import Gemma3TextModel
    ref = save_tiny(Gemma3TextModel, tiny_gemma3_config(bidirectional, window), tmp_path, default_model_dir())
    model, _ = load_model(str(tmp_path))
    ids, mask = padded_batch(VOCAB, lengths=LENGTHS)
    assert max_diff_masked(run(model, ids, mask, True), torch_out(ref, ids, mask, "hidden"), mask) <= 1e-4


def test_bidirectional_switch_both_spellings_and_override(tmp_path):
    from transformers import Gemma3TextModel
    ref_bi = save_tiny(Gemma3TextModel, tiny_gemma3_config(True), tmp_path, default_model_dir())
    ref_causal = twin(ref_bi, Gemma3TextModel, tiny_gemma3_config(False))
    ids, mask = padded_batch(VOCAB, lengths=LENGTHS)
    want_bi, want_causal = torch_out(ref_bi, ids, mask, "hidden"), torch_out(ref_causal, ids, mask, "hidden")
    assert max_diff_masked(want_bi, want_causal, mask) > 1e-2  # the flag really changes the outputs

    def check(want, **kw):
        model, _ = load_model(str(tmp_path), **kw)
        assert max_diff_masked(run(model, ids, mask, True), want, mask) <= 1e-4
        assert "use_bidirectional_attn" not in model.config
        return model.config["use_bidirectional_attention"]

    assert check(want_bi) is True
    assert check(want_causal, bidirectional=False) is False
    edit_config(tmp_path, use_bidirectional_attention=None, use_bidirectional_attn=True)
    assert check(want_bi) is True
    edit_config(tmp_path, use_bidirectional_attn=None)  # absent = causal
    assert check(want_causal) is False
    assert check(want_bi, bidirectional=True) is True


def test_attn_logit_softcapping_is_ignored_as_in_transformers(tmp_path):
    """HF's Gemma3Attention (5.24) stores attn_logit_softcapping but never applies it; neither do we."""
    from transformers import Gemma3TextModel
    ref = save_tiny(Gemma3TextModel, tiny_gemma3_config(True, attn_logit_softcapping=0.5), tmp_path,
                    default_model_dir())
    model, _ = load_model(str(tmp_path))
    ids, mask = padded_batch(VOCAB, lengths=LENGTHS)
    assert max_diff_masked(run(model, ids, mask, True), torch_out(ref, ids, mask, "hidden"), mask) <= 1e-4


def test_legacy_config_keys(tmp_path):
    """Older configs: rope_theta / rope_local_base_freq and sliding_window_pattern, no layer_types."""
    from transformers import Gemma3TextModel
    ref = save_tiny(Gemma3TextModel, tiny_gemma3_config(True), tmp_path, default_model_dir())
    edit_config(tmp_path, rope_parameters=None, layer_types=None, _sliding_window_pattern=None,
                rope_theta=10000.0, rope_local_base_freq=100.0, sliding_window_pattern=2)
    model, _ = load_model(str(tmp_path))
    ids, mask = padded_batch(VOCAB, lengths=LENGTHS)
    assert max_diff_masked(run(model, ids, mask, True), torch_out(ref, ids, mask, "hidden"), mask) <= 1e-4


@pytest.mark.parametrize("bidirectional", [False, True], ids=["causal", "bidirectional"])
@pytest.mark.parametrize("task,cls_name,kw", [
    ("text-classification", "Gemma3TextForSequenceClassification", {"num_labels": 3}),
    ("token-classification", None, {"num_labels": 5}),
    ("masked-lm", "Gemma3ForCausalLM", {"final_logit_softcapping": 5.0}),
    ("masked-lm", "Gemma3ForCausalLM", {"tie_word_embeddings": False}),
])
def test_task_heads_match_transformers(tmp_path, task, cls_name, kw, bidirectional):
    import transformers
    cls = getattr(transformers, cls_name) if cls_name else token_classification_class()
    ref = save_tiny(cls, tiny_gemma3_config(bidirectional, **kw), tmp_path, default_model_dir())
    if task == "masked-lm" and not bidirectional:
        with pytest.raises(ModelError, match="causal attention.*bidirectional=True.*use_bidirectional_attention"):
            load_model(str(tmp_path), task=task)
        return
    model, _ = load_model(str(tmp_path), task=task)
    assert model.info.new_weights == []
    ids, mask = padded_batch(VOCAB, lengths=LENGTHS)
    ours, theirs = run(model, ids, mask), torch_out(ref, ids, mask)
    assert ours.shape == theirs.shape
    diff = np.abs(ours - theirs).max() if task == "text-classification" else max_diff_masked(ours, theirs, mask)
    assert diff <= 1e-4


@pytest.mark.parametrize("task,cls_name", [
    ("feature-extraction", "AutoModel"),
    ("text-classification", "AutoModelForSequenceClassification"),
    ("token-classification", None),
    ("masked-lm", "AutoModelForCausalLM"),
])
def test_save_pretrained_round_trip(tmp_path, task, cls_name):
    """A causal checkpoint loaded with bidirectional=True saves a folder transformers reloads with
    bidirectional attention (masked-lm as Gemma3ForCausalLM), with no missing or unexpected keys."""
    import transformers
    from transformers import Gemma3TextModel
    save_tiny(Gemma3TextModel, tiny_gemma3_config(False), tmp_path / "src", default_model_dir())
    model, tok = load_model(str(tmp_path / "src"), task=task, num_labels=4, bidirectional=True)
    out = tmp_path / "saved"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    cls = getattr(transformers, cls_name) if cls_name else token_classification_class()
    ref, info = cls.from_pretrained(str(out), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert ref.config.use_bidirectional_attention is True
    ids, mask = padded_batch(VOCAB, seed=1, lengths=LENGTHS)
    hidden = task == "feature-extraction"
    ours, theirs = run(model, ids, mask, hidden), torch_out(ref.eval(), ids, mask, "hidden" if hidden else None)
    assert max_diff_masked(ours, theirs, mask if np.ndim(theirs) == 3 else np.ones(len(ids))) <= 1e-4
    again, _ = load_model(str(out), task=task)
    assert again.info.new_weights == [] and again.config["use_bidirectional_attention"] is True


def test_multimodal_gemma3_checkpoint_loads_its_text_tower(tmp_path):
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, SiglipVisionConfig
    vision = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                image_size=28, patch_size=14)
    config = Gemma3Config(text_config=tiny_gemma3_config(False).to_dict(), vision_config=vision.to_dict(),
                          mm_tokens_per_image=4)
    ref = save_tiny(Gemma3ForConditionalGeneration, config, tmp_path, default_model_dir())
    model, _ = load_model(str(tmp_path))
    assert model.config["model_type"] == "gemma3_text"
    ids, mask = padded_batch(VOCAB, lengths=LENGTHS)
    assert max_diff_masked(run(model, ids, mask, True),
                           torch_out(ref.model.language_model, ids, mask, "hidden"), mask) <= 1e-4


PROMPTS = {"query": "task: search result | query: ", "document": "title: none | text: "}
SENTENCES = ["Hello world", "A", "The quick brown fox jumps over the lazy dog.", "Ça va très bien, merci!",
             "word " * 200, "numbers 12345 67.89", "What is the capital of France?", "Paris is in France."]


@pytest.fixture(scope="module")
def embeddinggemma_st(tmp_path_factory):
    """EmbeddingGemma layout: Transformer → Pooling(mean) → Dense → Dense → Normalize, with prompts.
    The embedded BERT tokenizer stands in for Gemma's (its vocabulary fits the tiny config)."""
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import Gemma3TextModel
    root = tmp_path_factory.mktemp("embeddinggemma")
    save_tiny(Gemma3TextModel, tiny_gemma3_config(True, vocab_size=30522), root / "hf", default_model_dir())
    modules = [models.Transformer(str(root / "hf"), max_seq_length=64), models.Pooling(64, "mean"),
               models.Dense(64, 128, bias=False, activation_function=torch.nn.Identity()),
               models.Dense(128, 64, bias=False, activation_function=torch.nn.Identity()), models.Normalize()]
    SentenceTransformer(modules=modules, prompts=PROMPTS, device="cpu").save(str(root / "st"))
    return root / "st"


@pytest.mark.parametrize("prompt_name", [None, "query", "document"])
def test_embeddinggemma_pipeline_matches_sentence_transformers(embeddinggemma_st, prompt_name):
    from sentence_transformers import SentenceTransformer
    model, tok = load_model(str(embeddinggemma_st), task="sentence-similarity")
    assert model.pooling == "mean" and len(model.dense) == 2 and model.normalize
    assert model.config["use_bidirectional_attention"] is True
    ours = encode(model, tok, SENTENCES, batch_size=3, prompt_name=prompt_name)
    ref = SentenceTransformer(str(embeddinggemma_st), device="cpu").encode(SENTENCES, prompt_name=prompt_name)
    cos = (ours * ref).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(ref, axis=1)
    assert ours.shape == (len(SENTENCES), 64) and cos.min() >= 0.9999, cos


def test_embeddinggemma_save_reloads_in_sentence_transformers(embeddinggemma_st, tmp_path):
    from sentence_transformers import SentenceTransformer
    model, tok = load_model(str(embeddinggemma_st), task="sentence-similarity")
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    ref = SentenceTransformer(str(tmp_path), device="cpu").encode(SENTENCES, prompt_name="query")
    assert np.abs(encode(model, tok, SENTENCES, prompt_name="query") - ref).max() < 1e-4


@pytest.mark.parametrize("bidirectional", [False, True], ids=["causal", "bidirectional"])
def test_gradient_checkpointing_gives_the_same_gradients(tmp_path, bidirectional):
    from transformers import Gemma3TextModel
    save_tiny(Gemma3TextModel, tiny_gemma3_config(bidirectional), tmp_path, default_model_dir())
    model, _ = load_model(str(tmp_path), task="text-classification", num_labels=3)
    ids, mask = (mx.array(a) for a in padded_batch(VOCAB, lengths=LENGTHS))
    labels = mx.array([0, 2, 1, 2])

    def grads(checkpoint):
        model.set_grad_checkpoint(checkpoint)
        loss = lambda m: nn.losses.cross_entropy(m(ids, mask), labels).mean()
        _, g = nn.value_and_grad(model, loss)(model)
        return dict(tree_flatten(g))

    from mlx.utils import tree_flatten
    plain, ckpt = grads(False), grads(True)
    assert plain.keys() == ckpt.keys() and len(plain) > 10
    assert max(float(mx.abs(plain[k] - ckpt[k]).max()) for k in plain) <= 1e-5
