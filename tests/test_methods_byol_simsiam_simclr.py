"""BYOL, SimSiam, SimCLR and momentum-teacher SimCLR (US3L): loss values against hand
computations, and each method's forward/backward on a tiny slimmable network."""

import math

import pytest
import torch
import torch.nn.functional as F

from slimssl.methods.byol import BYOL
from slimssl.methods.simclr import (MomentumSimCLR, SimCLR, cross_view_distillation,
                                    nt_xent_global)
from slimssl.methods.simsiam import SimSiam
from slimssl.models import create
from slimssl.nn.spec import SubnetSpec

T = torch.tensor


def nt_xent(a, b, tau):
    """Independent reference for SimCLR's NT-Xent (Chen et al. 2020, Eq. 1), one anchor at a
    time: anchor i of the 2N rows [a; b] has its other view as positive, every row but itself
    in the denominator; the mean over the 2N anchors."""
    z = F.normalize(torch.cat([a, b]), dim=1)
    n = a.shape[0]
    losses = []
    for i in range(2 * n):
        sims = [float(z[i] @ z[j]) / tau for j in range(2 * n) if j != i]
        j_pos = (i + n) % (2 * n)
        pos = float(z[i] @ z[j_pos]) / tau
        losses.append(-pos + math.log(sum(math.exp(v) for v in sims)))
    return torch.tensor(sum(losses) / len(losses))


def _backbone(norm="switchable"):
    kwargs = dict(widths=[1.0, 0.5], norm=norm, stem="cifar")
    if norm == "universal":
        kwargs["width_range"] = (0.25, 1.0)
    return create("resnet10_narrow", **kwargs)


def _fake_views(method, zs, ps):
    """Replace the network by fixed projections/predictions (records the ``predict`` flag)."""
    calls = []

    def project_views(views, spec, predict=True):
        calls.append(predict)
        return zs, (ps if predict else None)

    method.project_views = project_views
    return calls


def test_byol_symmetrised_loss_by_hand():
    method = BYOL(_backbone(), 16, 4, 16)
    p1, p2 = T([[1.0, 0.0]]), T([[1.0, 1.0]])
    t1, t2 = T([[1.0, 0.0]]), T([[0.0, 3.0]])
    _fake_views(method, [p1, p2], [p1, p2])
    out = method.subnet_forward((None, None), SubnetSpec(1.0), (t1, t2))
    # (2 - 2 cos(p1, t2)) + (2 - 2 cos(p2, t1)) = 2 + (2 - sqrt(2))
    assert out.loss.item() == pytest.approx(4 - math.sqrt(2), abs=1e-6)
    assert out.similarities is None and out.embedding.shape == (2, 2)
    assert torch.allclose(out.embedding.norm(dim=1), torch.ones(2))


def test_simsiam_loss_by_hand_uses_own_projections():
    method = SimSiam(_backbone(), 16, 4, 8)
    z1, z2 = T([[1.0, 1.0]]), T([[0.0, 2.0]])
    p1, p2 = T([[1.0, 0.0]]), T([[1.0, 0.0]])
    _fake_views(method, [z1, z2], [p1, p2])
    out = method.subnet_forward((None, None), SubnetSpec(0.5), None)
    # 0.5 * (-cos(p1, z2) - cos(p2, z1)) = 0.5 * (0 - 1/sqrt(2))
    assert out.loss.item() == pytest.approx(-0.5 / math.sqrt(2), abs=1e-6)
    assert torch.allclose(out.teacher_embedding, F.normalize(torch.cat([z1, z2]), dim=1))
    assert method.target is None and method.ema_pairs() == []


def test_nt_xent_by_hand_and_equal_to_single_process_reference():
    a = T([[1.0, 0.0], [0.0, 1.0]])
    # anchor a_0: positive b_0 (sim 1), negatives a_1, b_1 (sim 0): -log(e / (e + 2)); same
    # for every anchor by symmetry
    assert nt_xent_global(a, a.clone(), 1.0).item() == pytest.approx(math.log(math.e + 2) - 1,
                                                                     abs=1e-6)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    assert nt_xent_global(x, y, 0.3).item() == pytest.approx(nt_xent(x, y, 0.3).item(), abs=1e-6)


def test_cross_view_distillation_pairs_other_views():
    s = T([[1.0, 0.0], [0.0, 1.0]])        # student views 1 and 2 (B = 1)
    t = T([[0.0, 1.0], [1.0, 1.0]])        # teacher views 1 and 2
    # cosine: 0.5 * (-cos(s1, t2) - cos(s2, t1)) = 0.5 * (-1/sqrt(2) - 1)
    got = cross_view_distillation(s, t, "cosine", 0.5).item()
    assert got == pytest.approx(0.5 * (-1 / math.sqrt(2) - 1), abs=1e-6)
    s1, s2, t1, t2 = s[:1], s[1:], t[:1], t[1:]
    want = 0.5 * (nt_xent(s1, t2, 0.5) + nt_xent(s2, t1, 0.5))
    assert cross_view_distillation(s, t, "infonce", 0.5).item() == pytest.approx(want.item())
    with pytest.raises(ValueError):
        cross_view_distillation(s, t, "mse", 0.5)


def test_momentum_simclr_full_uses_base_loss_subnets_distil_through_head():
    method = MomentumSimCLR(_backbone("universal"), 16, 2, 16, temperature=0.5,
                            distill_loss="cosine")
    z1, z2 = T([[1.0, 0.0]]), T([[0.0, 1.0]])
    p1, p2 = T([[1.0, 1.0]]), T([[1.0, 0.0]])
    keys = T([[1.0, 0.0], [0.0, 1.0]])     # teacher views 1 and 2
    calls = _fake_views(method, [z1, z2], [p1, p2])
    full = method.subnet_forward((None, None), SubnetSpec(1.0), keys)
    base = 0.5 * (nt_xent(z1, keys[1:], 0.5) + nt_xent(z2, keys[:1], 0.5))
    assert full.loss.item() == pytest.approx(base.item()) and calls == [False]
    sub = method.subnet_forward((None, None), SubnetSpec(0.4), keys)
    # aux head outputs vs the teacher's other view: 0.5 * (-cos(p1, k2) - cos(p2, k1))
    assert sub.loss.item() == pytest.approx(0.5 * (-1 / math.sqrt(2) - 1)) and calls[-1]
    assert method.is_full(SubnetSpec(1.0)) and not method.is_full(SubnetSpec(0.99))
    assert "predictor" not in dict(method.target.named_children())


def _neg_cos(a, b):
    return -F.cosine_similarity(a, b.detach(), dim=1).mean()


# Each method's loss from the projections z / predictions p it produced, written independently
# of slimssl.methods.losses (Grill et al. 2020 Eq. 2 symmetrised; Chen & He 2021 Eq. 2;
# Chen et al. 2020 Eq. 1; US3L: InfoNCE of the full network against the teacher's other view,
# negative cosine of a sub-network's auxiliary head against it)
def _byol_ref(zs, ps, target, full):
    return (2 + 2 * _neg_cos(ps[0], target[1])) + (2 + 2 * _neg_cos(ps[1], target[0]))


def _simsiam_ref(zs, ps, target, full):
    return 0.5 * (_neg_cos(ps[0], zs[1]) + _neg_cos(ps[1], zs[0]))


def _simclr_ref(zs, ps, target, full):
    return nt_xent(zs[0], zs[1], 0.5)


def _momentum_simclr_ref(zs, ps, keys, full):
    k1, k2 = keys.chunk(2)
    if full:
        return 0.5 * (nt_xent(zs[0], k2, 0.5) + nt_xent(zs[1], k1, 0.5))
    return 0.5 * (_neg_cos(ps[0], k2) + _neg_cos(ps[1], k1))


@pytest.mark.parametrize("factory,reference", [
    (lambda b: BYOL(b, 32, 8, 32), _byol_ref),
    (lambda b: SimSiam(b, 32, 8, 4), _simsiam_ref),
    (lambda b: SimCLR(b, 32, 8, 0.5), _simclr_ref),
    (lambda b: MomentumSimCLR(b, 32, 8, 32, temperature=0.5), _momentum_simclr_ref),
], ids=["byol", "simsiam", "simclr", "momentum_simclr"])
def test_methods_train_every_width(factory, reference):
    torch.manual_seed(0)
    method = factory(_backbone("universal"))
    views = (torch.randn(6, 3, 16, 16), torch.randn(6, 3, 16, 16))
    target = method.target_forward(views)
    produced = []
    project_views = method.project_views

    def spy(*args, **kwargs):
        zs, ps = project_views(*args, **kwargs)
        produced.append(([z.detach() for z in zs], None if ps is None else
                         [p.detach() for p in ps]))
        return zs, ps

    method.project_views = spy
    # the stem has 32 output channels: all at width 1.0, round(32 x 0.3 = 9.6) = 10 at 0.3
    for spec, active in ((SubnetSpec(1.0), 32), (SubnetSpec(0.3), 10)):
        method.zero_grad()
        out = method.subnet_forward(views, spec, target)
        zs, ps = produced[-1]
        want = reference(zs, ps, target, spec.width == 1.0)
        assert out.loss.item() == pytest.approx(float(want), abs=1e-5)
        assert out.embedding.shape[0] == 12  # both views of the batch of 6
        out.loss.backward()
        # only the member's channels learn: the stem rows beyond ``active`` get exactly zero
        rows = method.online.backbone.conv1.weight.grad.flatten(1).abs().sum(1)
        assert (rows[:active] > 0).all() and torch.equal(rows[active:], torch.zeros(32 - active))
        detached = out.detach()
        assert not detached.loss.requires_grad and not detached.embedding.requires_grad
    if method.target is not None:
        assert all(p.grad is None for p in method.target.parameters())


def test_byol_heads_keep_hidden_width_only_input_follows_width():
    method = BYOL(_backbone(), 32, 8, 32)
    first = method.online.projector.layers[0]
    with method.online.subnet(0.5):
        h = method.online.projector(torch.randn(4, method.online.backbone.feature_dim(0.5)))
        hidden = method.online.projector.layers[:3](
            torch.randn(4, method.online.backbone.feature_dim(0.5)))
    assert h.shape == (4, 8) and hidden.shape == (4, 32) and first.slim_in


def test_momentum_simclr_default_distillation_is_cosine_with_head():
    # US3L adopted configuration (slides case 13): -cos through the auxiliary head by default
    from slimssl.engine.config import Config
    assert Config().method.distill_loss == "cosine"
    method = MomentumSimCLR(_backbone("universal"), 16, 2, 16, temperature=0.5)
    assert method.distill_loss == "cosine" and method.online.predictor is not None
    p1, p2 = T([[1.0, 0.0], [0.0, 1.0]]), T([[1.0, 1.0], [1.0, 0.0]])   # head outputs, B = 2
    keys = T([[0.0, 1.0], [1.0, 1.0], [1.0, 0.0], [0.0, 2.0]])          # teacher [view 1; view 2]
    _fake_views(method, [p1, p2], [p1, p2])
    sub = method.subnet_forward((None, None), SubnetSpec(0.4), keys)
    # by hand: cos(p1, k2) = (1, 1) -> 1; cos(p2, k1) = (1/sqrt2, 1/sqrt2) -> 1/sqrt2
    # loss = 0.5 * (-1 - 1/sqrt2) = -0.853553
    assert sub.loss.item() == pytest.approx(-0.8535534, abs=1e-6)
