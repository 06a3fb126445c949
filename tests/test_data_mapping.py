"""Whole-word column guessing and mapping checks (engine/data/mapping.py)."""
import pytest

from engine.data import DataError, guess_columns
from engine.data.mapping import resolve_columns, split_words

SS, CLS, MLM, NER = "sentence-similarity", "text-classification", "masked-lm", "token-classification"

GUESSES = [
    # (columns, task, expected mapping)
    (["question", "answer"], SS, {"text": "question", "text_pair": "answer"}),
    (["query", "document"], SS, {"text": "query", "text_pair": "document"}),
    (["anchor", "positive", "negative"], SS, {"text": "anchor", "text_pair": "positive", "negative": "negative"}),
    (["anchor", "positive", "negative_1", "negative_2"], SS,
     {"text": "anchor", "text_pair": "positive", "negative_1": "negative_1", "negative_2": "negative_2"}),
    (["query", "passage", "hard_negative"], SS, {"text": "query", "text_pair": "passage", "negative": "hard_negative"}),
    (["sentence1", "sentence2", "score"], SS, {"text": "sentence1", "text_pair": "sentence2", "label": "score"}),
    (["sentence_1", "sentence_2", "label"], SS, {"text": "sentence_1", "text_pair": "sentence_2", "label": "label"}),
    (["queryText", "documentText"], SS, {"text": "queryText", "text_pair": "documentText"}),
    (["Question", "Answer"], SS, {"text": "Question", "text_pair": "Answer"}),
    (["question-text", "answer text"], SS, {"text": "question-text", "text_pair": "answer text"}),
    (["id", "title", "context", "question", "answers"], SS, {"text": "question"}),
    (["text", "label"], CLS, {"text": "text", "label": "label"}),
    (["sentence", "class"], CLS, {"text": "sentence", "label": "class"}),
    (["text", "label", "label_text"], CLS, {"text": "text", "label": "label"}),
    (["label_text", "label", "text"], CLS, {"text": "text", "label": "label"}),
    (["premise", "hypothesis", "label"], CLS, {"text": "premise", "text_pair": "hypothesis", "label": "label"}),
    (["text", "text_pair", "target"], CLS, {"text": "text", "text_pair": "text_pair", "label": "target"}),
    (["text", "label", "answer"], MLM, {"text": "text"}),
    (["tokens", "ner_tags"], NER, {"tokens": "tokens", "labels": "ner_tags"}),
    (["id", "words", "tags", "pos_tags"], NER, {"tokens": "words", "labels": "tags"}),
    (["tokens", "labels"], NER, {"tokens": "tokens", "labels": "labels"}),
    (["tokens", "ner_tags", "text"], CLS, {"text": "text"}),
    # never substring matches
    (["context", "label"], CLS, {"label": "label"}),
    (["subtext", "textual", "texts", "label"], CLS, {"label": "label"}),
    (["pretext", "labeled", "scores_raw"], CLS, {}),
    (["questionnaire", "answered"], SS, {}),
    (["negatives"], SS, {}),
]


@pytest.mark.parametrize("columns,task,expected", GUESSES)
def test_guess_columns_table(columns, task, expected):
    assert guess_columns(columns, task) == expected


def test_guess_uses_only_roles_of_the_task():
    assert "label" not in guess_columns(["text", "label"], MLM)
    assert "text" not in guess_columns(["text", "tokens", "tags"], NER)
    assert guess_columns(["anchor", "positive"], "sentence-transformers") == {"text": "anchor", "text_pair": "positive"}


def test_split_words():
    assert split_words("queryText") == ["query", "text"]
    assert split_words("hard_negative-2") == ["hard", "negative", "2"]
    assert split_words("HTMLBody") == ["html", "body"]
    assert split_words("sentence1") == ["sentence", "1"]
    assert split_words("ner tags") == ["ner", "tags"]


def test_resolve_completes_explicit_mapping_with_guesses():
    got = resolve_columns(["q", "answer", "label"], CLS, {"text": "q"})
    assert got == {"text": "q", "text_pair": "answer", "label": "label"}
    got = resolve_columns(["a", "b", "negative"], SS, {"text": "a", "text_pair": "b"})
    assert got == {"text": "a", "text_pair": "b", "negative": "negative"}


def test_resolve_explicit_column_wins_over_a_guess():
    # "text" would be guessed for text; the user put it on text_pair and chose "body" for text
    got = resolve_columns(["body", "text", "label"], CLS, {"text": "body", "text_pair": "text"})
    assert got == {"text": "body", "text_pair": "text", "label": "label"}


def test_resolve_rejects_role_of_another_task():
    with pytest.raises(DataError, match=r"Role 'tokens' is not used by the text-classification task.*"
                                        r"Fix: Map columns to these roles only: text, label, text_pair"):
        resolve_columns(["text", "label", "words"], CLS, {"tokens": "words"})


def test_resolve_ignore_means_unmapped():
    assert resolve_columns(["text", "label", "other"], CLS, {"text_pair": "ignore"}) == {"text": "text", "label": "label"}


def test_resolve_none_keeps_a_role_unmapped_against_the_guess():
    # the GUI sets a guessed column to "ignore": the engine must not bring it back
    cols = ["query", "document", "score"]
    assert resolve_columns(cols, SS, {"label": None}) == {"text": "query", "text_pair": "document"}
    assert resolve_columns(cols, SS, {"label": "ignore"}) == {"text": "query", "text_pair": "document"}
    got = resolve_columns(["a", "b", "negative_1", "negative_2"], SS, {"text": "a", "text_pair": "b", "negative": None})
    assert got == {"text": "a", "text_pair": "b"}
    with pytest.raises(DataError, match="No column for role"):
        resolve_columns(cols, SS, {"text_pair": None})
