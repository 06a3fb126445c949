"""engine.encode's batching: texts tokenized once, batched by token count, padded on the tokenizer's side,
a compiled forward over several batches, the next batch prepared while one computes. For every family,
vectors from mixed-length batches equal each text encoded alone (no padding, eager), in input order."""
import numpy as np
import pytest

from engine import encode
from engine.models import get_family
from tests.tiny_families import FAMILIES, build


class CharTokenizer:
    """ids from characters (the tiny models' 100-token vocabulary), a start token, truncation."""
    pad_token_id, eos_token_id, model_max_length = 0, 2, 64

    def __init__(self, padding_side: str):
        self.padding_side = padding_side

    def __call__(self, texts, add_special_tokens=True, truncation=False, max_length=None, **kw):
        ids = [[1] * add_special_tokens + [3 + ord(c) % 97 for c in t] for t in texts]
        return {"input_ids": [x[:max_length] if truncation else x for x in ids]}


TEXTS = [("word " * n).strip() + f" {n}" for n in (1, 9, 3, 14, 2, 7, 11, 5, 4, 12, 6, 8, 10, 13, 3, 1, 9, 2, 15, 6)]


@pytest.mark.parametrize("family", FAMILIES)
def test_batched_vectors_equal_each_text_alone(family):
    model = build(family, "sentence-similarity")
    tokenizer = CharTokenizer(get_family(family).SPEC.padding_side or "right")
    alone = np.stack([encode(model, tokenizer, t) for t in TEXTS])
    calls = []
    batched = encode(model, tokenizer, TEXTS, batch_size=6, progress=lambda done, total: calls.append((done, total)))
    assert batched.shape == alone.shape
    np.testing.assert_allclose(batched, alone, atol=2e-5, rtol=1e-4)
    assert calls == [(0, 20), (6, 20), (12, 20), (18, 20), (20, 20)]


def test_normalize_and_a_single_text():
    model = build("bert", "sentence-similarity")
    tokenizer = CharTokenizer("right")
    vectors = encode(model, tokenizer, TEXTS, batch_size=4, normalize=True)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    one = encode(model, tokenizer, TEXTS[3], normalize=True)
    assert one.shape == (vectors.shape[1],)
    np.testing.assert_allclose(one, vectors[3], atol=2e-5)
    assert encode(model, tokenizer, [], batch_size=4).shape[0] == 0


def test_truncate_dim_cuts_then_normalizes_as_sentence_transformers():
    model = build("bert", "sentence-similarity")
    tokenizer = CharTokenizer("right")
    full = encode(model, tokenizer, TEXTS, batch_size=8)
    cut = encode(model, tokenizer, TEXTS, batch_size=8, truncate_dim=4)
    np.testing.assert_allclose(cut, full[:, :4], atol=2e-5)
    unit = encode(model, tokenizer, TEXTS, batch_size=8, truncate_dim=4, normalize=True)
    np.testing.assert_allclose(unit, full[:, :4] / np.linalg.norm(full[:, :4], axis=1, keepdims=True), atol=2e-5)
    with pytest.raises(ValueError, match="larger than"):
        encode(model, tokenizer, TEXTS[:2], truncate_dim=1000)
