"""LengthGroupedBatchSampler: padding saved, determinism, resume and sharding (engine/data/sampler.py)."""
import numpy as np
import pytest

from engine.data import LengthGroupedBatchSampler


def lengths(n=5000, seed=0):
    # short-text pairs: most 8–30 tokens, a long tail up to 256 (like definitions vs terms)
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(mean=3.0, sigma=0.6, size=n).astype(int) + 4, 4, 256)


def padding_ratio(batches, lens):
    padded = sum(len(b) * lens[b].max() for b in batches)
    return 1 - sum(lens[b].sum() for b in batches) / padded


def test_grouped_batches_waste_much_less_on_padding():
    lens = lengths()
    grouped = list(LengthGroupedBatchSampler(lens, 32, seed=0))
    order = np.random.default_rng(0).permutation(len(lens))
    random = [order[i:i + 32] for i in range(0, len(lens), 32)]
    g, r = padding_ratio([np.array(b) for b in grouped], lens), padding_ratio(random, lens)
    print(f"\npadding ratio: random {r:.1%}, length-grouped {g:.1%}")
    assert r > 0.3 and g < r / 4


def test_each_row_once_per_epoch_and_len():
    lens = lengths(1000)
    sampler = LengthGroupedBatchSampler(lens, 32, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 32                       # ceil(1000 / 32)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    assert sum(len(b) < 32 for b in batches) == 1
    dropped = LengthGroupedBatchSampler(lens, 32, seed=1, drop_last=True)
    assert len(dropped) == 31 and all(len(b) == 32 for b in dropped)


def test_longest_batch_comes_first():
    lens = lengths(2000)
    first = list(LengthGroupedBatchSampler(lens, 16, seed=3))[0]
    assert lens.argmax() in first


def test_deterministic_for_seed_and_epoch():
    lens = lengths(800)
    a, b = LengthGroupedBatchSampler(lens, 16, seed=5), LengthGroupedBatchSampler(lens, 16, seed=5)
    assert list(a) == list(b)
    a.set_epoch(1)
    b.set_epoch(1)
    epoch1 = list(a)
    assert epoch1 == list(b) and epoch1 != list(LengthGroupedBatchSampler(lens, 16, seed=5))
    assert list(LengthGroupedBatchSampler(lens, 16, seed=6)) != list(LengthGroupedBatchSampler(lens, 16, seed=5))


def test_resume_skips_consumed_batches():
    lens = lengths(700)
    full = LengthGroupedBatchSampler(lens, 10, seed=2)
    full.set_epoch(3)
    expected = list(full)
    run = LengthGroupedBatchSampler(lens, 10, seed=2)
    run.set_epoch(3)
    it = iter(run)
    seen = [next(it) for _ in range(25)]
    state = run.state_dict()
    assert state == {"epoch": 3, "batches_consumed": 25, "seed": 2}
    resumed = LengthGroupedBatchSampler(lens, 10, seed=0)
    resumed.load_state_dict(state)
    resumed.set_epoch(3)                                              # same epoch: position is kept
    assert seen + list(resumed) == expected
    resumed.set_epoch(4)
    assert resumed.state_dict()["batches_consumed"] == 0 and len(list(resumed)) == len(resumed)


def test_shuffle_false_is_in_order_within_groups():
    lens = np.arange(100)
    batches = list(LengthGroupedBatchSampler(lens, 10, shuffle=False, group_size=50))
    assert batches[0] == list(range(49, 39, -1)) and batches[5] == list(range(99, 89, -1))


@pytest.mark.parametrize("n", [1000, 1003])
def test_sharding_gives_each_rank_a_contiguous_slice_of_every_global_batch(n):
    lens = lengths(n)
    ranks = [list(LengthGroupedBatchSampler(lens, 8, seed=4, num_replicas=4, rank=r)) for r in range(4)]
    whole = LengthGroupedBatchSampler(lens, 8, seed=4, num_replicas=4, rank=0).global_batches()
    assert all(len(r) == len(whole) == -(-n // 32) for r in ranks)
    for step, batch in enumerate(whole):
        parts = [ranks[r][step] for r in range(4)]
        assert len({len(p) for p in parts}) == 1                      # same size on every rank
        if len(batch) == 32:
            assert sum(parts, []) == batch.tolist()
        else:
            assert set(sum(parts, [])) == set(batch.tolist())         # last batch: rows repeated to fill
    covered = {i for r in ranks for b in r for i in b}
    assert covered == set(range(n))
    with pytest.raises(ValueError):
        LengthGroupedBatchSampler(lens, 8, num_replicas=2, rank=2)


# -- no duplicates: no batch holds the same text twice ---------------------------------------------------------

def repeated_texts(n, seed=0):
    """(anchor, positive, negative) texts of ``n`` rows drawn from a small pool: many texts repeat, some a lot
    (one positive in 20 rows), and a text can be one row's anchor and another row's negative."""
    rng = np.random.default_rng(seed)
    pool = [f"t{i}" for i in range(n)]
    rows = [(pool[i], pool[int(rng.integers(0, n // 3))], pool[int(rng.integers(0, n))]) for i in range(n)]
    return [(a, "popular" if i % 20 == 0 else p, ng) for i, (a, p, ng) in enumerate(rows)]


def assert_no_duplicates(batches, texts):
    for b in batches:
        seen = [t for i in b for t in set(texts[i])]
        assert len(seen) == len(set(seen)), b


@pytest.mark.parametrize("group", [True, False])
def test_no_duplicates_in_any_batch_and_every_row_once(group):
    lens, texts = lengths(600), repeated_texts(600)
    plain = LengthGroupedBatchSampler(lens, 16, seed=1, group_size=None if group else 16)
    assert any(len({t for i in b for t in texts[i]}) < sum(len(set(texts[i])) for i in b) for b in plain)  # it would
    sampler = LengthGroupedBatchSampler(lens, 16, seed=1, texts=texts, group_size=None if group else 16)
    batches = list(sampler)
    assert_no_duplicates(batches, texts)
    assert sorted(i for b in batches for i in b) == list(range(600))
    assert len(batches) == len(sampler) and sum(len(b) == 16 for b in batches) >= len(batches) - 2
    if group:   # length grouping still saves most of the padding
        order = np.random.default_rng(1).permutation(600)
        random = [order[i:i + 16] for i in range(0, 600, 16)]
        assert padding_ratio([np.array(b) for b in batches], lens) < padding_ratio(random, lens) / 2
    # a row whose own texts repeat (anchor = positive) is no conflict with itself
    same = [("x", "x")] + [(f"a{i}", f"b{i}") for i in range(9)]
    assert sorted(i for b in LengthGroupedBatchSampler(np.ones(10), 4, texts=same) for i in b) == list(range(10))


def test_no_duplicates_a_text_in_more_rows_than_batches():
    texts = [("same", f"p{i}") for i in range(10)]   # 10 rows share their anchor: 10 batches of one row
    sampler = LengthGroupedBatchSampler(np.arange(10), 4, seed=0, texts=texts)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 10 and all(len(b) == 1 for b in batches)
    assert LengthGroupedBatchSampler(np.arange(10), 4, texts=texts, drop_last=True).global_batches() == []
    with pytest.raises(ValueError, match="texts"):
        LengthGroupedBatchSampler(np.arange(10), 4, texts=texts[:9])


def test_no_duplicates_resume_and_ranks():
    lens, texts = lengths(500), repeated_texts(500, seed=4)
    full = LengthGroupedBatchSampler(lens, 8, seed=2, texts=texts)
    full.set_epoch(1)
    expected = list(full)
    run = LengthGroupedBatchSampler(lens, 8, seed=2, texts=texts)
    run.set_epoch(1)
    it = iter(run)
    seen = [next(it) for _ in range(17)]
    resumed = LengthGroupedBatchSampler(lens, 8, seed=0, texts=texts)
    resumed.load_state_dict(run.state_dict())
    assert seen + list(resumed) == expected                          # exact resume, mid-epoch
    # Ranks: the global batch (what gathered losses see) is free of duplicates, each rank reads a slice of it.
    ranks = [LengthGroupedBatchSampler(lens, 4, seed=2, texts=texts, num_replicas=2, rank=r) for r in range(2)]
    whole = ranks[0].global_batches()
    assert_no_duplicates(whole, texts)
    for step, (a, b) in enumerate(zip(*ranks)):
        if len(whole[step]) == 8:
            assert a + b == whole[step].tolist()


def test_row_texts_of_a_tokenized_dataset():
    from engine.data.sampler import row_texts
    from tests.trainer_helpers import dataset
    ds = dataset([{"text": "q1", "text_pair": "p", "negative_1": None, "text_input_ids": [1], "label": 1.0},
                  {"text": "q2", "text_pair": "p", "negative_1": "n", "text_input_ids": [2], "label": 0.0}])
    assert row_texts(ds) == [("q1", "p"), ("q2", "p", "n")]   # a missing negative is no shared "None" text


def test_trainer_no_duplicates_batches(tmp_path_factory, monkeypatch):
    """--batch-sampler no_duplicates reaches the trainer's sampler: with every 3rd row sharing one positive,
    no batch the loss sees holds a hash twice in its positives, and the setting is checked."""
    from engine.training.args import TrainingArgs
    from tests.trainer_helpers import dataset, load, pair_rows, tiny_bert_dir, train
    rows = [dict(r, text_pair="the same answer") if i % 3 == 0 else r for i, r in enumerate(pair_rows(24))]
    model, tok = load(tiny_bert_dir(tmp_path_factory), "sentence-similarity")
    seen = []
    real = LengthGroupedBatchSampler.__iter__
    monkeypatch.setattr(LengthGroupedBatchSampler, "__iter__", lambda self: (seen.append(b) or b for b in real(self)))
    train(model, tok, "sentence-similarity", dataset(rows), max_steps=3, batch_size=6, batch_sampler="no_duplicates")
    texts = [(r["text"], r["text_pair"], r["negative"]) for r in rows]
    assert len(seen) >= 3
    assert_no_duplicates(seen, texts)
    with pytest.raises(ValueError, match="batch_sampler"):
        TrainingArgs(batch_sampler="unique")
