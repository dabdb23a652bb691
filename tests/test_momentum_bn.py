"""Momentum BN (DSPNet Sec. 5.1.1 -> Momentum^2 Teacher) against hand computations."""

import math

import pytest
import torch
import torch.nn.functional as F

from slimssl.engine.config import Config, ConfigError, load_config
from slimssl.engine.build import build_method, build_backbone
from slimssl.engine.ema import ema_update_
from slimssl.engine.trainer import Trainer
from slimssl.methods.byol import BYOL
from slimssl.models import create
from slimssl.nn.norm import SlimBatchNorm1d, SlimBatchNorm2d, momentum_statistics

EPS = 1e-5


def _bn(mode):
    bn = SlimBatchNorm1d(2, mode, widths=(1.0,)).train()
    affine = bn.bn[0] if mode == "switchable" else bn
    with torch.no_grad():
        affine.weight.copy_(torch.tensor([2.0, 1.0]))
        affine.bias.copy_(torch.tensor([0.0, 1.0]))
    stats = bn.bn[0] if mode == "switchable" else bn
    return bn, stats


@pytest.mark.parametrize("mode", ["switchable", "universal"])
def test_momentum_bn_two_views_by_hand(mode):
    bn, stats = _bn(mode)              # running mean [0, 0], var [1, 1]
    x1 = torch.tensor([[1.0, 2.0], [3.0, 6.0]])   # mean [2, 4], biased var [1, 4], unbiased [2, 8]
    x2 = torch.tensor([[0.0, 0.0], [2.0, 2.0]])   # mean [1, 1], biased var [1, 1], unbiased [2, 2]
    with momentum_statistics(bn, alpha=0.5):
        y1, y2 = bn(x1), bn(x2)
        # both views see the same (not yet updated) running statistics
        assert stats.running_mean.tolist() == [0.0, 0.0]
    # view 1: mu = .5 [2, 4] + .5 [0, 0] = [1, 2]; var = .5 [1, 4] + .5 [1, 1] = [1, 2.5]
    n1 = torch.tensor([[0.0, 0.0], [2 / math.sqrt(1 + EPS), 4 / math.sqrt(2.5 + EPS)]])
    # view 2: mu = [.5, .5], var = [1, 1]
    n2 = torch.tensor([[-0.5, -0.5], [1.5, 1.5]]) / math.sqrt(1 + EPS)
    w, b = torch.tensor([2.0, 1.0]), torch.tensor([0.0, 1.0])
    assert torch.allclose(y1, n1 * w + b, atol=1e-6)
    assert torch.allclose(y2, n2 * w + b, atol=1e-6)
    # one update per context, mean of the views' statistics (unbiased variances):
    # mean = .5 * ([2, 4] + [1, 1]) / 2 = [.75, 1.25]; var = .5 * ([2, 8] + [2, 2]) / 2 + .5 = [1.5, 3]
    assert torch.allclose(stats.running_mean, torch.tensor([0.75, 1.25]))
    assert torch.allclose(stats.running_var, torch.tensor([1.5, 3.0]))
    assert int(stats.num_batches_tracked) == 1
    assert bn.momentum_stats is None           # off again outside the context


def test_alpha_one_is_plain_training_batchnorm_and_alpha_zero_uses_running_stats():
    torch.manual_seed(0)
    bn = SlimBatchNorm2d(3, "switchable", widths=(1.0,)).train()
    x = torch.randn(4, 3, 5, 5) * 3 + 1
    with momentum_statistics(bn, alpha=1.0):
        y = bn(x)
    ref = F.batch_norm(x, None, None, bn.bn[0].weight, bn.bn[0].bias, True, 0.0, EPS)
    assert torch.allclose(y, ref, atol=1e-5)
    assert torch.allclose(bn.bn[0].running_var, x.var((0, 2, 3), unbiased=True), atol=1e-5)
    mean, var = bn.bn[0].running_mean.clone(), bn.bn[0].running_var.clone()
    with momentum_statistics(bn, alpha=0.0):
        y0 = bn(x * 5)                          # the batch is ignored entirely
    assert torch.allclose(y0, F.batch_norm(x * 5, mean, var, bn.bn[0].weight, bn.bn[0].bias,
                                           False, 0.0, EPS), atol=1e-5)
    assert torch.equal(bn.bn[0].running_mean, mean)


def test_failed_forward_commits_nothing_and_bad_alpha_is_refused():
    bn, stats = _bn("universal")
    with pytest.raises(RuntimeError, match="boom"):
        with momentum_statistics(bn, alpha=0.5):
            bn(torch.tensor([[1.0, 2.0], [3.0, 6.0]]))
            raise RuntimeError("boom")
    assert stats.running_mean.tolist() == [0.0, 0.0] and bn.momentum_stats is None
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        with momentum_statistics(bn, alpha=1.5):
            pass


def test_byol_target_keeps_its_own_statistics():
    torch.manual_seed(0)
    method = BYOL(create("resnet10_narrow", widths=[1.0, 0.5], stem="cifar"), 16, 8, 16).train()
    method.use_momentum_bn()
    bn = method.target.backbone.bn1 if hasattr(method.target.backbone, "bn1") else next(
        m for m in method.target.modules() if isinstance(m, SlimBatchNorm2d))
    seen = []
    bn.register_forward_hook(lambda m, inp, out: seen.append(inp[0].detach().float()))
    old_mean = bn.calibrated_buffers()[0].clone()
    views = (torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8))
    with method.target_statistics(0.25):
        method.target_forward(views)
    assert len(seen) == 2
    batch_means = torch.stack([s.mean((0, 2, 3)) for s in seen]).mean(0)
    want = 0.75 * old_mean + 0.25 * batch_means
    assert torch.allclose(bn.calibrated_buffers()[0], want, atol=1e-6)
    # the EMA no longer overwrites the target's statistics with the online network's
    ema_update_(method.target.backbone, method.online.backbone, 0.99, copy_buffers=False)
    assert torch.allclose(bn.calibrated_buffers()[0], want, atol=1e-6)


def test_config_and_trainer_step(tmp_path):
    for name in ("dspnet_byol_cifar10", "dspnet_byol_resnet34_in1k", "dspnet_byol_mobilenetv3_in1k"):
        assert load_config(f"configs/{name}.yaml").method.momentum_bn is True
    bad = Config.from_dict({"method": {"name": "simclr", "momentum_bn": True},
                            "recipe": {"name": "usnet"}})
    with pytest.raises(ConfigError, match="momentum_bn"):
        build_method(bad, build_backbone(bad))
    cfg = Config.from_dict(dict(
        data=dict(path="synthetic", image_size=16, batch_size=8, num_workers=0, views="byol_cifar"),
        train=dict(epochs=1, device="cpu", tensorboard=False, log_every=1),
        model=dict(arch="resnet10_narrow", widths=[1.0, 0.5]),
        method=dict(name="byol", proj_hidden=16, proj_dim=8, pred_hidden=16, momentum_bn=True),
        recipe=dict(name="dspnet", num_sampled=2),
        optim=dict(name="lars", lr=0.2, weight_decay=1.5e-6, warmup_epochs=0)))
    trainer = Trainer(cfg, tmp_path, progress="off")
    images, _ = next(iter(trainer.loader))
    trainer.train_step(images, 0.0)
    t_bn = next(m for m in trainer.method.target.modules() if isinstance(m, SlimBatchNorm2d))
    o_bn = next(m for m in trainer.method.online.modules() if isinstance(m, SlimBatchNorm2d))
    # step 0: alpha = 1, so the target's statistics are its own batch means, not the online's
    assert int(t_bn.bn[0].num_batches_tracked) == 1
    assert not torch.allclose(t_bn.bn[0].running_mean, o_bn.bn[0].running_mean)
    # alpha = (1 + cos(pi k / K)) / 2: 1 at step 0, 0.5 half-way, (1 + cos(pi/4)) / 2 at K / 4
    alphas = []
    original = trainer.method.target_statistics
    trainer.method.target_statistics = lambda a: alphas.append(a) or original(a)
    total = trainer.total_steps
    for k in (0, total / 4, total / 2):
        trainer.state.global_step = k
        trainer.train_step(images, 0.0)
    assert alphas == pytest.approx([1.0, (1 + math.cos(math.pi / 4)) / 2, 0.5])
