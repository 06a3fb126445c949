"""engine.encode's batching: texts tokenized once, batched by token count, padded on the tokenizer's side,
a compiled forward over several batches, each batch's rows split over two streams on the CPU (the numbers of
one stream), the next batch prepared while one computes. For every family, vectors from mixed-length batches
equal each text encoded alone (no padding, eager), in input order."""
import os

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


def test_lanes_give_the_numbers_of_one_and_give_openblas_its_threads_back(monkeypatch):
    """On the CPU each batch's rows are split over streams that compute at once, with OpenBLAS's threads
    shared out (engine/backend.py: inference_lanes): every vector equals a one-lane run's to float rounding
    (the products have fewer rows), batches that do not split evenly included, and OpenBLAS has its thread
    count back afterwards."""
    from engine import backend
    lib = backend._state.get("library")
    model = build("bert", "sentence-similarity")
    tokenizer = CharTokenizer("right")
    threads_seen = []
    progress = lambda done, total: threads_seen.append(lib.openblas_get_num_threads() if lib else None)
    before = lib.openblas_get_num_threads() if lib else None
    runs = {}
    for lanes in ("1", "2", "3"):
        monkeypatch.setenv("RACLATE_INFERENCE_LANES", lanes)
        threads_seen.clear()
        runs[lanes] = encode(model, tokenizer, TEXTS, batch_size=7, progress=progress)   # 7, 7 and 6 rows
        assert (lib.openblas_get_num_threads() if lib else None) == before
        if lib is not None and lanes != "1":
            assert threads_seen[0] == max(1, os.cpu_count() // int(lanes))
    np.testing.assert_allclose(runs["2"], runs["1"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(runs["3"], runs["1"], atol=1e-6, rtol=0)


def test_overlapping_blas_thread_blocks_restore_the_first_count():
    from engine import backend
    lib = backend._state.get("library")
    if lib is None:
        pytest.skip("OpenBLAS is not loaded here (macOS uses Accelerate)")
    before = lib.openblas_get_num_threads()
    outer = backend.blas_threads(1)
    outer.__enter__()
    with backend.blas_threads(1):
        assert lib.openblas_get_num_threads() == 1
    assert lib.openblas_get_num_threads() == 1   # the outer block is still open
    outer.__exit__(None, None, None)
    assert lib.openblas_get_num_threads() == before


def test_encode_from_another_thread_runs_one_lane():
    """MLX streams belong to the thread that made them: the app encodes on a worker thread (one lane), scripts
    on the main one (two); both work, in either order, with the same numbers (to float rounding)."""
    import threading
    model = build("bert", "sentence-similarity")
    tokenizer = CharTokenizer("right")
    here = encode(model, tokenizer, TEXTS, batch_size=5)
    there = {}
    worker = threading.Thread(target=lambda: there.update(v=encode(model, tokenizer, TEXTS, batch_size=5)))
    worker.start()
    worker.join(120)
    np.testing.assert_allclose(there["v"], here, atol=1e-6, rtol=0)
    np.testing.assert_array_equal(encode(model, tokenizer, TEXTS, batch_size=5), here)
