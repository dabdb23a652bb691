"""LARS and optimizer construction against hand computations (slimssl.engine.optim)."""

import math

import pytest
import torch
from torch import nn

from slimssl.engine.optim import LARS, build_optimizer, split_decay_params


def _lars_step_by_hand(w, g, buf, lr, wd, mu, eta=0.001):
    u = [gi + wd * wi for gi, wi in zip(g, w)]
    wn = math.sqrt(sum(x * x for x in w))
    un = math.sqrt(sum(x * x for x in u))
    trust = eta * wn / un
    buf = [mu * b + ui * trust for b, ui in zip(buf, u)]
    w = [wi - lr * b for wi, b in zip(w, buf)]
    return w, buf


def test_lars_one_step_by_hand():
    # w = [3, 4] (||w|| = 5), g = [0.1, 0.2], wd = 0.1 -> u = [0.4, 0.6], ||u|| = sqrt(0.52)
    # trust = 0.001 * 5 / sqrt(0.52); buf = u * trust; w -= 0.5 * buf
    p = nn.Parameter(torch.tensor([3.0, 4.0], dtype=torch.float64))
    opt = LARS([{"params": [p], "exclude": False}], lr=0.5, weight_decay=0.1, momentum=0.9)
    p.grad = torch.tensor([0.1, 0.2], dtype=torch.float64)
    opt.step()
    trust = 0.001 * 5 / math.sqrt(0.52)
    expected = [3.0 - 0.5 * 0.4 * trust, 4.0 - 0.5 * 0.6 * trust]
    assert p.tolist() == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx([2.9986132, 3.9979199], abs=1e-7)


def test_lars_two_steps_by_hand():
    p = nn.Parameter(torch.tensor([3.0, 4.0], dtype=torch.float64))
    opt = LARS([{"params": [p], "exclude": False}], lr=0.5, weight_decay=0.1, momentum=0.9)
    w, buf = [3.0, 4.0], [0.0, 0.0]
    for g in ([0.1, 0.2], [-0.3, 0.05]):
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        w, buf = _lars_step_by_hand(w, g, buf, lr=0.5, wd=0.1, mu=0.9)
        assert p.tolist() == pytest.approx(w, rel=1e-12)
    assert opt.state[p]["momentum_buffer"].tolist() == pytest.approx(buf, rel=1e-12)


def test_lars_excluded_param_is_plain_sgd_momentum():
    # 1-D tensor with exclude=None (auto) -> no weight decay, no trust ratio
    p = nn.Parameter(torch.tensor([3.0, 4.0], dtype=torch.float64))
    opt = LARS([p], lr=0.5, weight_decay=0.1, momentum=0.9)
    p.grad = torch.tensor([0.1, 0.2], dtype=torch.float64)
    opt.step()
    assert p.tolist() == pytest.approx([3.0 - 0.05, 4.0 - 0.1])
    opt.step()  # buf = 0.9 * g + g = 1.9 g
    assert p.tolist() == pytest.approx([3.0 - 0.05 - 0.095, 4.0 - 0.1 - 0.19])


def test_lars_zero_weight_uses_trust_one():
    p = nn.Parameter(torch.zeros(2, 2))
    opt = LARS([p], lr=1.0, weight_decay=0.0, momentum=0.0)
    p.grad = torch.ones(2, 2)
    opt.step()
    assert torch.allclose(p, -torch.ones(2, 2))


def test_split_and_build():
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    m[0].bias.requires_grad_(False)
    decay, no_decay = split_decay_params(m)
    assert {id(p) for p in decay} == {id(m[0].weight), id(m[3].weight)}
    assert {id(p) for p in no_decay} == {id(m[1].weight), id(m[1].bias), id(m[3].bias)}

    sgd = build_optimizer(m, "sgd", lr=0.1, weight_decay=1e-4, momentum=0.9)
    assert isinstance(sgd, torch.optim.SGD)
    assert [g["weight_decay"] for g in sgd.param_groups] == [1e-4, 0.0]
    lars = build_optimizer(m.parameters(), "lars", lr=0.1, weight_decay=1e-6)
    assert isinstance(lars, LARS)
    assert [(g["weight_decay"], g["exclude"]) for g in lars.param_groups] == [(1e-6, False), (0.0, True)]
    assert lars.param_groups[0]["trust_coefficient"] == 0.001
    with pytest.raises(ValueError):
        build_optimizer(m, "adam", lr=0.1, weight_decay=0.0)


def test_lars_state_dict_roundtrip():
    m = nn.Linear(3, 2)
    opt = build_optimizer(m, "lars", lr=0.1, weight_decay=1e-6)
    m(torch.randn(4, 3)).sum().backward()
    opt.step()
    opt2 = build_optimizer(m, "lars", lr=0.1, weight_decay=1e-6)
    opt2.load_state_dict(opt.state_dict())
    assert torch.equal(opt2.state[m.weight]["momentum_buffer"], opt.state[m.weight]["momentum_buffer"])


def test_fixed_lr_groups_keep_the_base_rate_while_the_others_follow_the_cosine(tmp_path):
    # SimSiam's predictor at a constant lr (Sec. 4.2 / Table 1c): one tiny trainer, 4 steps
    from slimssl.engine.config import Config, ConfigError
    from slimssl.engine.trainer import Trainer
    from slimssl.schedule import cosine_lr

    cfg = Config.from_dict(dict(
        data=dict(path="synthetic", image_size=8, batch_size=8, num_workers=0, views="byol_cifar",
                  train_fraction=0.0625),                     # ~32 images: 3-4 steps per epoch
        model=dict(arch="resnet10_narrow", widths=[1.0, 0.5]),
        method=dict(name="simsiam", proj_hidden=8, proj_dim=8, pred_hidden=4),
        recipe=dict(name="snet", num_sampled=2),
        optim=dict(name="sgd", lr=0.4, lr_scaling="linear", warmup_epochs=1.0),
        train=dict(epochs=2, device="cpu", tensorboard=False, log_every=1)))
    assert cfg.method.fix_pred_lr is True                  # resolved default for simsiam
    trainer = Trainer(cfg, tmp_path, progress="off")
    pred = {id(p) for p in trainer.method.online.predictor.parameters()}
    groups = trainer.optimizer.param_groups
    fixed = [g for g in groups if g.get("fixed_lr")]
    assert {id(p) for g in fixed for p in g["params"]} == pred
    assert all(not any(id(p) in pred for p in g["params"]) for g in groups if g not in fixed)
    base = 0.4 * 8 / 256                                     # linear scaling: 0.0125
    images, _ = next(iter(trainer.loader))
    warm, total = trainer.steps_per_epoch, trainer.total_steps   # 1 warm-up epoch of 2
    seen = []
    for step in range(total):
        trainer.state.global_step = step
        trainer.train_step(images, step / warm)
        seen.append(([g["lr"] for g in groups if not g.get("fixed_lr")],
                     [g["lr"] for g in fixed]))
    for step, (scheduled, constant) in enumerate(seen):
        # by hand: warm-up base * k / W for k < W, then base * (1 + cos(pi (k - W) / (T - W))) / 2
        want = (base * step / warm if step < warm else
                base * (1 + math.cos(math.pi * (step - warm) / (total - warm))) / 2)
        assert want == pytest.approx(cosine_lr(step, total, base, warm))
        assert scheduled == pytest.approx([want] * len(scheduled))
        assert constant == pytest.approx([base] * len(constant))
    assert Config.from_dict({"method": {"name": "byol"}}).method.fix_pred_lr is False
    with pytest.raises(ConfigError, match="fix_pred_lr"):
        from slimssl.engine.build import build_backbone, build_method
        bad = Config.from_dict({"method": {"name": "mocov2", "fix_pred_lr": True}})
        build_method(bad, build_backbone(bad))


def test_decay_norm_bias_decays_one_dim_parameters_by_hand():
    # one SGD step, zero gradient: only weight decay moves a parameter, by -lr * wd * p
    lin = nn.Linear(2, 1)
    with torch.no_grad():
        lin.weight.fill_(2.0)
        lin.bias.fill_(3.0)
    for flag, bias_after in ((False, 3.0), (True, 3.0 - 0.1 * 0.5 * 3.0)):
        m = nn.Linear(2, 1)
        m.load_state_dict(lin.state_dict())
        opt = build_optimizer(m, "sgd", lr=0.1, weight_decay=0.5, momentum=0.0,
                              decay_norm_bias=flag)
        for p in m.parameters():
            p.grad = torch.zeros_like(p)
        opt.step()
        assert torch.allclose(m.weight, torch.full_like(m.weight, 2.0 - 0.1 * 0.5 * 2.0))
        assert m.bias.item() == pytest.approx(bias_after)


def test_decay_norm_bias_auto_follows_the_optimizer():
    from slimssl.engine.config import load_config

    assert load_config(None, ["optim.name=sgd"]).optim.decay_norm_bias is True
    assert load_config(None, ["optim.name=lars"]).optim.decay_norm_bias is False
    assert load_config(None, ["optim.name=sgd", "optim.decay_norm_bias=false"]
                       ).optim.decay_norm_bias is False
