"""T5Gemma encoder parity vs transformers' T5GemmaEncoderModel / encoder-only heads, round trips."""
import warnings

import numpy as np
import pytest

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten
from engine import encode, load_model
from engine.defaults import default_model_dir
from engine.models import ModelError
from tests.helpers import max_diff_masked, padded_batch, torch_out

pytestmark = pytest.mark.parity

VOCAB = 30522  # the embedded tokenizer's, so `encode` on real text stays in range


def tiny_t5gemma_config(**kw):
    from transformers import T5GemmaConfig
    # Large init + a low softcap so softcapping bites; window 3 < T so sliding layers differ from full.
    enc = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
               num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=64,
               sliding_window=3, query_pre_attn_scalar=24, attn_logit_softcapping=5.0, initializer_range=0.2)
    return T5GemmaConfig(encoder=enc, decoder=dict(enc, num_hidden_layers=2), vocab_size=VOCAB,
                         initializer_range=0.2, **kw)


def save_random(build, config, path):
    """Like helpers.save_tiny, but with random 1-D weights too: HF inits Gemma norms to 0 (so
    1 + w = 1) and biases to 0, which would hide a w-vs-(1 + w) or a bias bug."""
    import torch
    from transformers import AutoTokenizer
    torch.manual_seed(0)
    model = build(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 1:
                p.normal_(0.0, 0.5)
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(str(default_model_dir())).save_pretrained(path)
    return model


def encoder_only(cls):
    return lambda config: cls(config, is_encoder_decoder=False)


@pytest.fixture(scope="module")
def tiny_t5gemma(tmp_path_factory):
    """A full encoder-decoder checkpoint, and T5GemmaEncoderModel loaded from the same folder."""
    from transformers import T5GemmaEncoderModel, T5GemmaModel
    path = tmp_path_factory.mktemp("t5gemma")
    save_random(T5GemmaModel, tiny_t5gemma_config(), path)
    ref = T5GemmaEncoderModel.from_pretrained(str(path), is_encoder_decoder=False).eval()
    return path, ref


@pytest.mark.parametrize("left", [False, True])
def test_hidden_states_match_transformers(tiny_t5gemma, left):
    path, ref = tiny_t5gemma
    model, _ = load_model(str(path))
    ids, mask = padded_batch(VOCAB, lengths=(7, 4, 9), left=left)
    ours = model.hidden_states(mx.array(ids), mx.array(mask))
    assert max_diff_masked(ours, torch_out(ref, ids, mask, "hidden"), mask) <= 1e-4


def test_decoder_weights_are_ignored_silently(tiny_t5gemma):
    path, _ = tiny_t5gemma
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, _ = load_model(str(path), task="text-classification", num_labels=2)
    assert [str(w.message) for w in caught] == []
    assert sorted(model.info.new_weights) == ["score.out_proj.bias", "score.out_proj.weight"]
    assert not any("decoder" in k for k, _ in tree_flatten(model.parameters()))


@pytest.mark.parametrize("task,cls_name,kw", [
    ("text-classification", "T5GemmaForSequenceClassification", {"num_labels": 3}),
    ("token-classification", "T5GemmaForTokenClassification", {"num_labels": 5}),
])
@pytest.mark.parametrize("left", [False, True])
def test_task_heads_match_transformers(tmp_path, task, cls_name, kw, left):
    import transformers
    ref = save_random(encoder_only(getattr(transformers, cls_name)), tiny_t5gemma_config(**kw), tmp_path)
    model, _ = load_model(str(tmp_path), task=task)
    assert model.info.new_weights == []
    ids, mask = padded_batch(VOCAB, left=left)
    ours = np.array(model(mx.array(ids), mx.array(mask)))
    theirs = torch_out(ref, ids, mask)
    assert ours.shape == theirs.shape
    diff = np.abs(ours - theirs).max() if task == "text-classification" else max_diff_masked(ours, theirs, mask)
    assert diff <= 1e-4


@pytest.mark.parametrize("task,cls_name", [
    ("feature-extraction", "T5GemmaEncoderModel"),
    ("text-classification", "AutoModelForSequenceClassification"),
    ("token-classification", "AutoModelForTokenClassification"),
])
def test_save_pretrained_round_trip(tiny_t5gemma, tmp_path, task, cls_name):
    import transformers
    path, _ = tiny_t5gemma
    model, tok = load_model(str(path), task=task, num_labels=4)
    out = tmp_path / "saved"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    ref, info = getattr(transformers, cls_name).from_pretrained(str(out), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    ref.eval()
    ids, mask = padded_batch(VOCAB, seed=1)
    if task == "feature-extraction":
        ours, theirs = model.hidden_states(mx.array(ids), mx.array(mask)), torch_out(ref, ids, mask, "hidden")
    else:
        ours, theirs = model(mx.array(ids), mx.array(mask)), torch_out(ref, ids, mask)
    assert max_diff_masked(ours, theirs, mask if np.ndim(theirs) == 3 else np.ones(len(ids))) <= 1e-4
    again, _ = load_model(str(out), task=task)
    assert again.info.new_weights == []
    diff = np.abs(np.array(again(mx.array(ids), mx.array(mask))) - np.array(model(mx.array(ids), mx.array(mask))))
    assert diff.max() <= 1e-6


def test_masked_lm_is_refused_clearly(tiny_t5gemma):
    path, _ = tiny_t5gemma
    with pytest.raises(ModelError, match="no masked-LM head.*decoder"):
        load_model(str(path), task="masked-lm")


def test_encode_and_sentence_transformers_round_trip(tiny_t5gemma, tmp_path):
    from sentence_transformers import SentenceTransformer
    path, _ = tiny_t5gemma
    model, tok = load_model(str(path), task="sentence-similarity")
    texts = ["Hello world", "A somewhat longer sentence about T5Gemma encoders.", "short"]
    vectors = encode(model, tok, texts)
    assert vectors.shape == (3, 64) and model.pooling == "mean"
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    ref = SentenceTransformer(str(tmp_path), device="cpu").encode(texts)
    assert np.abs(vectors - ref).max() < 1e-4


def test_gradient_checkpointing_gives_the_same_gradients(tiny_t5gemma):
    path, _ = tiny_t5gemma
    model, _ = load_model(str(path), task="text-classification", num_labels=2)
    ids, mask = (mx.array(a) for a in padded_batch(VOCAB))
    grad = nn.value_and_grad(model, lambda: model(ids, mask).square().sum())
    plain = dict(tree_flatten(grad()[1]))
    model.set_grad_checkpoint(True)
    checkpointed = dict(tree_flatten(grad()[1]))
    assert max(float(mx.abs(plain[k] - checkpointed[k]).max()) for k in plain) <= 1e-5


def test_causal_request_is_refused(tiny_t5gemma):
    path, _ = tiny_t5gemma
    with pytest.raises(ModelError, match="bidirectional"):
        load_model(str(path), bidirectional=False)
