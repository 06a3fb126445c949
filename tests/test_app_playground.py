"""Playground: an answer for every task — class probabilities as bars, a number for regression,
ranked search results (scores as the engine computes them; corpora past the old 2,000 cap encoded
once with progress and searched again without encoding), fill-mask tokens, entities tagged
inline — and the MaxSim heatmap of a late-interaction model, whose per-row maxima are the engine's
MaxSim contributions and whose sum is its MaxSim score."""
from __future__ import annotations

import numpy as np
import pytest

from tests.app_fixtures import app_models, open_run_page  # noqa: F401
from tests.test_app_support import app_settings, project, screenshots, shot  # noqa: F401

pytestmark = pytest.mark.gui


@pytest.fixture
def page(qtbot, project, app_models):
    from raclate_app.pages.playground import PlaygroundPage
    page = open_run_page(qtbot, project, app_models, PlaygroundPage, 820)
    yield page
    page.shutdown()


def load(qtbot, page, path):
    page.select_model(str(path))
    qtbot.waitUntil(lambda: page.loaded is not None and page.loaded_choice.path == str(path), timeout=60_000)
    return page.loaded


def answer(qtbot, page, button, timeout=60_000) -> dict:
    with qtbot.waitSignal(page.answered, timeout=timeout) as blocker:
        button.click()
    return blocker.args[0]


def test_classify_shows_probabilities_as_bars(qtbot, page, app_models, screenshots):
    load(qtbot, page, app_models["classification"])
    assert page.stack.currentIndex() == 0
    page.cls_text.setPlainText("the food was great today")
    result = answer(qtbot, page, page.cls_button)
    labels = result["labels"]
    assert sorted(x["label"] for x in labels) == ["neg", "neu", "pos"]
    assert abs(sum(x["score"] for x in labels) - 1) < 1e-5 and labels[0]["score"] >= labels[-1]["score"]
    bars = page.cls_bars
    assert [name for name, _ in bars.items] == [x["label"] for x in labels] and len(bars.bars) == 3
    assert bars.bars[0].value() == round(labels[0]["score"] * 1000)
    shot(page, screenshots, "playground_classify")


def test_regression_shows_the_predicted_value(qtbot, page, app_models):
    load(qtbot, page, app_models["regression"])
    page.cls_text.setPlainText("the music and the room")
    result = answer(qtbot, page, page.cls_button)
    assert isinstance(result["score"], float) and f"{result['score']:.4f}" in page.cls_value.text()


def test_search_ranks_the_corpus_by_the_engines_cosine(qtbot, page, app_models, screenshots):
    loaded = load(qtbot, page, app_models["sentence-similarity"])
    assert page.stack.currentIndex() == 1 and not page.heat_scroll.isVisible()
    page.corpus_button.click()                                       # documents from the run's data
    qtbot.waitUntil(lambda: bool(page.documents()), timeout=30_000)
    docs = page.documents()
    assert len(docs) == 40 and docs[0].startswith("the ")
    page.query.setText("what is the good film?")
    result = answer(qtbot, page, page.search_button)
    from engine.inference import encode
    q = encode(loaded.model, loaded.tokenizer, ["what is the good film?"])[0]
    d = encode(loaded.model, loaded.tokenizer, docs)
    cos = (d @ q) / (np.linalg.norm(d, axis=1) * np.linalg.norm(q))
    top = [r["index"] for r in result["results"]]
    assert top == list(np.argsort(-cos, kind="stable")[:20])
    assert np.allclose([r["score"] for r in result["results"]], cos[top], atol=1e-5)
    assert page.hits.rowCount() == 20 and page.hits.item(0, 2).text() == docs[top[0]]
    shot(page, screenshots, "playground_search")


def test_late_interaction_maxsim_heatmap_matches_the_engine(qtbot, page, app_models, screenshots):
    import mlx.core as mx

    from engine.inference import encode
    from engine.losses.scores import maxsim
    loaded = load(qtbot, page, app_models["late-interaction"])
    assert page.heat_scroll.isVisible()
    docs = ["the great film answer is 3", "the food was awful", "staff and room and price"]
    page.corpus.setPlainText("\n".join(docs))
    page.query.setText("what is the great film?")
    results = []
    page.answered.connect(results.append)
    page.search_button.click()
    qtbot.waitUntil(lambda: any("row_max" in r for r in results), timeout=60_000)   # search, then row 0's map
    search, heat = results[0], next(r for r in results if "row_max" in r)
    best_doc = search["results"][0]["text"]
    q = encode(loaded.model, loaded.tokenizer, ["what is the great film?"], is_query=True)[0]   # (Tq, D)
    d = encode(loaded.model, loaded.tokenizer, [best_doc], is_query=False)[0]                   # (Td, D)
    contributions = (q @ d.T).max(axis=1)                       # each query token's best document token
    total = maxsim(mx.array(q[None]), mx.array(d[None]), mx.ones((1, len(q))), mx.ones((1, len(d)))).item()
    shown = page.heatmap
    assert shown.sim.shape == (len(q), len(d)) == (len(shown.q_tokens), len(shown.d_tokens))
    assert np.allclose(shown.sim.max(axis=1), contributions, atol=1e-5)
    assert np.allclose(shown.row_max, contributions, atol=1e-5) and list(shown.best) == list((q @ d.T).argmax(1))
    assert abs(shown.total - total) < 1e-3 and abs(search["results"][0]["score"] - total) < 1e-3
    assert shown.q_tokens[:2] == ["[CLS]", "[Q]"] and shown.d_tokens[:2] == ["[CLS]", "[D]"]
    shot(page, screenshots, "playground_maxsim")
    page.hits.selectRow(2)                                       # another result, another map
    qtbot.waitUntil(lambda: shown.d_tokens and page.last["results"][2]["text"].split()[0] in shown.d_tokens,
                    timeout=30_000)


def test_fill_mask_lists_the_top_tokens(qtbot, page, app_models, screenshots):
    load(qtbot, page, app_models["masked-lm"])
    assert page.stack.currentIndex() == 2
    page.fill_text.setText("the food was very [MASK] and the staff too")
    result = answer(qtbot, page, page.fill_button)
    (options,) = result["masks"]
    assert len(options) == 10 and options[0]["score"] >= options[-1]["score"]
    assert "[MASK]" not in options[0]["sequence"]
    shot(page, screenshots, "playground_fill_mask")
    page.fill_text.setText("no mask here")
    page.fill_button.click()
    qtbot.waitUntil(lambda: "No mask" in page.state.text(), timeout=30_000)


def test_tag_marks_entities_inline(qtbot, page, app_models, screenshots, monkeypatch):
    loaded = load(qtbot, page, app_models["token-classification"])
    assert page.stack.currentIndex() == 3
    text = "Anna met Bob in Paris."
    page.tag_text.setPlainText(text)
    result = answer(qtbot, page, page.tag_button)
    assert result["words"] == ["Anna", "met", "Bob", "in", "Paris", "."] and len(result["tags"]) == 6
    for e in result["entities"]:
        assert text[e["char_start"]:e["char_end"]] == e["text"].replace(" .", ".")
    # colours: a fixed answer, so the inline rendering is checked whatever the random head says
    from raclate_app import playground
    fixed = {**result, "tags": ["B-PER", "O", "B-PER", "O", "B-LOC", "O"],
             "entities": [{"type": "PER", "start": 0, "end": 1, "text": "Anna", "score": 0.9, "char_start": 0,
                           "char_end": 4},
                          {"type": "LOC", "start": 4, "end": 5, "text": "Paris", "score": 0.8, "char_start": 16,
                           "char_end": 21}]}
    monkeypatch.setattr(playground, "tag", lambda *_a, **_k: fixed)
    answer(qtbot, page, page.tag_button)
    html = page.tag_view.toHtml()
    assert "Anna" in html and "PER" in html and "LOC" in html and html.count("background-color") >= 4
    shot(page, screenshots, "playground_tag")


def test_a_long_search_shows_progress_and_cancels(qtbot, page, app_models):
    load(qtbot, page, app_models["sentence-similarity"])
    page.corpus.setPlainText("\n".join(f"document number {i} about the {i % 7} film" for i in range(2000)))
    page.query.setText("a film")
    page.search_button.click()
    assert page.busy.isVisible() and page.cancel_button.isVisible()
    page.cancel_button.click()
    qtbot.waitUntil(lambda: not page.worker.is_busy("ask"), timeout=60_000)
    assert "Cancelled" in page.state.text() and not page.busy.isVisible() and page.hits.rowCount() == 0
    page.corpus.setPlainText("one film\nanother text")                  # and it still answers afterwards
    with qtbot.waitSignal(page.answered, timeout=60_000):
        page.search_button.click()
    assert page.hits.rowCount() == 2 and not page.cancel_button.isVisible()


def test_a_large_corpus_is_encoded_once_with_progress_then_searched_from_its_index(qtbot, page, app_models,
                                                                                  screenshots, monkeypatch):
    from engine.inference import encode
    loaded = load(qtbot, page, app_models["sentence-similarity"])
    docs = [f"document {i} about the {['film', 'food', 'staff', 'room', 'price'][i % 5]} number {i % 97}"
            for i in range(3000)]                                   # past the old cap of 2,000
    page.corpus.setPlainText("\n".join(docs))
    qtbot.waitUntil(lambda: page.corpus_count.text() == "3,000 documents", timeout=5_000)
    page.query.setText("the price")
    progress = []
    with qtbot.waitSignal(page.answered, timeout=120_000) as blocker:
        page.search_button.click()
        page.relay.progressed.connect(lambda done, total, text: progress.append((done, total, text)))
        qtbot.waitUntil(lambda: page.busy.value() > 0, timeout=60_000)
        shot(page, screenshots, "playground_search_encoding")      # the bar counts the documents
        assert "Encoding documents" in page.busy.format() and page.cancel_button.isVisible()
    result = blocker.args[0]
    assert result["corpus"] == 3000 and page.index is result["index"] and len(page.index) == 3000
    assert progress and progress[-1] == (3000, 3000, "Encoding documents")
    q = encode(loaded.model, loaded.tokenizer, ["the price"])[0]
    d = encode(loaded.model, loaded.tokenizer, docs)
    cos = (d @ q) / (np.linalg.norm(d, axis=1) * np.linalg.norm(q))
    assert [r["index"] for r in result["results"]] == list(np.argsort(-cos, kind="stable")[:20])
    assert "searched 3,000 documents" in page.state.text()
    shot(page, screenshots, "playground_search_large")
    # a new query searches the kept vectors: no encoding of the corpus
    from engine import inference
    builds = []
    build = inference.build_index
    monkeypatch.setattr(inference, "build_index", lambda *a, **k: builds.append(1) or build(*a, **k))
    index = page.index
    page.query.setText("a film")
    with qtbot.waitSignal(page.answered, timeout=60_000) as blocker:
        page.search_button.click()
    assert page.index is index and not builds and blocker.args[0]["results"][0]["text"] in docs
    # another corpus is encoded again
    page.corpus.setPlainText("one film\nanother text")
    with qtbot.waitSignal(page.answered, timeout=60_000):
        page.search_button.click()
    assert page.index is not index and len(page.index) == 2 and builds == [1]
