"""Losses and scores against numpy references written out with loops (engine/losses/)."""
from __future__ import annotations

import doctest

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

from engine import losses as L
from engine.losses import columns, cross_entropy, scores

RTOL = ATOL = 1e-5
rng = np.random.default_rng(0)


# ---------------------------------------------------------------- numpy references
def np_lse(x) -> float:
    x = np.asarray(x, dtype=np.float64)
    m = x.max()
    return float(m + np.log(np.exp(x - m).sum()))


def np_cos(a, b):
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return a @ b.T


def np_infonce(s, cand_h=None, pos_h=None):
    """Mean over rows of -log softmax(s[i])[i], leaving out duplicates of row i's positive."""
    total = 0.0
    for i in range(s.shape[0]):
        keep = [j for j in range(s.shape[1])
                if cand_h is None or j == i or cand_h[j] != pos_h[i]]
        total += np_lse(s[i, keep]) - s[i, i]
    return total / s.shape[0]


def np_maxsim(q, d, qm, dm):
    out = np.zeros((len(q), len(d)))
    for a in range(len(q)):
        for b in range(len(d)):
            for i in range(q.shape[1]):
                if qm[a, i]:
                    out[a, b] += max(float(q[a, i] @ d[b, j]) for j in range(d.shape[1]) if dm[b, j])
    return out


def np_ce(logits, labels):
    return np.array([np_lse(z) - z[y] for z, y in zip(logits.astype(np.float64), labels)])


def f32(x):
    return np.asarray(x, dtype=np.float32)


def close(got, want):
    np.testing.assert_allclose(np.array(got), want, rtol=RTOL, atol=ATOL)


# ---------------------------------------------------------------- tiny models
class TinyEncoder(nn.Module):
    """Embedding + masked mean pooling + Linear + L2 normalisation -> [B, D] (or [B, T, D])."""

    def __init__(self, vocab=50, dim=8, tokens=False):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.proj = nn.Linear(dim, dim)
        self.tokens = tokens

    def __call__(self, input_ids, attention_mask):
        h = self.proj(self.embed(input_ids))  # (B, T, D)
        if self.tokens:
            return h / mx.linalg.norm(h, axis=-1, keepdims=True)
        m = attention_mask[..., None].astype(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1)
        return pooled / mx.linalg.norm(pooled, axis=-1, keepdims=True)


class TinyHead(nn.Module):
    def __init__(self, out, vocab=50, dim=8, per_token=False):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.head = nn.Linear(dim, out)
        self.per_token = per_token

    def __call__(self, input_ids, attention_mask):
        h = self.embed(input_ids)
        return self.head(h if self.per_token else h.mean(1))


def column(b, t, pad_from=None):
    ids = mx.array(rng.integers(1, 50, size=(b, t)), dtype=mx.int32)
    mask = np.ones((b, t), dtype=np.int32)
    if pad_from is not None:
        for i, p in enumerate(pad_from):
            mask[i, p:] = 0
    return {"input_ids": ids, "attention_mask": mx.array(mask)}


def text_hashes(texts):
    import zlib
    return mx.array([zlib.crc32(t.encode()) & 0x7FFFFFFF for t in texts], dtype=mx.int32)


# ---------------------------------------------------------------- scores
def test_scores_doctests():
    for module in (scores, columns, cross_entropy):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0, module.__name__


def test_cos_and_dot_match_numpy():
    a, b = rng.normal(size=(3, 5)), rng.normal(size=(4, 5))
    close(L.cos_sim(mx.array(f32(a)), mx.array(f32(b))), np_cos(a, b))
    close(L.dot_score(mx.array(f32(a)), mx.array(f32(b))), f32(a) @ f32(b).T)
    close(L.pairwise_cos_sim(mx.array(f32(a)), mx.array(f32(b[:3]))), np.diag(np_cos(a, b[:3])))


def test_scores_are_float32_for_bfloat16_inputs():
    a = mx.array(f32(rng.normal(size=(2, 4)))).astype(mx.bfloat16)
    assert L.cos_sim(a, a).dtype == mx.float32
    assert L.maxsim(a[None], a[None], mx.ones((1, 2)), mx.ones((1, 2))).dtype == mx.float32


def test_maxsim_matches_loop_with_padding():
    bq, tq, bd, td, d = 3, 5, 4, 6, 7
    q, dd = f32(rng.normal(size=(bq, tq, d))), f32(rng.normal(size=(bd, td, d)))
    qm = np.ones((bq, tq), np.int32); qm[0, 3:] = 0; qm[2, 1:] = 0
    dm = np.ones((bd, td), np.int32); dm[1, 2:] = 0; dm[3, 5:] = 0
    got = L.maxsim(mx.array(q), mx.array(dd), mx.array(qm), mx.array(dm))
    close(got, np_maxsim(q, dd, qm, dm))
    pair = L.maxsim_pairwise(mx.array(q), mx.array(dd[:bq]), mx.array(qm), mx.array(dm[:bq]))
    close(pair, np.diag(np_maxsim(q, dd[:bq], qm, dm[:bq])))


def test_maxsim_padded_document_token_with_huge_vector_is_ignored():
    q, d = f32(rng.normal(size=(2, 3, 4))), f32(rng.normal(size=(2, 5, 4)))
    qm, dm = np.ones((2, 3), np.int32), np.ones((2, 5), np.int32)
    dm[:, 3:] = 0
    before = np.array(L.maxsim(mx.array(q), mx.array(d), mx.array(qm), mx.array(dm)))
    d[:, 3:] = 1e6 * np.sign(q[0, 0])  # a padded token pointing along the query, huge
    after = np.array(L.maxsim(mx.array(q), mx.array(d), mx.array(qm), mx.array(dm)))
    np.testing.assert_array_equal(before, after)
    # All real similarities negative: multiplying by the mask (PyLate) would let a padded 0 win.
    q1 = mx.array([[[1.0, 0.0]]])
    d1 = mx.array([[[-1.0, 0.0], [0.0, 0.0]]])
    assert L.maxsim(q1, d1, mx.ones((1, 1)), mx.array([[1, 0]])).item() == -1.0


def test_maxsim_padded_query_tokens_contribute_zero():
    q, d = f32(rng.normal(size=(2, 4, 3))), f32(rng.normal(size=(3, 4, 3)))
    qm = np.array([[1, 1, 0, 0], [1, 1, 1, 1]], np.int32)
    full = L.maxsim(mx.array(q), mx.array(d), mx.array(qm), mx.ones((3, 4)))
    q[0, 2:] = 1e6  # garbage in padded query rows
    garbage = L.maxsim(mx.array(q), mx.array(d), mx.array(qm), mx.ones((3, 4)))
    close(garbage, np.array(full))
    trimmed = L.maxsim(mx.array(q[:1, :2]), mx.array(d), mx.ones((1, 2)), mx.ones((3, 4)))
    close(garbage[:1], np.array(trimmed))


def test_maxsim_gradient_is_finite_with_padding():
    q, d = mx.array(f32(rng.normal(size=(2, 3, 4)))), mx.array(f32(rng.normal(size=(2, 5, 4))))
    qm, dm = mx.array([[1, 1, 0], [1, 1, 1]]), mx.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    gq, gd = mx.grad(lambda q, d: L.maxsim(q, d, qm, dm).sum(), argnums=(0, 1))(q, d)
    assert np.isfinite(np.array(gq)).all() and np.isfinite(np.array(gd)).all()
    assert np.abs(np.array(gd)[0, 3:]).max() == 0.0  # padded document tokens get no gradient
    assert np.abs(np.array(gq)[0, 2]).max() == 0.0  # nor padded query tokens


# ---------------------------------------------------------------- MNRL
@pytest.mark.parametrize("n_neg", [0, 2])
@pytest.mark.parametrize("sim", ["cos", "dot"])
def test_mnrl_matches_numpy(n_neg, sim):
    b, d, scale = 5, 6, 20.0 if sim == "cos" else 1.0
    a, c = rng.normal(size=(b, d)), rng.normal(size=(b * (1 + n_neg), d))
    s = (np_cos(a, c) if sim == "cos" else f32(a) @ f32(c).T) * scale
    got = L.mnrl_loss(mx.array(f32(a)), mx.array(f32(c)), scale, sim)
    close(got, np_infonce(s))


def test_mnrl_symmetric_matches_numpy():
    b, d = 4, 5
    a, c = rng.normal(size=(b, d)), rng.normal(size=(2 * b, d))
    s = np_cos(a, c) * 20
    back = np_cos(c[:b], a) * 20
    want = (np_infonce(s) + np_infonce(back)) / 2
    close(L.mnrl_loss(mx.array(f32(a)), mx.array(f32(c)), symmetric=True), want)


def test_mnrl_masks_duplicate_positive():
    # Rows 0 and 2 share the positive text; row 1's hard negative is also the text of positive 0.
    anchors = ["q0", "q1", "q2", "q3"]
    positives = ["same answer", "p1", "same answer", "p3"]
    negatives = ["n0", "same answer", "n2", "p1"]
    b, d = 4, 6
    a, c = rng.normal(size=(b, d)), rng.normal(size=(2 * b, d))
    cand_h = np.array(text_hashes(positives + negatives))
    s = np_cos(a, c) * 20
    want = np_infonce(s, cand_h, cand_h[:b])
    got = L.mnrl_loss(mx.array(f32(a)), mx.array(f32(c)), candidate_hashes=mx.array(cand_h))
    close(got, want)
    # Row 0 loses columns 2 (positive of row 2) and 5 (the negative equal to its positive); row 2 loses 0 and 5;
    # row 1 loses column 7 (a negative equal to "p1"); row 3 keeps everything.
    by_hand = np.mean([np_lse(s[0, [0, 1, 3, 4, 6, 7]]) - s[0, 0], np_lse(s[1, :7]) - s[1, 1],
                       np_lse(s[2, [1, 2, 3, 4, 6, 7]]) - s[2, 2], np_lse(s[3]) - s[3, 3]])
    close(got, by_hand)
    plain = L.mnrl_loss(mx.array(f32(a)), mx.array(f32(c)))
    assert abs(plain.item() - by_hand) > 1e-3
    # The class reads the same hashes from the batch.
    model = TinyEncoder()
    batch = {"inputs": [column(b, 5), column(b, 7), column(b, 6)],
             "hashes": [text_hashes(anchors), text_hashes(positives), text_hashes(negatives)]}
    emb = [model(x["input_ids"], x["attention_mask"]) for x in batch["inputs"]]
    s2 = np_cos(np.array(emb[0]), np.concatenate([np.array(emb[1]), np.array(emb[2])])) * 20
    close(L.MultipleNegativesRankingLoss()(model, batch), np_infonce(s2, cand_h, cand_h[:b]))


def test_mnrl_symmetric_masks_duplicate_anchor():
    anchors = ["same q", "q1", "same q"]
    b, d = 3, 4
    a, p = rng.normal(size=(b, d)), rng.normal(size=(b, d))
    anc_h = np.array(text_hashes(anchors))
    forward = np_infonce(np_cos(a, p) * 20)
    backward = np_infonce(np_cos(p, a) * 20, anc_h, anc_h)
    got = L.mnrl_loss(mx.array(f32(a)), mx.array(f32(p)), symmetric=True, anchor_hashes=mx.array(anc_h))
    close(got, (forward + backward) / 2)


def test_mnrl_class_uses_model_and_options():
    model = TinyEncoder()
    batch = {"inputs": [column(4, 5, pad_from=[3, 5, 2, 4]), column(4, 8)], "hashes": []}
    emb = [np.array(model(x["input_ids"], x["attention_mask"])) for x in batch["inputs"]]
    loss = L.MultipleNegativesRankingLoss(scale=10.0, symmetric=True, mini_batch_size=4)
    assert loss.unused_options == {"mini_batch_size": 4}
    want = (np_infonce(np_cos(emb[0], emb[1]) * 10) + np_infonce(np_cos(emb[1], emb[0]) * 10)) / 2
    close(loss(model, batch), want)
    with pytest.raises(ValueError):
        L.MultipleNegativesRankingLoss(scale=0)


def test_mnrl_gradient_is_finite_with_masked_columns():
    h = mx.array([1, 2, 1, 3], dtype=mx.int32)
    a, c = mx.array(f32(rng.normal(size=(4, 3)))), mx.array(f32(rng.normal(size=(4, 3))))
    g = mx.grad(lambda a, c: L.mnrl_loss(a, c, candidate_hashes=h, symmetric=True, anchor_hashes=h),
                argnums=(0, 1))(a, c)
    assert all(np.isfinite(np.array(x)).all() for x in g)


# ---------------------------------------------------------------- CoSENT and cosine MSE
def np_cosent(a, b, y, scale=20.0):
    cos = np.diag(np_cos(a, b))
    terms = [0.0] + [scale * (cos[j] - cos[i]) for i in range(len(y)) for j in range(len(y)) if y[i] > y[j]]
    return np_lse(terms)


def test_cosent_matches_numpy():
    a, b = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
    y = f32([0.1, 0.9, 0.5, 0.5, 0.0, 1.0])
    close(L.cosent_loss(mx.array(f32(a)), mx.array(f32(b)), mx.array(y)), np_cosent(a, b, y))
    close(L.cosent_loss(mx.array(f32(a)), mx.array(f32(b)), mx.array(y), scale=5.0), np_cosent(a, b, y, 5.0))
    # Equal labels: no ordered pair, log(1) = 0, and a finite gradient.
    same = mx.array(f32([0.3] * 6))
    assert L.cosent_loss(mx.array(f32(a)), mx.array(f32(b)), same).item() == 0.0
    g = mx.grad(lambda x: L.cosent_loss(x, mx.array(f32(b)), mx.array(y)))(mx.array(f32(a)))
    assert np.isfinite(np.array(g)).all()


def test_cosine_similarity_loss_matches_numpy():
    a, b = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    y = f32(rng.uniform(size=5))
    want = np.mean((np.diag(np_cos(a, b)) - y) ** 2)
    close(L.cosine_mse_loss(mx.array(f32(a)), mx.array(f32(b)), mx.array(y)), want)


def test_scored_losses_from_batches():
    model = TinyEncoder()
    y = f32([0.0, 0.4, 1.0, 0.7])
    batch = {"inputs": [column(4, 6), column(4, 5)], "hashes": [], "labels": mx.array(y)}
    a, b = (np.array(model(x["input_ids"], x["attention_mask"])) for x in batch["inputs"])
    close(L.CoSENTLoss()(model, batch), np_cosent(a, b, y))
    close(L.CosineSimilarityLoss()(model, batch), np.mean((np.diag(np_cos(a, b)) - y) ** 2))
    with pytest.raises(ValueError):
        L.CoSENTLoss()(model, {"inputs": batch["inputs"]})


# ---------------------------------------------------------------- late interaction
def test_late_interaction_matches_numpy_with_duplicates():
    b, tq, td, d = 3, 4, 5, 6
    q = f32(rng.normal(size=(b, tq, d)))
    docs = f32(rng.normal(size=(2 * b, td, d)))
    qm = np.ones((b, tq), np.int32); qm[1, 2:] = 0
    dm = np.ones((2 * b, td), np.int32); dm[0, 3:] = 0; dm[4, 1:] = 0
    h = np.array(text_hashes(["p0", "p1", "p2", "p1", "n1", "n2"]))  # column 3 duplicates positive 1
    s = np_maxsim(q, docs, qm, dm) / 2.0
    got = L.late_interaction_loss(mx.array(q), mx.array(qm), mx.array(docs), mx.array(dm), 2.0,
                                  candidate_hashes=mx.array(h))
    close(got, np_infonce(s, h, h[:b]))
    close(L.late_interaction_loss(mx.array(q), mx.array(qm), mx.array(docs), mx.array(dm)),
          np_infonce(np_maxsim(q, docs, qm, dm)))


def test_late_interaction_class_pads_document_columns():
    model = TinyEncoder(tokens=True)
    batch = {"inputs": [column(3, 4, pad_from=[4, 2, 3]), column(3, 6, pad_from=[6, 4, 5]), column(3, 8)],
             "hashes": [text_hashes(["a", "b", "c"]), text_hashes(["x", "y", "x"]), text_hashes(["n", "m", "k"])]}
    out = [np.array(model(x["input_ids"], x["attention_mask"])) for x in batch["inputs"]]
    masks = [np.array(x["attention_mask"]) for x in batch["inputs"]]
    s = np.concatenate([np_maxsim(out[0], out[1], masks[0], masks[1]),
                        np_maxsim(out[0], out[2], masks[0], masks[2])], axis=1)
    h = np.array(mx.concatenate(batch["hashes"][1:]))
    close(L.LateInteractionContrastiveLoss()(model, batch), np_infonce(s, h, h[:3]))


# ---------------------------------------------------------------- classification, regression, tokens
def test_cross_entropy_matches_numpy_and_torch():
    logits, labels = f32(rng.normal(size=(7, 3))), np.array([0, 2, 1, 1, 0, 2, 2])
    w = f32([0.5, 2.0, 1.0])
    ce = np_ce(logits, labels)
    close(L.cross_entropy_loss(mx.array(logits), mx.array(labels)), ce.mean())
    want = (w[labels] * ce).sum() / w[labels].sum()
    close(L.cross_entropy_loss(mx.array(logits), mx.array(labels), mx.array(w)), want)
    import torch
    ref = torch.nn.CrossEntropyLoss(weight=torch.tensor(w))(torch.tensor(logits), torch.tensor(labels))
    close(L.cross_entropy_loss(mx.array(logits), mx.array(labels), list(w)), ref.item())
    # Binary = two logits.
    z2 = f32(rng.normal(size=(4, 2)))
    close(L.cross_entropy_loss(mx.array(z2), mx.array([0, 1, 1, 0])), np_ce(z2, [0, 1, 1, 0]).mean())
    with pytest.raises(ValueError, match="regression"):
        L.cross_entropy_loss(mx.zeros((4, 1)), mx.zeros((4,), dtype=mx.int32))


def test_cross_entropy_class_with_weights():
    model = TinyHead(3)
    batch = {**column(5, 6), "labels": mx.array([0, 1, 2, 2, 2], dtype=mx.int32)}
    logits = np.array(model(batch["input_ids"], batch["attention_mask"]))
    w = np.array(L.auto_class_weights(np.array(batch["labels"]), 3))
    want = (w[[0, 1, 2, 2, 2]] * np_ce(logits, [0, 1, 2, 2, 2])).sum() / w[[0, 1, 2, 2, 2]].sum()
    close(L.CrossEntropyLoss(class_weights=w)(model, batch), want)
    with pytest.raises(ValueError):
        L.CrossEntropyLoss(class_weights=[1.0, 2.0])(model, batch)


def test_auto_class_weights():
    w = np.array(L.auto_class_weights([0, 0, 0, 0, 1, 1, 2, -100], 4))
    assert w.shape == (4,) and abs(w.mean() - 1.0) < 1e-6
    inv = 1.0 / np.array([4, 2, 1, 1])  # class 3 is absent: counted once
    close(w, inv * 4 / inv.sum())
    with pytest.raises(ValueError):
        L.auto_class_weights([0, 5], 3)


def test_mse_matches_numpy():
    p, y = f32(rng.normal(size=(6, 1))), f32(rng.normal(size=6))
    close(L.mse_loss(mx.array(p), mx.array(y)), np.mean((p[:, 0] - y) ** 2))
    model = TinyHead(1)
    batch = {**column(6, 4), "labels": mx.array(y)}
    out = np.array(model(batch["input_ids"], batch["attention_mask"]))[:, 0]
    close(L.MSELoss()(model, batch), np.mean((out - y) ** 2))
    with pytest.raises(ValueError):
        L.mse_loss(mx.zeros((6, 2)), mx.zeros((6,)))


def test_token_cross_entropy_ignores_minus_100():
    logits = f32(rng.normal(size=(2, 5, 7)))
    labels = np.array([[3, -100, 6, -100, 0], [-100, -100, 1, 2, -100]])
    keep = labels != -100
    per = np_ce(logits[keep], labels[keep])
    total, count = L.token_cross_entropy_sum(mx.array(logits), mx.array(labels))
    close(total, per.sum())
    assert count.item() == keep.sum()
    close(L.token_cross_entropy(mx.array(logits), mx.array(labels)), per.mean())
    # Garbage logits at ignored positions change nothing.
    noisy = logits.copy(); noisy[~keep] = 1e4
    close(L.token_cross_entropy(mx.array(noisy), mx.array(labels)), per.mean())
    # No labelled token: 0, not NaN.
    assert L.token_cross_entropy(mx.array(logits), mx.full((2, 5), -100)).item() == 0.0
    # Summing micro-batches then dividing once = the mean over all tokens of the batch.
    parts = [L.token_cross_entropy_sum(mx.array(logits[i:i + 1]), mx.array(labels[i:i + 1])) for i in range(2)]
    close(sum(p[0] for p in parts) / sum(p[1] for p in parts), per.mean())


def test_token_cross_entropy_class():
    model = TinyHead(9, per_token=True)
    labels = np.array([[1, -100, 8, 4], [-100, 0, -100, -100]])
    batch = {**column(2, 4), "labels": mx.array(labels)}
    logits = np.array(model(batch["input_ids"], batch["attention_mask"]))
    keep = labels != -100
    close(L.TokenCrossEntropyLoss()(model, batch), np_ce(logits[keep], labels[keep]).mean())
    total, count = L.TokenCrossEntropyLoss().sum_and_count(model, batch)
    assert count.item() == 4


# ---------------------------------------------------------------- select_loss
def sel(task, **kw):
    args = dict(scored=False, use_late_interaction=False, num_negatives=0, is_regression=False)
    args.update(kw)
    return L.select_loss(task, **args)


def test_select_loss_rules():
    assert type(sel("sentence-similarity")) is L.MultipleNegativesRankingLoss
    assert type(sel("sentence-similarity", num_negatives=3)) is L.MultipleNegativesRankingLoss
    assert type(sel("feature_extraction")) is L.MultipleNegativesRankingLoss
    cached = sel("sentence-similarity", loss_name="cached_mnrl", mini_batch_size=8)
    assert type(cached) is L.CachedMultipleNegativesRankingLoss and cached.mini_batch_size == 8
    assert type(sel("sentence-similarity", scored=True)) is L.CoSENTLoss
    assert type(sel("sentence-similarity", scored=True, loss_name="cosine")) is L.CosineSimilarityLoss
    assert type(sel("sentence-similarity", use_late_interaction=True)) is L.LateInteractionContrastiveLoss
    assert type(sel("text-classification")) is L.CrossEntropyLoss
    assert type(sel("text-classification", is_regression=True)) is L.MSELoss
    assert type(sel("token-classification")) is L.TokenCrossEntropyLoss
    assert type(sel("masked-lm")) is L.TokenCrossEntropyLoss
    weighted = sel("text-classification", class_weights=[1.0, 3.0])
    assert weighted.class_weights.tolist() == [1.0, 3.0]
    symmetric = sel("sentence-similarity", symmetric=True, scale=30.0)
    assert symmetric.symmetric and symmetric.scale == 30.0
    assert type(sel("sentence-similarity", loss_name="MultipleNegativesRankingLoss")) is L.MultipleNegativesRankingLoss


def test_select_loss_errors():
    with pytest.raises(ValueError, match="cached_mnrl"):  # the message lists the valid names
        sel("sentence-similarity", loss_name="triplet")
    with pytest.raises(ValueError, match="Unknown task"):
        sel("summarization")
    with pytest.raises(ValueError, match="valid here: cosent, cosine"):
        sel("sentence-similarity", scored=True, loss_name="mnrl")
    with pytest.raises(ValueError):
        sel("text-classification", loss_name="cosine")
    with pytest.raises(ValueError):
        sel("sentence-similarity", class_weights=[1.0, 2.0])
    with pytest.raises(ValueError):
        sel("sentence-similarity", scored=True, num_negatives=1)
    with pytest.raises(ValueError):
        sel("sentence-similarity", scored=True, use_late_interaction=True)
