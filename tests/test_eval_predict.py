"""`raclate eval` and `raclate predict` on every task, through the CLI (main(argv) and one subprocess),
with tiny random BERT models on the bundled demo data."""
import json
import subprocess
import sys

import numpy as np
import pytest

import mlx.core as mx
from engine import encode, load_model
from engine.cli import main
from engine.defaults import RESOURCES_DIR
from engine.export import write_folder

DEMO = RESOURCES_DIR / "demo"
LABELS = ["negative", "neutral", "positive"]
TAGS = ["B-LOC", "B-MISC", "B-ORG", "B-PER", "I-LOC", "I-MISC", "I-ORG", "I-PER", "O"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """One folder per task, written as `raclate train` / `raclate export` would."""
    from tests.test_export import tiny_checkpoint
    root = tmp_path_factory.mktemp("models")
    base = tiny_checkpoint("bert", root / "base")
    out = {"base": base}
    for name, task, kw in (("dense", "sentence-similarity", {}),
                           ("colbert", "sentence-similarity", {"use_late_interaction": True, "late_interaction_dim": 16}),
                           ("clf", "text-classification", {"id2label": LABELS}),
                           ("reg", "text-classification", {"is_regression": True}),
                           ("ner", "token-classification", {"id2label": TAGS}),
                           ("mlm", "masked-lm", {})):
        mx.random.seed(0)
        model, tok = load_model(str(base), task, **kw)
        fmt = {"dense": "sentence-transformers", "colbert": "pylate"}.get(name, "transformers")
        write_folder(model, tok, root / name, fmt)
        out[name] = root / name
    return out


def run_json(capsys, *argv):
    assert main(list(argv)) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def run_lines(capsys, *argv):
    assert main(list(argv)) == 0, capsys.readouterr().err
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


# -- eval -----------------------------------------------------------------------------------------
def test_eval_dense_retrieval(models, capsys):
    result = run_json(capsys, "eval", "--model", str(models["dense"]), "--data", str(DEMO / "pairs.jsonl"),
                      "--max-rows", "24")
    assert result["task"] == "sentence-similarity" and result["rows"] == 24
    for key in ("ndcg@10", "mrr@10", "recall@1", "recall@5", "recall@10", "map"):
        assert 0.0 <= result["metrics"][key] <= 1.0


def test_eval_late_interaction_retrieval(models, capsys):
    result = run_json(capsys, "eval", "--model", str(models["colbert"]), "--task", "sentence-similarity",
                      "--data", str(DEMO / "pairs.jsonl"), "--max-rows", "24")
    assert 0.0 <= result["metrics"]["ndcg@10"] <= 1.0 and result["rows"] == 24


def test_eval_classification_maps_labels_by_name(models, capsys):
    result = run_json(capsys, "eval", "--model", str(models["clf"]), "--data", str(DEMO / "reviews.csv"),
                      "--max-rows", "30")
    metrics = result["metrics"]
    assert result["task"] == "text-classification" and 0 <= metrics["accuracy"] <= 1
    assert set(metrics["per_class"]) == set(LABELS) and sum(map(sum, metrics["confusion_matrix"])) == 30


def test_eval_regression(models, capsys, tmp_path):
    data = tmp_path / "scores.jsonl"
    data.write_text("".join(json.dumps({"text": f"review number {i} was {'good' if i % 2 else 'bad'}",
                                        "label": float(i % 5) / 4}) + "\n" for i in range(12)))
    result = run_json(capsys, "eval", "--model", str(models["reg"]), "--data", str(data))
    assert {"pearson", "spearman", "mse", "mae"} <= set(result["metrics"])


def test_eval_token_classification(models, capsys):
    result = run_json(capsys, "eval", "--model", str(models["ner"]), "--data", str(DEMO / "ner.jsonl"),
                      "--column", "labels=ner_tags", "--max-rows", "20")
    assert result["task"] == "token-classification"
    assert {"precision", "recall", "f1", "per_type"} <= set(result["metrics"])


def test_eval_masked_lm_perplexity(models, capsys):
    result = run_json(capsys, "eval", "--model", str(models["mlm"]), "--data", str(DEMO / "reviews.csv"),
                      "--max-rows", "20")
    assert result["task"] == "masked-lm" and result["metrics"]["perplexity"] > 1


def test_eval_refuses_labels_the_model_does_not_know(models, capsys, tmp_path):
    data = tmp_path / "other.csv"
    data.write_text("text,label\nfine,great\nmeh,awful\n")
    assert main(["eval", "--model", str(models["clf"]), "--data", str(data)]) == 2
    assert "labels the model does not know: awful, great" in capsys.readouterr().err


def test_eval_table_for_terminals():
    from engine.commands.evaluate import table
    text = table({"task": "text-classification", "data": "d.csv", "rows": 3, "model": "m",
                  "metrics": {"accuracy": 0.5, "macro_f1": 0.25,
                              "per_class": {"a": {"precision": 1.0, "recall": 0.5, "f1": 0.667, "support": 2}}}})
    assert "accuracy" in text and "0.5000" in text and "a " in text and "support" in text


def test_eval_subprocess_prints_only_json(models):
    proc = subprocess.run([sys.executable, "-m", "engine.cli", "eval", "--model", str(models["clf"]),
                           "--data", str(DEMO / "reviews.csv"), "--max-rows", "12"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["metrics"]["accuracy"] >= 0


# -- predict --------------------------------------------------------------------------------------
def test_predict_classification_top_k(models, capsys):
    rows = run_lines(capsys, "predict", "--model", str(models["clf"]), "--text", "Lovely food, kind staff.",
                     "--text", "Awful.", "--top-k", "2")
    assert len(rows) == 2
    for row in rows:
        assert len(row["labels"]) == 2 and row["label"] == row["labels"][0]["label"] in LABELS
        assert row["labels"][0]["score"] >= row["labels"][1]["score"]
    everything = run_lines(capsys, "predict", "--model", str(models["clf"]), "--text", "ok")[0]["labels"]
    assert abs(sum(x["score"] for x in everything) - 1) < 1e-5 and len(everything) == 3


def test_predict_regression(models, capsys):
    row = run_lines(capsys, "predict", "--model", str(models["reg"]), "--text", "fine")[0]
    assert isinstance(row["score"], float)


def test_predict_entities(models, capsys):
    row = run_lines(capsys, "predict", "--model", str(models["ner"]), "--text", "Zhang Wei opened a shop in Shanghai .")[0]
    assert row["words"] == "Zhang Wei opened a shop in Shanghai .".split()
    assert len(row["tags"]) == len(row["words"]) and set(row["tags"]) <= set(TAGS)
    for ent in row["entities"]:
        assert ent["text"] == " ".join(row["words"][ent["start"]:ent["end"]]) and 0 <= ent["score"] <= 1
    rows = run_lines(capsys, "predict", "--model", str(models["ner"]), "--data", str(DEMO / "ner.jsonl"),
                     "--max-rows", "3")
    assert len(rows) == 3 and rows[0]["words"][:2] == ["Zhang", "Wei"]


def test_predict_fill_mask(models, capsys):
    row = run_lines(capsys, "predict", "--model", str(models["mlm"]), "--text", "The capital of France is [MASK].",
                    "--top-k", "3")[0]
    (filled,) = row["masks"]
    assert len(filled) == 3 and filled[0]["score"] >= filled[-1]["score"]
    assert filled[0]["token"].lower() in filled[0]["sequence"].lower()
    assert main(["predict", "--model", str(models["mlm"]), "--text", "no mask here"]) == 2
    assert "No mask" in capsys.readouterr().err


def test_predict_embeddings_to_npy(models, capsys, tmp_path):
    out = tmp_path / "vectors.npy"
    rows = run_lines(capsys, "predict", "--model", str(models["dense"]), "--data", str(DEMO / "pairs.jsonl"),
                     "--max-rows", "5", "--output", str(out))
    vectors = np.load(out)
    assert vectors.shape == (5, 32) and [r["dim"] for r in rows] == [32] * 5
    model, tok = load_model(str(models["dense"]))
    assert np.abs(vectors - encode(model, tok, [r["text"] for r in rows])).max() < 1e-5


def test_predict_late_interaction_to_npz(models, capsys, tmp_path):
    texts = ["What is a light-year?", "A light-year is a distance, not a time."]
    args = ["predict", "--model", str(models["colbert"])] + sum((["--text", t] for t in texts), [])
    run_lines(capsys, *args, "--output", str(tmp_path / "q.npz"))
    run_lines(capsys, *args, "--document", "--output", str(tmp_path / "d.npz"))
    queries, docs = np.load(tmp_path / "q.npz"), np.load(tmp_path / "d.npz")
    assert [queries[k].shape for k in ("0", "1")] == [(32, 16), (32, 16)]  # query expansion to 32
    assert docs["1"].shape == (12, 16)  # [CLS] [D] 9 words [SEP]; "-", "," and "." are skipped
    assert main(args + ["--output", str(tmp_path / "x.npy")]) == 2
    assert ".npz" in capsys.readouterr().err


def test_predict_needs_a_trained_head(models, capsys):
    assert main(["predict", "--model", str(models["base"]), "--task", "text-classification", "--text", "hi"]) == 2
    assert "no trained text-classification head" in capsys.readouterr().err
