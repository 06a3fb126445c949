"""ModernBERT parity vs transformers (sliding band narrower than the batch), round trips, checkpointing."""
import numpy as np
import pytest

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_map
from engine import load_model
from engine.defaults import default_model_dir
from engine.models.attention import make_mask
from tests.helpers import max_diff_masked, padded_batch, torch_out

pytestmark = pytest.mark.parity

VOCAB = 120
LENGTHS = (20, 11, 16)  # longer than the local band (local_attention=8 → 4 keys each side)


def tiny_config(**kw):
    from transformers import ModernBertConfig
    base = dict(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                intermediate_size=96, global_attn_every_n_layers=3, local_attention=8,
                max_position_embeddings=64, initializer_range=0.2, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                cls_token_id=1, sep_token_id=2)
    return ModernBertConfig(**{**base, **kw})


def save_random(model_cls, config, path):
    """A random HF model with non-trivial norms/biases (HF initialises them to 1/0), saved with a tokenizer."""
    import torch
    from transformers import AutoTokenizer
    torch.manual_seed(0)
    model = model_cls(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(str(default_model_dir())).save_pretrained(path)
    return model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import ModernBertModel
    path = tmp_path_factory.mktemp("modernbert")
    return path, save_random(ModernBertModel, tiny_config(), path)


def test_sliding_mask_matches_transformers():
    import torch
    from transformers.masking_utils import create_bidirectional_sliding_window_mask
    config = tiny_config()
    config._attn_implementation = "sdpa"
    ids, mask = padded_batch(VOCAB, LENGTHS)
    theirs = create_bidirectional_sliding_window_mask(
        config=config, inputs_embeds=torch.zeros(*ids.shape, 64), attention_mask=torch.tensor(mask))
    ours = np.array(make_mask(mx.array(mask), window=config.local_attention // 2, symmetric_window=True))
    real = mask.astype(bool)[:, None, :, None]  # rows of real query tokens (ours adds the diagonal for pads)
    assert ours.shape == tuple(theirs.shape)
    assert np.array_equal(ours & real, theirs.numpy() & real)
    assert not ours[0, 0, 0].all()  # the band actually cuts something


@pytest.mark.parametrize("biases", [False, True])
def test_hidden_states_match_transformers(tmp_path, biases):
    from transformers import ModernBertModel
    kw = dict(norm_bias=True, attention_bias=True, mlp_bias=True) if biases else {}
    ref = save_random(ModernBertModel, tiny_config(global_attn_every_n_layers=2, **kw), tmp_path)
    model, _ = load_model(str(tmp_path))
    ids, mask = padded_batch(VOCAB, LENGTHS)
    diff = max_diff_masked(model.hidden_states(mx.array(ids), mx.array(mask)),
                           torch_out(ref, ids, mask, "hidden"), mask)
    print(f"hidden biases={biases} max diff {diff:.2e}")
    assert diff <= 1e-4


def test_old_style_config_keys(tiny):
    """Hub configs from before transformers 5 carry global_attn_every_n_layers and *_rope_theta."""
    from engine.models.modernbert import ModelArgs
    args = ModelArgs.from_config({"num_hidden_layers": 4, "global_attn_every_n_layers": 2,
                                  "global_rope_theta": 1e5, "local_rope_theta": 1e3})
    assert args.layer_types == ["full_attention", "sliding_attention"] * 2
    assert args.rope_theta == {"full_attention": 1e5, "sliding_attention": 1e3}
    path, _ = tiny
    model, _ = load_model(str(path))
    assert [l.attention_type for l in model.layers] == ["full_attention", "sliding_attention",
                                                         "sliding_attention", "full_attention"]


@pytest.mark.parametrize("task,cls_name,kw", [
    ("text-classification", "ModernBertForSequenceClassification", {"num_labels": 3, "classifier_pooling": "cls"}),
    ("text-classification", "ModernBertForSequenceClassification", {"num_labels": 3, "classifier_pooling": "mean"}),
    ("token-classification", "ModernBertForTokenClassification", {"num_labels": 5}),
    ("masked-lm", "ModernBertForMaskedLM", {}),
    ("masked-lm", "ModernBertForMaskedLM", {"tie_word_embeddings": False, "decoder_bias": False}),
])
def test_task_heads_match_transformers(tmp_path, task, cls_name, kw):
    import transformers
    ref = save_random(getattr(transformers, cls_name), tiny_config(classifier_bias=True, **kw), tmp_path)
    model, _ = load_model(str(tmp_path), task=task)
    assert model.info.new_weights == []
    ids, mask = padded_batch(VOCAB, LENGTHS)
    ours = np.array(model(mx.array(ids), mx.array(mask)))
    theirs = torch_out(ref, ids, mask)
    assert ours.shape == theirs.shape
    diff = np.abs(ours - theirs).max() if task == "text-classification" else max_diff_masked(ours, theirs, mask)
    print(f"{cls_name} {kw} max diff {diff:.2e}")
    assert diff <= 1e-4


def test_mlm_decoder_is_tied(tmp_path):
    from transformers import ModernBertForMaskedLM
    save_random(ModernBertForMaskedLM, tiny_config(), tmp_path)
    # Some exports store the tied copy too: it is skipped, not loaded into a second matrix.
    weights = mx.load(str(tmp_path / "model.safetensors"))
    weights["decoder.weight"] = mx.random.normal((VOCAB, 64))
    mx.save_safetensors(str(tmp_path / "model.safetensors"), weights, metadata={"format": "pt"})
    model, _ = load_model(str(tmp_path), task="masked-lm")
    assert model.info.new_weights == []
    assert "weight" not in model.decoder and "bias" in model.decoder
    model.model.embeddings.tok_embeddings.weight = mx.zeros((VOCAB, 64))
    ids, mask = padded_batch(VOCAB, LENGTHS)
    logits = model(mx.array(ids), mx.array(mask))
    assert mx.allclose(logits, mx.broadcast_to(model.decoder.bias, logits.shape)).item()


@pytest.mark.parametrize("task,cls_name", [
    ("text-classification", "AutoModelForSequenceClassification"),
    ("token-classification", "AutoModelForTokenClassification"),
    ("masked-lm", "AutoModelForMaskedLM"),
    ("feature-extraction", "AutoModel"),
])
def test_save_pretrained_round_trip(tiny, tmp_path, task, cls_name):
    import transformers
    path, _ = tiny
    model, tok = load_model(str(path), task=task, num_labels=4)
    # Give the fresh heads non-trivial values so the comparison covers them.
    model.update(tree_map(lambda p: p + 0.05 * mx.random.normal(p.shape), model.trainable_parameters()))
    out = tmp_path / "saved"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    ref, info = getattr(transformers, cls_name).from_pretrained(str(out), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    ref = ref.eval()
    ids, mask = padded_batch(VOCAB, LENGTHS, seed=1)
    if task == "feature-extraction":
        ours, theirs = model.hidden_states(mx.array(ids), mx.array(mask)), torch_out(ref, ids, mask, "hidden")
    else:
        ours, theirs = model(mx.array(ids), mx.array(mask)), torch_out(ref, ids, mask)
    assert max_diff_masked(ours, theirs, mask if np.ndim(theirs) == 3 else np.ones(len(ids))) <= 1e-4
    again, _ = load_model(str(out), task=task)
    assert again.info.new_weights == []
    if task == "masked-lm":  # HF ties the decoder back to the embeddings
        assert ref.decoder.weight.data_ptr() == ref.model.embeddings.tok_embeddings.weight.data_ptr()


@pytest.mark.parametrize("task", ["masked-lm", "text-classification"])
def test_grad_checkpoint_gives_same_gradients(tiny, task):
    path, _ = tiny
    model, _ = load_model(str(path), task=task, num_labels=3)
    ids, mask = (mx.array(a) for a in padded_batch(VOCAB, LENGTHS, seed=2))
    target = mx.random.normal(model(ids, mask).shape, key=mx.random.key(0))

    weight = mask[..., None] if target.ndim == 3 else 1  # real tokens only for per-token outputs

    def loss_fn(m):
        return (((m(ids, mask) - target) ** 2) * weight).mean()

    grad_fn = nn.value_and_grad(model, loss_fn)
    loss, plain = grad_fn(model)
    model.set_grad_checkpoint(True)
    loss_ckpt, ckpt = grad_fn(model)
    plain, ckpt = dict(tree_flatten(plain)), dict(tree_flatten(ckpt))
    assert plain.keys() == ckpt.keys() and len(plain) > 10
    assert abs(loss.item() - loss_ckpt.item()) <= 1e-6
    worst = max(mx.abs(plain[k] - ckpt[k]).max().item() for k in plain)
    print(f"grad checkpoint {task}: max grad diff {worst:.2e}")
    assert worst <= 1e-5, worst
    assert all(mx.abs(g).sum().item() > 0 for k, g in plain.items() if ".layers." in k)
