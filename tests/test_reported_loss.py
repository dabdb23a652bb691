"""The numbers a run shows (issue 22 item 6): the members' losses summed, the distillation as KL
(0 when a sub-network matches the full network), and a logged objective with the trained
gradient but without the teacher-entropy constant of SlimCLR's cross-entropy distillation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from slimssl.engine.trainer import Trainer
from slimssl.methods.base import SubnetOutput
from slimssl.nn.spec import SubnetSpec
from slimssl.recipes.loss_weights import loss_weights
from slimssl.recipes.slimclr import SlimCLR
from tinyrun import tiny_config, write_image_folder

SPECS = [SubnetSpec(1.0), SubnetSpec(0.5), SubnetSpec(0.25)]
TAU2 = 5.0


def _outputs(seed: int = 0, rows: int = 6, candidates: int = 33):
    g = torch.Generator().manual_seed(seed)
    outs = []
    for _ in SPECS:
        sims = (2 * torch.rand(rows, candidates, generator=g) - 1).requires_grad_()
        loss = (sims ** 2).mean()  # a stand-in for the member's InfoNCE, differentiable
        outs.append(SubnetOutput(loss=loss, similarities=sims,
                                 embedding=F.normalize(torch.randn(rows, 4, generator=g), dim=1)))
    return outs


def _entropy_by_hand(logits: torch.Tensor, t: float) -> torch.Tensor:
    p = torch.softmax(logits / t, dim=1)
    return -(p * torch.log(p)).sum(1).mean() * t * t


def test_kd_is_ce_minus_teacher_entropy_and_the_objective_keeps_the_gradient():
    recipe = SlimCLR(SPECS, slow_start_epochs=0.0, distill="ce", tau2=TAU2)
    outs = _outputs()
    teacher = outs[0].detach()
    lam = loss_weights([s.width for s in SPECS], "sum_others")
    assert lam == [1.75, 1.0, 1.0]
    terms = [recipe.subnet_loss(i, SPECS, o, teacher if i else None) for i, o in enumerate(outs)]
    reports = [recipe.report(i, SPECS, o, teacher if i else None) for i, o in enumerate(outs)]
    assert reports[0] == {}  # the teacher distils from nobody
    today = sum(terms)
    logged = today.detach() - sum(r["offset"] for r in reports[1:])
    # the same objective written with KL (differentiable, by hand), term by term
    kl_objective = lam[0] * outs[0].loss
    for i in (1, 2):
        s, t = outs[i].similarities, teacher.similarities
        log_p_s = F.log_softmax(s / TAU2, dim=1)
        p_t = torch.softmax(t / TAU2, dim=1)
        ce = -(p_t * log_p_s).sum(1).mean() * TAU2 ** 2
        kl = (p_t * (torch.log(p_t) - log_p_s)).sum(1).mean() * TAU2 ** 2
        entropy = _entropy_by_hand(t, TAU2)
        assert reports[i]["kd"] == pytest.approx(float((ce - entropy).detach()), abs=1e-5)
        assert reports[i]["kd"] == pytest.approx(float(kl.detach()), abs=1e-5)
        assert reports[i]["offset"] == pytest.approx(lam[i] / 2 * float(entropy), rel=1e-6)
        assert not reports[i]["kd"].requires_grad and not reports[i]["offset"].requires_grad
        kl_objective = kl_objective + lam[i] * (outs[i].loss + kl) / 2
    assert float(logged) == pytest.approx(float(kl_objective.detach()), rel=1e-6)
    # gradients: the KL objective's equal today's (the constant has none)
    inputs = [o.similarities for o in outs]
    grads_today = torch.autograd.grad(today, inputs, retain_graph=True)
    grads_kl = torch.autograd.grad(kl_objective, inputs)
    for a, b in zip(grads_today, grads_kl):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    # the constant is large: up to tau2^2 ln K per member (here K = 33 nearly uniform columns)
    assert 0.9 * TAU2 ** 2 * math.log(33) < float(_entropy_by_hand(teacher.similarities, TAU2))


def test_kd_is_zero_when_the_student_equals_the_teacher():
    recipe = SlimCLR(SPECS, slow_start_epochs=0.0, distill="ce", tau2=TAU2)
    outs = _outputs(seed=1)
    teacher = outs[0].detach()
    twin = SubnetOutput(loss=outs[1].loss, similarities=teacher.similarities.clone(),
                        embedding=teacher.embedding)
    report = recipe.report(1, SPECS, twin, teacher)
    assert float(report["kd"]) == pytest.approx(0.0, abs=1e-5)
    # while the cross-entropy trained on is the (large) entropy term itself
    term = recipe.subnet_loss(1, SPECS, twin, teacher)
    assert float(term.detach()) == pytest.approx(float(twin.loss.detach() / 2 + report["offset"]),
                                                 rel=1e-6)


@pytest.mark.parametrize("kind", ["mse", "kl_emb", "atkd"])
def test_divergence_kinds_are_reported_as_they_are(kind):
    recipe = SlimCLR(SPECS, slow_start_epochs=0.0, distill=kind, tau2=4.0)
    outs = _outputs(seed=2)
    teacher = outs[0].detach()
    report = recipe.report(2, SPECS, outs[2], teacher)
    term = recipe.subnet_loss(2, SPECS, outs[2], teacher)
    assert float(report["offset"]) == 0.0
    assert float(report["kd"]) == pytest.approx(float((2 * term - outs[2].loss).detach()), rel=1e-5)
    assert SlimCLR(SPECS, distill="none").report(1, SPECS, outs[1], teacher) == {}


def test_trainer_logs_the_sum_of_member_losses_and_kl(tmp_path):
    data = write_image_folder(tmp_path / "data")
    cfg = tiny_config(data, tmp_path / "run", "recipe.slow_start_epochs=0",
                      "eval.knn_every_epochs=0")
    trainer = Trainer(cfg, tmp_path / "run", progress="off")
    images, _ = next(iter(trainer.loader))
    logs = trainer.train_step(images, 0.5)
    members = ["w1.00", "w0.50"]
    assert logs["loss"] == pytest.approx(sum(logs[f"loss/{m}"] for m in members), rel=1e-6)
    assert list(k for k in logs if k.startswith("kd/")) == ["kd/w0.50"]
    assert logs["kd"] == logs["kd/w0.50"] and logs["kd"] >= -1e-6
    # the objective: lambda_1 L_1 + lambda_2 (L_2 + KL_2) / 2, with Eq. 6's [1.5, 1]
    assert logs["objective"] == pytest.approx(
        1.5 * logs["loss/w1.00"] + (logs["loss/w0.50"] + logs["kd/w0.50"]) / 2, rel=1e-5)
    history = trainer.fit()
    assert all("kd" in h and h["kd"] >= -1e-6 for h in history)
