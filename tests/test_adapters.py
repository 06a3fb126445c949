"""LoRA / DoRA adapters (engine/models/adapters.py): only adapters and the head train, merged = unmerged,
the PEFT folder reloads in peft with the merged model's outputs, resume is exact, and a full-rank LoRA
learns a tiny task like full fine-tuning."""
import json

import numpy as np
import pytest

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from engine.cli import main
from engine.errors import UsageError
from engine.models.adapters import LoRALinear, adapter_layers, apply_adapters, matches, merge_adapters
from engine.models.peft_format import save_adapter
from engine.training.args import TrainingArgs
from tests.test_app_support import app_settings, model_page, project  # noqa: F401
from tests.trainer_helpers import dataset, labels, load, max_diff, of, sentiment_rows, tiny_bert_dir, train, weights

TEXTS = ["a lovely film", "the meal was awful and boring", "quite a good day"]


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return tiny_bert_dir(tmp_path_factory)


def encode(tok, texts=TEXTS):
    enc = tok(texts, padding=True, return_tensors="np")
    return mx.array(enc["input_ids"].astype(np.int32)), mx.array(enc["attention_mask"].astype(np.int32))


def outputs(model, tok, texts=TEXTS) -> np.ndarray:
    model.eval()
    return np.array(model(*encode(tok, texts)))


def lora_run(bert_dir, task="text-classification", steps=2, **args):
    kw = {"num_labels": 2} if task == "text-classification" else {}
    model, tok = load(bert_dir, task, **kw)
    rows = sentiment_rows(32) if task == "text-classification" else [
        {"text": r["text"], "text_pair": r["text"]} for r in sentiment_rows(32)]
    info = labels() if task == "text-classification" else None
    before = weights(model)
    _, result, events = train(model, tok, task, dataset(rows), label_info=info, max_steps=steps,
                              learning_rate=1e-2, **{"lora_rank": 4, **args})
    return model, tok, before, events


def test_targets_match_like_peft():
    assert matches("encoder.layer.0.attention.self.query", ["query"])
    assert matches("encoder.layer.0.attention.output.dense", ["output.dense"])
    assert not matches("pooler.dense", ["output.dense"])
    assert not matches("encoder.layer.0.attention.self.query", ["ery"])
    assert matches("encoder.layer.1.output.dense", ["encoder.layer.1*"])


def test_settings_are_checked():
    with pytest.raises(ValueError, match="lora_rank"):
        TrainingArgs(dora=True)
    with pytest.raises(ValueError, match="lora_rank"):
        TrainingArgs(save_adapter=True)
    with pytest.raises(ValueError, match="lora_dropout"):
        TrainingArgs(lora_rank=4, lora_dropout=1.0)


def test_unknown_targets_name_the_linear_layers(bert_dir):
    model, _ = load(bert_dir, "feature-extraction")
    with pytest.raises(UsageError, match="query"):
        apply_adapters(model, 4, 8, targets=["q_proj"])


@pytest.mark.parametrize("extra", [{}, {"dora": True}, {"grad_checkpoint": True, "gradient_accumulation_steps": 2,
                                                          "lora_dropout": 0.1}])
def test_only_adapters_and_head_change(bert_dir, extra):
    model, _, before, events = lora_run(bert_dir, **extra)
    after = weights(model)
    adapter = {k for k in after if k.rsplit(".", 1)[-1] in ("lora_a", "lora_b", "lora_magnitude")}
    assert len(adapter) == 2 * 3 * (3 if extra.get("dora") else 2) * 2   # 2 layers × (q, k, v, 3 dense) × weights
    head = {k for k in after if k.startswith("classifier.")}
    assert before.keys() == after.keys() - adapter
    assert max_diff({k: before[k] for k in before.keys() - head}, {k: after[k] for k in before.keys() - head}) == 0
    assert all(np.abs(after[k] - before[k]).max() > 0 for k in head)
    assert all(np.abs(after[k]).max() > 0 for k in adapter if k.endswith("lora_b"))
    started = of(events, "run_started")[0]
    trainable = sum(after[k].size for k in adapter | head)
    assert started["trainable_parameters"] == trainable
    assert started["frozen_parameters"] == sum(v.size for v in after.values()) - trainable


@pytest.mark.parametrize("dora", [False, True])
def test_merged_equals_unmerged(bert_dir, tmp_path, dora):
    model, tok, _, _ = lora_run(bert_dir, steps=3, dora=dora)
    unmerged = outputs(model, tok)
    model.save_pretrained(tmp_path / "merged")   # saving writes merged weights, without touching the model
    assert adapter_layers(model)
    reloaded, _ = load(tmp_path / "merged", "text-classification")
    assert not any("lora" in k for k in weights(reloaded))
    merge_adapters(model)
    assert not adapter_layers(model) and all(type(m) is not LoRALinear for _, m in model.named_modules())
    assert np.abs(outputs(model, tok) - unmerged).max() <= 1e-5
    assert np.abs(outputs(reloaded, tok) - unmerged).max() <= 1e-5


def test_lora_linear_starts_as_its_base():
    base = nn.Linear(8, 6)
    layer = LoRALinear(base, rank=2, alpha=4, dora=True)
    x = mx.random.normal((3, 8))
    assert np.abs(np.array(layer(x) - base(x))).max() <= 1e-6
    assert sorted(k for k, _ in tree_flatten(layer.trainable_parameters())) == ["lora_a", "lora_b", "lora_magnitude"]


def cosines(a, b):
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize("task,dora", [("feature-extraction", False), ("text-classification", False),
                                       ("text-classification", True)])
def test_peft_reloads_the_adapter(bert_dir, tmp_path, task, dora):
    """peft.PeftModel.from_pretrained(Auto…(base), adapter) gives the merged folder's outputs."""
    torch = pytest.importorskip("torch")
    peft = pytest.importorskip("peft")
    import transformers
    model, tok, _, _ = lora_run(bert_dir, task, steps=3, dora=dora)
    model.save_pretrained(tmp_path / "merged")
    save_adapter(model, tmp_path / "adapter", str(bert_dir), embedding=task == "feature-extraction")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(bert_dir) and config["r"] == 4 and config["use_dora"] is dora
    auto = transformers.AutoModel if task == "feature-extraction" else transformers.AutoModelForSequenceClassification
    kw = {} if task == "feature-extraction" else {"num_labels": 2}
    peft_model = peft.PeftModel.from_pretrained(auto.from_pretrained(str(bert_dir), **kw), str(tmp_path / "adapter"))
    merged = auto.from_pretrained(str(tmp_path / "merged"))
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        pick = (lambda o: o.last_hidden_state) if task == "feature-extraction" else (lambda o: o.logits)
        theirs = pick(peft_model.eval()(**enc)).numpy()
        ours = pick(merged.eval()(**enc)).numpy()
    cos = cosines(theirs, ours)
    print(f"\nPEFT reload vs merged ({task}, dora={dora}): min cos = {cos.min():.7f}, "
          f"max |Δ| = {np.abs(theirs - ours).max():.2g}")
    assert cos.min() >= 0.9999


def assert_resume_is_exact(bert_dir, tmp_path, stop_at: int, **args) -> None:
    """A text-classification run stopped after ``stop_at`` steps, resumed from its checkpoint by a model with
    another head and adapter start, ends with exactly the weights of the uninterrupted run."""
    from engine.training.trainer import Trainer
    rows, info = sentiment_rows(24), labels()
    args = dict(batch_size=8, learning_rate=5e-3, logging_steps=1, save_steps=0, max_length=32, seed=3, **args)
    model, tok = load(bert_dir, num_labels=2)
    train(model, tok, "text-classification", dataset(rows), label_info=info, **args, output_dir=str(tmp_path / "a"))
    uninterrupted = weights(model)

    model, tok = load(bert_dir, num_labels=2)
    trainer = Trainer(model, tok, "text-classification", TrainingArgs(**args, output_dir=str(tmp_path / "b")),
                      dataset(rows), callbacks=[lambda e: e["event"] == "step" and e["step"] == stop_at and
                                                trainer.request_stop()], label_info=info)
    assert trainer.train()["step"] == stop_at

    model, tok = load(bert_dir, seed=7, num_labels=2)   # a different head and adapter start: the checkpoint wins
    _, result, events = train(model, tok, "text-classification", dataset(rows), label_info=info, **args,
                              output_dir=str(tmp_path / "b"), resume_from_checkpoint="latest")
    assert of(events, "run_started")[0]["resumed_from_step"] == stop_at and result["step"] == args["max_steps"]
    assert max_diff(weights(model), uninterrupted) == 0


def test_resume_with_adapters_is_exact(bert_dir, tmp_path):
    assert_resume_is_exact(bert_dir, tmp_path, 3, max_steps=6, warmup_steps=2, lora_rank=4, dora=True,
                           lora_dropout=0.1)


def test_full_rank_lora_learns_like_full_fine_tuning(bert_dir):
    """The eval loss falls as tests/test_trainer_tasks.py asks of full fine-tuning (same settings), at least as far
    as full fine-tuning of the same (non-embedding) weights takes it."""
    from engine.training.trainer import Trainer

    def eval_losses(**extra):
        model, tok = load(bert_dir, num_labels=2)
        ds = dataset(sentiment_rows(32))
        args = TrainingArgs(batch_size=8, learning_rate=1e-2, num_train_epochs=6, logging_steps=4, save_steps=0,
                            max_length=48, warmup_ratio=0.1, seed=0, **extra)
        trainer = Trainer(model, tok, "text-classification", args, ds, ds, label_info=labels())
        before = trainer.evaluate()["eval_loss"]
        trainer.train()
        return before, trainer.evaluate()["eval_loss"]

    # LoRA leaves the embeddings frozen: compare with full fine-tuning of the same weights.
    full = eval_losses(freeze_embeddings=True)
    lora = eval_losses(lora_rank=32, lora_alpha=64)   # rank = the hidden size
    print(f"\neval loss before → after: full (embeddings frozen) {full[0]:.3f} → {full[1]:.3f}, "
          f"LoRA r=32 {lora[0]:.3f} → {lora[1]:.3f}")
    assert lora[0] == full[0]   # the adapters start as the identity: the same model before training
    assert lora[1] < 0.85 * lora[0] and lora[1] <= full[1]


def test_cli_writes_merged_model_and_peft_adapter(bert_dir, tmp_path, capsys):
    data = tmp_path / "reviews.jsonl"
    data.write_text("".join(json.dumps({"review": r["text"], "sentiment": ["neg", "pos"][r["label"]]}) + "\n"
                            for r in sentiment_rows(40)))
    out = tmp_path / "out"
    code = main(["train", "--model", str(bert_dir), "--task", "text-classification", "--data", str(data),
                 "--column", "text=review", "--column", "label=sentiment", "--output", str(out), "--max-steps", "3",
                 "--batch-size", "8", "--max-length", "32", "--lora-rank", "4", "--lora-alpha", "8", "--dora",
                 "--lora-targets", "query,value", "--save-adapter"])
    assert code == 0, capsys.readouterr().err
    capsys.readouterr()
    record = json.loads((out / "raclate_run.json").read_text())
    assert record["parameters"]["trainable"] < record["parameters"]["frozen"]
    saved = mx.load(str(out / "model.safetensors"))
    assert not any("lora" in k for k in saved)
    config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert config["use_dora"] and config["lora_alpha"] == 8 and config["modules_to_save"] == ["classifier"]
    assert len(config["target_modules"]) == 4 and all(t.endswith(("query", "value")) for t in config["target_modules"])
    # A checkpoint still holds the adapters: it exports as peft (checked in peft) and as a merged model.
    checkpoint = out / "checkpoints" / "step-0000003"
    assert main(["export", "--model", str(checkpoint), "--to", str(tmp_path / "peft"), "--format", "peft",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["check"]["ok"] and report["check"]["min_cosine"] >= 0.9999, report["check"]
    assert main(["export", "--model", str(checkpoint), "--to", str(tmp_path / "merged"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["check"]["ok"]
    # The output folder holds merged weights only: nothing to write as an adapter.
    assert main(["export", "--model", str(out), "--to", str(tmp_path / "none"), "--format", "peft"]) == 2
    assert "checkpoints/step-N" in capsys.readouterr().err


def test_memory_estimate_counts_adapters_only():
    """A Qwen3-0.6B-shaped model: LoRA r=16 keeps the weights, but gradients and AdamW state shrink to the adapters."""
    from engine.models import memory
    config = {"model_type": "qwen3", "hidden_size": 1024, "num_hidden_layers": 28, "intermediate_size": 3072,
              "num_attention_heads": 16, "vocab_size": 151_669, "max_position_embeddings": 32_768}
    full = memory.estimate(config, 596_000_000, 8, 256)
    lora = memory.estimate(config, 596_000_000, 8, 256, lora_rank=16)
    adapters = memory.lora_parameters(config, 16)
    assert 5_000_000 < adapters < 20_000_000
    assert lora.optimizer == 2 * adapters * memory.BYTES and lora.activations == full.activations
    assert lora.total < full.total - 4 * 500_000_000
    qlora = memory.estimate(config, 596_000_000, 8, 256, lora_rank=16, quantize_base=4)
    layers = 596_000_000 - 151_669 * 1024   # 4-bit weights plus a float scale and offset per group of 64
    assert lora.weights - qlora.weights == pytest.approx(layers * (4 - 0.5 - 0.125), rel=1e-6)


@pytest.mark.gui
def test_model_page_lora_checkbox_sets_the_rank_and_the_estimate(qtbot, project, model_page):  # noqa: F811
    from raclate_app.pages.model import LORA_RANK, QUANTIZE
    page = model_page
    assert not page.lora_check.isChecked() and project.training["lora_rank"] == 0
    before = page.memory_detail.text()
    page.lora_check.setChecked(True)
    assert project.training["lora_rank"] == LORA_RANK and page.advanced.values()["lora_rank"] == LORA_RANK
    assert page.memory_detail.text() != before   # gradients and AdamW for the adapters only
    lora = page.memory_detail.text()
    assert page.quantize_combo.isEnabled()
    page.quantize_combo.setCurrentIndex(list(QUANTIZE.values()).index(4))
    assert project.training["quantize_base"] == 4 and page.memory_detail.text() != lora   # 4-bit weights
    page.advanced.set_values({"lora_rank": 0})
    assert not page.lora_check.isChecked()
    assert project.training["quantize_base"] is None and not page.quantize_combo.isEnabled()
