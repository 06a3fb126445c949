"""An adapter folder (adapter_config.json + adapter_model.safetensors, ours or peft's) as --model: the
engine finds its base, puts the adapter on it, and trains on (the adapters keep training), predicts
or exports; sentence-transformers' load_adapter reproduces the merged output; a base that cannot be
found is named with the file that names it."""
import json

import numpy as np
import pytest

from engine.cli import main
from engine.errors import ModelError
from engine.inference.loading import load_for_task
from engine.models import load_model
from engine.models.adapters import adapter_layers
from engine.models.peft_format import save_adapter
from tests.test_adapters import TEXTS, cosines, encode, lora_run, outputs
from tests.test_adapters_qlora import train_argv, write_reviews
from tests.trainer_helpers import tiny_bert_dir, weights


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return tiny_bert_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def lora_out(bert_dir, tmp_path_factory):
    """A LoRA classification run with --save-adapter: OUT (merged) and OUT/adapter."""
    tmp = tmp_path_factory.mktemp("lora-run")
    out = tmp / "out"
    assert main(train_argv(bert_dir, write_reviews(tmp / "r.jsonl"), out, "--max-steps", "3", "--lr", "1e-2",
                           "--lora-rank", "4", "--dora", "--save-adapter")) == 0
    return out


def test_adapter_folder_loads_on_its_base(lora_out, bert_dir):
    model, tok, task, _ = load_for_task(str(lora_out / "adapter"))
    assert task == "text-classification" and model.info.source == str(bert_dir)
    assert len(adapter_layers(model)) == 12 and all(layer.dora for _, layer in adapter_layers(model))
    merged, _, _, _ = load_for_task(str(lora_out))
    assert np.abs(outputs(model, tok) - outputs(merged, tok)).max() <= 1e-5
    assert not model.info.new_weights   # the head came from the adapter folder


def test_adapter_folder_continues_training_and_exports(lora_out, bert_dir, tmp_path, capsys):
    start = weights(load_model(str(lora_out / "adapter"), "text-classification")[0])
    out = tmp_path / "more"
    assert main(train_argv(lora_out / "adapter", write_reviews(tmp_path / "r.jsonl"), out, "--lr", "1e-2",
                           "--save-adapter")) == 0, capsys.readouterr().err
    record = json.loads((out / "raclate_run.json").read_text())
    assert record["training"]["lora_rank"] == 4 and record["training"]["dora"]   # the adapter's own settings
    assert record["parameters"]["trainable"] < record["parameters"]["frozen"]
    config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(bert_dir)   # the base, not the adapter it started from
    after = weights(load_model(str(out / "adapter"), "text-classification")[0])
    moved = [k for k in start if np.abs(after[k] - start[k]).max() > 0]
    assert moved and all(k.rsplit(".", 1)[-1] in ("lora_a", "lora_b", "lora_magnitude") or k.startswith("classifier.")
                         for k in moved)
    capsys.readouterr()
    assert main(["export", "--model", str(lora_out / "adapter"), "--to", str(tmp_path / "merged"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["check"]["ok"]
    assert main(["predict", "--model", str(lora_out / "adapter"), "--text", "a lovely film", "--json"]) == 0
    assert "LABEL_" in capsys.readouterr().out   # an adapter folder has no label names of its own


def test_peft_made_adapter_loads_in_the_engine(bert_dir, tmp_path):
    """An adapter peft wrote (get_peft_model on AutoModel, lora_B made non-zero) gives peft's hidden states."""
    torch = pytest.importorskip("torch")
    peft = pytest.importorskip("peft")
    import transformers
    torch.manual_seed(0)
    base = transformers.AutoModel.from_pretrained(str(bert_dir))
    ref = peft.get_peft_model(base, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"],
                                                    use_dora=True))
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    ref.save_pretrained(str(tmp_path / "adapter"))
    model, tok = load_model(str(tmp_path / "adapter"), "feature-extraction")
    assert len(adapter_layers(model)) == 4
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        theirs = ref.eval()(**enc).last_hidden_state.numpy()
    ours = np.array(model.hidden_states(*encode(tok)))
    mask = enc["attention_mask"].numpy() > 0
    cos = cosines(ours[mask], theirs[mask])
    print(f"\npeft-made adapter in the engine: min cos {cos.min():.7f}")
    assert cos.min() >= 0.9999


def test_sentence_transformers_load_adapter_reproduces_the_merged_model(bert_dir, tmp_path):
    """SentenceTransformer(base).load_adapter(adapter) encodes as SentenceTransformer(merged)."""
    pytest.importorskip("peft")
    st = pytest.importorskip("sentence_transformers")
    model, tok, _, _ = lora_run(bert_dir, "feature-extraction", steps=3)
    model.save_pretrained(tmp_path / "merged")
    base, _ = load_model(str(bert_dir), "feature-extraction")
    base.save_pretrained(tmp_path / "base")   # the base in the same sentence-transformers layout (pooling)
    tok.save_pretrained(str(tmp_path / "base"))
    tok.save_pretrained(str(tmp_path / "merged"))
    save_adapter(model, tmp_path / "adapter", str(bert_dir), embedding=True)
    with_adapter = st.SentenceTransformer(str(tmp_path / "base"), device="cpu")
    with_adapter.load_adapter(str(tmp_path / "adapter"))
    merged = st.SentenceTransformer(str(tmp_path / "merged"), device="cpu")
    a, b = with_adapter.encode(TEXTS), merged.encode(TEXTS)
    plain = st.SentenceTransformer(str(tmp_path / "base"), device="cpu").encode(TEXTS)
    cos = cosines(a, b)
    print(f"\nsentence-transformers load_adapter vs merged: min cos {cos.min():.7f}, max |Δ| {np.abs(a - b).max():.2g}"
          f" (base without the adapter: min cos {cosines(plain, b).min():.4f})")
    assert cos.min() >= 0.9999 and cosines(plain, b).min() < 0.9999


def test_a_base_that_cannot_be_found_is_named(tmp_path, capsys):
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4,
                                                            "base_model_name_or_path": str(tmp_path / "gone")}))
    with pytest.raises(ModelError, match="adapter_config.json") as caught:
        load_model(str(folder))
    assert str(tmp_path / "gone") in str(caught.value)
    assert main(["predict", "--model", str(folder), "--text", "hi"]) == 2
    assert "base_model_name_or_path" in capsys.readouterr().err

