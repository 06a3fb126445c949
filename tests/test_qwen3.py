"""Qwen3 parity vs transformers (left and right padding, full and sliding attention), task heads,
save round trips, and a Qwen3-Embedding-style sentence-transformers pipeline."""
import numpy as np
import pytest

import mlx.core as mx
from engine import encode, load_model
from engine.defaults import default_model_dir
from engine.models import ModelError
from tests.helpers import max_diff_masked, padded_batch, save_tiny, torch_out

pytestmark = pytest.mark.parity

VOCAB = 120


def tiny_qwen3_config(sliding=False, vocab_size=VOCAB, **kw):
    from transformers import Qwen3Config
    extra = dict(use_sliding_window=True, sliding_window=4, max_window_layers=1) if sliding else {}
    return Qwen3Config(vocab_size=vocab_size, hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
                       num_key_value_heads=2, head_dim=16, intermediate_size=128, max_position_embeddings=128,
                       rope_parameters={"rope_type": "default", "rope_theta": 1000.0}, pad_token_id=0,
                       **extra, **kw)


@pytest.fixture(scope="module", params=[False, True], ids=["full", "sliding"])
def tiny_qwen3(request, tmp_path_factory):
    from transformers import Qwen3Model
    path = tmp_path_factory.mktemp("qwen3")
    ref = save_tiny(Qwen3Model, tiny_qwen3_config(request.param), path, default_model_dir())
    return path, ref


@pytest.mark.parametrize("left", [False, True], ids=["right-pad", "left-pad"])
def test_hidden_states_match_transformers(tiny_qwen3, left):
    path, ref = tiny_qwen3
    model, tok = load_model(str(path))
    assert tok.padding_side == "left"
    ids, mask = padded_batch(VOCAB, lengths=(7, 4, 9, 12), left=left)
    ours = model.hidden_states(mx.array(ids), mx.array(mask))
    assert max_diff_masked(ours, torch_out(ref, ids, mask, "hidden"), mask) <= 1e-4


def test_left_padding_equals_unpadded(tiny_qwen3):
    path, _ = tiny_qwen3
    model, _ = load_model(str(path))
    ids, mask = padded_batch(VOCAB, lengths=(7, 4, 9, 12), left=True)
    batch = np.array(model.hidden_states(mx.array(ids), mx.array(mask)))
    pooled = np.array(model(mx.array(ids), mx.array(mask)))
    for b in range(len(ids)):
        real = ids[b][mask[b] > 0][None]
        alone = np.array(model.hidden_states(mx.array(real), mx.ones(real.shape, mx.int32)))[0]
        assert np.abs(batch[b][mask[b] > 0] - alone).max() <= 1e-4
        assert np.abs(pooled[b] - np.array(model(mx.array(real), mx.ones(real.shape, mx.int32)))[0]).max() <= 1e-5


@pytest.mark.parametrize("sliding", [False, True], ids=["full", "sliding"])
@pytest.mark.parametrize("left", [False, True], ids=["right-pad", "left-pad"])
@pytest.mark.parametrize("task,cls_name,kw", [
    ("text-classification", "Qwen3ForSequenceClassification", {"num_labels": 3}),
    ("token-classification", "Qwen3ForTokenClassification", {"num_labels": 5}),
])
def test_task_heads_match_transformers(tmp_path, task, cls_name, kw, left, sliding):
    import transformers
    ref = save_tiny(getattr(transformers, cls_name), tiny_qwen3_config(sliding, **kw), tmp_path, default_model_dir())
    model, _ = load_model(str(tmp_path), task=task)
    assert model.info.new_weights == []
    ids, mask = padded_batch(VOCAB, lengths=(7, 4, 9, 12), left=left)
    ours = np.array(model(mx.array(ids), mx.array(mask)))
    theirs = torch_out(ref, ids, mask)
    assert ours.shape == theirs.shape
    diff = np.abs(ours - theirs).max() if task == "text-classification" else max_diff_masked(ours, theirs, mask)
    assert diff <= 1e-4


def test_masked_lm_is_refused_with_a_clear_error(tiny_qwen3):
    path, _ = tiny_qwen3
    with pytest.raises(ModelError, match="causal.*bidirectional attention.*encoder"):
        load_model(str(path), task="masked-lm")
    with pytest.raises(ModelError, match="no bidirectional attention switch"):
        load_model(str(path), bidirectional=True)


@pytest.mark.parametrize("task,cls_name", [
    ("text-classification", "AutoModelForSequenceClassification"),
    ("token-classification", "AutoModelForTokenClassification"),
    ("feature-extraction", "AutoModel"),
])
def test_save_pretrained_round_trip(tiny_qwen3, tmp_path, task, cls_name):
    import transformers
    path, _ = tiny_qwen3
    model, tok = load_model(str(path), task=task, num_labels=4)
    out = tmp_path / "saved"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    ref, info = getattr(transformers, cls_name).from_pretrained(str(out), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    ids, mask = padded_batch(VOCAB, seed=1, left=True)
    if task == "feature-extraction":
        ours, theirs = model.hidden_states(mx.array(ids), mx.array(mask)), torch_out(ref.eval(), ids, mask, "hidden")
    else:
        ours, theirs = model(mx.array(ids), mx.array(mask)), torch_out(ref.eval(), ids, mask)
    assert max_diff_masked(ours, theirs, mask if np.ndim(theirs) == 3 else np.ones(len(ids))) <= 1e-4
    again, _ = load_model(str(out), task=task)
    assert again.info.new_weights == []


SENTENCES = ["Hello world", "A", "The quick brown fox jumps over the lazy dog.", "Ça va très bien, merci!",
             "word " * 200, "numbers 12345 67.89", "What is the capital of France?", "Paris is in France."]
PROMPTS = {"query": "Instruct: Given a web search query, retrieve relevant passages\nQuery: ", "document": ""}


@pytest.fixture(scope="module")
def qwen3_st(tmp_path_factory):
    """Qwen3-Embedding layout: Transformer → Pooling(lasttoken) → Normalize, with query/document prompts.
    The embedded BERT tokenizer stands in for Qwen's (its vocabulary fits the tiny config)."""
    from sentence_transformers import SentenceTransformer, models
    from transformers import Qwen3Model
    root = tmp_path_factory.mktemp("qwen3_st")
    save_tiny(Qwen3Model, tiny_qwen3_config(vocab_size=30522), root / "hf", default_model_dir())
    modules = [models.Transformer(str(root / "hf"), max_seq_length=64), models.Pooling(64, "lasttoken"),
               models.Normalize()]
    SentenceTransformer(modules=modules, prompts=PROMPTS, device="cpu").save(str(root / "st"))
    return root / "st"


@pytest.mark.parametrize("prompt_name", [None, "query", "document"])
def test_sentence_transformers_pipeline_matches(qwen3_st, prompt_name):
    from sentence_transformers import SentenceTransformer
    model, tok = load_model(str(qwen3_st), task="sentence-similarity")
    assert model.pooling == "lasttoken" and model.normalize and model.info.prompts == PROMPTS
    ours = encode(model, tok, SENTENCES, batch_size=3, prompt_name=prompt_name)  # left padded
    ref = SentenceTransformer(str(qwen3_st), device="cpu").encode(SENTENCES, prompt_name=prompt_name)
    cos = (ours * ref).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(ref, axis=1)
    assert ours.shape == (len(SENTENCES), 64) and cos.min() >= 0.9999, cos
    if prompt_name == "query":  # the prompt really changed the vectors
        assert np.abs(ours - encode(model, tok, SENTENCES)).max() > 1e-3


def test_embedding_save_reloads_in_sentence_transformers(qwen3_st, tmp_path):
    from sentence_transformers import SentenceTransformer
    model, tok = load_model(str(qwen3_st), task="sentence-similarity")
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    ref = SentenceTransformer(str(tmp_path), device="cpu").encode(SENTENCES, prompt_name="query")
    ours = encode(model, tok, SENTENCES, prompt_name="query")
    assert np.abs(ours - ref).max() < 1e-4
