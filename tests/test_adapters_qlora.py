"""QLoRA-style adapters (--quantize-base): the frozen base's linear layers are nn.QuantizedLinear, the
adapters train in float, the merged output is the dequantized base plus the update (the model that
trained), resume is exact, the peft export checks against the float base, and a backend without a
quantized matmul is refused before anything is read."""
import json

import numpy as np
import pytest

import mlx.core as mx
import mlx.nn as nn

from engine.cli import main
from engine.models.adapters import LoRALinear, adapter_layers, group_size
from engine.training.args import TrainingArgs
from tests.test_adapters import assert_resume_is_exact, outputs
from tests.trainer_helpers import dataset, labels, load, of, sentiment_rows, tiny_bert_dir, train, weights


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return tiny_bert_dir(tmp_path_factory)


def test_quantize_base_settings_are_checked():
    with pytest.raises(ValueError, match="lora_rank"):
        TrainingArgs(quantize_base=4)
    with pytest.raises(ValueError, match="4 or 8"):
        TrainingArgs(lora_rank=4, quantize_base=3)


@pytest.mark.parametrize("bits,dora", [(4, False), (8, True)])
def test_qlora_trains_adapters_on_a_quantized_base(bert_dir, tmp_path, bits, dora):
    model, tok = load(bert_dir, num_labels=2)
    float_base = weights(model)
    _, _, events = train(model, tok, "text-classification", dataset(sentiment_rows(32)), label_info=labels(),
                         max_steps=3, learning_rate=1e-2, lora_rank=4, quantize_base=bits, dora=dora)
    linears = [(p, m) for p, m in model.backbone.named_modules() if isinstance(m, (nn.Linear, nn.QuantizedLinear))]
    assert linears and all(isinstance(m, nn.QuantizedLinear) for _, m in linears)   # untargeted: the pooler
    assert all(layer.quantized and layer.bits == bits and layer.group_size == group_size(layer.lora_a.shape[1])
               for _, layer in adapter_layers(model))
    assert of(events, "run_started")[0]["trainable_parameters"] == sum(
        v.size for v in weights(model, trainable_only=True).values())
    assert all(v.dtype == np.float32 for v in weights(model, trainable_only=True).values())

    unmerged = outputs(model, tok)
    model.save_pretrained(tmp_path / "merged")
    merged, _ = load(tmp_path / "merged", "text-classification")
    assert np.abs(outputs(merged, tok) - unmerged).max() <= 1e-4   # dequantize + update = what trained
    # An untargeted layer (the pooler) is the quantized base dequantized: near the float weight, not equal to it
    # (affine quantization rounds to the nearest of 2^bits levels across each group's range).
    key = "bert.pooler.dense.weight"
    error = np.abs(weights(merged)[key] - float_base[key]).max()
    assert 0 < error < (0.1 if bits == 4 else 0.01) * np.abs(float_base[key]).max()
    print(f"\nQLoRA {bits}-bit: merged vs unmerged max |Δ| {np.abs(outputs(merged, tok) - unmerged).max():.2g}, "
          f"quantization error of a base weight {error:.2g}")


def test_setting_up_twice_changes_nothing(bert_dir):
    """The Trainer keeps what it finds (a benchmark or a loader may have set the model up already)."""
    from engine.models.adapters import apply_training_adapters
    model, _ = load(bert_dir, "feature-extraction")
    training = TrainingArgs(lora_rank=4, quantize_base=4).to_dict()
    assert apply_training_adapters(model, training)
    first = weights(model, trainable_only=True)
    assert apply_training_adapters(model, training)
    assert weights(model, trainable_only=True).keys() == first.keys() and first


def test_qlora_resume_is_exact(bert_dir, tmp_path):
    assert_resume_is_exact(bert_dir, tmp_path, 2, max_steps=4, lora_rank=4, quantize_base=4)


def write_reviews(path):
    path.write_text("".join(json.dumps({"review": r["text"], "sentiment": ["neg", "pos"][r["label"]]}) + "\n"
                            for r in sentiment_rows(24)))
    return path


def train_argv(bert_dir, data, out, *extra):
    return ["train", "--model", str(bert_dir), "--task", "text-classification", "--data", str(data), "--column",
            "text=review", "--column", "label=sentiment", "--output", str(out), "--max-steps", "2", "--batch-size", "8",
            "--max-length", "32", *extra]


def test_qlora_checkpoint_exports_as_peft_checked_on_the_float_base(bert_dir, tmp_path, capsys):
    pytest.importorskip("peft")
    out = tmp_path / "out"
    assert main(train_argv(bert_dir, write_reviews(tmp_path / "r.jsonl"), out, "--lora-rank", "4",
                           "--quantize-base", "8")) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert not any(k.endswith(("scales", "biases")) for k in mx.load(str(out / "model.safetensors")))
    assert main(["export", "--model", str(out / "checkpoints" / "step-0000002"), "--to", str(tmp_path / "peft"),
                 "--format", "peft", "--json"]) == 0
    check = json.loads(capsys.readouterr().out)["check"]
    assert check["ok"] and "8-bit" in check["reference"], check
    assert "8-bit quantized" in (tmp_path / "peft" / "README.md").read_text()


def test_quantize_base_is_refused_where_quantized_matmul_fails(bert_dir, tmp_path, capsys, monkeypatch):
    def unsupported(*args, **kw):
        raise RuntimeError("[quantized_matmul] not implemented on this device")
    monkeypatch.setattr(mx, "quantized_matmul", unsupported)
    out = tmp_path / "out"
    code = main(train_argv(bert_dir, write_reviews(tmp_path / "r.jsonl"), out, "--lora-rank", "4",
                           "--quantize-base", "4"))
    err = capsys.readouterr().err
    assert code == 2 and "--quantize-base 4" in err and "not implemented" in err
    assert not out.exists()


def test_lora_linear_over_a_quantized_layer_starts_as_it():
    base = nn.QuantizedLinear.from_linear(nn.Linear(64, 6), 64, 4)
    layer = LoRALinear(base, rank=2, alpha=4, dora=True)
    x = mx.random.normal((3, 64))
    assert np.abs(np.array(layer(x) - base(x))).max() <= 1e-5
    assert layer.merge().weight.dtype == mx.float32
