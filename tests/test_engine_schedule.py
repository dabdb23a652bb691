"""LR and momentum schedules against hand computations (slimssl.schedule, and the engine's
config-driven slimssl.engine.schedule built on it)."""

import math
from types import SimpleNamespace

import pytest

from slimssl.engine.schedule import build_lr_schedule
from slimssl.schedule import (
    cosine_lr,
    momentum_schedule,
    scaled_lr,
    schedule_scale,
    set_lr,
    warmup_cosine,
)


def test_warmup_then_cosine():
    # total 110 steps, 10 warm-up, base 1.0, min 0.0
    assert cosine_lr(0, 110, 1.0, 10) == 0.0
    assert cosine_lr(5, 110, 1.0, 10) == pytest.approx(0.5)
    assert cosine_lr(10, 110, 1.0, 10) == pytest.approx(1.0)
    assert cosine_lr(60, 110, 1.0, 10) == pytest.approx(0.5)  # half-way: cos(pi/2) = 0
    assert cosine_lr(35, 110, 1.0, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert cosine_lr(110, 110, 1.0, 10) == pytest.approx(0.0)
    assert cosine_lr(500, 110, 1.0, 10) == pytest.approx(0.0)


def test_min_lr():
    assert cosine_lr(0, 100, 1.0, 0, min_lr=0.1) == pytest.approx(1.0)
    assert cosine_lr(50, 100, 1.0, 0, min_lr=0.1) == pytest.approx(0.55)
    assert cosine_lr(100, 100, 1.0, 0, min_lr=0.1) == pytest.approx(0.1)


def test_step_change_keeps_cosine_position():
    # SlimCLR-MoCov3: 1.2 -> 3.2 after slow start; position p unchanged.
    before = cosine_lr(49, 100, 1.2, 0, change_step=50, change_to=3.2)
    after = cosine_lr(50, 100, 1.2, 0, change_step=50, change_to=3.2)
    assert before == pytest.approx(1.2 * 0.5 * (1 + math.cos(math.pi * 0.49)))
    assert after == pytest.approx(3.2 * 0.5)  # 3.2 at p = 0.5
    assert cosine_lr(75, 100, 1.2, 0, change_step=50, change_to=3.2) == pytest.approx(
        3.2 * 0.5 * (1 + math.cos(math.pi * 0.75)))


def test_momentum_schedule():
    assert momentum_schedule(17, 100, 0.99, "constant") == 0.99
    assert momentum_schedule(0, 100, 0.99, "cosine") == pytest.approx(0.99)
    assert momentum_schedule(50, 100, 0.99, "cosine") == pytest.approx(0.995)
    assert momentum_schedule(100, 100, 0.99, "cosine") == pytest.approx(1.0)
    with pytest.raises(ValueError):
        momentum_schedule(0, 10, 0.99, "linear")


def test_warmup_is_step_over_warmup_as_in_the_authors_code():
    # MoCo v3 main_moco.py / SlimCLR utils/lr_scheduler.py: lr * step / warmup, so with 4
    # warm-up steps the factors are 0, 1/4, 2/4, 3/4 and then the cosine starts at 1.
    assert [warmup_cosine(s, 14, 4) for s in range(5)] == [0.0, 0.25, 0.5, 0.75, 1.0]
    # 10 post-warm-up steps: step 9 is at p = 5/10 -> (1 + cos(pi/2)) / 2 = 0.5
    assert warmup_cosine(9, 14, 4) == pytest.approx(0.5)
    assert warmup_cosine(14, 14, 4) == pytest.approx(0.0, abs=1e-15)
    with pytest.raises(ValueError, match="total_steps"):
        warmup_cosine(0, 0)


def test_probe_schedules():
    # MoCo v2 probes: x0.1 at epochs 60 and 80 of 100; 1000 steps = 10 per epoch.
    assert [schedule_scale("step", s, 1000, 100, (60, 80)) for s in (0, 599, 600, 799, 800, 999)] \
        == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    assert schedule_scale("cosine", 0, 100, 90) == 1.0
    assert schedule_scale("cosine", 25, 100, 90) == pytest.approx((1 + math.sqrt(0.5)) / 2)
    assert schedule_scale("cosine", 100, 100, 90) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="unknown schedule"):
        schedule_scale("linear", 0, 10, 1)


def test_build_from_config_and_set_lr():
    import torch

    assert scaled_lr(0.3, 1024, "linear") == pytest.approx(1.2)
    assert scaled_lr(0.3, 1024, "none") == 0.3
    oc = SimpleNamespace(lr=0.3, lr_scaling="linear", warmup_epochs=1, min_lr=0.0,
                         lr_change_epoch=5, lr_change_to=0.8)
    f = build_lr_schedule(oc, global_batch=1024, steps_per_epoch=10, epochs=10)
    assert f(0) == 0.0
    assert f(5) == pytest.approx(0.6)  # half of 1.2 during warm-up
    assert f(10) == pytest.approx(1.2)
    assert f(50) == pytest.approx(3.2 * 0.5 * (1 + math.cos(math.pi * 40 / 90)))
    assert f(0) == f(0)  # pure
    p, q = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([{"params": [p]}, {"params": [q], "lr_scale": 0.1}], lr=1.0)
    set_lr(opt, 2.0)
    assert [g["lr"] for g in opt.param_groups] == [2.0, pytest.approx(0.2)]
    r = torch.nn.Parameter(torch.zeros(2))
    opt.add_param_group({"params": [r], "lr": 0.05, "fixed_lr": True})
    set_lr(opt, 3.0)
    assert [g["lr"] for g in opt.param_groups] == [3.0, pytest.approx(0.3), 0.05]
