"""Metrics (engine/metrics/) against small examples computed by hand in the comments."""
from __future__ import annotations

import doctest
import math
from types import SimpleNamespace

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

from engine.losses.scores import maxsim
from engine.metrics import classification, evaluate, evaluate_batches, lm, retrieval, token
from engine.metrics.classification import classification_report, pearson, regression_report, spearman
from engine.metrics.retrieval import maxsim_score_blocks, per_query_metrics, retrieval_metrics, worst_queries
from engine.metrics.token import entity_report, get_entities


@pytest.mark.parametrize("module", [classification, evaluate, lm, retrieval, token])
def test_doctests(module):
    assert doctest.testmod(module).failed == 0


# ---------------------------------------------------------------- classification
# y_true = 0 0 1 1 2 2, y_pred = 0 1 1 1 2 0. Confusion (rows true, cols predicted):
#   a: [1, 1, 0]   b: [0, 2, 0]   c: [1, 0, 1]      accuracy = 4/6
#   a: P = 1/2 (col 1+0+1), R = 1/2, F1 = 1/2
#   b: P = 2/3 (col 1+2+0), R = 2/2, F1 = 2*(2/3)/(5/3) = 0.8
#   c: P = 1/1,             R = 1/2, F1 = 2*0.5/1.5 = 2/3       macro-F1 = (0.5+0.8+2/3)/3
Y_TRUE, Y_PRED = [0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 0]
MACRO_F1 = (0.5 + 0.8 + 2 / 3) / 3


def check_report(r):
    assert r["accuracy"] == pytest.approx(4 / 6)
    assert r["macro_f1"] == pytest.approx(MACRO_F1)
    assert [row[:3] for row in r["confusion_matrix"][:3]] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert r["per_class"]["a"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert r["per_class"]["b"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    assert r["per_class"]["c"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})


def test_classification_report_by_hand():
    r = classification_report(Y_TRUE, Y_PRED, ["a", "b", "c"])
    check_report(r)
    assert sum(map(sum, r["confusion_matrix"])) == len(Y_TRUE)
    assert isinstance(r["per_class"]["a"]["support"], int)


def test_unused_label_listed_but_not_in_macro_f1():
    # "d" never occurs on either side: a zero row and column, zero scores, macro-F1 unchanged
    r = classification_report(Y_TRUE, Y_PRED, ["a", "b", "c", "d"])
    check_report(r)
    assert r["confusion_matrix"][3] == [0, 0, 0, 0] and all(row[3] == 0 for row in r["confusion_matrix"])
    assert r["per_class"]["d"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_class_predicted_but_never_true_counts_in_macro_f1():
    # true 0 0, pred 0 1: class 0 P=1 R=1/2 F1=2/3; class 1 P=0 (1 predicted, 0 right) F1=0 -> macro 1/3
    r = classification_report([0, 0], [0, 1])
    assert r["macro_f1"] == pytest.approx(1 / 3)
    assert list(r["per_class"]) == ["0", "1"]


def test_confusion_matrix_sums_to_n_and_checks_range():
    rng = np.random.default_rng(0)
    t, p = rng.integers(0, 4, 50), rng.integers(0, 4, 50)
    cm = classification.confusion_matrix(t, p, 4)
    assert cm.sum() == 50 and np.trace(cm) == np.sum(t == p)
    assert (cm.sum(axis=1) == np.bincount(t, minlength=4)).all()
    with pytest.raises(ValueError):
        classification.confusion_matrix([0, 3], [0, 1], 3)


# ---------------------------------------------------------------- regression
def test_spearman_with_ties():
    # x = 1 2 2 3 -> ranks 1 2.5 2.5 4; y = 1 3 2 4 -> ranks 1 3 2 4 (both mean 2.5)
    # dx = -1.5 0 0 1.5, dy = -1.5 .5 -.5 1.5: sum dx*dy = 4.5, sum dx^2 = 4.5, sum dy^2 = 5
    # rho = 4.5 / sqrt(4.5 * 5) = 3 / sqrt(10)
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(3 / math.sqrt(10))
    assert classification.rank_average([3, 1, 3, 3]).tolist() == [3.0, 1.0, 3.0, 3.0]  # 2,3,4 -> 3


def test_regression_report_by_hand():
    # true 1 2 3, pred 2 2 5: errors -1 0 -2 -> mse 5/3, mae 1
    # pearson: dx = -1 0 1, dy = -1 -1 2 (mean 3): 3 / sqrt(2 * 6)
    r = regression_report([1, 2, 3], [2, 2, 5])
    assert r["mse"] == pytest.approx(5 / 3) and r["mae"] == pytest.approx(1.0)
    assert r["pearson"] == pytest.approx(3 / math.sqrt(12))
    # spearman: ranks 1 2 3 vs 1.5 1.5 3 -> dx -1 0 1, dy -.5 -.5 1 -> 1.5 / sqrt(2 * 1.5)
    assert r["spearman"] == pytest.approx(1.5 / math.sqrt(3))


def test_correlation_of_constant_is_nan():
    assert math.isnan(pearson([1, 1, 1], [1, 2, 3]))
    assert math.isnan(spearman([5], [2]))


# ---------------------------------------------------------------- retrieval
# 3 queries x 5 documents. Ranks (best first, 1-based):
#   q0: 0 2 3 4 1, relevant {0}    -> rank 1
#   q1: 0 1 3 2 4, relevant {3}    -> rank 3
#   q2: 1 3 4 0 2, relevant {2, 4} -> ranks 3 and 5
SCORES = np.array([[0.9, 0.1, 0.5, 0.3, 0.2],
                   [0.8, 0.7, 0.1, 0.6, 0.0],
                   [0.5, 0.9, 0.4, 0.8, 0.7]])
RELEVANT = [{0}, {3}, {2, 4}]
L2 = math.log2
TOY = {
    "recall@1": (1 + 0 + 0) / 3,
    "recall@5": (1 + 1 + 2 / 2) / 3,
    "recall@10": 1.0,
    "mrr@10": (1 + 1 / 3 + 1 / 3) / 3,
    # q2: DCG = 1/log2(4) + 1/log2(6); ideal = 1/log2(2) + 1/log2(3)
    "ndcg@10": (1 + 1 / L2(4) + (1 / L2(4) + 1 / L2(6)) / (1 + 1 / L2(3))) / 3,
    # q2: AP = (1/3 + 2/5) / 2
    "map": (1 + 1 / 3 + (1 / 3 + 2 / 5) / 2) / 3,
}


def test_retrieval_metrics_on_toy():
    assert retrieval_metrics(SCORES, RELEVANT) == pytest.approx(TOY)
    per = per_query_metrics(SCORES, RELEVANT)
    assert per["gold_rank"].tolist() == [1, 3, 3]
    assert per["recall@1"].tolist() == [1.0, 0.0, 0.0]


def test_retrieval_report_over_blocks_equals_whole():
    blocks = [SCORES[:1], SCORES[1:]]
    assert retrieval.retrieval_report(blocks, RELEVANT) == pytest.approx(TOY)
    with pytest.raises(ValueError):
        retrieval.retrieval_report([SCORES[:2]], RELEVANT)


def test_query_without_relevant_is_left_out():
    scores = np.vstack([SCORES, [[0.1, 0.2, 0.3, 0.4, 0.5]]])
    assert retrieval_metrics(scores, [*RELEVANT, set()]) == pytest.approx(TOY)


def test_recall_counts_every_relevant_document():
    # two relevant, one in the top 1: recall@1 = 1/2 (sentence-transformers' definition)
    assert retrieval_metrics([[0.9, 0.5, 0.1]], [{0, 2}])["recall@1"] == pytest.approx(0.5)


def test_ties_rank_lower_index_first():
    # all equal: order 0 1 2; relevant 2 -> rank 3
    assert per_query_metrics(np.zeros((1, 3)), [{2}])["gold_rank"].tolist() == [3]


def test_worst_queries_order_and_top():
    worst = worst_queries(SCORES, RELEVANT, k=2)
    # gold ranks 1, 3, 3: q1 and q2 tie (query id order), q0 last
    assert worst == [{"query": 1, "gold_rank": 3, "top": [0, 1]},
                     {"query": 2, "gold_rank": 3, "top": [1, 3]},
                     {"query": 0, "gold_rank": 1, "top": [0, 2]}]
    assert worst_queries(SCORES, RELEVANT, k=1, n=1) == [{"query": 1, "gold_rank": 3, "top": [0]}]


def test_cosine_blocks_match_numpy():
    rng = np.random.default_rng(1)
    q, c = rng.normal(size=(5, 4)), rng.normal(size=(7, 4))
    got = np.concatenate(list(retrieval.cosine_score_blocks(q, c, block=2)))
    want = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (c / np.linalg.norm(c, axis=1, keepdims=True)).T
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def random_chunks(rng, sizes, lengths, dim=4):
    """(vectors [n, T, D], mask [n, T]) chunks padded to T; row i has 1 + i % T real tokens."""
    chunks = []
    for n, t in zip(sizes, lengths):
        mask = (np.arange(t)[None] <= (np.arange(n) % t)[:, None]).astype(np.int32)
        chunks.append((rng.normal(size=(n, t, dim)).astype(np.float32), mask))
    return chunks


def padded(chunks):
    t = max(v.shape[1] for v, _ in chunks)
    return (np.concatenate([np.pad(v, ((0, 0), (0, t - v.shape[1]), (0, 0))) for v, _ in chunks]),
            np.concatenate([np.pad(m, ((0, 0), (0, t - m.shape[1]))) for _, m in chunks]))


@pytest.mark.parametrize("budget", [1, 1 << 24])
def test_maxsim_blocks_match_one_call(monkeypatch, budget):
    # chunks of different lengths regrouped into 3-row blocks (budget 1: one query row per call)
    monkeypatch.setattr(retrieval, "_MAXSIM_BUDGET", budget)
    rng = np.random.default_rng(2)
    qs, ds = random_chunks(rng, [2, 3, 1], [3, 5, 2]), random_chunks(rng, [4, 1, 2], [6, 2, 4])
    got = np.concatenate(list(maxsim_score_blocks(qs, ds, block=3)))
    (qv, qm), (dv, dm) = padded(qs), padded(ds)
    want = np.array(maxsim(mx.array(qv), mx.array(dv), mx.array(qm), mx.array(dm)))
    assert got.shape == (6, 7)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- token classification
@pytest.mark.parametrize("tags, entities", [
    (["O", "I-PER", "I-PER", "O"], [("PER", 1, 2)]),                  # I- after O starts an entity
    (["B-PER", "I-LOC", "I-LOC"], [("PER", 0, 0), ("LOC", 1, 2)]),    # type change ends and starts
    (["O", "B-LOC", "I-LOC"], [("LOC", 1, 2)]),                       # entity at the end
    (["B-PER", "B-PER", "I-PER"], [("PER", 0, 0), ("PER", 1, 2)]),    # B- ends the one before
    (["I-ORG"], [("ORG", 0, 0)]),                                     # I- at the start
    (["O", "O"], []),
])
def test_get_entities_conlleval_rules(tags, entities):
    assert get_entities(tags) == entities


def test_entity_report_by_hand():
    # true: PER(0-1) LOC(3) | ORG(1-2)      pred: PER(0) LOC(3) | ORG(1-2) (I- after O starts it)
    # hits: LOC, ORG -> P = 2/3, R = 2/3, F1 = 2/3; PER: boundary wrong -> 0 0 0, support 1
    true = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG", "I-ORG"]]
    pred = [["B-PER", "O", "O", "B-LOC"], ["O", "I-ORG", "I-ORG"]]
    r = entity_report(true, pred)
    assert (r["precision"], r["recall"], r["f1"]) == pytest.approx((2 / 3, 2 / 3, 2 / 3))
    assert r["per_type"] == {
        "LOC": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1},
        "ORG": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1},
        "PER": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1},
    }


def test_entity_report_types_from_either_side_and_sequence_bounds():
    # an I-PER ending one sentence and one starting the next are two entities, not one;
    # MISC is only predicted: precision 0, support 0
    r = entity_report([["O", "I-PER"], ["I-PER", "O"]], [["O", "I-PER"], ["I-PER", "B-MISC"]])
    assert r["per_type"]["PER"]["support"] == 2 and r["per_type"]["PER"]["f1"] == 1.0
    assert r["per_type"]["MISC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert (r["precision"], r["recall"]) == pytest.approx((2 / 3, 1.0))
    with pytest.raises(ValueError):
        entity_report([["O"]], [["O", "O"]])


# ---------------------------------------------------------------- masked LM
def test_perplexity_by_hand():
    # probabilities per position; position 1 is not masked (-100)
    logits = np.log([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [0.25, 0.5, 0.25]])
    ce, n = lm.cross_entropy_sum(logits, np.array([0, -100, 0]))
    # CE = -ln 0.5 - ln 0.25 = ln 8 over 2 tokens -> exp(ln 8 / 2) = sqrt(8)
    assert (ce, n) == (pytest.approx(math.log(8)), 2)
    assert lm.perplexity(ce, n) == pytest.approx(math.sqrt(8))
    assert math.isnan(lm.perplexity(0.0, 0)) and lm.perplexity(1e6, 1) == math.inf


# ---------------------------------------------------------------- evaluate_batches on fake models
class Lookup(nn.Module):
    """Fixed outputs: ``table[input_ids[:, 0]]`` (per sequence) or ``table[input_ids]`` (per token)."""

    def __init__(self, table, per_token=False, info=None, config=None):
        super().__init__()
        self.table = mx.array(np.asarray(table, dtype=np.float32))
        self.per_token = per_token
        if info is not None:
            self.info = info
        self.config = config or {}

    def __call__(self, input_ids, attention_mask):
        return self.table[input_ids] if self.per_token else self.table[input_ids[:, 0]]


def ids_batch(ids, labels, label_dtype=mx.int32):
    ids = mx.array(np.asarray(ids, dtype=np.int32).reshape(len(ids), -1))
    return {"input_ids": ids, "attention_mask": mx.ones(ids.shape, dtype=mx.int32),
            "labels": mx.array(np.asarray(labels), dtype=label_dtype)}


def test_evaluate_classification():
    # example i's logits put the max on Y_PRED[i]
    model = Lookup(np.eye(3)[Y_PRED] * 2.0 - 1.0)
    batches = [ids_batch([0, 1, 2], Y_TRUE[:3]), ids_batch([3, 4, 5], Y_TRUE[3:])]
    info = SimpleNamespace(names=["a", "b", "c"], num_labels=3, is_regression=None)
    r = evaluate_batches("text-classification", model, batches, info)
    check_report(r)
    assert set(r) == {"accuracy", "macro_f1", "per_class", "confusion_matrix"}


def test_evaluate_regression():
    # the same numbers as test_regression_report_by_hand; float labels mark regression
    model = Lookup([[2.0], [2.0], [5.0]])
    batches = [ids_batch([0, 1], [1.0, 2.0], mx.float32), ids_batch([2], [3.0], mx.float32)]
    for info in (None, SimpleNamespace(names=None, num_labels=1, is_regression=True)):
        r = evaluate_batches("text-classification", model, batches, info)
        assert r == pytest.approx(regression_report([1, 2, 3], [2, 2, 5]))


TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def test_evaluate_token_classification():
    # the model predicts tag id = input id; -100 positions (specials, a second sub-token holding
    # I-PER, padding) are skipped. Kept: true B-PER I-PER O B-LOC | O B-LOC I-LOC
    #                                   pred B-PER O     O B-LOC | O I-LOC I-LOC
    # entities: true PER(0-1) LOC(3) | LOC(1-2); pred PER(0) LOC(3) | LOC(1-2) -> 2 of 3 right
    batch = {"input_ids": mx.array([[0, 1, 0, 2, 0, 3, 0, 0], [0, 0, 4, 4, 0, 0, 0, 0]]),
             "attention_mask": mx.array([[1] * 7 + [0], [1] * 5 + [0] * 3]),
             "labels": mx.array([[-100, 1, 2, -100, 0, 3, -100, -100], [-100, 0, 3, 4, -100, -100, -100, -100]])}
    model = Lookup(np.eye(5), per_token=True)
    r = evaluate_batches("token-classification", model, [batch], SimpleNamespace(names=TAGS, num_labels=5))
    assert (r["precision"], r["recall"], r["f1"]) == pytest.approx((2 / 3, 2 / 3, 2 / 3))
    assert r["per_type"]["PER"]["f1"] == 0.0 and r["per_type"]["LOC"]["support"] == 2
    # tag names from the model's id2label when label_info has none
    model = Lookup(np.eye(5), per_token=True, config={"id2label": {str(i): t for i, t in enumerate(TAGS)}})
    assert evaluate_batches("ner", model, [batch])["f1"] == pytest.approx(2 / 3)


def test_evaluate_masked_lm_weights_tokens_not_batches():
    # as test_perplexity_by_hand: ids 0 and 2 have p(label 0) = 0.5 and 0.25
    # batch 1: one masked token (ln 2); batch 2: two (2 ln 4) -> exp(ln 32 / 3) = 32 ** (1/3)
    model = Lookup(np.log([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [0.25, 0.5, 0.25]]), per_token=True)
    batches = [ids_batch([[0, 1]], [[0, -100]]), ids_batch([[2, 2]], [[0, 0]]), ids_batch([[1, 1]], [[-100, -100]])]
    r = evaluate_batches("masked-lm", model, batches)
    assert r == {"perplexity": pytest.approx(32 ** (1 / 3))}


# Sentence similarity: every text is a unit vector at an angle (degrees); text id = hash.
# anchors a0 10, a1 30, a2 80; positives p0 0, p1 90, p2 45; negative n 25.
ANGLES = {"a0": 10, "a1": 30, "a2": 80, "p0": 0, "p1": 90, "p2": 45, "n": 25, "pad": 0}
TEXT_IDS = {name: i for i, name in enumerate(ANGLES)}
UNIT = np.array([[math.cos(math.radians(a)), math.sin(math.radians(a))] for a in ANGLES.values()])


def sim_batch(*columns, labels=None, late=False):
    """Columns of text names -> a collated sentence-similarity batch. Late: tokens [text, text, pad]
    with the second one real only in row 0 (a repeated token leaves the ranking as it is)."""
    inputs, hashes = [], []
    for col in columns:
        ids = np.array([TEXT_IDS[t] for t in col], dtype=np.int32)[:, None]
        mask = np.ones_like(ids)
        if late:
            second = (np.arange(len(col)) == 0)[:, None]
            ids = np.concatenate([ids, np.where(second, ids, TEXT_IDS["pad"]), np.full_like(ids, TEXT_IDS["pad"])], 1)
            mask = np.concatenate([mask, second.astype(np.int32), np.zeros_like(mask)], axis=1)
        inputs.append({"input_ids": mx.array(ids), "attention_mask": mx.array(mask)})
        hashes.append(mx.array(ids[:, 0]))
    batch = {"inputs": inputs, "hashes": hashes}
    if labels is not None:
        batch["labels"] = mx.array(np.asarray(labels, dtype=np.float32))
    return batch


# Rows (a0, p0) (a1, p1) | (a2, p0) (a0, p2): p0 is one corpus entry, relevant to a0 and a2;
# a0 is one query with relevant {p0, p2}. Ranks by angle distance:
#   a0: p0 p2 p1 -> relevant at 1, 2 (perfect; recall@1 = 1/2)
#   a1: p2 p0 p1 -> rank 3: mrr 1/3, ndcg 1/log2(4), ap 1/3
#   a2: p1 p2 p0 -> rank 3: the same
PAIRS = [(["a0", "a1"], ["p0", "p1"]), (["a2", "a0"], ["p0", "p2"])]
PAIR_METRICS = {"recall@1": 1 / 6, "recall@5": 1.0, "recall@10": 1.0, "mrr@10": 5 / 9,
                "ndcg@10": (1 + 2 / L2(4)) / 3, "map": 5 / 9}


def test_evaluate_pairs_dedupes_queries_and_corpus():
    r = evaluate_batches("sentence-similarity", Lookup(UNIT), [sim_batch(*cols) for cols in PAIRS])
    assert r == pytest.approx(PAIR_METRICS)


def test_evaluate_triplets_adds_negatives_to_corpus():
    # negatives p1, n | p2, n: corpus p0 p1 p2 n. n (25 degrees) overtakes:
    #   a0: p0 n p2 p1 -> relevant at 1, 3: ndcg (1 + 1/log2(4)) / (1 + 1/log2(3)), ap (1 + 2/3) / 2
    #   a1: n p2 p0 p1 -> rank 4: mrr 1/4, ndcg 1/log2(5), ap 1/4;   a2: p1 p2 n p0 -> the same
    batches = [sim_batch(["a0", "a1"], ["p0", "p1"], ["p1", "n"]), sim_batch(["a2", "a0"], ["p0", "p2"], ["p2", "n"])]
    r = evaluate_batches("sentence-similarity", Lookup(UNIT), batches)
    assert r == pytest.approx({
        "recall@1": 0.5 / 3, "recall@5": 1.0, "recall@10": 1.0, "mrr@10": 1.5 / 3,
        "ndcg@10": (1.5 / (1 + 1 / L2(3)) + 2 / L2(5)) / 3, "map": ((1 + 2 / 3) / 2 + 0.5) / 3})


def test_evaluate_late_interaction_masks_padding():
    # one distinct real token per text, so MaxSim ranks as cosine and the metrics are the pairs';
    # the padding token is a huge vector that would win every max if it were not masked
    table = np.vstack([UNIT[:-1], [[100.0, 100.0]]])
    model = Lookup(table, per_token=True, info=SimpleNamespace(late_interaction=True))
    r = evaluate_batches("late-interaction", model, [sim_batch(*cols, late=True) for cols in PAIRS])
    assert r == pytest.approx(PAIR_METRICS)


def test_greater_is_better():
    assert [evaluate.greater_is_better(n) for n in ("accuracy", "macro_f1", "map", "mse", "mae", "eval_perplexity")] \
        == [True, True, True, False, False, False]


def test_evaluate_scored_pairs():
    # cos(a0, p0) = cos 10, cos(a1, p1) = cos 60, cos(a2, p2) = cos 35: order 1st, 3rd, 2nd,
    # as the labels 1.0, 0.0, 0.5 -> spearman 1
    labels = [1.0, 0.0, 0.5]
    batches = [sim_batch(["a0", "a1"], ["p0", "p1"], labels=labels[:2]), sim_batch(["a2"], ["p2"], labels=labels[2:])]
    r = evaluate_batches("sentence-similarity", Lookup(UNIT), batches)
    cos = [math.cos(math.radians(d)) for d in (10, 60, 35)]
    assert r == pytest.approx({"pearson_cosine": np.corrcoef(cos, labels)[0, 1], "spearman_cosine": 1.0})
