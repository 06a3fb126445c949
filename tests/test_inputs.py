"""One input pipeline (engine/data/inputs.py): training, `raclate eval`, `raclate predict`, the export
self-check and sentence-transformers see the same texts: the model's named prompts, the user's
prompts (saved into config_sentence_transformers.json), the chat template and the max length."""
import json

import numpy as np
import pytest

import mlx.core as mx
from engine.cli import main
from engine.defaults import RESOURCES_DIR
from engine.errors import UsageError

DEMO = RESOURCES_DIR / "demo"
TEXTS = ["What is a light-year?", "  Simmering is gentler than boiling!  ", "ok"]
CHAT = "{% for m in messages %}[CLS] <{{ m['role'] }}> {{ m['content'] }} [SEP]{% endfor %}"


def split_pairs(root):
    """The demo pairs as a 64-row training file and a 32-row validation file."""
    lines = (DEMO / "pairs.jsonl").read_text().splitlines()
    (root / "train.jsonl").write_text("\n".join(lines[:64]) + "\n")
    (root / "val.jsonl").write_text("\n".join(lines[64:96]) + "\n")
    return root / "train.jsonl", root / "val.jsonl"


def run_json(capsys, *argv):
    assert main(list(map(str, argv))) == 0, capsys.readouterr().err
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def cosine(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two short runs of a tiny BERT on the demo pairs: one from a base whose
    config_sentence_transformers.json has prompts, one given prompts by flags."""
    from engine.models import load_model
    from engine.outputs.export import write_folder
    from tests.test_export import tiny_checkpoint
    root = tmp_path_factory.mktemp("inputs")
    base = tiny_checkpoint("bert", root / "base")
    model, tok = load_model(str(base), "sentence-similarity")
    model.info.prompts = {"query": "query: ", "document": "passage: "}
    write_folder(model, tok, root / "prompted", "sentence-transformers")
    data, val = split_pairs(root)
    for name, source, extra in (("model_prompts", root / "prompted", []),
                                ("user_prompts", base, ["--query-prompt", "q: ", "--document-prompt", "d: ",
                                                        "--prompt", "topic=Topic of: "])):
        code = main(["train", "--model", str(source), "--task", "sentence-similarity", "--data", str(data),
                     "--eval-data", str(val), "--output", str(root / name), "--max-steps", "2", "--batch-size", "8",
                     "--lr", "1e-3", *extra])
        assert code == 0
    return {"root": root, "val": val, "model_prompts": root / "model_prompts", "user_prompts": root / "user_prompts"}


# -- the rules, as sentence-transformers applies them -----------------------------------------------
def test_pick_prompt_follows_sentence_transformers():
    from types import SimpleNamespace

    from engine.data.inputs import pick_prompt, role_prompts
    info = SimpleNamespace(prompts={"query": "q: ", "passage": "p: ", "topic": "t: "}, default_prompt_name=None)
    assert pick_prompt(info, is_query=True) == "q: " and pick_prompt(info, is_query=False) == "p: "
    assert pick_prompt(info) == "" and pick_prompt(info, prompt_name="topic") == "t: "
    assert pick_prompt(info, is_query=True, prompt="x ") == "x "           # an explicit prompt wins
    assert role_prompts(info, "sentence-similarity") == {"text": "q: ", "text_pair": "p: ", "negative": "p: "}
    assert role_prompts(info, "text-classification") == {}
    info.default_prompt_name = "topic"                                      # what encode() uses when none is asked
    assert pick_prompt(info) == "t: " and pick_prompt(info, is_query=True) == "q: "
    with pytest.raises(UsageError, match="'nope' is not defined.*query, passage, topic"):
        pick_prompt(info, prompt_name="nope")


def test_prompts_are_refused_where_nothing_applies_them(tmp_path, capsys):
    args = ["train", "--model", "default", "--data", str(DEMO / "reviews.csv"), "--output", str(tmp_path / "o")]
    assert main(args + ["--task", "text-classification", "--query-prompt", "q: "]) == 2
    assert "Prompts are for embedding models" in capsys.readouterr().err
    assert main(args + ["--task", "sentence-similarity", "--late-interaction", "--prompt", "query=q: "]) == 2
    assert "late-interaction" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# -- the model's own prompts ------------------------------------------------------------------------
def test_eval_equals_the_trainers_own_evaluation(runs, capsys):
    from engine.inference import evaluate_retrieval, load_eval_data, load_for_task
    out = runs["model_prompts"]
    record = json.loads((out / "raclate_run.json").read_text())
    (result,) = run_json(capsys, "eval", "--model", out, "--data", runs["val"], "--batch-size", "8")
    assert result["rows"] == 32 and "ndcg@10" in result["metrics"]
    for name, value in result["metrics"].items():
        assert value == pytest.approx(record["metrics"][name], abs=1e-6), name
    model, tok, task, _ = load_for_task(str(out))           # the app's Evaluate page
    ds, _, _ = load_eval_data(model, task, str(runs["val"]))
    detailed = evaluate_retrieval(model, tok, ds)["metrics"]
    for name, value in result["metrics"].items():
        assert detailed[name] == pytest.approx(value, abs=1e-5), name


def test_predict_equals_sentence_transformers_with_prompts(runs, capsys, tmp_path):
    from sentence_transformers import SentenceTransformer
    out = runs["model_prompts"]
    st = SentenceTransformer(str(out), device="cpu")
    assert st.prompts == {"query": "query: ", "document": "passage: "}
    args = ["predict", "--model", out, *sum((["--text", t] for t in TEXTS), [])]
    for flags, theirs in (([], st.encode(TEXTS)), (["--query"], st.encode_query(TEXTS)),
                          (["--document"], st.encode_document(TEXTS)),
                          (["--prompt-name", "query"], st.encode(TEXTS, prompt_name="query"))):
        path = tmp_path / f"v{len(flags)}{flags[:1]}.npy"
        run_json(capsys, *args, *flags, "--output", path)
        assert cosine(np.load(path), theirs).min() >= 0.9999, flags
    plain, query = st.encode(TEXTS), st.encode_query(TEXTS)
    assert cosine(plain, query).min() < 0.9999                 # the prompt really changed the vectors
    record = json.loads((out / "raclate_run.json").read_text())
    assert record["export"]["ok"] and "queries" in record["export"]["compared"]


# -- the user's prompts -----------------------------------------------------------------------------
def test_user_prompts_land_in_the_folder_and_sentence_transformers_applies_them(runs, capsys):
    from sentence_transformers import SentenceTransformer

    from engine.inference import encode, load_for_task
    out = runs["user_prompts"]
    config = json.loads((out / "config_sentence_transformers.json").read_text())
    assert config["prompts"] == {"query": "q: ", "document": "d: ", "topic": "Topic of: "}
    record = json.loads((out / "raclate_run.json").read_text())
    assert (record["training"]["query_prompt"], record["training"]["prompts"]) == ("q: ", {"topic": "Topic of: "})
    st = SentenceTransformer(str(out), device="cpu")
    model, tok, _, _ = load_for_task(str(out))
    for name in ("query", "document", "topic"):
        theirs = st.encode(TEXTS, prompt_name=name)
        assert cosine(encode(model, tok, TEXTS, prompt=config["prompts"][name]), theirs).min() >= 0.9999, name
    (result,) = run_json(capsys, "eval", "--model", out, "--data", runs["val"], "--batch-size", "8")
    for name, value in result["metrics"].items():
        assert value == pytest.approx(record["metrics"][name], abs=1e-6), name


def test_trainer_reads_anchors_as_queries_and_the_rest_as_documents(runs):
    from datasets import Dataset

    from engine.data import tokenize_dataset
    from engine.data.inputs import role_prompts
    from engine.inference import load_for_task
    model, tok, task, _ = load_for_task(str(runs["user_prompts"]))
    ds = tokenize_dataset(Dataset.from_dict({"text": [" a cat "], "text_pair": ["an animal"]}), tok, task, 32,
                          prompts=role_prompts(model.info, task))
    assert ds[0]["text_input_ids"] == tok("q: a cat")["input_ids"]       # stripped, as sentence-transformers does
    assert ds[0]["text_pair_input_ids"] == tok("d: an animal")["input_ids"]


# -- chat templates ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def chat_run(tmp_path_factory):
    """A tiny BERT classifier trained with --use-chat-template (its tokenizer given a template)."""
    from transformers import AutoTokenizer

    from tests.test_export import tiny_checkpoint
    root = tmp_path_factory.mktemp("chat")
    base = tiny_checkpoint("bert", root / "base")
    tok = AutoTokenizer.from_pretrained(str(base))
    tok.chat_template = CHAT
    tok.save_pretrained(str(base))
    code = main(["train", "--model", str(base), "--task", "text-classification", "--data", str(DEMO / "reviews.csv"),
                 "--max-rows", "48", "--output", str(root / "out"), "--max-steps", "2", "--batch-size", "8",
                 "--lr", "1e-3", "--use-chat-template"])
    assert code == 0
    return root / "out"


def test_chat_template_classifier_predicts_as_the_trainer_evaluates(chat_run, capsys):
    from datasets import Dataset

    from engine.data.collators import collator_for
    from engine.inference import load_for_task
    from engine.training.args import TrainingArgs
    from engine.training.trainer import Trainer
    texts = ["Lovely food, kind staff.", "The plant arrived half dead."]
    record = json.loads((chat_run / "raclate_run.json").read_text())
    assert record["data"]["use_chat_template"] is True and record["export"]["ok"]
    # the trainer's data path: tokenized and collated as in training's evaluation
    model, tok, task, _ = load_for_task(str(chat_run))
    trainer = Trainer(model, tok, task, TrainingArgs(max_length=record["training"]["max_length"]),
                      Dataset.from_dict({"text": texts, "label": [0, 0]}), run_info={"use_chat_template": True})
    ds = trainer._tokenized(Dataset.from_dict({"text": texts, "label": [0, 0]}))
    assert tok.convert_ids_to_tokens(ds[0]["input_ids"])[:4] == ["[CLS]", "<", "user", ">"]
    batch = collator_for(task, tok)([ds[0], ds[1]])
    model.eval()
    logits = np.array(model(batch["input_ids"], batch["attention_mask"]).astype(mx.float32))
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    names = [model.info.config["id2label"][str(i)] for i in range(probs.shape[1])]
    args = ["predict", "--model", chat_run, *sum((["--text", t] for t in texts), [])]
    rows = run_json(capsys, *args)
    for row, expected in zip(rows, probs):
        got = {x["label"]: x["score"] for x in row["labels"]}
        assert np.abs(np.array([got[n] for n in names]) - expected).max() < 1e-5
    plain = run_json(capsys, *args, "--no-use-chat-template")    # the template really changes the logits
    assert max(abs(a["labels"][0]["score"] - b["labels"][0]["score"]) for a, b in zip(rows, plain)) > 1e-6


def test_chat_template_is_on_the_model_card(chat_run):
    card = (chat_run / "README.md").read_text()
    assert "## Inputs" in card and "chat template" in card and "apply_chat_template" in card


def test_eval_with_the_chat_template_equals_the_trainers_evaluation(chat_run, capsys, tmp_path):
    from engine.data import DatasetArgs, load_dataset
    from engine.inference import load_for_task
    from engine.training.args import TrainingArgs
    from engine.training.trainer import Trainer
    data = tmp_path / "few.csv"
    data.write_text("\n".join((DEMO / "reviews.csv").read_text().splitlines()[:25]) + "\n")
    (result,) = run_json(capsys, "eval", "--model", chat_run, "--data", data, "--batch-size", "8")
    model, tok, task, record = load_for_task(str(chat_run))
    loaded = load_dataset(DatasetArgs(data=str(data), task_type=task, validation_split=0.0))
    assert loaded.label_info.names == [model.info.config["id2label"][str(i)] for i in range(3)]
    trainer = Trainer(model, tok, task, TrainingArgs(batch_size=8, max_length=record["training"]["max_length"]),
                      loaded.train, loaded.train, label_info=loaded.label_info, run_info={"use_chat_template": True})
    expected = trainer.evaluate()
    for name in ("accuracy", "macro_f1"):
        assert result["metrics"][name] == pytest.approx(expected[name], abs=1e-9), name
