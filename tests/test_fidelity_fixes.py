"""Fixes from the fidelity review (issue "Trust"): BERT token types for pairs, combinations whose output
transformers cannot load refused before training, the right auto class and vocabulary size in exported
folders, ColBERT query expansion equal to PyLate's, and the attention direction as a setting."""
import json

import numpy as np
import pytest

import mlx.core as mx
from engine import encode, load_model
from engine.cli import main
from engine.defaults import RESOURCES_DIR, default_model_dir
from engine.errors import ModelError, UsageError
from engine.models import family_specs
from engine.outputs.export import self_check
from tests.test_export import TEXTS, VOCAB, _export, tiny_checkpoint

pytestmark = pytest.mark.parity

PAIRS = [("What is the capital of France?", "Paris is the capital of France."),
         ("Hello, world!", "ok"), ("ok", "Fine-tuning adapts a pretrained model to one task; it's quick.")]
LABELS = ["negative", "neutral", "positive"]
DEMO_PAIRS = str(RESOURCES_DIR / "demo" / "pairs.jsonl")


# -- token types ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pair_classifier(tmp_path_factory):
    """A BERT pair classifier whose two token types differ a lot (so using type 0 for the pair shows)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification
    path = tmp_path_factory.mktemp("pairs")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=128, id2label=dict(enumerate(LABELS)))
    ref = BertForSequenceClassification(config).eval()
    with torch.no_grad():
        ref.bert.embeddings.token_type_embeddings.weight.mul_(20)
    ref.save_pretrained(path)
    AutoTokenizer.from_pretrained(str(default_model_dir())).save_pretrained(path)
    return path, ref


def test_pair_batches_carry_token_types_and_match_transformers(pair_classifier):
    """Training and evaluation batches of pairs hold the tokenizer's token types (padding 0), and the
    model's logits on them are transformers' on (text, text_pair)."""
    import datasets
    import torch
    from engine.data import tokenize_dataset
    from engine.data.collators import ClassificationCollator
    path, ref = pair_classifier
    model, tok = load_model(str(path), "text-classification")
    ds = datasets.Dataset.from_dict({"text": [a for a, _ in PAIRS], "text_pair": [b for _, b in PAIRS],
                                     "label": [0, 1, 2]})
    rows = tokenize_dataset(ds, tok, "text-classification", 64).to_list()
    batch = ClassificationCollator(tok)(rows)
    enc = tok([a for a, _ in PAIRS], [b for _, b in PAIRS], return_tensors="np", padding=True)
    width = enc["input_ids"].shape[1]
    types = np.array(batch["token_type_ids"])
    assert np.array_equal(types[:, :width], enc["token_type_ids"]) and not types[:, width:].any()
    ours = np.array(model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]))
    with torch.no_grad():
        theirs = ref(**{k: torch.tensor(np.array(batch[k]), dtype=torch.long)
                        for k in ("input_ids", "attention_mask", "token_type_ids")}).logits.numpy()
    assert np.abs(ours - theirs).max() <= 1e-5
    single = tokenize_dataset(ds.remove_columns("text_pair"), tok, "text-classification", 64)
    assert "token_type_ids" not in single.column_names   # single texts: every token is type 0 anyway


def test_classify_pairs_matches_cross_encoder(pair_classifier):
    from sentence_transformers import CrossEncoder
    from engine.inference import classify
    path, _ = pair_classifier
    model, tok = load_model(str(path), "text-classification")
    ours = classify(model, tok, PAIRS)
    theirs = CrossEncoder(str(path), device="cpu").predict(PAIRS, apply_softmax=True)
    for result, probs in zip(ours, theirs):
        scores = {item["label"]: item["score"] for item in result["labels"]}
        assert np.abs(np.array([scores[name] for name in LABELS]) - probs).max() <= 1e-5


def test_self_check_compares_pairs(pair_classifier, tmp_path):
    """A pair model's export check reads pairs: a folder whose type-1 embedding is wrong fails it, though
    every single text (all type 0) still gives the same logits."""
    from safetensors.numpy import load_file, save_file
    path, _ = pair_classifier
    model, tok = load_model(str(path), "text-classification")
    report = _export(model, tok, tmp_path, "transformers")
    assert report["compared"] == "logits (texts and pairs)"
    weights = load_file(str(tmp_path / "model.safetensors"))
    table = weights["bert.embeddings.token_type_embeddings.weight"]
    table[1] += np.linspace(-1, 1, table.shape[1], dtype=table.dtype)   # not a constant: LayerNorm would remove it
    save_file(weights, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    report = self_check(model, tok, tmp_path, "transformers", TEXTS)
    assert not report["ok"]


# -- refused before training ------------------------------------------------------------------------
def test_no_transformers_class_lists_what_transformers_lacks():
    import transformers
    for spec in family_specs().values():
        lacking = {task for task, name in spec.architectures.items() if task != "base"
                   and not hasattr(transformers, name)}
        assert set(spec.no_transformers_class) == lacking, spec.model_type
        for task in spec.auto_classes.values():
            assert hasattr(transformers, task)


def config_only(folder, model_type):
    """A folder with only config.json: what the run-config builder and the app read up front."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": model_type, "max_position_embeddings": 128}))
    return str(folder)


@pytest.mark.parametrize("model_type,task,works,others", [
    ("lfm2", "text-classification", "sentence-similarity or feature-extraction",
     "bert, modernbert, qwen3, gemma3_text, t5gemma"),
    ("lfm2", "token-classification", "sentence-similarity or feature-extraction", "bert, modernbert, qwen3, t5gemma"),
    ("gemma3_text", "token-classification",
     "sentence-similarity, feature-extraction, text-classification or masked-lm", "bert, modernbert, qwen3, t5gemma"),
])
def test_run_config_refuses_what_transformers_cannot_load(tmp_path, model_type, task, works, others):
    from engine.training.config import build_run_config
    model = config_only(tmp_path / model_type, model_type)
    name = family_specs()[model_type].name
    with pytest.raises(UsageError) as caught:
        build_run_config(model=model, task=task, data="nowhere.jsonl", output_dir=str(tmp_path / "out"))
    message = str(caught.value)
    assert message.startswith(f"{name} has no {task} class in transformers ")
    assert f"Train {name} for {works}, or pick a family that supports {task}: {others}." in message


def test_train_command_refuses_before_reading_data(tmp_path, capsys):
    model = config_only(tmp_path / "lfm2", "lfm2")
    out = tmp_path / "out"
    code = main(["train", "--model", model, "--task", "classification", "--data", str(tmp_path / "missing.jsonl"),
                 "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "LFM2 has no text-classification class" in err and "missing.jsonl" not in err
    assert not out.exists()


def test_train_run_refuses_a_model_the_config_builder_could_not_read(tmp_path):
    """A Hub model not yet on this machine passes the builder; the run refuses it once loaded, before
    any training or output folder."""
    from engine.data.args import DatasetArgs
    from engine.training.args import TrainingArgs
    from engine.training.config import RunConfig
    from engine.training.run import train_run
    base = tiny_checkpoint("lfm2", tmp_path / "base")
    data = tmp_path / "reviews.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": LABELS[i % 3]}) + "\n" for i, t in enumerate(TEXTS * 4)))
    out = tmp_path / "out"
    cfg = RunConfig(str(base), "text-classification", DatasetArgs(data=str(data), task_type="text-classification"),
                    TrainingArgs(output_dir=str(out), max_steps=1))
    with pytest.raises(UsageError, match="LFM2 has no text-classification class"):
        train_run(cfg)
    assert not out.exists()


def test_export_refuses_an_lfm2_classifier(tmp_path, capsys):
    base = tiny_checkpoint("lfm2", tmp_path / "base")
    model, tok = load_model(str(base), "text-classification", id2label=LABELS)
    model.save_pretrained(tmp_path / "clf")
    tok.save_pretrained(str(tmp_path / "clf"))
    assert main(["export", "--model", str(tmp_path / "clf"), "--to", str(tmp_path / "out")]) == 2
    assert "LFM2 has no text-classification class" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_readme_architecture_table_marks_the_refused_tasks():
    readme = (RESOURCES_DIR.parent / "README.md").read_text(encoding="utf-8")
    header = next(line for line in readme.splitlines() if line.startswith("| model_type | examples |"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    for spec in family_specs().values():
        row = next(line for line in readme.splitlines() if line.startswith(f"| `{spec.model_type}`"))
        cells = dict(zip(columns, (c.strip() for c in row.strip("|").split("|"))))
        for task, column in (("text-classification", "classification"),
                             ("token-classification", "token classification")):
            refused = task in spec.no_transformers_class
            assert cells[column].startswith("— no transformers class") == refused, (spec.model_type, task)


# -- exported folders that reload ---------------------------------------------------------------------
def test_gemma3_masked_lm_checks_with_the_causal_lm_class(tmp_path):
    base = tiny_checkpoint("gemma3", tmp_path / "base", use_bidirectional_attention=True)
    model, tok = load_model(str(base), "masked-lm")
    report = _export(model, tok, tmp_path / "out", "transformers")
    assert "AutoModelForCausalLM" in report["reference"] and report["max_abs_diff"] <= 1e-4


def test_t5gemma_late_interaction_folder_reloads(tmp_path):
    from pylate import models
    base = tiny_checkpoint("t5gemma", tmp_path / "base")
    model, tok = load_model(str(base), "sentence-similarity", use_late_interaction=True, late_interaction_dim=16)
    out = tmp_path / "out"
    _export(model, tok, out, "pylate")
    config = json.loads((out / "config.json").read_text())
    assert config["vocab_size"] == config["encoder"]["vocab_size"] == VOCAB + 2
    again, tok2 = load_model(str(out))
    colbert = models.ColBERT(str(out), device="cpu")
    for is_query in (True, False):
        for a, b in zip(encode(again, tok2, TEXTS, is_query=is_query), colbert.encode(TEXTS, is_query=is_query)):
            assert a.shape == b.shape and np.abs(a - b).max() <= 1e-4


# -- query expansion as PyLate -------------------------------------------------------------------------
def test_a_row_that_sees_no_key_is_what_transformers_gives_it():
    """A query row with no visible key (a [MASK] expansion row beyond a sliding band, which PyLate
    reads): zeros, as torch's SDPA (transformers' default attention); with a softcap (HF's eager
    attention, T5Gemma) the mean of all values, as eager's additive mask gives. Gradients stay finite."""
    import torch
    import torch.nn.functional as F
    from engine.models.attention import attention, make_mask
    rng = np.random.default_rng(0)
    q, k, v = (torch.tensor(rng.standard_normal((2, 4, 8, 16)).astype(np.float32)) for _ in range(3))
    padding = np.array([[1, 1, 1, 0, 0, 0, 0, 0], [1] * 8], np.int32)
    mask = make_mask(mx.array(padding), window=1, symmetric_window=True)   # rows 4.. of the first see nothing
    allowed = torch.tensor(np.array(mask))
    sdpa = F.scaled_dot_product_attention(q, k, v, scale=0.25, attn_mask=allowed)
    additive = torch.where(allowed, 0.0, torch.finfo(torch.float32).min)
    eager = torch.softmax(q @ k.transpose(-1, -2) * 0.25 + additive, dim=-1) @ v
    for softcap, theirs in ((None, sdpa), (1e6, eager)):   # a cap that never bites: the written-out path
        theirs = theirs.numpy().transpose(0, 2, 1, 3).reshape(2, 8, -1)
        ours = np.array(attention(*(mx.array(x.numpy()) for x in (q, k, v)), mask, scale=0.25, softcap=softcap))
        assert np.abs(ours - theirs).max() <= 1e-4
        assert softcap or not ours[0, 4:].any()
    for softcap in (None, 1e6):
        grad = mx.grad(lambda x: attention(x, mx.array(k.numpy()), mx.array(v.numpy()), mask, scale=0.25,
                                           softcap=softcap).sum())(mx.array(q.numpy()))
        assert bool(mx.all(mx.isfinite(grad)))


@pytest.mark.slow
@pytest.mark.parametrize("family,kw", [
    ("bert", {}),
    ("modernbert", {"local_attention": 8}),                  # sliding band of 4 each side
    ("gemma3", {"use_bidirectional_attention": True}),       # sliding band of 2 each side
])
def test_trained_late_interaction_queries_match_pylate(tmp_path, capsys, family, kw):
    """After a few steps at lr 1e-3 every query position, the [MASK] expansion included, is PyLate's."""
    from pylate import models
    base = tiny_checkpoint(family, tmp_path / "base", **kw)
    out = tmp_path / "out"
    code = main(["train", "--model", str(base), "--task", "sentence-similarity", "--data", DEMO_PAIRS,
                 "--max-rows", "32", "--late-interaction", "--late-interaction-dim", "16", "--max-steps", "3",
                 "--batch-size", "8", "--lr", "1e-3", "--output", str(out)])
    assert code == 0, capsys.readouterr().err
    colbert = models.ColBERT(str(out), device="cpu")
    model, tok = load_model(str(out))
    queries = ["What is a light-year?", "ok", "How do I boil an egg without cracking the shell?"]
    for a, b in zip(encode(model, tok, queries, is_query=True), colbert.encode(queries, is_query=True)):
        assert a.shape == b.shape == (32, 16) and np.abs(a - b).max() <= 1e-4


# -- the attention direction as a setting --------------------------------------------------------------
def test_masked_lm_error_names_the_setting(tmp_path):
    base = tiny_checkpoint("gemma3", tmp_path / "base")
    with pytest.raises(ModelError, match="--bidirectional.*Model & Task page"):
        load_model(str(base), "masked-lm")


def test_bidirectional_flags_reach_the_run_config(tmp_path):
    from engine.cli import build_parser
    from engine.commands.train import resolve_train_config
    gemma = config_only(tmp_path / "gemma", "gemma3_text")
    common = ["train", "--model", gemma, "--task", "mlm", "--data", "x.jsonl", "--output", str(tmp_path / "o")]
    for flags, value in (([], None), (["--bidirectional"], True), (["--no-bidirectional"], False)):
        assert resolve_train_config(build_parser().parse_args(common + flags)).training.bidirectional is value
    bert = config_only(tmp_path / "bert", "bert")
    with pytest.raises(UsageError, match="BERT has no switch.*gemma3_text"):
        resolve_train_config(build_parser().parse_args(common[:2] + [bert] + common[3:] + ["--no-bidirectional"]))


@pytest.mark.slow
def test_bidirectional_masked_lm_trains_exports_and_records_it(tmp_path, capsys):
    base = tiny_checkpoint("gemma3", tmp_path / "base")   # causal in its config.json
    data = tmp_path / "texts.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS * 8))
    out = tmp_path / "out"
    code = main(["train", "--model", str(base), "--task", "masked-lm", "--data", str(data), "--bidirectional",
                 "--max-steps", "2", "--batch-size", "8", "--output", str(out)])
    assert code == 0, capsys.readouterr().err
    assert json.loads((out / "config.json").read_text())["use_bidirectional_attention"] is True
    record = json.loads((out / "raclate_run.json").read_text())
    assert record["training"]["bidirectional"] is True
    assert record["export"]["ok"] and "AutoModelForCausalLM" in record["export"]["reference"]
    assert "AutoModelForCausalLM" in (out / "README.md").read_text()

