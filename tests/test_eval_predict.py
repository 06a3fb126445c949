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
from engine.outputs.export import write_folder

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


def test_eval_reads_a_latin1_file_with_encoding(models, capsys, tmp_path):
    """As `raclate train`, `raclate eval` takes --encoding; without it a Latin-1 file is refused (exit 2)
    with the line and a fix that names the option."""
    data = tmp_path / "avis.csv"
    rows = [("Très bon café, servi chaud", "positive"), ("Déçu : froid et amer", "negative")] * 3
    data.write_bytes(("text,label\n" + "".join(f'"{t}",{y}\n' for t, y in rows)).encode("latin-1"))
    assert main(["eval", "--model", str(models["clf"]), "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert "avis.csv" in err and "--encoding" in err
    result = run_json(capsys, "eval", "--model", str(models["clf"]), "--data", str(data), "--encoding", "latin-1")
    assert result["rows"] == 6 and sum(map(sum, result["metrics"]["confusion_matrix"])) == 6


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


def test_predict_takes_the_inputs_a_plain_folder_does_not_say(models, capsys, tmp_path):
    """A folder no run wrote: prompts and the chat template come from the flags, as `raclate train` takes them."""
    texts = ["What is a light-year?", "ok"]
    args = ["predict", "--model", str(models["dense"])] + sum((["--text", t] for t in texts), [])
    run_lines(capsys, *args, "--query-prompt", "query: ", "--query", "--output", str(tmp_path / "q.npy"))
    model, tok = load_model(str(models["dense"]))
    assert np.abs(np.load(tmp_path / "q.npy") - encode(model, tok, texts, prompt="query: ")).max() < 1e-5
    assert main(args + ["--prompt-name", "nope"]) == 2
    assert "'nope' is not defined" in capsys.readouterr().err
    assert main(["predict", "--model", str(models["clf"]), "--text", "hi", "--use-chat-template"]) == 2
    assert "has no chat template" in capsys.readouterr().err


def test_predict_needs_a_trained_head(models, capsys):
    assert main(["predict", "--model", str(models["base"]), "--task", "text-classification", "--text", "hi"]) == 2
    assert "no trained text-classification head" in capsys.readouterr().err


# -- the inference library (engine.inference) -----------------------------------------------------
def test_folder_kind_reads_task_and_variant_without_loading(models):
    from engine.inference import folder_kind
    assert folder_kind(str(models["dense"])) == ("sentence-similarity", False, False)
    assert folder_kind(str(models["colbert"])) == ("sentence-similarity", True, False)
    assert folder_kind(str(models["clf"])) == ("text-classification", False, False)
    assert folder_kind(str(models["reg"])) == ("text-classification", False, True)
    assert folder_kind(str(models["ner"]))[0] == "token-classification"
    assert folder_kind(str(models["mlm"]))[0] == "masked-lm"
    assert folder_kind(str(models["base"]))[0] == "feature-extraction"


def test_untrained_head_only_for_head_tasks(models):
    from engine.inference import load_for_task, untrained_head
    model, _, task, _ = load_for_task(str(models["base"]), "text-classification")
    assert untrained_head(model, task)
    model, _, task, _ = load_for_task(str(models["clf"]))
    assert task == "text-classification" and untrained_head(model, task) == []
    model, _, task, _ = load_for_task(str(models["colbert"]), "sentence-similarity")
    assert untrained_head(model, task) == []       # the new [Q]/[D] rows are no head


def test_remap_labels_by_name_and_integer(models):
    from datasets import Dataset

    from engine.data import LabelInfo
    from engine.errors import UsageError
    from engine.inference import load_for_task, remap_labels
    model, _, task, _ = load_for_task(str(models["clf"]))
    ds = Dataset.from_dict({"text": ["a", "b", "c"], "label": [0, 1, 2]})
    mapped, info = remap_labels(ds, LabelInfo(["positive", "negative", "neutral"], 3), model, task)
    assert mapped["label"] == [LABELS.index("positive"), LABELS.index("negative"), LABELS.index("neutral")]
    assert info.names == LABELS
    mapped, _ = remap_labels(ds, LabelInfo(["2", "0", "1"], 3), model, task)   # integer labels as ids
    assert mapped["label"] == [2, 0, 1]
    with pytest.raises(UsageError, match="does not know: great"):
        remap_labels(ds, LabelInfo(["positive", "great", "neutral"], 3), model, task)


def test_evaluation_lists_the_misclassified_rows_worst_first(models):
    from datasets import Dataset

    from engine.data import LabelInfo
    from engine.inference import classify, evaluate_dataset, load_for_task
    model, tok, task, _ = load_for_task(str(models["clf"]))
    texts = [f"{w} review number {i}" + " and more" * (i % 4) for i, w in
             enumerate(["good", "bad", "fine", "great", "awful", "okay"] * 3)]
    labels = [i % 3 for i in range(len(texts))]
    ds = Dataset.from_dict({"text": texts, "label": labels})
    info = LabelInfo(list(LABELS), 3)
    metrics = evaluate_dataset(model, tok, task, ds, info, batch_size=4, examples=50)
    plain = evaluate_dataset(model, tok, task, ds, info, batch_size=4)
    assert "misclassified" not in plain and plain["accuracy"] == metrics["accuracy"]   # only when asked
    listed = metrics["misclassified"]
    # the same answers as classifying each text on its own
    probs = {r["text"]: {x["label"]: x["score"] for x in r["labels"]} for r in classify(model, tok, texts)}
    wrong = [i for i, t in enumerate(texts) if max(probs[t], key=probs[t].get) != LABELS[labels[i]]]
    assert wrong and sorted(r["row"] for r in listed) == wrong and len(wrong) == round((1 - metrics["accuracy"]) * len(texts))
    for r in listed:
        assert r["text"] == texts[r["row"]] and r["label"] == LABELS[labels[r["row"]]] != r["predicted"]
        assert abs(r["confidence"] - probs[r["text"]][r["predicted"]]) < 1e-4
        assert abs(r["label_score"] - probs[r["text"]][r["label"]]) < 1e-4
    assert [r["label_score"] for r in listed] == sorted(r["label_score"] for r in listed)   # worst first
    assert len(evaluate_dataset(model, tok, task, ds, info, batch_size=4, examples=2)["misclassified"]) == min(2, len(wrong))


def test_collated_batches_cover_every_row_once_in_length_order(models):
    from datasets import Dataset

    from engine.data import tokenize_dataset
    from engine.data.collators import collator_for
    from engine.inference import collated_batches
    _, tok = load_model(str(models["clf"]))
    texts = ["word " * n for n in (7, 1, 12, 3, 5)]
    tokenized = tokenize_dataset(Dataset.from_dict({"text": texts, "label": [0, 1, 2, 0, 1]}), tok,
                                 "text-classification", 64)
    out = list(collated_batches(tokenized, collator_for("text-classification", tok), "text-classification", 2))
    assert [rows for rows, _ in out] == [2, 2, 1]
    widths = [int(b["attention_mask"].sum(axis=1).max().item()) for _, b in out]
    assert widths == sorted(widths)                     # shortest rows first
    assert sorted(sum((b["labels"].tolist() for _, b in out), [])) == [0, 0, 1, 1, 2]


def test_search_is_the_top_of_the_score_matrix(models):
    from engine.inference import score_matrix, search
    model, tok = load_model(str(models["dense"]))
    queries = ["what is a light-year?", "who wrote it?"]
    corpus = ["a distance", "a time", "an author wrote it", "a distance", "light travels"]
    scores = score_matrix(model, tok, queries, corpus)
    q, d = encode(model, tok, queries), encode(model, tok, corpus)
    cos = (q @ d.T) / np.outer(np.linalg.norm(q, axis=1), np.linalg.norm(d, axis=1))
    assert scores.shape == (2, 5) and np.allclose(scores, cos, atol=1e-5)
    found = search(model, tok, queries, corpus, top_k=3)
    for row, hits in zip(scores, found):
        assert [h["index"] for h in hits] == list(np.argsort(-row, kind="stable")[:3])   # equal docs: corpus order
        assert [h["rank"] for h in hits] == [1, 2, 3] and hits[0]["text"] == corpus[hits[0]["index"]]


def test_late_interaction_search_scores_are_maxsim(models):
    import mlx.core as mx

    from engine.errors import UsageError
    from engine.inference import maxsim_map, search
    from engine.losses.scores import maxsim
    model, tok = load_model(str(models["colbert"]))
    corpus = ["A light-year is a distance.", "It is a time."]
    hits = search(model, tok, ["What is a light-year?"], corpus, top_k=2)[0]
    q = encode(model, tok, ["What is a light-year?"], is_query=True)[0]
    for hit in hits:
        d = encode(model, tok, [hit["text"]], is_query=False)[0]
        expected = maxsim(mx.array(q[None]), mx.array(d[None]), mx.ones((1, len(q))), mx.ones((1, len(d)))).item()
        assert abs(hit["score"] - expected) < 1e-3
        assert abs(maxsim_map(model, tok, "What is a light-year?", hit["text"])["total"] - expected) < 1e-3
    dense, dense_tok = load_model(str(models["dense"]))
    with pytest.raises(UsageError, match="late-interaction"):
        maxsim_map(dense, dense_tok, "a", "b")


def test_late_interaction_encode_in_lanes_equals_one_lane(models, monkeypatch):
    """ColBERT token vectors: each batch's rows split over two streams on the CPU give the one-lane numbers
    (to float rounding), and each text's matrix equals the text encoded alone."""
    model, tok = load_model(str(models["colbert"]))
    texts = ["A light-year is a distance.", "It is a time.", "Stars", "What is a parsec, and how far is it?",
             "Ten.", "The Sun is a star of the main sequence.", "Light"]
    runs = {}
    for lanes in ("1", "2"):
        monkeypatch.setenv("RACLATE_INFERENCE_LANES", lanes)
        runs[lanes] = encode(model, tok, texts, batch_size=3, is_query=False)   # 3, 3 and 1 rows
    for one, two, text in zip(runs["1"], runs["2"], texts):
        np.testing.assert_allclose(one, two, atol=1e-6, rtol=0)
        np.testing.assert_allclose(one, encode(model, tok, [text], is_query=False)[0], atol=2e-5)


def test_tag_text_gives_character_spans(models):
    from engine.inference import tag_text
    model, tok = load_model(str(models["ner"]), "token-classification")
    text = "Anna met Bob in Paris."
    result = tag_text(model, tok, text)
    assert result["words"] == ["Anna", "met", "Bob", "in", "Paris", "."]
    assert [text[s:e] for s, e in result["spans"]] == result["words"]
    for e in result["entities"]:
        assert text[e["char_start"]:e["char_end"]].replace(".", " .").split() == e["text"].split()


def test_corpus_from_rows_takes_distinct_documents():
    from engine.inference import corpus_from_rows
    rows = [{"q": "a?", "doc": "x", "neg": "y"}, {"q": "b?", "doc": " x ", "neg": "z"}, {"q": "c?", "doc": ""}]
    assert corpus_from_rows(rows, {"text": "q", "text_pair": "doc", "negative": "neg"}) == ["x", "y", "z"]
    assert corpus_from_rows(rows, {"text": "q"}, limit=2) == ["a?", "b?"]


def test_detailed_retrieval_matches_the_batched_evaluation(models):
    from engine.inference import evaluate_file, evaluate_retrieval, load_eval_data, load_for_task
    model, tok, task, _ = load_for_task(str(models["dense"]))
    ds, _, _ = load_eval_data(model, task, str(DEMO / "pairs.jsonl"), max_rows=24)
    detailed = evaluate_retrieval(model, tok, ds, worst=3, top=2)
    batched = evaluate_file(model, tok, task, str(DEMO / "pairs.jsonl"), max_rows=24)
    for name, value in batched["metrics"].items():
        assert abs(detailed["metrics"][name] - value) < 1e-5, name
    assert len(detailed["worst"]) <= 3 and all(len(w["retrieved"]) == 2 for w in detailed["worst"])
    ranks = [w["gold_rank"] for w in detailed["worst"]]
    assert ranks == sorted(ranks, reverse=True) and detailed["queries"] <= 24
