"""Hard-negative mining: the rank window, the false-negative rules and their counts on a hand-made corpus
whose scores are set by hand; then `raclate mine` end to end into a file `raclate train` reads."""
from __future__ import annotations

import json

import numpy as np
import pytest

import engine.mining as mining
from engine.cli import main
from engine.data import DatasetArgs, load_dataset
from engine.errors import UsageError
from engine.mining import mine_hard_negatives, summary_path
from tests.trainer_helpers import tiny_bert_dir

# Scores exact in binary, so the rules' comparisons are exact. q1 has two positives (p1, p1b).
SCORES = {
    "q1": {"p1": 0.875, "p1b": 0.75, "x1": 0.8125, "x2": 0.625, "p2": 0.5, "x3": 0.375, "q2": 0.25},
    "q2": {"p2": 0.5, "q2": 1.0, "x3": 0.4375, "p1": 0.25, "x1": 0.125},
}
PAIRS = [("q1", "p1"), ("q2", "p2"), ("q1", "p1b")]
CORPUS = ["x1", "x2", "x3", "q2"]


@pytest.fixture
def fake_scores(monkeypatch):
    """score_blocks from the SCORES table (0 when absent), two queries per block."""
    def score_blocks(model, tokenizer, queries, docs, progress=None):
        matrix = np.array([[SCORES.get(q, {}).get(d, 0.0) for d in docs] for q in queries], np.float32)
        return (matrix[i:i + 2] for i in range(0, len(queries), 2))
    monkeypatch.setattr(mining, "score_blocks", score_blocks)


def mine(**kw):
    return mine_hard_negatives(None, None, PAIRS, CORPUS, **kw)


def negatives(mined, anchor, positive):
    return [r["negative"] for r in mined.rows if (r["anchor"], r["positive"]) == (anchor, positive)]


def test_positives_and_the_anchor_itself_are_never_negatives(fake_scores):
    mined = mine(num_negatives=10)
    assert negatives(mined, "q1", "p1") == ["x1", "x2", "p2", "x3", "q2"]   # not p1 nor p1b, though p1b ranks 2nd
    assert negatives(mined, "q1", "p1b") == ["x1", "x2", "p2", "x3", "q2"]
    assert negatives(mined, "q2", "p2")[:2] == ["x3", "p1"]                  # not q2 (its own text), not p2
    assert "q2" not in negatives(mined, "q2", "p2") and "p2" not in negatives(mined, "q2", "p2")
    assert mined.summary["corpus"] == 7 and mined.summary["anchors"] == 2 and mined.summary["removed_total"] == 0


def test_rank_window(fake_scores):
    mined = mine(num_negatives=10, range_min=1, range_max=3)
    assert negatives(mined, "q1", "p1") == ["x2", "p2"]   # ranks 1 and 2 of x1, x2, p2, x3, q2
    assert negatives(mined, "q2", "p2") == ["p1", "x1"]
    assert mined.summary["candidates"] == 3 * 2
    assert len(negatives(mine(num_negatives=1), "q1", "p1")) == 1


def test_margin_removes_exactly_the_candidates_too_close_to_the_positive(fake_scores):
    mined = mine(num_negatives=10, margin=0.125)
    # p1 (0.875): drop > 0.75 -> x1. p1b (0.75): drop > 0.625 -> x1; x2 (0.625) stays. p2 (0.5): drop > 0.375 -> x3.
    assert negatives(mined, "q1", "p1") == ["x2", "p2", "x3", "q2"]
    assert negatives(mined, "q1", "p1b") == ["x2", "p2", "x3", "q2"]
    assert negatives(mined, "q2", "p2")[0] == "p1"
    assert mined.summary["removed"] == {"margin": 3, "relative_margin": 0} and mined.summary["removed_total"] == 3
    closest = mined.summary["closest_removed"]
    assert [(r["candidate"], r["score"], r["positive_score"]) for r in closest] == [
        ("x1", 0.8125, 0.875), ("x1", 0.8125, 0.75), ("x3", 0.4375, 0.5)]   # closest to the anchor first
    assert all(r["removed_by"] == ["margin"] for r in closest)


def test_relative_margin_and_both_rules_counted(fake_scores):
    mined = mine(num_negatives=10, relative_margin=0.5)
    # p1: drop > 0.4375 -> x1, x2, p2. p1b: drop > 0.375 -> x1, x2, p2 (x3 = 0.375 stays). p2: drop > 0.25 -> x3.
    assert negatives(mined, "q1", "p1") == ["x3", "q2"]
    assert negatives(mined, "q1", "p1b") == ["x3", "q2"]
    assert negatives(mined, "q2", "p2") == ["p1", "x1"] + negatives(mined, "q2", "p2")[2:]
    assert mined.summary["removed"] == {"margin": 0, "relative_margin": 7}
    both = mine(num_negatives=10, margin=0.125, relative_margin=0.5).summary
    assert both["removed"] == {"margin": 3, "relative_margin": 7} and both["removed_total"] == 7   # margin's are in both
    assert len(mine(num_negatives=10, margin=0.125, relative_margin=0.5, sample_size=2).summary["closest_removed"]) == 2


def test_output_formats_and_scores(fake_scores):
    mined = mine(num_negatives=2, output_format="n-tuple", with_scores=True, range_max=3)
    assert mined.rows[0] == {"anchor": "q1", "positive": "p1", "negative_1": "x1", "negative_2": "x2",
                             "scores": [0.875, 0.8125, 0.625]}
    short = mine(num_negatives=3, output_format="n-tuple", margin=0.125, range_max=3)   # 2 left for each pair
    assert short.rows == [] and short.summary["pairs_short_of_negatives"] == 3
    triplets = mine(num_negatives=2, with_scores=True)
    assert triplets.rows[0] == {"anchor": "q1", "positive": "p1", "negative": "x1", "scores": [0.875, 0.8125]}
    assert len(triplets.rows) == 6 and triplets.summary["negatives"] == 6


def test_bad_settings_are_refused():
    for kw in ({"num_negatives": 0}, {"range_min": 5, "range_max": 5}, {"relative_margin": 1.0},
               {"output_format": "pairs"}):
        with pytest.raises(UsageError):
            mine(**kw)


def test_cli_mines_a_file_that_training_reads(tmp_path, tmp_path_factory, capsys):
    bert = str(tiny_bert_dir(tmp_path_factory))
    topics = ["cats", "dogs", "tea", "rain", "trains", "chess", "bread", "snow", "music", "maps"]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"question": f"what about {t}?", "answer": f"all about {t} here"}) + "\n"
                            for t in topics))
    corpus = tmp_path / "extra.txt"
    corpus.write_text("".join(f"a note on {t}\n" for t in topics))
    out = tmp_path / "mined" / "tuples.jsonl"
    code = main(["mine", "--model", bert, "--data", str(data), "--corpus", str(corpus), "--output", str(out),
                 "--num-negatives", "2", "--range-max", "10", "--relative-margin", "0.0", "--output-format", "n-tuple",
                 "--with-scores", "--json"])
    printed = json.loads(capsys.readouterr().out)
    assert code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    summary = json.loads(summary_path(out).read_text())
    assert summary == {k: v for k, v in printed.items() if k not in ("output", "summary_file")}
    assert summary["pairs"] == 10 and summary["corpus"] == 20 and len(rows) == summary["rows"]
    for row in rows:
        assert row["negative_1"] != row["positive"] and row["negative_2"] != row["positive"]
        assert row["scores"][0] >= max(row["scores"][1:])   # relative margin 0: never above the positive
    assert rows and summary["removed"] == {"margin": 0, "relative_margin": summary["removed_total"]}

    # The trainer reads the mined columns as anchor, positive and hard negatives; Matryoshka dims are recorded.
    loaded = load_dataset(DatasetArgs(data=str(out), task_type="sentence-similarity"))
    assert loaded.text_roles == ["text", "text_pair", "negative_1", "negative_2"]
    run = tmp_path / "run"
    code = main(["train", "--model", bert, "--task", "sentence-similarity", "--data", str(out), "--output",
                 str(run), "--batch-size", "4", "--max-steps", "1", "--max-length", "32", "--matryoshka-dims", "32,16"])
    capsys.readouterr()
    assert code == 0
    record = json.loads((run / "raclate_run.json").read_text())
    assert record["training"]["matryoshka_dims"] == [32, 16]
    assert "matryoshka_dims" in (run / "README.md").read_text()


# -- cross-encoder rescoring ------------------------------------------------------------------------------------

# A cross-encoder that disagrees with the embedding scores: it ranks x2 above x1 for q1, and scores p1b low.
CE = {("q1", "p1"): 0.9, ("q1", "p1b"): 0.5, ("q1", "x1"): 0.3, ("q1", "x2"): 0.85, ("q1", "p2"): 0.6,
      ("q1", "x3"): 0.1, ("q1", "q2"): 0.2, ("q2", "p2"): 0.8, ("q2", "x3"): 0.75, ("q2", "p1"): 0.1,
      ("q2", "x1"): 0.05}


def fake_cross_encoder(pairs):
    return np.array([CE.get(p, 0.0) for p in pairs], np.float32)


def test_cross_encoder_scores_drive_the_rules_and_the_order(fake_scores):
    mined = mine(num_negatives=10, range_max=4, margin=0.1, cross_encoder=fake_cross_encoder)
    # q1/p1 (0.9): window x1, x2, p2, x3 by the embedding; removed > 0.8: x2; the rest best first by the cross-encoder
    assert negatives(mined, "q1", "p1") == ["p2", "x1", "x3"]
    assert negatives(mined, "q1", "p1b") == ["x1", "x3"]            # 0.5: > 0.4 removes x2 and p2
    assert negatives(mined, "q2", "p2") == ["p1", "x1", "p1b"]       # 0.8: > 0.7 removes x3 (window x3, p1, x1, p1b)
    assert mined.summary["removed"] == {"margin": 4, "relative_margin": 0}
    assert mined.summary["settings"]["scores"] == "cross-encoder"
    closest = mined.summary["closest_removed"][0]
    assert (closest["candidate"], closest["score"], closest["positive_score"]) == ("x2", pytest.approx(0.85),
                                                                                  pytest.approx(0.9))
    scored = mine(num_negatives=2, range_max=4, cross_encoder=fake_cross_encoder, with_scores=True)
    assert scored.rows[0]["scores"] == pytest.approx([0.9, 0.85])   # the cross-encoder's scores
    # Without it the same settings keep the embedding order and scores.
    assert negatives(mine(num_negatives=10, range_max=4, margin=0.1), "q1", "p1") == ["x2", "p2", "x3"]


def test_scores_from_logits():
    logits = np.array([[2.0, 0.0], [0.0, 0.0]], np.float32)
    np.testing.assert_allclose(mining.scores_from_logits(logits, {"problem_type": "single_label_classification"}),
                               [1 / (1 + np.exp(2.0)), 0.5], rtol=1e-6)   # softmax probability of label 1
    np.testing.assert_allclose(mining.scores_from_logits(logits[:, :1], {}), [1 / (1 + np.exp(-2.0)), 0.5], rtol=1e-6)
    np.testing.assert_allclose(mining.scores_from_logits(logits[:, :1], {"problem_type": "regression"}), [2.0, 0.0])
    with pytest.raises(UsageError, match="3 labels"):
        mining.scores_from_logits(np.zeros((1, 3)), {"id2label": {"0": "a", "1": "b", "2": "c"}})


def test_cli_rescores_with_a_transformers_cross_encoder(tmp_path, tmp_path_factory, capsys):
    from transformers import BertConfig, BertForSequenceClassification
    from engine.defaults import default_model_dir
    from tests.helpers import save_tiny
    from tests.trainer_helpers import TINY_BERT
    bert = str(tiny_bert_dir(tmp_path_factory))
    reranker = tmp_path / "reranker"
    save_tiny(BertForSequenceClassification, BertConfig(**TINY_BERT, num_labels=1), reranker, default_model_dir())
    topics = ["cats", "dogs", "tea", "rain", "trains", "chess"]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"anchor": f"what about {t}?", "positive": f"all about {t}"}) + "\n"
                            for t in topics))
    out = tmp_path / "triplets.jsonl"
    argv = ["mine", "--model", bert, "--data", str(data), "--output", str(out), "--num-negatives", "2",
            "--margin", "0.0", "--with-scores", "--json", "--cross-encoder", str(reranker)]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["settings"]["cross_encoder"] == str(reranker) and summary["settings"]["scores"] == "cross-encoder"
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows and all(0 < s < 1 for r in rows for s in r["scores"])   # sigmoid of a one-logit reranker
    assert all(r["scores"][1] <= r["scores"][0] for r in rows)          # margin 0 on its scores
    # An embedding model has no classification head to score pairs with: refused, naming the flag.
    assert main(argv[:-1] + [bert]) == 2
    assert "--cross-encoder" in capsys.readouterr().err
