"""The headless demo end to end: `python -m engine.demo --quick --output DIR` fine-tunes the embedded
model, prints the held-out metrics before and after, and leaves models the libraries load as is; and
its retrieval data leaves the base model room to improve (README: the demo's numbers)."""
import json
import re
import subprocess
import sys

import pytest

from engine.defaults import RESOURCES_DIR

COMMANDS = RESOURCES_DIR / "demo" / "commands"


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_retrieval_demo_data_is_held_out_and_hard_for_the_base_model():
    """The old demo pairs were so easy that the base model already ranked 98% of them first, and
    fine-tuning could only lose. The held-out questions are about other commands than the training
    pairs, and the base model ranks the right description first for few of them."""
    from datasets import Dataset

    from engine.inference.evaluation import evaluate_retrieval
    from engine.models import load_model
    train, held_out = read_jsonl(COMMANDS / "train.jsonl"), read_jsonl(COMMANDS / "validation.jsonl")
    assert len(train) >= 300 and len(held_out) == 100
    assert not {r["document"] for r in train} & {r["document"] for r in held_out}
    assert not {r["query"] for r in train} & {r["query"] for r in held_out}
    model, tokenizer = load_model("default", task="sentence-similarity")
    ds = Dataset.from_dict({"text": [r["query"] for r in held_out], "text_pair": [r["document"] for r in held_out]})
    metrics = evaluate_retrieval(model, tokenizer, ds)["metrics"]
    assert 0.15 < metrics["recall@1"] < 0.6 and metrics["ndcg@10"] < 0.7, metrics


@pytest.mark.slow
def test_demo_quick_prints_before_after_and_saves_loadable_models(tmp_path):
    from sentence_transformers import SentenceTransformer
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "engine.demo", "--quick", "--output", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout
    assert re.search(r"metric\s+before\s+after\s+change\s+\(before: the base model, after: fine-tuned\)", text), text
    assert "100 held-out questions about other commands" in text
    for metric in ("ndcg@10", "mrr@10", "recall@1", "recall@10", "accuracy"):
        row = re.search(rf"^\s+{re.escape(metric)}\s+(\d\.\d{{4}})\s+(\d\.\d{{4}})\s+([+-]\d\.\d{{4}})\s*$", text, re.M)
        assert row, f"no before/after row for {metric}:\n{text}"
        before, after, change = map(float, row.groups())
        assert abs(after - before - change) < 2e-4
    # The retrieval model loads in sentence-transformers.
    folder = out / "retrieval"
    st = SentenceTransformer(str(folder), device="cpu")
    vectors = st.encode(["Comment lister les fichiers d'un dossier ?", "ls — list directory contents"])
    assert vectors.shape == (2, 384)
    assert (folder / "README.md").exists() and (folder / "raclate_run.json").exists()
    # The classification model loads in transformers.
    from transformers import AutoModelForSequenceClassification
    model = AutoModelForSequenceClassification.from_pretrained(str(out / "classification"))
    assert set(model.config.id2label.values()) == {"negative", "neutral", "positive"}
