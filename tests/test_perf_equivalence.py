"""Every speed-up keeps the numbers: fast GELU = erf GELU, fast SiLU = nn.silu, the arithmetic softmax =
mx.softmax, the BLAS global norm = float64, compiled step = eager step (skipped steps included), one trace per
padded shape, padding leaves losses alone, the prefetch thread yields the plain generator's batches in order
and checkpoints the trained position, and the tokenizer loads without torch (benchmarks/profile_step.py shows
what each of these bought)."""
import subprocess
import sys

import numpy as np
import pytest

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.utils import tree_flatten

from engine.training.args import TrainingArgs
from engine.training.step import build_step, global_norm, make_optimizer
from tests.trainer_helpers import dataset, labels, load, pair_rows, sentiment_rows, tiny_bert_dir, train, weights


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return tiny_bert_dir(tmp_path_factory)


# -- kernels ------------------------------------------------------------------------------------
@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("name, reference, span", [("gelu", nn.gelu, 12), ("silu", nn.silu, 60)])
def test_fast_activation_equals_mlx_and_its_gradient(name, reference, span, compiled):
    """engine/models/activations.py: GELU (erf) and SiLU from arithmetic = nn.gelu / nn.silu, values and
    gradients, compiled and eager."""
    from engine.models import activations
    fast = getattr(activations, name)
    x = mx.concatenate([mx.linspace(-span, span, 20001), mx.random.normal((4096,)) * 3, mx.random.normal((512,)) * 1e-4])
    weight = mx.random.normal(x.shape)
    ours = mx.compile(fast) if compiled else fast
    assert mx.abs(ours(x) - reference(x)).max().item() <= 2e-6
    grad = mx.grad(lambda x: (fast(x) * weight).sum())
    grad = mx.compile(grad) if compiled else grad
    expected = mx.grad(lambda x: (reference(x) * weight).sum())(x)
    assert (mx.abs(grad(x) - expected) / (mx.abs(weight) + 1e-3)).max().item() <= 2e-6


def test_fast_sigmoid_equals_mx_sigmoid():
    from engine.models.activations import sigmoid
    x = mx.concatenate([mx.linspace(-60, 60, 20001), mx.random.normal((512,)) * 1e-4])
    assert mx.abs(sigmoid(x) - mx.sigmoid(x)).max().item() <= 1e-6


@pytest.mark.parametrize("compiled", [False, True])
def test_arithmetic_softmax_equals_mx_softmax_and_its_gradient(compiled):
    """The CPU attention's softmax: exp from arithmetic, masked (-inf) entries exactly 0, its written-out
    gradient = autodiff of mx.softmax."""
    from engine.models.activations import softmax
    mx.random.seed(0)
    x = mx.random.normal((6, 4, 33)) * mx.array([0.1, 3.0, 12.0, 40.0])[None, :, None]   # scales up to ±120
    x = mx.where(mx.random.uniform(shape=x.shape) < 0.2, -mx.inf, x)
    x = mx.concatenate([x, mx.full((6, 4, 1), 1.0)], axis=-1)   # every row has a finite entry
    weight = mx.random.normal(x.shape)
    ours = mx.compile(softmax) if compiled else softmax
    p, reference = ours(x), mx.softmax(x, axis=-1, precise=True)
    assert mx.abs(p - reference).max().item() <= 3e-6
    assert mx.all(mx.where(mx.isinf(x), p == 0, True)).item()
    grad = mx.grad(lambda x: (mx.where(mx.isinf(x), 0.0, softmax(x)) * weight).sum())
    grad = mx.compile(grad) if compiled else grad
    expected = mx.grad(lambda x: (mx.where(mx.isinf(x), 0.0, mx.softmax(x, axis=-1, precise=True)) * weight).sum())(x)
    finite = ~mx.isinf(x)
    assert mx.abs(mx.where(finite, grad(x) - expected, 0.0)).max().item() <= 1e-5


def test_global_norm_matches_float64_where_mx_sum_drifts():
    rng = np.random.default_rng(0)
    grads = {"embedding": mx.array(rng.normal(1e-4, 1e-3, (30522, 384)).astype(np.float32)),
             "bias": mx.array(rng.normal(0, 1, (384,)).astype(np.float32))}
    exact = np.sqrt(sum((np.array(g).astype(np.float64) ** 2).sum() for g in grads.values()))
    assert abs(global_norm(grads).item() - exact) / exact <= 1e-5


# -- the step -----------------------------------------------------------------------------------
def mnrl_batches(tok, lengths=((8, 16), (16, 24), (8, 16), (16, 24), (8, 16))):
    """MNRL batches of 4 pairs padded to the given (anchor, positive) widths; the last has NaN-free ids."""
    rows = pair_rows(4 * len(lengths))
    out = []
    for i, (ta, tp) in enumerate(lengths):
        part = rows[4 * i:4 * i + 4]
        cols = []
        for key, width in (("text", ta), ("text_pair", tp)):
            enc = tok([r[key] for r in part], padding="max_length", truncation=True, max_length=width, return_tensors="np")
            cols.append({"input_ids": mx.array(enc["input_ids"].astype(np.int32)),
                         "attention_mask": mx.array(enc["attention_mask"].astype(np.int32))})
        out.append({"inputs": cols})
    return out


def run_steps(bert_dir, compile, batches=None, loss_calls=None, scale_nan_at=None):
    from engine.losses import MultipleNegativesRankingLoss
    model, tok = load(bert_dir, "sentence-similarity")
    model.train()
    batches = batches or mnrl_batches(tok)
    base = MultipleNegativesRankingLoss()

    def loss_fn(model, batch):
        if loss_calls is not None:
            loss_calls.append(tuple(x["input_ids"].shape for x in batch["inputs"]))
        loss = base(model, batch)
        return loss * batch["poison"] if "poison" in batch else loss

    optimizer = make_optimizer(TrainingArgs(learning_rate=1e-3), 100, 2)
    optimizer.init(model.trainable_parameters())
    full_step, _, _ = build_step(model, loss_fn, optimizer, 1.0, compile)
    losses, oks = [], []
    for i, batch in enumerate(batches):
        if i == scale_nan_at:
            batch = {**batch, "poison": mx.array(float("nan"))}
        loss, norm, ok = full_step(batch)
        mx.eval(model.state, optimizer.state)
        losses.append(loss.item())
        oks.append(ok.item())
    return model, optimizer, losses, oks


def test_compiled_step_equals_eager_step_across_shapes(bert_dir):
    m1, o1, l1, _ = run_steps(bert_dir, compile=True)
    m2, o2, l2, _ = run_steps(bert_dir, compile=False)
    np.testing.assert_allclose(l1, l2, rtol=1e-5, atol=1e-6)
    a, b = weights(m1), weights(m2)
    assert max(float(np.abs(a[k] - b[k]).max()) for k in a) <= 1e-5
    for (k, x), (_, y) in zip(tree_flatten(o1.state), tree_flatten(o2.state)):
        np.testing.assert_allclose(np.array(x), np.array(y), rtol=1e-4, atol=1e-7, err_msg=k)


@pytest.mark.parametrize("compile", [True, False])
def test_a_non_finite_step_leaves_weights_and_moments_and_counts(bert_dir, compile):
    model, opt, _, oks = run_steps(bert_dir, compile, scale_nan_at=2)
    ref, ref_opt, _, _ = run_steps(bert_dir, compile, batches=None, scale_nan_at=None)
    assert oks == [True, True, False, True, True]
    assert int(opt.state["step"].item()) == 5  # the schedule follows the trainer's step
    assert all(np.isfinite(v).all() for v in weights(model).values())
    assert all(np.isfinite(np.array(v)).all() for _, v in tree_flatten(opt.state))
    # Step 3 skipped: the weights differ from a run that trained on it, and are finite.
    assert max(float(np.abs(weights(model)[k] - weights(ref)[k]).max()) for k in weights(ref)) > 0


def test_a_skipped_step_changes_nothing_but_the_step_count(bert_dir):
    from engine.losses import MultipleNegativesRankingLoss
    for compile in (True, False):
        model, tok = load(bert_dir, "sentence-similarity")
        optimizer = make_optimizer(TrainingArgs(learning_rate=1e-3), 100, 0)
        optimizer.init(model.trainable_parameters())
        loss = MultipleNegativesRankingLoss()
        full_step, _, _ = build_step(model, lambda m, b: loss(m, b) * b["poison"], optimizer, 1.0, compile)
        batch = mnrl_batches(tok)[0]
        full_step({**batch, "poison": mx.array(1.0)})  # a real step first: moments are not zero
        mx.eval(model.state, optimizer.state)
        before, moments = weights(model), {k: np.array(v) for k, v in tree_flatten(optimizer.state) if k != "step"}
        _, _, ok = full_step({**batch, "poison": mx.array(float("inf"))})
        mx.eval(model.state, optimizer.state)
        assert not ok.item() and int(optimizer.state["step"].item()) == 2
        after = weights(model)
        assert all(np.array_equal(before[k], after[k]) for k in before)
        assert all(np.array_equal(moments[k], np.array(v)) for k, v in tree_flatten(optimizer.state) if k != "step")


def test_clipping_scales_the_update_like_clip_grad_norm_with_the_exact_norm(bert_dir):
    """SGD (lr 1) makes the update the clipped gradient itself: g * 0.05 / (|g| + 1e-6), |g| in float64."""
    from engine.losses import MultipleNegativesRankingLoss
    model, tok = load(bert_dir, "sentence-similarity")
    model.train()
    loss_fn = MultipleNegativesRankingLoss()
    batch = mnrl_batches(tok)[1]
    mx.random.seed(5)  # the step below draws the same dropout masks from the same key
    _, grads = nn.value_and_grad(model, loss_fn)(model, batch)
    grads = {k: np.array(v).astype(np.float64) for k, v in tree_flatten(grads)}
    norm = np.sqrt(sum((g ** 2).sum() for g in grads.values()))
    assert norm > 0.05  # the clip is active
    before = weights(model, trainable_only=True)
    full_step, _, _ = build_step(model, loss_fn, optim.SGD(learning_rate=1.0), 0.05, compile=True)
    mx.random.seed(5)
    _, reported, _ = full_step(batch)
    mx.eval(model.state)
    assert reported.item() == pytest.approx(norm, rel=1e-5)
    after = weights(model, trainable_only=True)
    for k, g in grads.items():
        # float32 weights near 1 resolve 1e-7: far below the unclipped step (~1e-4), which would fail here.
        np.testing.assert_allclose(after[k], before[k] - g * 0.05 / (norm + 1e-6), rtol=0, atol=3e-7, err_msg=k)


def test_compiled_step_traces_each_padded_shape_once(bert_dir):
    calls = []
    lengths = ((8, 16), (16, 24), (8, 16), (16, 24), (8, 16), (8, 24))
    model, tok = load(bert_dir, "sentence-similarity")
    run_steps(bert_dir, compile=True, batches=mnrl_batches(tok, lengths), loss_calls=calls)
    assert len(calls) == len(set(lengths)) == 3  # Python runs only while tracing
    calls.clear()
    run_steps(bert_dir, compile=False, batches=mnrl_batches(tok, lengths), loss_calls=calls)
    assert len(calls) == len(lengths)


# -- padding (bucketing) ------------------------------------------------------------------------
@pytest.mark.parametrize("task", ["sentence-similarity", "text-classification"])
def test_padding_width_does_not_change_loss_or_gradients(bert_dir, task):
    from engine.data.collators import collator_for
    from engine.data import tokenize_dataset
    from engine.losses import CrossEntropyLoss, MultipleNegativesRankingLoss
    model, tok = load(bert_dir, task, **({"num_labels": 2} if task == "text-classification" else {}))
    rows = sentiment_rows(6, words=5) if task == "text-classification" else pair_rows(6)
    ds = tokenize_dataset(dataset(rows), tok, task, 48)
    loss_fn = CrossEntropyLoss() if task == "text-classification" else MultipleNegativesRankingLoss()
    results = []
    for multiple in (1, 8, 32):
        batch = collator_for(task, tok, pad_to_multiple_of=multiple)([ds[i] for i in range(len(ds))])
        loss, grads = nn.value_and_grad(model, loss_fn)(model, batch)
        results.append((loss.item(), {k: np.array(v) for k, v in tree_flatten(grads)}))
    for loss, grads in results[1:]:
        assert loss == pytest.approx(results[0][0], abs=1e-5)
        assert max(float(np.abs(grads[k] - results[0][1][k]).max()) for k in grads) <= 1e-5


def test_group_by_length_off_draws_random_batches(bert_dir, monkeypatch):
    """group_by_length=False: the sampler sorts within one batch only, so batches are random rows."""
    import engine.training.trainer
    from engine.data import LengthGroupedBatchSampler
    made = []

    class Recording(LengthGroupedBatchSampler):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            made.append(self)

    monkeypatch.setattr(engine.training.trainer, "LengthGroupedBatchSampler", Recording)
    rows = sentiment_rows(16, words=3) + sentiment_rows(16, seed=1, words=12)
    for grouped in (True, False):
        model, tok = load(bert_dir, "text-classification", num_labels=2)
        train(model, tok, "text-classification", dataset(rows), label_info=labels(), batch_size=8, max_steps=1,
              group_by_length=grouped)
    grouped, random = made
    assert grouped.group_size == 400 and random.group_size == 8
    spread = lambda s: max(np.ptp(s.lengths[b]) for b in s.global_batches())
    assert spread(grouped) < spread(random)  # grouped batches hold rows of similar length


# -- prefetching --------------------------------------------------------------------------------
def batches_of(bert_dir, task, prefetch, n):
    from engine.data import LengthGroupedBatchSampler
    from engine.data.mixing import MixedBatchSampler
    from engine.data.prefetch import Prefetcher
    from engine.training.trainer import Trainer
    kw = {"num_labels": 2} if task == "text-classification" else {}
    model, tok = load(bert_dir, "masked-lm" if task == "masked-lm" else task, **kw)
    rows = pair_rows(20) if task == "sentence-similarity" else sentiment_rows(20, words=5)
    if task == "masked-lm":
        rows = [{"text": r["text"]} for r in rows]
    trainer = Trainer(model, tok, task, TrainingArgs(batch_size=3, max_length=32, seed=0), dataset(rows),
                      label_info=labels() if task == "text-classification" else None)
    ds = trainer._tokenized(dataset(rows))
    sampler = MixedBatchSampler([LengthGroupedBatchSampler(trainer._lengths(ds), 3, seed=0)])
    items = trainer._batches(sampler, [ds], [trainer._collator(ds)])
    stream = Prefetcher(items, depth=2) if prefetch else items
    out = [next(stream) for _ in range(n)]
    if prefetch:
        stream.close()
    return out


def flat(batch):
    if "inputs" in batch:
        return [np.array(v) for col in batch["inputs"] for v in col.values()] + [np.array(h) for h in batch["hashes"]]
    return [np.array(v) for v in batch.values()]


@pytest.mark.parametrize("task", ["sentence-similarity", "text-classification", "masked-lm"])
def test_prefetching_yields_the_same_batches_in_the_same_order(bert_dir, task):
    plain, ahead = batches_of(bert_dir, task, False, 17), batches_of(bert_dir, task, True, 17)  # ~2.5 epochs
    for (b1, n1, t1, s1, d1), (b2, n2, t2, s2, d2) in zip(plain, ahead):
        assert (n1, t1, s1, d1) == (n2, t2, s2, d2)
        assert all(np.array_equal(x, y) for x, y in zip(flat(b1), flat(b2)))
    assert [s["epoch"] for *_, s, _ in ahead][-1] == 2  # it crossed epochs


def test_prefetcher_keeps_order_raises_at_the_same_place_and_stops():
    from engine.data.prefetch import Prefetcher

    def items():
        yield from range(5)
        raise ValueError("bad row")

    stream = Prefetcher(items(), depth=2)
    assert [next(stream) for _ in range(5)] == list(range(5))
    with pytest.raises(ValueError, match="bad row"):
        next(stream)
    endless = Prefetcher(iter(int, 1), depth=2)  # an endless iterator
    next(endless)
    endless.close()
    assert not endless._thread.is_alive()
    assert list(Prefetcher(iter([1, 2, 3]), depth=0)) == [1, 2, 3]


def test_a_checkpoint_saves_the_trained_position_not_the_prefetched_one(bert_dir, tmp_path):
    import json
    model, tok = load(bert_dir, "text-classification", num_labels=2)
    train(model, tok, "text-classification", dataset(sentiment_rows(20)), label_info=labels(), batch_size=4,
          max_steps=3, output_dir=str(tmp_path))
    state = json.loads((tmp_path / "checkpoints" / "step-0000003" / "trainer_state.json").read_text())
    assert state["sampler"]["batches_consumed"] == 3 and state["sampler"]["epoch"] == 0


# -- process-level settings ---------------------------------------------------------------------
def test_tokenizer_loads_without_importing_torch_and_tokenizes_like_autotokenizer():
    code = ("import sys, json; from engine.models import load_model; m, t = load_model('default', 'sentence-similarity');"
            "print(json.dumps(['torch' in sys.modules, t(['Fine-tuning a model, e.g. MiniLM.'])['input_ids']]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    torch_loaded, ids = __import__("json").loads(out.stdout.strip().splitlines()[-1])
    assert not torch_loaded
    from transformers import AutoTokenizer
    from engine.defaults import default_model_dir
    assert AutoTokenizer.from_pretrained(str(default_model_dir()))(["Fine-tuning a model, e.g. MiniLM."])["input_ids"] == ids


@pytest.mark.skipif(sys.platform != "linux", reason="glibc malloc settings")
def test_keep_freed_memory_applies_once():
    import engine.backend
    assert engine.backend.keep_freed_memory() is True
    assert engine.backend.keep_freed_memory() is True
