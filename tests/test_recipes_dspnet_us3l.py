"""DSPNet / US3L / naive US-Net recipes: samplers, schedules, group regularization, depth
members and their exports, per-width BN statistics cache, and 2-step trainer runs."""

import copy

import pytest
import torch
from torch import nn

from slimssl.engine.config import Config, ConfigError
from slimssl.engine.trainer import Trainer
from slimssl.eval.bn_cache import BNStatsCache, weights_fingerprint
from slimssl.eval.family import recalibrate_if_universal
from slimssl.export.extract import extract_subnet
from slimssl.methods.base import SubnetOutput
from slimssl.methods.simclr import cross_view_distillation
from slimssl.models import create
from slimssl.nn.spec import SubnetSpec
from slimssl.recipes.dspnet import DSPNet
from slimssl.recipes.sampling import UniversalSandwich, dynamic_stages
from slimssl.recipes.us3l import US3L, GroupReg
from slimssl.recipes.usnet import NaiveSlimmable

DEPTHS = [(2, 2, 2, 2), (1, 2, 1, 2), (2, 1, 2, 1), (1, 1, 1, 1)]


def _depth_model(norm="switchable"):
    return create("resnet18", widths=[1.0, 0.75, 0.5], norm=norm, stem="cifar",
                  depth_choices=DEPTHS, base_width=8)


# ------------------------------------------------------------------------------------ DSPNet
def test_dspnet_sandwich_holds_largest_and_smallest_without_duplicates():
    family = _depth_model().family()
    recipe = DSPNet(family, k=4, warmup_full_epochs=10, seed=3)
    largest, smallest = SubnetSpec(1.0, (2, 2, 2, 2)), SubnetSpec(0.5, (1, 1, 1, 1))
    assert recipe.sample(9.99) == [largest]  # warm-up: the whole network only
    for _ in range(50):
        specs = recipe.sample(10.0)
        assert specs[:2] == [largest, smallest] and len(set(specs)) == 4
        assert all(s in family for s in specs)


def test_dspnet_sampler_is_seeded_and_resumes_exactly():
    family = _depth_model().family()
    a, b = DSPNet(family, seed=1, warmup_full_epochs=0), DSPNet(family, seed=1,
                                                                warmup_full_epochs=0)
    assert [a.sample(0) for _ in range(5)] == [b.sample(0) for _ in range(5)]
    state = copy.deepcopy(a.state_dict())
    expected = [a.sample(0) for _ in range(5)]
    c = DSPNet(family, seed=99, warmup_full_epochs=0)
    c.load_state_dict(state)
    assert [c.sample(0) for _ in range(5)] == expected


def test_depth_member_runs_and_exports_exactly_its_first_blocks():
    torch.manual_seed(0)
    model = _depth_model().eval()
    spec = SubnetSpec(0.5, (1, 2, 1, 2))
    ran = []
    for name, module in model.named_modules():
        if name.count(".") == 1 and name.startswith("layer"):
            module.register_forward_hook(lambda m, i, o, name=name: ran.append(name))
    x = torch.randn(2, 3, 16, 16)
    with model.subnet(spec):
        y = model(x)
    assert ran == ["layer1.0", "layer2.0", "layer2.1", "layer3.0", "layer4.0", "layer4.1"]
    plain = extract_subnet(model, spec)
    blocks = sorted({".".join(k.split(".")[:2]) for k in plain.state_dict()
                     if k.startswith("layer")})
    assert blocks == sorted(ran)
    assert torch.allclose(plain(x), y, atol=1e-5)


# ------------------------------------------------------------------------------------ US3L
def test_us3l_sandwich_holds_max_and_min_without_duplicates():
    recipe = US3L(0.25, 1.0, n=3, total_epochs=100, group_reg=None, seed=0)
    for epoch, lo in [(30, 0.75), (60, 0.5), (90, 0.25)]:
        for _ in range(30):
            widths = [s.width for s in recipe.sample(epoch)]
            assert widths[:2] == [1.0, lo] and len(set(widths)) == 3
            assert all(lo <= w <= 1.0 for w in widths)
    assert recipe.sample(0) == [SubnetSpec(1.0)]  # first stage: the full network only


@pytest.mark.parametrize("epochs,stages", [
    (10, [1.0] * 3 + [0.75] * 2 + [0.5] * 3 + [0.25] * 2),
    (13, [1.0] * 4 + [0.75] * 3 + [0.5] * 3 + [0.25] * 3),
    (100, [1.0] * 25 + [0.75] * 25 + [0.5] * 25 + [0.25] * 25),
])
def test_us3l_dynamic_sampling_stages_by_epoch(epochs, stages):
    recipe = US3L(0.25, 1.0, total_epochs=epochs, group_reg=None)
    assert [recipe.min_width(e) for e in range(epochs)] == stages


def test_us3l_min_width_never_below_w_min_and_static_without_dynamic_sampling():
    assert US3L(0.3, 1.0, total_epochs=100, group_reg=None).min_width(99) == 0.3
    assert US3L(0.3, 1.0, total_epochs=100, dynamic=False, group_reg=None).min_width(0) == 0.3


def test_us3l_group_regularization_by_hand():
    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Parameter(torch.ones(4, 1, 1, 1))   # grouped: 4 channels, 2 groups
            self.gamma = nn.Parameter(torch.ones(4))            # grouped
            self.fc = nn.Parameter(torch.ones(2, 3))            # plain lam * ||W||^2 = 6 lam

    reg = US3L(total_epochs=10, group_reg=GroupReg(lam=1.0, alpha=0.5, groups=2,
                                                   warmup_epochs=1.0))
    model = Tiny()
    full = [SubnetSpec(1.0)]
    # warm-up: plain L2, 4 + 4 + 6
    assert reg.regularization(model, 0.5, full).item() == pytest.approx(14.0)
    # ramp to alpha at half the epochs (5): epoch 3 -> alpha_t = 0.5 * 2/4 = 0.25; the leading
    # group keeps lam, the later one lam * (1 - 0.25): 2 * (2 + 2 * 0.75) + 6
    assert reg.regularization(model, 3.0, full).item() == pytest.approx(13.0)
    # after the ramp: 2 * (2 + 2 * 0.5) + 6
    assert reg.regularization(model, 8.0, full).item() == pytest.approx(12.0)
    assert US3L(group_reg=None).regularization(model, 8.0, full) is None


def test_us3l_group_regularization_is_added_per_subnetwork_without_the_head_at_full_width():
    # authors' loop: each sampled width adds the whole penalty to its loss, the full width
    # without the auxiliary distillation head (predictor) it does not use
    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = nn.Linear(3, 2, bias=False)            # plain: ||W||^2 = 6
            self.predictor = nn.Linear(2, 1, bias=False)           # plain: 2
            self.feature_proj = nn.Conv2d(2, 2, 1, bias=False)     # never penalised

    model = Encoder()
    for p in model.parameters():
        nn.init.ones_(p)
    reg = US3L(total_epochs=10, group_reg=GroupReg(lam=0.5, alpha=0.0, groups=2))
    specs = [SubnetSpec(1.0), SubnetSpec(0.25), SubnetSpec(0.6)]
    # by hand: 3 widths x 0.5 * 6 + 2 sub-networks x 0.5 * 2 = 9 + 2 = 11
    assert reg.regularization(model, 5.0, specs).item() == pytest.approx(11.0)
    assert reg.regularization(model, 5.0, specs[:1]).item() == pytest.approx(3.0)
    assert reg.regularization(model, 5.0, specs[1:2]).item() == pytest.approx(4.0)
    # the gradient of the summed penalty is that of the three per-width terms
    total = reg.regularization(model, 5.0, specs)
    total.backward()
    assert torch.allclose(model.backbone.weight.grad, torch.full((2, 3), 3.0))  # 3 x 2 lam W
    assert torch.allclose(model.predictor.weight.grad, torch.full((1, 2), 2.0))  # 2 x 2 lam W
    assert model.feature_proj.weight.grad is None


def test_us3l_step_per_subnet_takes_one_optimizer_step_per_width(tmp_path):
    cfg = Config.from_dict({**copy.deepcopy(BASE), **dict(
        model=dict(arch="resnet10_narrow", widths=[1.0, 0.25], width_range=[0.25, 1.0],
                   norm="universal"),
        method=dict(name="simclr_momentum", proj_hidden=16, proj_dim=8, pred_hidden=16),
        recipe=dict(name="us3l", num_sampled=3, group_reg=5e-5, update_mode="step_per_subnet"),
        optim=dict(name="sgd", lr=0.1, weight_decay=0.0, warmup_epochs=0))})
    trainer = Trainer(cfg, tmp_path, progress="off")
    steps = []
    original = trainer.optimizer.step
    trainer.optimizer.step = lambda *a, **k: steps.append(1) or original(*a, **k)
    images, _ = next(iter(trainer.loader))
    logs = trainer.train_step(images, 0.9)                 # last dynamic stage: 3 widths
    assert logs["num_subnets"] == 3 and len(steps) == 3
    assert logs["loss/reg"] > 0


def test_group_reg_requires_zero_weight_decay_and_update_mode_defaults():
    with pytest.raises(ConfigError, match="weight_decay"):
        Config.from_dict({"recipe": {"name": "us3l", "group_reg": 5e-5},
                          "optim": {"weight_decay": 1e-4}})
    assert Config.from_dict({"recipe": {"name": "dspnet"}}).recipe.update_mode == "accumulate"
    assert Config.from_dict({"recipe": {"name": "us3l"}}).recipe.update_mode == "sum"
    assert Config.from_dict({"recipe": {"name": "dspnet", "update_mode": "sum"}}
                            ).recipe.update_mode == "sum"


# ------------------------------------------------------------------------------------ naive
def test_usnet_inplace_distillation_term_and_full_width_loss():
    recipe = NaiveSlimmable(width_sampler=UniversalSandwich(0.25, 1.0, 4, seed=0),
                            distill="cosine")
    specs = recipe.sample(0)
    assert specs[0] == SubnetSpec(1.0) and specs[1] == SubnetSpec(0.25) and len(specs) == 4
    student = SubnetOutput(torch.tensor(7.0), None, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    teacher = SubnetOutput(torch.tensor(1.0), None, torch.eye(2),
                           torch.tensor([[0.0, 1.0], [1.0, 1.0]]))
    assert recipe.subnet_loss(0, specs, student, None).item() == 7.0
    got = recipe.subnet_loss(1, specs, student, teacher)
    want = cross_view_distillation(student.embedding, teacher.target_embedding, "cosine", 0.5)
    assert got.item() == pytest.approx(want.item())
    plain = NaiveSlimmable(family=[SubnetSpec(1.0), SubnetSpec(0.5)])
    assert plain.subnet_loss(1, [], student, teacher).item() == 7.0
    with pytest.raises(ValueError):
        NaiveSlimmable()


# ------------------------------------------------------------------------------------ BN cache
def test_bn_stats_cache_roundtrip_and_fingerprint():
    torch.manual_seed(0)
    model = create("resnet10_narrow", widths=[1.0], norm="universal", stem="cifar",
                   width_range=(0.25, 1.0))
    images = torch.randint(0, 255, (40, 3, 16, 16), dtype=torch.uint8)
    transform = lambda x: x.float() / 255  # noqa: E731
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        cache = BNStatsCache(tmp, weights_fingerprint(model, {"images": 40}))
        spec = SubnetSpec(0.3)
        recalibrate_if_universal(model, spec, images, transform, 40, 20, cache)
        assert cache.path(spec).name == "w0.30.safetensors" and cache.path(spec).is_file()
        model.eval()
        x = torch.randn(3, 3, 16, 16)
        with model.subnet(spec):
            want = model(x)
        fresh = copy.deepcopy(model)
        for m in fresh.modules():
            if hasattr(m, "stats_width"):
                m.running_mean.zero_()
                m.stats_width.fill_(1.0)
        assert cache.load(fresh, spec)
        with fresh.subnet(spec):
            assert torch.allclose(fresh(x), want, atol=1e-6)
        stale = BNStatsCache(tmp, "another-fingerprint")
        assert not stale.load(fresh, spec) and not cache.load(fresh, SubnetSpec(0.5))


# ------------------------------------------------------------------------------------ trainer
BASE = dict(data=dict(path="synthetic", image_size=16, batch_size=8, num_workers=0,
                      views="byol_cifar"),
            train=dict(epochs=1, device="cpu", tensorboard=False, log_every=1))


@pytest.mark.parametrize("name,extra", [
    ("dspnet", dict(
        model=dict(arch="resnet18", base_width=8, widths=[1.0, 0.5], norm="switchable",
                   depths=[[2, 2, 2, 2], [1, 1, 1, 1], [1, 2, 1, 2]]),
        method=dict(name="byol", proj_hidden=16, proj_dim=8, pred_hidden=16,
                    momentum_schedule="cosine"),
        recipe=dict(name="dspnet", num_sampled=4, warmup_full_epochs=0),
        optim=dict(name="lars", lr=0.2, weight_decay=1.5e-6, warmup_epochs=0))),
    ("us3l", dict(
        model=dict(arch="resnet10_narrow", widths=[1.0, 0.25], width_range=[0.25, 1.0],
                   norm="universal"),
        method=dict(name="simclr_momentum", proj_hidden=16, proj_dim=8, pred_hidden=16,
                    temperature=0.5),
        recipe=dict(name="us3l", num_sampled=3, dynamic_sampling=True, group_reg=5e-5),
        optim=dict(name="sgd", lr=0.1, weight_decay=0.0, warmup_epochs=0))),
])
def test_two_trainer_steps(tmp_path, name, extra):
    cfg = Config.from_dict({**copy.deepcopy(BASE), **extra})
    trainer = Trainer(cfg, tmp_path, progress="off")
    images, _ = next(iter(trainer.loader))
    before = [p.detach().clone() for p in trainer.method.online.parameters()]
    epoch = 0.9 if name == "us3l" else 0.0   # us3l: last dynamic stage, widths [0.25, 1]
    logs = [trainer.train_step(images, epoch) for _ in range(2)]
    n = 4 if name == "dspnet" else 3
    assert all(log["num_subnets"] == n for log in logs)
    assert sum(k.startswith("loss/w") for k in logs[0]) == n
    assert sum(k.startswith("std/w") for k in logs[0]) == n
    # sandwich rule, by hand: the largest member first, then the smallest (DSPNet: width 0.5 at
    # depth [1,1,1,1]; US3L in its last dynamic stage: width 0.25), then the random ones
    smallest = "w0.50 d1-1-1-1" if name == "dspnet" else "w0.25"
    largest = "w1.00 d2-2-2-2" if name == "dspnet" else "w1.00"
    for log in logs:
        members = [k[len("loss/"):] for k in log if k.startswith("loss/w")]
        assert members[:2] == [largest, smallest]
        # the logged loss sums the members' losses; the objective also holds US3L's group-lasso
        # term (every sampled member's loss counts once, weight 1)
        members_sum = sum(log[f"loss/{m}"] for m in members)
        assert log["loss"] == pytest.approx(members_sum, rel=1e-6)
        assert log["objective"] == pytest.approx(members_sum + log.get("loss/reg", 0.0), rel=1e-6)
    assert ("loss/reg" in logs[0]) == (name == "us3l")
    after = list(trainer.method.online.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after))
    assert set(trainer.state_dict()["recipe"]) == {"sampler"}


@pytest.mark.parametrize("w_min,w_max,expected", [
    # hand values: m_s = w_max - s (w_max - w_min) / 3 (US3L code, SAMPLE_SCHEDULER A)
    (0.25, 1.0, [1.0, 0.75, 0.5, 0.25]),
    (0.35, 1.0, [1.0, 1.0 - 0.65 / 3, 1.0 - 1.3 / 3, 0.35]),   # 1, 0.78333, 0.56667, 0.35
    (0.5, 0.9, [0.9, 0.9 - 0.4 / 3, 0.9 - 0.8 / 3, 0.5]),      # 0.9, 0.76667, 0.63333, 0.5
])
def test_us3l_dynamic_sampling_interpolates_other_width_ranges(w_min, w_max, expected):
    recipe = US3L(w_min, w_max, total_epochs=8, group_reg=None)
    got = [recipe.min_width(e) for e in range(0, 8, 2)]     # one epoch per stage of 2 epochs
    assert got == pytest.approx(expected, abs=1e-12)
    assert got[-1] == w_min and got[0] == w_max
    assert recipe.sample(0) == [SubnetSpec(w_max)]            # first stage: the full network
    lo = recipe.sample(3)[1].width                             # stage 1: [m_1, w_max]
    assert lo == pytest.approx(expected[1], abs=1e-12)


def test_dynamic_stages_hand_values_and_bad_input():
    assert dynamic_stages(0.25, 1.0) == (1.0, 0.75, 0.5, 0.25)
    assert dynamic_stages(0.4, 1.0, num_stages=3) == pytest.approx((1.0, 0.7, 0.4))
    assert dynamic_stages(0.6, 0.6) == (0.6, 0.6, 0.6, 0.6)
    with pytest.raises(ValueError, match="w_min <= w_max"):
        dynamic_stages(0.8, 0.5)


def test_dspnet_mean_reduction_moves_weights_a_quarter_as_far_as_the_sum(tmp_path):
    """``recipe.loss_reduction=mean`` divides each of the K = 4 DN losses by 4; with plain SGD
    (no momentum history, no weight decay) the first step's update of every weight is then
    exactly a quarter of Eq. 5's, by hand: delta = lr * grad."""
    deltas = {}
    for reduction in ("sum", "mean"):
        torch.manual_seed(0)
        cfg = Config.from_dict({**copy.deepcopy(BASE), **dict(
            model=dict(arch="resnet18", base_width=8, widths=[1.0, 0.5], norm="switchable",
                       depths=[[2, 2, 2, 2], [1, 1, 1, 1], [1, 2, 1, 2]]),
            method=dict(name="byol", proj_hidden=16, proj_dim=8, pred_hidden=16),
            recipe=dict(name="dspnet", num_sampled=4, warmup_full_epochs=0,
                        loss_reduction=reduction),
            optim=dict(name="sgd", lr=0.5, weight_decay=0.0, warmup_epochs=0))})
        trainer = Trainer(cfg, tmp_path / reduction, progress="off")
        images, _ = next(iter(trainer.loader))
        before = [p.detach().clone() for p in trainer.method.online.backbone.parameters()]
        log = trainer.train_step(images, 0.0)
        assert log["num_subnets"] == 4
        deltas[reduction] = torch.cat([(p.detach() - b).flatten() for p, b in
                                       zip(trainer.method.online.backbone.parameters(), before)])
    # float32 rounding of p + delta: compare where the step is well above the weights' ulp
    moved = deltas["sum"].abs() > 1e-4
    assert moved.sum() > 1000
    torch.testing.assert_close(deltas["mean"][moved] * 4, deltas["sum"][moved], rtol=1e-3,
                               atol=1e-6)
    with pytest.raises(ConfigError, match="loss_reduction"):
        Config.from_dict({"recipe": {"name": "dspnet", "loss_reduction": "avg"}})
