"""`raclate train` writes folders the task's library loads as is: SentenceTransformer("out") after a
short run of the embedded model, PyLate's ColBERT after a late-interaction run, with the model card
and the self-check recorded in raclate_run.json."""
import json

import numpy as np
import pytest

from engine import encode, load_model
from engine.cli import main
from engine.defaults import RESOURCES_DIR

PAIRS = str(RESOURCES_DIR / "demo" / "pairs.jsonl")


@pytest.mark.slow
def test_train_default_then_sentence_transformers_loads_it(tmp_path, monkeypatch, capsys):
    from sentence_transformers import SentenceTransformer
    monkeypatch.chdir(tmp_path)
    code = main(["train", "--model", "default", "--task", "sentence-similarity", "--data", PAIRS,
                 "--output", "out", "--max-steps", "2", "--batch-size", "16", "--max-rows", "96"])
    assert code == 0, capsys.readouterr().err
    st = SentenceTransformer("out", device="cpu")
    texts = ["What is a light-year?", "How do I boil an egg?"]
    model, tok = load_model("out")
    ours, theirs = encode(model, tok, texts), st.encode(texts)
    assert (ours * theirs).sum(-1).min() >= 0.9999  # both normalised
    record = json.loads((tmp_path / "out" / "raclate_run.json").read_text())
    assert record["status"] == "finished" and record["export"]["ok"]
    assert record["export"]["reference"].startswith("sentence-transformers") and record["export"]["pooling"] == "mean"
    card = (tmp_path / "out" / "README.md").read_text()
    assert "base_model: sentence-transformers/all-MiniLM-L6-v2" in card
    assert "## Metrics" in card and "ndcg@10" in card and "## Export check" in card and "pairs.jsonl" in card


@pytest.mark.parity
def test_train_late_interaction_then_pylate_loads_it(tmp_path, capsys):
    from pylate import models
    from tests.test_export import tiny_checkpoint
    base = tiny_checkpoint("bert", tmp_path / "base")
    out = tmp_path / "colbert"
    code = main(["train", "--model", str(base), "--task", "sentence-similarity", "--data", PAIRS, "--max-rows", "48",
                 "--late-interaction", "--late-interaction-dim", "16", "--max-steps", "2", "--batch-size", "8",
                 "--output", str(out)])
    assert code == 0, capsys.readouterr().err
    record = json.loads((out / "raclate_run.json").read_text())
    assert record["export"]["ok"] and record["export"]["reference"].startswith("pylate")
    assert "ndcg@10" in record["metrics"]
    colbert = models.ColBERT(str(out), device="cpu")
    model, tok = load_model(str(out))
    assert model.info.colbert["query_length"] == 32
    docs = ["A light-year is a distance.", "Simmering is gentler than boiling!"]
    for a, b in zip(encode(model, tok, docs, is_query=False), colbert.encode(docs, is_query=False)):
        assert a.shape == b.shape and np.abs(a - b).max() < 1e-4
    assert "library_name: PyLate" in (out / "README.md").read_text()
