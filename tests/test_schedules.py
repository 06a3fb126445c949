"""Learning-rate schedules: pure functions of the step, equal to transformers' LambdaLR lambdas."""
import math

import pytest

from engine.training.schedules import lr_at, make_schedule, warmup_steps_for

BASE, TOTAL, WARMUP = 2e-3, 20, 5


def _torch_lambda(kind, total, warmup):
    from transformers import optimization as opt
    if kind == "linear":
        return lambda s: opt._get_linear_schedule_with_warmup_lr_lambda(
            s, num_warmup_steps=warmup, num_training_steps=total)
    if kind == "cosine":
        return lambda s: opt._get_cosine_schedule_with_warmup_lr_lambda(
            s, num_warmup_steps=warmup, num_training_steps=total, num_cycles=0.5)
    return lambda s: opt._get_constant_schedule_with_warmup_lr_lambda(s, num_warmup_steps=warmup)


@pytest.mark.parametrize("kind", ["linear", "cosine", "constant"])
@pytest.mark.parametrize("warmup", [0, WARMUP])
def test_schedule_matches_transformers(kind, warmup):
    ref = _torch_lambda(kind, TOTAL, warmup)
    schedule = make_schedule(kind, BASE, TOTAL, warmup)
    for step in range(TOTAL + 1):
        assert float(schedule(step)) == pytest.approx(BASE * ref(step), rel=1e-5, abs=BASE * 1e-6), step


def test_schedule_matches_the_real_transformers_scheduler():
    """Through torch's LambdaLR as Trainer uses it: the lr of the update made at each step."""
    import torch
    from transformers import get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup
    for factory, kind in ((get_linear_schedule_with_warmup, "linear"), (get_cosine_schedule_with_warmup, "cosine")):
        opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=BASE)
        sched = factory(opt, num_warmup_steps=WARMUP, num_training_steps=TOTAL)
        for step in range(TOTAL):
            used = opt.param_groups[0]["lr"]   # the lr the update at this step uses
            assert float(lr_at(step, kind, BASE, TOTAL, WARMUP)) == pytest.approx(used, rel=1e-5, abs=BASE * 1e-6)
            opt.step()
            sched.step()


def test_warmup_then_decay_values():
    linear = make_schedule("linear", 1.0, 10, 4)
    values = [float(linear(s)) for s in range(11)]
    assert values[0] == 0.0                     # the first update with warmup has lr 0, like transformers
    assert values[:5] == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    assert values[5:] == pytest.approx([5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6, 0.0])
    cosine = [float(make_schedule("cosine", 1.0, 10, 4)(s)) for s in range(11)]
    assert cosine[4] == pytest.approx(1.0) and cosine[7] == pytest.approx(0.5) and cosine[10] == pytest.approx(0.0)
    assert all(a >= b for a, b in zip(cosine[4:], cosine[5:]))
    constant = [float(make_schedule("constant", 1.0, 10, 4)(s)) for s in range(11)]
    assert constant == pytest.approx([0.0, 0.25, 0.5, 0.75] + [1.0] * 7)


def test_schedule_stays_at_its_end_after_the_last_step():
    assert float(lr_at(25, "linear", 1.0, 20, 5)) == 0.0
    assert float(lr_at(25, "cosine", 1.0, 20, 5)) == pytest.approx(0.0, abs=1e-7)


def test_schedule_works_on_mx_arrays_inside_compile():
    import mlx.core as mx
    f = mx.compile(lambda s: lr_at(s, "cosine", 1.0, 10, 2))
    assert float(f(mx.array(6))) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))


def test_warmup_steps_for():
    assert warmup_steps_for(100, 0, 0.1) == 10
    assert warmup_steps_for(100, 7, 0.1) == 7      # explicit steps win
    assert warmup_steps_for(15, 0, 0.1) == 2       # rounded up, as transformers does
    assert warmup_steps_for(100) == 0


def test_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="linear, cosine or constant"):
        lr_at(0, "polynomial", 1.0, 10, 0)
