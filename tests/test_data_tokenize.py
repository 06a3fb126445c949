"""Tokenization once per dataset, render, chat templates and word-label alignment (engine/data/tokenize.py)."""
import json

import datasets
import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast, RobertaTokenizerFast

from engine.data import DataError, DatasetArgs, load_dataset, prepare_tokenizer, render, tokenize_dataset
from engine.data.tokenize import align_labels, needs_prefix_space
from engine.defaults import default_model_dir

datasets.disable_progress_bars()
SENTENCES = ["The quick brown fox jumps over the lazy dog", "Tokenization of unbelievably long words is hard",
             "New York is a big city in America", "Peter Blackburn lives in Brussels"] * 20
NER_ROWS = [{"tokens": ["Peter", "Blackburn", "unbelievably", "visited", "Brussels"],
             "ner_tags": ["B-PER", "I-PER", "O", "O", "B-LOC"]},
            {"tokens": ["Tokenization", "in", "New", "York"], "ner_tags": ["O", "O", "B-LOC", "I-LOC"]}]


@pytest.fixture(scope="module")
def bert():
    return AutoTokenizer.from_pretrained(str(default_model_dir()))


def byte_level_bpe(cls):
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(SENTENCES, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tk.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    return cls(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
               mask_token="<mask>", cls_token="<s>", sep_token="</s>")


def ner_dataset(tmp_path):
    path = tmp_path / "ner.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in NER_ROWS * 3))
    return load_dataset(DatasetArgs(data=str(path), task_type="token-classification", validation_split=0),
                        cache_dir=str(tmp_path / "cache"))


def test_align_labels_first_subtoken_and_all():
    word_ids = [None, 0, 0, 1, 2, 2, 2, None]
    assert align_labels(word_ids, [5, 6, 7]) == [-100, 5, -100, 6, 7, -100, -100, -100]
    assert align_labels(word_ids, [5, 6, 7], label_all_tokens=True) == [-100, 5, 5, 6, 7, 7, 7, -100]


def test_ner_alignment_with_wordpiece(tmp_path, bert):
    data = ner_dataset(tmp_path)
    names = data.label_info.names
    ds = tokenize_dataset(data.train, bert, data.task, 64)
    row = ds[0]
    pieces = bert.convert_ids_to_tokens(row["input_ids"])
    assert pieces[:6] == ["[CLS]", "peter", "blackburn", "un", "##bel", "##ie"]   # a word split in 4+ pieces
    labelled = [(p, names[l]) for p, l in zip(pieces, row["label_ids"]) if l != -100]
    assert labelled == [("peter", "B-PER"), ("blackburn", "I-PER"), ("un", "O"), ("visited", "O"), ("brussels", "B-LOC")]
    assert row["word_ids"][0] == -1 and row["label_ids"][0] == -100 and row["label_ids"][-1] == -100
    assert len(row["label_ids"]) == len(row["input_ids"])
    # row 1: "Tokenization" → token ##ization: only the first piece labelled
    row = ds[1]
    pieces = bert.convert_ids_to_tokens(row["input_ids"])
    assert pieces[1:3] == ["token", "##ization"] and row["label_ids"][1:3] == [names.index("O"), -100]


@pytest.mark.parametrize("cls", [RobertaTokenizerFast, PreTrainedTokenizerFast])
def test_ner_alignment_with_byte_level_bpe_sets_add_prefix_space(tmp_path, cls):
    tok = byte_level_bpe(cls)
    assert needs_prefix_space(tok)
    fixed = prepare_tokenizer(tok, "token-classification")
    assert not needs_prefix_space(fixed) and needs_prefix_space(tok)          # the original is left alone
    assert prepare_tokenizer(tok, "text-classification") is tok
    # a pre-split word gets the same pieces as inside running text
    inside = tok("Peter visited Brussels", add_special_tokens=False)["input_ids"]
    split = fixed(["Peter", "visited", "Brussels"], is_split_into_words=True, add_special_tokens=False)["input_ids"]
    assert split[-len(tok(" Brussels", add_special_tokens=False)["input_ids"]):] == inside[-len(
        tok(" Brussels", add_special_tokens=False)["input_ids"]):]
    data = ner_dataset(tmp_path)
    names = data.label_info.names
    ds = tokenize_dataset(data.train, tok, data.task, 64)   # prepares the tokenizer itself
    for row, source in zip(ds, NER_ROWS):
        firsts = [i for i, l in enumerate(row["label_ids"]) if l != -100]
        assert [names[row["label_ids"][i]] for i in firsts] == source["ner_tags"]
        assert [row["word_ids"][i] for i in firsts] == list(range(len(source["tokens"])))
        assert any(row["word_ids"].count(w) > 1 for w in set(row["word_ids"]) if w >= 0)   # multi-piece words exist
        pieces = fixed.convert_ids_to_tokens(row["input_ids"])
        assert all(pieces[i].startswith("Ġ") for i in firsts)


def test_tokenize_columns_per_task(tmp_path, bert):
    rows = {"text": ["a cat", "a dog"], "text_pair": ["an animal", "a pet"], "negative": ["a car", "a tree"]}
    ds = tokenize_dataset(datasets.Dataset.from_dict(rows), bert, "sentence-similarity", 16)
    assert ds.column_names == ["text", "text_pair", "negative", "text_input_ids", "text_pair_input_ids",
                               "negative_input_ids"]
    assert ds[0]["text_input_ids"] == [101, 1037, 4937, 102]
    pair = datasets.Dataset.from_dict({"text": ["a cat"], "text_pair": ["an animal"], "label": [1]})
    ds = tokenize_dataset(pair, bert, "text-classification", 16)
    assert bert.convert_ids_to_tokens(ds[0]["input_ids"]) == ["[CLS]", "a", "cat", "[SEP]", "an", "animal", "[SEP]"]
    ds = tokenize_dataset(datasets.Dataset.from_dict({"text": ["word " * 50]}), bert, "masked-lm", 16)
    assert len(ds[0]["input_ids"]) == 16 and ds[0]["input_ids"][-1] == 102   # truncated, [SEP] kept


def test_tokenize_is_cached_for_file_backed_data(tmp_path, bert):
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps({"text": f"row {i}", "label": i % 2}) + "\n" for i in range(20)))
    data = load_dataset(DatasetArgs(data=str(path), task_type="text-classification", validation_split=0),
                        cache_dir=str(tmp_path / "cache"))
    first = tokenize_dataset(data.train, bert, data.task, 32)
    again = tokenize_dataset(data.train, bert, data.task, 32)
    assert first.cache_files and first.cache_files == again.cache_files
    assert tokenize_dataset(data.train, bert, data.task, 8).cache_files != first.cache_files


def test_render_shows_prompts_special_tokens_and_truncation(bert):
    row = {"text": "what is a cat", "text_pair": "a small animal that purrs a lot"}
    out = render(row, bert, "sentence-similarity", 6, prompts={"text": "query: ", "text_pair": "passage: "})
    query, doc = out["inputs"]
    assert query["role"] == "text" and query["text"] == "[CLS] query : what is [SEP]"
    assert query["tokens"] == ["[CLS]", "query", ":", "what", "is", "[SEP]"] and query["truncated"]
    assert doc["text"].startswith("[CLS] passage :") and doc["num_tokens"] == 6
    out = render({"tokens": ["Peter", "unbelievably"], "labels": [3, 1]}, bert, "token-classification")
    pieces = out["inputs"][0]["tokens"]
    assert pieces[:3] == ["[CLS]", "peter", "un"] and len(pieces) > 5      # "unbelievably" is several pieces
    assert out["labels"] == [-100, 3, 1] + [-100] * (len(pieces) - 3)


def test_chat_template_through_the_tokenizer(bert):
    with pytest.raises(DataError, match="has no chat template.*Fix: Turn off use_chat_template"):
        render({"text": "hello"}, bert, "masked-lm", use_chat_template=True)
    chat = AutoTokenizer.from_pretrained(str(default_model_dir()))
    chat.chat_template = "{% for m in messages %}[CLS] <{{ m['role'] }}> {{ m['content'] }} [SEP]{% endfor %}"
    out = render({"text": "hello"}, chat, "sentence-similarity", 32, use_chat_template=True)
    # the template writes the special tokens; the tokenizer adds none of its own
    assert out["inputs"][0]["tokens"] == ["[CLS]", "<", "user", ">", "hello", "[SEP]"]
    ds = tokenize_dataset(datasets.Dataset.from_dict({"text": ["hello"], "label": [0]}), chat, "text-classification",
                          32, use_chat_template=True)
    assert chat.convert_ids_to_tokens(ds[0]["input_ids"]) == ["[CLS]", "<", "user", ">", "hello", "[SEP]"]


def test_tokenizing_twice_keeps_one_set_of_id_columns(bert):
    rows = {"text": ["a"], "text_pair": ["b"], "negative_1": ["c"], "negative_2": ["d"]}
    once = tokenize_dataset(datasets.Dataset.from_dict(rows), bert, "sentence-similarity", 8)
    twice = tokenize_dataset(once, bert, "sentence-similarity", 4)
    assert twice.column_names == once.column_names and len(twice.column_names) == 8
