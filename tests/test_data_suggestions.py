"""Which tasks a file's columns fit, with the mapping and the reason (engine.data.mapping.suggest_tasks):
a plausible label is never left out for masked LM, and several fitting tasks are all offered."""
import pytest

from engine.data import guess_columns
from engine.data.mapping import suggest_tasks

CLS, SS, MLM, NER = "text-classification", "sentence-similarity", "masked-lm", "token-classification"
CATEGORIES = ("sports", "tech", "politics", "business")


def rows(n, **makers):
    return [{column: make(i) for column, make in makers.items()} for i in range(n)]


def tasks(columns, sample):
    return [(s.task, s.is_regression, s.mapping) for s in suggest_tasks(columns, sample)]


def test_a_rating_is_classes_or_a_score_never_masked_lm():
    sample = rows(200, review_text=lambda i: f"the food at place {i} was fine", rating=lambda i: i % 5 + 1)
    suggestions = suggest_tasks(["review_text", "rating"], sample)
    mapping = {"text": "review_text", "label": "rating"}
    assert [(s.task, s.is_regression, s.mapping) for s in suggestions] == [(CLS, False, mapping), (CLS, True, mapping)]
    assert suggestions[0].reason == "“rating” has 5 values (1–5): 5 classes"
    assert "number from 1 to 5" in suggestions[1].reason


def test_a_category_column_is_the_label_of_a_big_file():
    sample = rows(200, text=lambda i: f"news story {i} about this and that", category=lambda i: CATEGORIES[i % 4])
    [only] = suggest_tasks(["text", "category"], sample)
    assert (only.task, only.is_regression, only.mapping) == (CLS, False, {"text": "text", "label": "category"})
    assert "4 values" in only.reason and "sports" in only.reason


@pytest.mark.parametrize("name", ["label", "stars", "sentiment", "intent", "tag", "class", "product_category",
                                  "Rating"])
def test_columns_named_like_labels(name):
    sample = rows(30, body=lambda i: f"some words number {i}", **{name: lambda i: ["a", "b", "c"][i % 3]})
    assert tasks(["body", name], sample)[0] == (CLS, False, {"text": "body", "label": name})


def test_unnamed_few_values_or_numbers_are_labels_and_ids_are_not():
    sample = rows(40, id=lambda i: i, review=lambda i: f"review number {i} here", origin=lambda i: "ab"[i % 2])
    assert tasks(["id", "review", "origin"], sample)[0] == (CLS, False, {"text": "review", "label": "origin"})
    sample = rows(40, row=lambda i: i, text=lambda i: f"item {i} is nice", price=lambda i: 2.5 * i + 0.25)
    assert tasks(["row", "text", "price"], sample) == [(CLS, True, {"text": "text", "label": "price"})]


def test_whole_number_classes_named_as_classes_are_not_a_score():
    sample = rows(30, premise=lambda i: f"p {i} x", hypothesis=lambda i: f"h {i} y", label=lambda i: i % 3)
    pair = {"text": "premise", "text_pair": "hypothesis"}
    assert tasks(["premise", "hypothesis", "label"], sample) == [(CLS, False, {**pair, "label": "label"}),
                                                                 (SS, None, pair)]


def test_pairs_with_a_score_are_similarity_first():
    sample = rows(30, sentence1=lambda i: f"a {i} b", sentence2=lambda i: f"c {i} d", score=lambda i: i / 30)
    pair = {"text": "sentence1", "text_pair": "sentence2", "label": "score"}
    assert tasks(["sentence1", "sentence2", "score"], sample) == [(SS, None, pair), (CLS, True, pair)]


def test_pairs_alone_and_text_alone():
    sample = rows(30, question=lambda i: f"q {i}?", answer=lambda i: f"a {i}.", context=lambda i: f"ctx {i}")
    assert tasks(["question", "answer", "context"], sample) == [(SS, None, {"text": "question", "text_pair": "answer"})]
    [only] = suggest_tasks(["text"], rows(25, text=lambda i: f"some text {i} here"))
    assert only.task == MLM and only.mapping == {"text": "text"} and "nothing" in only.reason


def test_two_texts_not_named_as_a_pair_offer_both():
    sample = rows(30, title=lambda i: f"title {i} of a post", body=lambda i: f"the body {i} of the post is long")
    assert [t for t, _, _ in tasks(["title", "body"], sample)] == [SS, MLM]


def test_token_classification_and_multi_label_lists():
    sample = rows(5, tokens=lambda i: ["Anna", "met", "Bob"], ner_tags=lambda i: ["B-PER", "O", "B-PER"])
    assert tasks(["tokens", "ner_tags"], sample) == [(NER, None, {"tokens": "tokens", "labels": "ner_tags"})]
    sample = rows(30, text=lambda i: f"news {i} story", topics=lambda i: [["a"], ["b", "c"]][i % 2])
    [only] = suggest_tasks(["text", "topics"], sample)
    assert only.mapping == {"text": "text", "label": "topics"} and "several classes" in only.reason


def test_no_text_column_fits_nothing():
    assert suggest_tasks(["a", "b"], rows(30, a=lambda i: i, b=lambda i: i % 2)) == []


def test_class_words_are_guessed_for_classification_only():
    assert guess_columns(["text", "rating"], CLS) == {"text": "text", "label": "rating"}
    assert guess_columns(["text", "category"], CLS) == {"text": "text", "label": "category"}
    assert guess_columns(["query", "document", "category"], SS) == {"text": "query", "text_pair": "document"}
