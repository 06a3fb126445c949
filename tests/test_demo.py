"""The headless demo end to end: `python -m engine.demo --quick --output DIR` fine-tunes the embedded
model, prints the held-out metrics before and after, and leaves models the libraries load as is."""
import re
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_quick_prints_before_after_and_saves_loadable_models(tmp_path):
    from sentence_transformers import SentenceTransformer
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "engine.demo", "--quick", "--output", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout
    assert re.search(r"metric\s+before\s+after\s+change", text), text
    for metric in ("ndcg@10", "mrr@10", "recall@1"):
        row = re.search(rf"^\s+{re.escape(metric)}\s+(\d\.\d{{4}})\s+(\d\.\d{{4}})\s+([+-]\d\.\d{{4}})\s*$", text, re.M)
        assert row, f"no before/after row for {metric}:\n{text}"
        before, after, change = map(float, row.groups())
        assert abs(after - before - change) < 2e-4
    # The retrieval model (the output itself, or its retrieval/ job folder) loads in sentence-transformers.
    folder = next(p.parent for p in sorted(out.rglob("modules.json")) if "checkpoints" not in p.parts)
    st = SentenceTransformer(str(folder), device="cpu")
    vectors = st.encode(["What is a light-year?", "How far light travels in a year."])
    assert vectors.shape == (2, 384)
    assert (folder / "README.md").exists() and (folder / "raclate_run.json").exists()
    # A classification job, when the demo runs one, loads in transformers.
    clf = out / "classification"
    if clf.exists():
        from transformers import AutoModelForSequenceClassification
        model = AutoModelForSequenceClassification.from_pretrained(str(clf))
        assert set(model.config.id2label.values()) == {"negative", "neutral", "positive"}
