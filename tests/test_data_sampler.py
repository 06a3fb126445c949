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
