"""SlimCLR: recipe arithmetic against hand computations, slow start, update modes, methods."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from slimssl.engine.config import load_config
from slimssl.engine.trainer import Callback, Trainer
from slimssl.methods.base import SubnetOutput
from slimssl.methods.mocov2 import MoCoV2, shuffled_forward
from slimssl.methods.mocov3 import MoCoV3
from slimssl.models import create
from slimssl.nn import SlimBatchNorm2d, SubnetSpec
from slimssl.recipes.distillation import atkd_distillation, dkd_distillation
from slimssl.recipes.slimclr import SlimCLR, individual

WIDTHS = [1.0, 0.75, 0.5, 0.25]
FAMILY = [SubnetSpec(w) for w in WIDTHS]


def _out(loss: float, sims: list[list[float]]) -> SubnetOutput:
    s = torch.tensor(sims)
    return SubnetOutput(torch.tensor(loss), s, F.normalize(s, dim=1))


def test_slow_start_samples_only_the_full_width_before_s():
    recipe = SlimCLR(FAMILY, slow_start_epochs=5)
    assert recipe.sample(0.0) == [SubnetSpec(1.0)]
    assert recipe.sample(4.99) == [SubnetSpec(1.0)]
    assert recipe.sample(5.0) == FAMILY


def test_total_loss_matches_eq7_by_hand():
    """L = 2.5 L1 + sum_i (L_i + L_p,i)/2 with L_p = CE(softmax(t/5), log_softmax(s/5)) * 25."""
    recipe = SlimCLR(FAMILY, slow_start_epochs=0, distill="ce", tau2=5.0, weights="sum_others")
    teacher = _out(1.0, [[1.0, 0.0]])
    students = [_out(2.0, [[0.0, 1.0]]), _out(3.0, [[0.5, 0.5]]), _out(4.0, [[1.0, 0.0]])]
    total = recipe.subnet_loss(0, FAMILY, teacher, None)
    for i, out in enumerate(students, start=1):
        total = total + recipe.subnet_loss(i, FAMILY, out, teacher)

    def ce_distill(s: list[float], t: list[float], tau: float = 5.0) -> float:
        pt = [math.exp(v / tau) for v in t]
        pt = [v / sum(pt) for v in pt]
        zs = math.log(sum(math.exp(v / tau) for v in s))
        return -sum(p * (v / tau - zs) for p, v in zip(pt, s)) * tau * tau

    t = [1.0, 0.0]
    expected = 2.5 * 1.0
    expected += (2.0 + ce_distill([0.0, 1.0], t)) / 2
    expected += (3.0 + ce_distill([0.5, 0.5], t)) / 2
    expected += (4.0 + ce_distill([1.0, 0.0], t)) / 2
    assert float(total) == pytest.approx(expected, rel=1e-5)


def test_all_techniques_off_is_a_plain_sum_and_individual_is_one_loss():
    outs = [_out(v, [[0.0, 1.0]]) for v in (1.0, 2.0, 3.0, 4.0)]
    recipe = SlimCLR(FAMILY, slow_start_epochs=0, distill="none", weights="uniform")
    total = sum(float(recipe.subnet_loss(i, FAMILY, o, outs[0])) for i, o in enumerate(outs))
    assert total == pytest.approx(10.0)
    single = individual(SubnetSpec(0.5))
    assert single.sample(0.0) == [SubnetSpec(0.5)]
    assert float(single.subnet_loss(0, [SubnetSpec(0.5)], outs[1], None)) == pytest.approx(2.0)


def test_during_slow_start_the_full_loss_is_unweighted():
    recipe = SlimCLR(FAMILY, slow_start_epochs=10)
    specs = recipe.sample(0.0)
    assert float(recipe.subnet_loss(0, specs, _out(1.5, [[1.0, 0.0]]), None)) == 1.5


# ------------------------------------------------------------------ methods
def _backbone(widths=(1.0, 0.5)):
    torch.manual_seed(0)
    return create("resnet10_narrow", widths=list(widths), stem="cifar")


def test_shuffled_forward_returns_keys_in_input_order():
    enc = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    x = torch.randn(8, 3, 2, 2)
    assert torch.allclose(shuffled_forward(enc, x, splits=2), enc(x), atol=1e-6)


def test_mocov2_keys_are_full_width_and_enter_the_queue():
    method = MoCoV2(_backbone(), queue_size=16, temperature=0.2)
    x1, x2 = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    keys = method.target_forward((x1, x2))
    assert keys.shape == (4, 128) and not keys.requires_grad
    out = method.subnet_forward((x1, x2), SubnetSpec(0.5), keys)
    assert out.similarities.shape == (4, 17)
    # the loss is InfoNCE of the similarities at tau1 = 0.2 (positive in column 0)
    manual = F.cross_entropy(out.similarities / 0.2, torch.zeros(4, dtype=torch.long))
    assert torch.allclose(out.loss, manual)
    method.end_iteration(keys)
    assert torch.equal(method.queue.queue[:4], keys) and int(method.queue.ptr) == 4


def test_subnetwork_gradient_stays_in_its_slice():
    method = MoCoV2(_backbone(), queue_size=16)
    x = torch.randn(4, 3, 8, 8)
    keys = method.target_forward((x, x))
    method.subnet_forward((x, x), SubnetSpec(0.5), keys).loss.backward()
    grad = method.online.backbone.layer2[0].conv1.weight.grad  # (128, 64, 3, 3) full
    assert grad[64:].abs().sum() == 0 and grad[:, 32:].abs().sum() == 0
    assert grad[:64, :32].abs().sum() > 0
    assert all(p.grad is None for p in method.target.parameters())


def test_mocov3_loss_is_symmetric_in_batch_contrastive():
    method = MoCoV3(_backbone(), proj_hidden=32, proj_dim=16, pred_hidden=32, temperature=1.0)
    x1, x2 = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    k1, k2 = method.target_forward((x1, x2))
    out = method.subnet_forward((x1, x2), SubnetSpec(1.0), (k1, k2))
    labels = torch.arange(4)
    s1, s2 = out.similarities[:4], out.similarities[4:]
    expected = 2 * (F.cross_entropy(s1, labels) + F.cross_entropy(s2, labels))
    assert torch.allclose(out.loss, expected)
    q1 = out.embedding[:4]
    assert torch.allclose(s1, q1 @ k2.t(), atol=1e-6)
    # DKD's target class: each row's positive key (the diagonal of both halves)
    assert torch.equal(out.positive_index, torch.cat([labels, labels]))


def test_dkd_and_atkd_distil_through_the_recipe():
    """Table 3c alternatives in Eq. 7: (L_i + L_p,i) / 2 with L_p the DKD / ATKD loss; DKD takes
    the student's positive_index as its target class."""
    teacher = _out(1.0, [[1.0, 0.0, 0.5], [0.0, 2.0, 1.0]])
    student = SubnetOutput(torch.tensor(2.0), torch.tensor([[0.0, 1.0, 0.5], [1.0, 0.0, 0.0]]),
                           torch.zeros(2, 3), positive_index=torch.tensor([0, 1]))
    specs = [SubnetSpec(1.0), SubnetSpec(0.5)]  # sum_others: lambda_2 = 1.0
    dkd = SlimCLR(specs, distill="dkd", tau2=1.0).subnet_loss(1, specs, student, teacher)
    ref = dkd_distillation(student.similarities, teacher.similarities, torch.tensor([0, 1]))
    assert float(dkd) == pytest.approx((2.0 + float(ref)) / 2, rel=1e-6)
    atkd = SlimCLR(specs, distill="atkd", tau2=4.0).subnet_loss(1, specs, student, teacher)
    ref = atkd_distillation(student.similarities, teacher.similarities, 4.0)
    assert float(atkd) == pytest.approx((2.0 + float(ref)) / 2, rel=1e-6)
    cfg = load_config(None, ["recipe.distill=atkd"])
    assert cfg.recipe.distill_temperature == 4.0  # ATKD's own (authors' code)
    assert load_config(None, ["recipe.distill=dkd"]).recipe.distill_temperature == 1.0


# ------------------------------------------------------------------ through the loop
def _cfg(tmp_path, *extra):
    return load_config(None, [
        "data.path=synthetic", "data.image_size=8", "data.batch_size=16",
        "model.arch=resnet10_narrow", "method.queue_size=32", "train.epochs=2",
        "train.tensorboard=false", f"out_dir={tmp_path}", "optim.lr=0.1", *extra])


class _GradProbe(Callback):
    """Records which switchable-BN copies got a gradient at each step."""

    def __init__(self) -> None:
        self.seen: list[list[bool]] = []

    def after_backward(self, trainer, specs) -> None:
        bn = trainer.method.online.backbone.bn1
        assert isinstance(bn, SlimBatchNorm2d)
        self.seen.append([b.weight.grad is not None and bool(b.weight.grad.abs().sum() > 0)
                          for b in bn.bn])


def test_slow_start_gives_sub_width_only_parameters_no_gradient(tmp_path):
    probe = _GradProbe()
    trainer = Trainer(_cfg(tmp_path, "recipe.slow_start_epochs=1"), tmp_path, progress="off",
                      callbacks=[probe])
    bn = trainer.method.online.backbone.bn1
    before = [b.weight.detach().clone() for b in bn.bn]
    steps = trainer.steps_per_epoch
    images = next(iter(trainer.loader))[0]
    for _ in range(2):
        trainer.train_step(images, 0.2)  # epoch < S: only the full width
        trainer.state.global_step += 1
    assert probe.seen[-1] == [True, False, False, False]
    assert all(torch.equal(b.weight, w) for b, w in zip(bn.bn[1:], before[1:]))
    trainer.train_step(images, 1.0)  # epoch >= S: every width
    assert probe.seen[-1] == [True, True, True, True]
    assert steps > 0


def test_sum_and_accumulate_give_the_same_update(tmp_path):
    weights = []
    for mode in ("sum", "accumulate"):
        trainer = Trainer(_cfg(tmp_path / mode, f"recipe.update_mode={mode}",
                               "recipe.slow_start_epochs=0"), tmp_path / mode, progress="off")
        images = next(iter(trainer.loader))[0]
        trainer.train_step(images, 0.0)
        weights.append(trainer.method.online.backbone.layer1[0].conv1.weight.detach().clone())
    assert torch.allclose(weights[0], weights[1], atol=1e-6)


def test_individual_network_at_a_narrow_width_trains(tmp_path):
    trainer = Trainer(_cfg(tmp_path, "recipe.name=individual", "model.widths=[0.5]"), tmp_path,
                      progress="off")
    images = next(iter(trainer.loader))[0]
    logs = trainer.train_step(images, 0.0)
    assert "loss/w0.50" in logs and trainer.backbone.active_spec == SubnetSpec(0.5)
