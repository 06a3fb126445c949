"""BERT parity vs transformers, the real embedded MiniLM vs sentence-transformers, round trips."""
import numpy as np
import pytest

import mlx.core as mx
from engine import encode, load_model
from engine.defaults import default_model_dir
from tests.helpers import max_diff_masked, padded_batch, save_tiny, torch_out

pytestmark = pytest.mark.parity


def tiny_bert_config(**kw):
    from transformers import BertConfig
    return BertConfig(vocab_size=120, hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
                      intermediate_size=128, max_position_embeddings=64, **kw)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    from transformers import BertModel
    path = tmp_path_factory.mktemp("bert")
    ref = save_tiny(BertModel, tiny_bert_config(), path, default_model_dir())
    return path, ref


def test_hidden_states_match_transformers(tiny_bert):
    path, ref = tiny_bert
    model, _ = load_model(str(path))
    ids, mask = padded_batch(120)
    ours = model.hidden_states(mx.array(ids), mx.array(mask))
    assert max_diff_masked(ours, torch_out(ref, ids, mask, "hidden"), mask) <= 1e-4


def test_token_type_ids_match_transformers(tiny_bert):
    """A pair's second text is token type 1 (None = all 0, as transformers)."""
    import torch
    path, ref = tiny_bert
    model, _ = load_model(str(path))
    ids, mask = padded_batch(120)
    types = (np.arange(ids.shape[1])[None] >= 3).astype(np.int32) * mask
    ours = model.backbone(mx.array(ids), mx.array(mask), mx.array(types))
    with torch.no_grad():
        theirs = ref(**{k: torch.tensor(v, dtype=torch.long) for k, v in
                        (("input_ids", ids), ("attention_mask", mask), ("token_type_ids", types))}).last_hidden_state
    assert max_diff_masked(ours, theirs.numpy(), mask) <= 1e-4
    assert max_diff_masked(ours, model.backbone(mx.array(ids), mx.array(mask)), mask) > 1e-3   # types matter


@pytest.mark.parametrize("task,cls_name,kw", [
    ("text-classification", "BertForSequenceClassification", {"num_labels": 3}),
    ("token-classification", "BertForTokenClassification", {"num_labels": 5}),
    ("masked-lm", "BertForMaskedLM", {}),
])
def test_task_heads_match_transformers(tmp_path, task, cls_name, kw):
    import transformers
    ref = save_tiny(getattr(transformers, cls_name), tiny_bert_config(**kw), tmp_path, default_model_dir())
    model, _ = load_model(str(tmp_path), task=task)
    assert model.info.new_weights == []
    ids, mask = padded_batch(120)
    ours = np.array(model(mx.array(ids), mx.array(mask)))
    theirs = torch_out(ref, ids, mask)
    assert ours.shape == theirs.shape
    diff = np.abs(ours - theirs).max() if task == "text-classification" else max_diff_masked(ours, theirs, mask)
    assert diff <= 1e-4


@pytest.mark.parametrize("task,cls_name", [
    ("text-classification", "AutoModelForSequenceClassification"),
    ("token-classification", "AutoModelForTokenClassification"),
    ("masked-lm", "AutoModelForMaskedLM"),
    ("feature-extraction", "AutoModel"),
])
def test_save_pretrained_round_trip(tiny_bert, tmp_path, task, cls_name, caplog):
    import transformers
    path, _ = tiny_bert
    model, tok = load_model(str(path), task=task, num_labels=4)
    out = tmp_path / "saved"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    ref = getattr(transformers, cls_name).from_pretrained(str(out)).eval()
    ids, mask = padded_batch(120, seed=1)
    if task == "feature-extraction":
        ours, theirs = model.hidden_states(mx.array(ids), mx.array(mask)), torch_out(ref, ids, mask, "hidden")
    else:
        ours, theirs = model(mx.array(ids), mx.array(mask)), torch_out(ref, ids, mask)
    assert max_diff_masked(ours, theirs, mask if np.ndim(theirs) == 3 else np.ones(len(ids))) <= 1e-4
    # Loading back into the engine gives the same head (nothing new initialised).
    again, _ = load_model(str(out), task=task)
    assert again.info.new_weights == []


def test_save_loads_without_missing_weight_warnings(tiny_bert, tmp_path):
    from transformers import AutoModelForSequenceClassification
    path, _ = tiny_bert
    model, _ = load_model(str(path), task="text-classification", id2label=["neg", "pos"])
    model.save_pretrained(tmp_path)
    _, info = AutoModelForSequenceClassification.from_pretrained(str(tmp_path), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]


SENTENCES = [
    "Hello world", "A", "The quick brown fox jumps over the lazy dog.",
    "Ça va très bien, merci beaucoup!", "東京は日本の首都です。", "Привет, как дела?",
    "🙂 emoji and symbols: #$%&*()", "  leading and trailing spaces  ", "UPPER CASE TEXT", "numbers 12345 67.89",
    "A question: what is the capital of France?", "Paris is the capital of France.",
    "word " * 400, "Machine learning on a Mac with MLX.", "def f(x): return x + 1",
    "Mixed language: das ist gut, c'est bon.", "https://example.com/path?query=1",
    "Tabs\tand\nnewlines", "short", "A somewhat longer sentence that goes on for a while to test the "
    "padding behaviour of batches containing texts of very different lengths.",
]


def test_minilm_matches_sentence_transformers():
    from sentence_transformers import SentenceTransformer
    model, tok = ours = load_model("default")
    vectors = encode(model, tok, SENTENCES, batch_size=8)
    ref = SentenceTransformer(str(default_model_dir()), device="cpu").encode(SENTENCES)
    cos = (vectors * ref).sum(1) / np.linalg.norm(vectors, axis=1) / np.linalg.norm(ref, axis=1)
    assert vectors.shape == (20, 384) and vectors.dtype == np.float32
    assert cos.min() >= 0.9999, cos
    # truncate_dim as sentence-transformers: its Normalize module runs first, the cut stays as it is
    cut = encode(model, tok, SENTENCES, batch_size=8, truncate_dim=128)
    ref_cut = SentenceTransformer(str(default_model_dir()), device="cpu", truncate_dim=128).encode(SENTENCES)
    assert cut.shape == ref_cut.shape == (20, 128) and np.abs(cut - ref_cut).max() < 1e-4
    assert np.linalg.norm(cut, axis=1).max() < 0.99   # not back on the unit sphere


def test_embedding_round_trip_loads_in_sentence_transformers(tmp_path):
    from sentence_transformers import SentenceTransformer
    model, tok = load_model("default", task="sentence-similarity")
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    ref = SentenceTransformer(str(tmp_path), device="cpu").encode(SENTENCES[:6])
    ours = encode(model, tok, SENTENCES[:6])
    assert np.abs(ours - ref).max() < 1e-4
