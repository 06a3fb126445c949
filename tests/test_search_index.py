"""Search by blocked matrix products (engine.inference.search.nearest): exactly numpy's brute-force
top-k on 100k random unit vectors, ties in corpus order whatever the block sizes, and a corpus
encoded once (build_index) answering as search() does."""
from __future__ import annotations

import numpy as np
import pytest

from engine.inference.search import nearest


def unit_vectors(rng, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_force(queries, corpus, k):
    scores = queries @ corpus.T                                     # (Q, C): the whole matrix
    ids = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, ids, 1), ids


def test_blocked_top_k_equals_brute_force_on_100k_documents():
    rng = np.random.default_rng(0)
    corpus, queries = unit_vectors(rng, 100_000, 384), unit_vectors(rng, 300, 384)
    scores, ids = nearest(queries, corpus, 10)                      # 2 query blocks × 7 corpus blocks
    want_scores, want_ids = brute_force(queries, corpus, 10)
    assert ids.shape == (300, 10) and np.array_equal(ids, want_ids)
    assert np.allclose(scores, want_scores, atol=1e-6)


@pytest.mark.parametrize("c_block", [1, 3, 7, 50, 1000])
def test_ties_keep_the_corpus_order_across_blocks(c_block):
    rng = np.random.default_rng(1)
    base = unit_vectors(rng, 20, 16)
    corpus = base[rng.integers(0, 20, 200)]                         # every vector ten times: ties everywhere
    queries = np.concatenate([base[:5], unit_vectors(rng, 3, 16)])
    for k in (1, 4, 10, 25, 200, 500):
        scores, ids = nearest(queries, corpus, k, q_block=3, c_block=c_block)
        want_scores, want_ids = brute_force(queries, corpus, min(k, 200))
        assert np.array_equal(ids, want_ids), (k, c_block)
        assert np.allclose(scores, want_scores, atol=1e-6)


def test_an_index_answers_like_search(tmp_path):
    from engine import load_model
    from engine.inference import build_index, search, search_index
    from tests.test_export import tiny_checkpoint
    model, tok = load_model(str(tiny_checkpoint("bert", tmp_path / "base")), "sentence-similarity")
    corpus = [f"document {i} about {w}" for i, w in enumerate(["films", "food", "rooms", "prices"] * 30)]
    progress = []
    index = build_index(model, tok, corpus, lambda done, total, text="": progress.append((done, total, text)))
    assert len(index) == 120 and index.vectors.shape[0] == 120
    assert progress[-1] == (120, 120, "Encoding documents") and len(progress) > 2   # between chunks
    queries = ["a film", "the price"]
    indexed = search_index(model, tok, index, queries, 7)
    assert indexed == search(model, tok, queries, corpus, 7)
    assert [h["rank"] for h in indexed[0]] == list(range(1, 8))
    from engine.errors import UsageError
    other, _ = load_model(str(tmp_path / "base"), "sentence-similarity")
    with pytest.raises(UsageError, match="another model"):           # its vectors live in another space
        search_index(other, tok, index, queries, 7)
