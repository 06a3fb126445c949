"""LFM2 parity vs transformers' Lfm2Model (right and left padding), heads, round trips."""
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


def tiny_lfm2_config(**kw):
    from transformers import Lfm2Config
    return Lfm2Config(**{**dict(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, layer_types=["conv", "full_attention", "conv", "full_attention"],
        block_multiple_of=16, max_position_embeddings=64, tie_word_embeddings=False), **kw})


def save_random(build, config, path):
    """Like helpers.save_tiny, but with random 1-D weights too (HF inits norms to 1 and biases to 0,
    which would hide a norm or bias bug)."""
    import torch
    from transformers import AutoTokenizer
    torch.manual_seed(0)
    model = build(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 1:
                p.normal_(1.0, 0.5)
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(str(default_model_dir())).save_pretrained(path)
    return model


def hf_hidden(ref, ids, mask):
    import torch
    with torch.no_grad():
        out = ref.model(input_ids=torch.tensor(ids, dtype=torch.long),
                        attention_mask=torch.tensor(mask, dtype=torch.long))
    return out.last_hidden_state.numpy()


@pytest.fixture(scope="module")
def tiny_lfm2(tmp_path_factory):
    """A causal-LM checkpoint with an untied lm_head (so the file holds one to ignore)."""
    from transformers import Lfm2ForCausalLM
    path = tmp_path_factory.mktemp("lfm2")
    return path, save_random(Lfm2ForCausalLM, tiny_lfm2_config(), path)


@pytest.mark.parametrize("left", [False, True])
def test_hidden_states_match_transformers(tiny_lfm2, left):
    path, ref = tiny_lfm2
    model, _ = load_model(str(path))
    ids, mask = padded_batch(VOCAB, lengths=(7, 4, 9), left=left)
    ours = model.hidden_states(mx.array(ids), mx.array(mask))
    assert max_diff_masked(ours, hf_hidden(ref, ids, mask), mask) <= 1e-4


def unpadded_rows(model, ids, mask):
    """Each row run alone without padding → list of [n_i, H]."""
    return [np.array(model.hidden_states(mx.array(row[m > 0][None]), mx.array(m[m > 0][None])))[0]
            for row, m in zip(ids, mask)]


def test_conv_bias_right_padding_matches_and_left_padding_does_not_leak(tmp_path):
    """With conv_bias, HF's in_proj bias survives at left-padded positions and reaches the first
    real tokens; ours zeroes B·x there. Right padding matches HF; left padding equals no padding."""
    from transformers import Lfm2ForCausalLM
    ref = save_random(Lfm2ForCausalLM, tiny_lfm2_config(conv_bias=True), tmp_path)
    model, _ = load_model(str(tmp_path))
    ids, mask = padded_batch(VOCAB)
    ours = model.hidden_states(mx.array(ids), mx.array(mask))
    assert max_diff_masked(ours, hf_hidden(ref, ids, mask), mask) <= 1e-4
    ids, mask = padded_batch(VOCAB, left=True)
    ours = np.array(model.hidden_states(mx.array(ids), mx.array(mask)))
    for b, alone in enumerate(unpadded_rows(model, ids, mask)):
        assert np.abs(ours[b][mask[b] > 0] - alone).max() <= 1e-5


def test_lm_head_is_ignored_silently(tiny_lfm2):
    path, _ = tiny_lfm2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, _ = load_model(str(path))
    assert [str(w.message) for w in caught] == []
    assert model.info.new_weights == [] and model.pooling == "lasttoken"


@pytest.mark.parametrize("left", [False, True])
def test_sequence_classification_scores_the_last_real_token(tiny_lfm2, left):
    """transformers 5.24 has no Lfm2ForSequenceClassification: check ours against HF's hidden state
    of the last real token times our score weights (what its generic decoder classifiers do)."""
    path, ref = tiny_lfm2
    model, _ = load_model(str(path), task="text-classification", num_labels=3)
    assert sorted(model.info.new_weights) == ["score.weight"]
    ids, mask = padded_batch(VOCAB, left=left)
    hidden = hf_hidden(ref, ids, mask)
    last = [np.flatnonzero(m)[-1] for m in mask]
    theirs = hidden[np.arange(len(ids)), last] @ np.array(model.score.weight).T
    assert np.abs(np.array(model(mx.array(ids), mx.array(mask))) - theirs).max() <= 1e-4


@pytest.mark.parametrize("task", ["feature-extraction", "text-classification", "token-classification"])
def test_save_pretrained_round_trip(tiny_lfm2, tmp_path, task):
    """Lfm2Model loads every save (the heads' ``score`` is the only extra key); the engine reloads
    the same model, head included."""
    from transformers import AutoModel
    path, _ = tiny_lfm2
    model, tok = load_model(str(path), task=task, num_labels=4)
    out = tmp_path / "saved"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    ref, info = AutoModel.from_pretrained(str(out), output_loading_info=True)
    assert not info["missing_keys"] and not info["mismatched_keys"]
    assert info["unexpected_keys"] == (set() if task == "feature-extraction" else {"score.weight"} | (
        {"score.bias"} if task == "token-classification" else set()))
    ids, mask = padded_batch(VOCAB, seed=1)
    assert max_diff_masked(model.hidden_states(mx.array(ids), mx.array(mask)),
                           torch_out(ref.eval(), ids, mask, "hidden"), mask) <= 1e-4
    again, _ = load_model(str(out), task=task)
    assert again.info.new_weights == []
    diff = np.abs(np.array(again(mx.array(ids), mx.array(mask))) - np.array(model(mx.array(ids), mx.array(mask))))
    assert diff.max() <= 1e-6


def test_masked_lm_is_refused_clearly(tiny_lfm2):
    path, _ = tiny_lfm2
    with pytest.raises(ModelError, match="causal.*no masked-LM head.*Pick an encoder"):
        load_model(str(path), task="masked-lm")


def test_encode_gives_normalised_last_token_embeddings(tiny_lfm2):
    path, _ = tiny_lfm2
    model, tok = load_model(str(path), task="sentence-similarity")
    vectors = encode(model, tok, ["Hello world", "A longer sentence for a hybrid conv model.", "short"])
    assert vectors.shape == (3, 64) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_gradient_checkpointing_gives_the_same_gradients(tiny_lfm2):
    path, _ = tiny_lfm2
    model, _ = load_model(str(path), task="text-classification", num_labels=2)
    ids, mask = (mx.array(a) for a in padded_batch(VOCAB, left=True))
    grad = nn.value_and_grad(model, lambda: model(ids, mask).square().sum())
    plain = dict(tree_flatten(grad()[1]))
    model.set_grad_checkpoint(True)
    checkpointed = dict(tree_flatten(grad()[1]))
    assert set(plain) == set(checkpointed)
    assert max(float(mx.abs(plain[k] - checkpointed[k]).max()) for k in plain) <= 1e-5


def test_bidirectional_request_is_refused(tiny_lfm2):
    path, _ = tiny_lfm2
    with pytest.raises(ModelError, match="causal only"):
        load_model(str(path), bidirectional=True)
