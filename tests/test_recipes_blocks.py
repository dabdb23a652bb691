"""Tests for the recipe building blocks (distillation, loss weights, sampling, group reg).

Every expected number is computed by hand in the test (math on tiny tensors).
"""

from __future__ import annotations

import math

import pytest
import torch

from slimssl.nn.functional import soft_target_loss
from slimssl.recipes.distillation import (
    atkd_distillation,
    distillation_loss,
    dkd_distillation,
    mse_embedding_distillation,
)
from slimssl.recipes.group_reg import (
    channel_group_index,
    group_coefficients,
    group_reg_alpha,
    group_regularization,
)
from slimssl.recipes.loss_weights import loss_weights, weighted_term
from slimssl.recipes.sampling import (
    Sandwich,
    UniversalSandwich,
    dynamic_min_width,
    slow_start_active,
)

WIDTHS = [1.0, 0.75, 0.5, 0.25]


def softmax(xs: list[float]) -> list[float]:
    e = [math.exp(x) for x in xs]
    return [v / sum(e) for v in e]


# ------------------------------------------------------------------------------ distillation


def test_soft_target_cross_entropy_by_hand() -> None:
    s = [1.0, 0.0, -1.0]
    t = [2.0, 0.0, 0.0]
    tau2 = 2.0
    p_t = softmax([x / tau2 for x in t])  # [e/(e+2), 1/(e+2), 1/(e+2)]
    assert p_t[0] == pytest.approx(math.e / (math.e + 2))
    log_z = math.log(sum(math.exp(x / tau2) for x in s))
    log_p_s = [x / tau2 - log_z for x in s]
    ce = -sum(a * b for a, b in zip(p_t, log_p_s))
    st = torch.tensor([s], requires_grad=True)
    tt = torch.tensor([t], requires_grad=True)
    unscaled = soft_target_loss(st, tt, tau2, scale_by_tau_sq=False)
    assert unscaled.item() == pytest.approx(ce, rel=1e-6)
    scaled = soft_target_loss(st, tt, tau2)  # default: x tau2^2
    assert scaled.item() == pytest.approx(ce * tau2**2, rel=1e-6)
    scaled.backward()
    assert tt.grad is None  # teacher detached
    # d/ds = tau2^2 * (softmax(s/tau2) - p_t) / tau2
    p_s = softmax([x / tau2 for x in s])
    expected_grad = [tau2 * (a - b) for a, b in zip(p_s, p_t)]
    torch.testing.assert_close(st.grad, torch.tensor([expected_grad]))


def test_soft_target_cross_entropy_batch_mean() -> None:
    # row 0: identical uniform logits -> CE = log 2 ; row 1: teacher one-hot-ish
    s = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    t = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    # both rows: -sum p_t log(1/2) = log 2
    got = soft_target_loss(s, t, 1.0)
    assert got.item() == pytest.approx(math.log(2.0), rel=1e-6)


def test_mse_embedding_distillation_by_hand() -> None:
    s = torch.tensor([[1.0, 2.0]], requires_grad=True)
    t = torch.tensor([[0.0, 4.0]], requires_grad=True)
    loss = mse_embedding_distillation(s, t)
    assert loss.item() == pytest.approx((1.0 + 4.0) / 2)
    loss.backward()
    assert t.grad is None


def test_soft_target_kl_by_hand() -> None:
    s = torch.tensor([[0.0, 0.0]])
    t = torch.tensor([[math.log(3.0), 0.0]])
    # tau 1: p_t = [3/4, 1/4], p_s = [1/2, 1/2]
    kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert soft_target_loss(s, t, 1.0, "kl").item() == pytest.approx(kl, rel=1e-6)
    # tau 2: p_t = [sqrt3, 1] / (sqrt3 + 1), scaled by 4
    r3 = math.sqrt(3.0)
    a, b = r3 / (r3 + 1), 1 / (r3 + 1)
    kl2 = a * math.log(a / 0.5) + b * math.log(b / 0.5)
    assert soft_target_loss(s, t, 2.0, "kl").item() == pytest.approx(4 * kl2, rel=1e-6)
    assert soft_target_loss(s, t, 2.0, "kl", scale_by_tau_sq=False).item() == pytest.approx(
        kl2, rel=1e-6
    )
    assert soft_target_loss(t, t, kind="kl").item() == pytest.approx(0.0, abs=1e-7)
    # KL = soft CE - teacher entropy (H(p_t) at tau 1 = -sum p log p), same student gradient
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert soft_target_loss(s, t).item() == pytest.approx(kl + h, rel=1e-6)
    st = s.clone().requires_grad_(True)
    g_kl = torch.autograd.grad(soft_target_loss(st, t, kind="kl"), st)[0]
    g_ce = torch.autograd.grad(soft_target_loss(st, t, kind="ce"), st)[0]
    torch.testing.assert_close(g_kl, g_ce)
    with pytest.raises(ValueError, match="temperature"):
        soft_target_loss(s, t, 0.0)
    with pytest.raises(ValueError, match="shapes differ"):
        soft_target_loss(s, t[:, :1])


def test_distillation_dispatcher() -> None:
    s = torch.tensor([[1.0, 0.0]])
    t = torch.tensor([[0.0, 1.0]])
    assert distillation_loss("none", student_logits=s, teacher_logits=t) is None
    ce = distillation_loss("ce", student_logits=s, teacher_logits=t, tau2=1.0)
    # p_t = [1/(1+e), e/(1+e)], log p_s = [-log(1+e^-1), -log(1+e)]
    pt0, pt1 = 1 / (1 + math.e), math.e / (1 + math.e)
    expected = pt0 * math.log(1 + math.exp(-1)) + pt1 * math.log(1 + math.e)
    assert ce is not None and ce.item() == pytest.approx(expected, rel=1e-6)
    mse = distillation_loss("mse", q_student=s, q_teacher=t)
    assert mse is not None and mse.item() == pytest.approx(1.0)
    kl = distillation_loss("kl_emb", q_student=t, q_teacher=t, tau2=5.0)
    assert kl is not None and kl.item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError):
        distillation_loss("ce", q_student=s, q_teacher=t)
    with pytest.raises(ValueError):
        distillation_loss("seed", student_logits=s, teacher_logits=t)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dkd"):
        distillation_loss("dkd", q_student=s, q_teacher=t)


def _kl(p: list[float], q: list[float]) -> float:
    return sum(a * math.log(a / b) for a, b in zip(p, q) if a > 0)


def test_atkd_by_hand() -> None:
    """ATKD: rows standardised (biased variance, eps 1e-5), times m = 2, then T^2 KL at T = 4."""
    s, t = [1.0, 2.0, 3.0], [0.0, 0.0, 3.0]
    s_hat = [2 * (v - 2.0) / math.sqrt(2 / 3 + 1e-5) for v in s]  # mean 2, var 2/3
    t_hat = [2 * (v - 1.0) / math.sqrt(2.0 + 1e-5) for v in t]    # mean 1, var 2
    expected = 16 * _kl(softmax([v / 4 for v in t_hat]), softmax([v / 4 for v in s_hat]))
    st = torch.tensor([s], requires_grad=True)
    loss = atkd_distillation(st, torch.tensor([t]))
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert distillation_loss("atkd", student_logits=st, teacher_logits=torch.tensor([t]),
                             tau2=4.0).item() == pytest.approx(expected, rel=1e-5)
    # the standardisation makes it blind to the logits' scale and offset (same sharpness)
    scaled = atkd_distillation(3 * st + 7, 10 * torch.tensor([t]) - 1)
    assert scaled.item() == pytest.approx(expected, rel=1e-4)
    loss.backward()
    assert st.grad is not None and st.grad.abs().sum() > 0
    assert st.grad.sum().abs() < 1e-6  # a shift of all logits changes nothing


def test_dkd_by_hand() -> None:
    """DKD: T^2 (alpha TCKD + beta NCKD) over the positive vs the rest, alpha 1, beta 0.5."""
    rows = [([1.0, 0.0, -1.0], [2.0, 0.5, 0.0], 0), ([0.0, 1.0, 0.5], [0.2, -0.3, 1.5], 2)]

    def by_hand(s: list[float], t: list[float], target: int, alpha: float, beta: float,
                temp: float) -> float:
        ps, pt = softmax([v / temp for v in s]), softmax([v / temp for v in t])
        tckd = _kl([pt[target], 1 - pt[target]], [ps[target], 1 - ps[target]])
        rest = [j for j in range(len(s)) if j != target]
        nckd = _kl(softmax([t[j] / temp for j in rest]), softmax([s[j] / temp for j in rest]))
        return temp ** 2 * (alpha * tckd + beta * nckd)

    s = torch.tensor([r[0] for r in rows])
    t = torch.tensor([r[1] for r in rows])
    index = torch.tensor([r[2] for r in rows])
    expected = sum(by_hand(*r, 1.0, 0.5, 1.0) for r in rows) / 2
    assert dkd_distillation(s, t, index).item() == pytest.approx(expected, rel=1e-5)
    got = distillation_loss("dkd", student_logits=s, teacher_logits=t, tau2=1.0,
                            positive_index=index)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    expected_t2 = sum(by_hand(*r, 2.0, 3.0, 2.0) for r in rows) / 2
    got_t2 = dkd_distillation(s, t, index, alpha=2.0, beta=3.0, temperature=2.0)
    assert got_t2.item() == pytest.approx(expected_t2, rel=1e-5)
    # default target: column 0 (MoCo v2's [k+, queue] layout)
    assert dkd_distillation(s[:1], t[:1]).item() == pytest.approx(by_hand(*rows[0], 1, 0.5, 1),
                                                                  rel=1e-5)
    # DKD Eq. 7: alpha = 1, beta = 1 - p_t(teacher) gives back classical KD
    for temp in (1.0, 3.0):
        p_target = softmax([v / temp for v in rows[1][1]])[2]
        dkd = dkd_distillation(s[1:], t[1:], index[1:], 1.0, 1 - p_target, temp)
        kd = soft_target_loss(s[1:], t[1:], temp, kind="kl")
        assert dkd.item() == pytest.approx(kd.item(), rel=1e-5)
    with pytest.raises(ValueError, match="positive_index"):
        dkd_distillation(s, t, torch.tensor([0]))


# ------------------------------------------------------------------------------ loss weights


def test_loss_weights_table_3e() -> None:
    assert loss_weights(WIDTHS, "sum_others") == pytest.approx([2.5, 1.0, 1.0, 1.0])
    assert loss_weights(WIDTHS, "max_other") == pytest.approx([1.75, 1.0, 1.0, 1.0])
    assert loss_weights(WIDTHS, "proportional") == pytest.approx([1.6, 1.2, 0.8, 0.4])
    assert loss_weights(WIDTHS, "uniform") == [1.0, 1.0, 1.0, 1.0]
    # cumulative: u = 1 + sum of smaller widths = [2.5, 1.75, 1.25, 1.0], sum 6.5, x n = 4
    cum = loss_weights(WIDTHS, "cumulative")
    assert cum == pytest.approx([10 / 6.5, 7 / 6.5, 5 / 6.5, 4 / 6.5])
    assert [round(x, 2) for x in cum] == [1.54, 1.08, 0.77, 0.62]  # Table 3e, as printed
    assert sum(cum) == pytest.approx(4.0)


def test_loss_weights_three_widths_and_default() -> None:
    ws = [1.0, 0.5, 0.25]
    assert loss_weights(ws) == pytest.approx([1.75, 1.0, 1.0])  # default sum_others
    assert loss_weights(ws, "max_other") == pytest.approx([1.5, 1.0, 1.0])
    assert loss_weights(ws, "proportional") == pytest.approx([3 / 1.75, 1.5 / 1.75, 0.75 / 1.75])
    # u = [1.75, 1.25, 1.0], sum 4 -> 3 u / 4
    assert loss_weights(ws, "cumulative") == pytest.approx([1.3125, 0.9375, 0.75])
    assert loss_weights([1.0], "sum_others") == [1.0]
    assert loss_weights([1.0], "max_other") == [1.0]


def test_loss_weights_validation() -> None:
    with pytest.raises(ValueError):
        loss_weights([0.5, 1.0], "uniform")  # not largest first
    with pytest.raises(ValueError):
        loss_weights([1.0, 0.5, 0.5], "uniform")  # duplicate
    with pytest.raises(ValueError):
        loss_weights([], "uniform")
    with pytest.raises(ValueError):
        loss_weights(WIDTHS, "bogus")  # type: ignore[arg-type]


def test_weighted_terms_sum_to_eq7_by_hand() -> None:
    base = [torch.tensor(v, requires_grad=True) for v in (1.0, 2.0, 3.0, 4.0)]
    dist = [None] + [torch.tensor(v, requires_grad=True) for v in (10.0, 20.0, 30.0)]
    w = loss_weights(WIDTHS, "sum_others")  # [2.5, 1, 1, 1]
    total = sum(weighted_term(i, w[i], base[i], dist[i]) for i in range(4))
    # 2.5 * 1 + (2 + 10) / 2 + (3 + 20) / 2 + (4 + 30) / 2
    assert total.item() == pytest.approx(2.5 + 6.0 + 11.5 + 17.0)
    total.backward()
    assert base[0].grad.item() == pytest.approx(2.5)
    assert base[1].grad.item() == pytest.approx(0.5)
    assert dist[3].grad.item() == pytest.approx(0.5)
    # no distillation: lambda_i L_i (not halved)
    plain = sum(weighted_term(i, w[i], base[i].detach(), None) for i in range(4))
    assert plain.item() == pytest.approx(2.5 + 2.0 + 3.0 + 4.0)


def test_weighted_term_by_hand() -> None:
    l1, l2, lp = torch.tensor(2.0), torch.tensor(3.0), torch.tensor(5.0)
    assert weighted_term(0, 2.5, l1, None).item() == pytest.approx(5.0)
    assert weighted_term(1, 1.0, l2, lp).item() == pytest.approx(4.0)  # (3 + 5) / 2
    assert weighted_term(2, 0.5, l2, None).item() == pytest.approx(1.5)
    with pytest.raises(ValueError):
        weighted_term(0, 1.0, l1, lp)



# ------------------------------------------------------------------------------ sampling


def test_sandwich_rule_structure_and_seeding() -> None:
    cands = [0.5, 1.0, 0.25, 0.75, 0.625, 0.375]
    a = Sandwich(cands, k=4, seed=3)
    b = Sandwich(cands, k=4, seed=3)
    draws_a = [a.sample() for _ in range(30)]
    draws_b = [b.sample() for _ in range(30)]
    assert draws_a == draws_b  # same seed -> same stream (every rank)
    seen: set[float] = set()
    for d in draws_a:
        assert d[0] == 1.0 and d[1] == 0.25
        assert len(d) == 4 and len(set(d)) == 4
        assert set(d[2:]) <= {0.75, 0.625, 0.5, 0.375}
        seen |= set(d[2:])
    assert seen == {0.75, 0.625, 0.5, 0.375}
    c = Sandwich(cands, k=4, seed=4)
    assert [c.sample() for _ in range(30)] != draws_a
    assert sorted(Sandwich(cands, k=6).sample()) == sorted(cands)
    assert Sandwich(cands, k=2).sample() == [1.0, 0.25]
    assert Sandwich(cands, k=1).sample() == [1.0]


def test_sandwich_resume_and_custom_key() -> None:
    # width x per-stage depth specs; key = a cost proxy (width^2 * total blocks)
    specs = [(1.0, (2, 4, 6, 3)), (0.5, (2, 3, 2, 2)), (1.0, (2, 2, 2, 2)), (0.75, (2, 4, 4, 2))]
    s = Sandwich(specs, k=3, key=lambda sp: sp[0] ** 2 * sum(sp[1]), seed=0)
    first = s.sample()
    assert first[0] == (1.0, (2, 4, 6, 3)) and first[1] == (0.5, (2, 3, 2, 2))
    state = s.state_dict()
    after = [s.sample() for _ in range(5)]
    s.load_state_dict(state)
    assert [s.sample() for _ in range(5)] == after
    with pytest.raises(ValueError):
        Sandwich([1.0, 0.5], k=3)
    with pytest.raises(ValueError):
        Sandwich([(1, 0), (0, 1), (0, 0)], k=2, key=lambda sp: sum(sp))  # tie for largest


def test_universal_sandwich() -> None:
    us = UniversalSandwich(0.25, 1.0, n=4, seed=11)
    ws = us.sample()
    assert len(ws) == 4 and ws[:2] == [1.0, 0.25]
    # the random widths are 0.25 + 0.75 * u for the generator's next two uniforms
    g = torch.Generator().manual_seed(11)
    u = torch.rand(2, generator=g, dtype=torch.float64).tolist()
    assert ws[2:] == pytest.approx([0.25 + 0.75 * x for x in u])
    assert UniversalSandwich(0.25, 1.0, n=4, seed=11).sample() == ws
    # dynamic sampling override of the lower bound
    assert us.sample(w_min=1.0) == [1.0]
    half = us.sample(w_min=0.5)
    assert half[:2] == [1.0, 0.5] and all(0.5 <= w <= 1.0 for w in half)
    no_min = UniversalSandwich(0.25, 1.0, n=3, seed=0, include_min=False).sample()
    assert len(no_min) == 3 and no_min[0] == 1.0
    with pytest.raises(ValueError):
        UniversalSandwich(0.0, 1.0)
    with pytest.raises(ValueError):
        UniversalSandwich(0.25, 1.0, n=1)


def test_slow_start_active() -> None:
    assert slow_start_active(0, 100)
    assert slow_start_active(99.9, 100)
    assert not slow_start_active(100, 100)
    assert not slow_start_active(0, 0)


def test_dynamic_min_width_four_equal_stages() -> None:
    got = {e: dynamic_min_width(e, 100) for e in (0, 24.9, 25, 49, 50, 74, 75, 99, 100, 150)}
    assert got == {
        0: 1.0, 24.9: 1.0, 25: 0.75, 49: 0.75, 50: 0.5, 74: 0.5,
        75: 0.25, 99: 0.25, 100: 0.25, 150: 0.25,
    }  # fmt: skip
    # 10 epochs: stage = floor(epoch * 4 / 10)
    assert [dynamic_min_width(e, 10) for e in range(10)] == [
        1.0, 1.0, 1.0, 0.75, 0.75, 0.5, 0.5, 0.5, 0.25, 0.25,
    ]  # fmt: skip
    assert dynamic_min_width(5, 10, stages=(1.0, 0.5)) == 0.5
    with pytest.raises(ValueError):
        dynamic_min_width(0, 0)


# ------------------------------------------------------------------------------ group reg


def test_group_coefficients_leading_groups_penalised_most() -> None:
    c = group_coefficients(8, 5e-5, 0.05)
    assert c == pytest.approx([5e-5 * (1 - 0.05 * i) for i in range(8)])
    assert c[0] == pytest.approx(5e-5) and c[7] == pytest.approx(0.65 * 5e-5)
    assert all(a > b for a, b in zip(c, c[1:]))
    with pytest.raises(ValueError):
        group_coefficients(8, 1.0, 0.2)  # 1 - 0.2 * 7 < 0


def test_channel_group_index() -> None:
    assert channel_group_index(10, 4).tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 3, 3]
    assert channel_group_index(8, 8).tolist() == list(range(8))
    assert channel_group_index(3, 8).tolist() == [0, 1, 2]


def test_group_regularization_by_hand() -> None:
    # conv weight (4 out, 1 in, 1, 2); per-output-channel squared norms 5, 9, 1, 8
    w = torch.tensor([[1.0, 2.0], [3.0, 0.0], [0.0, 1.0], [2.0, 2.0]]).reshape(4, 1, 1, 2)
    w.requires_grad_(True)
    bias = torch.ones(4)
    fc = torch.tensor([[1.0, 2.0]])
    lam, alpha = 0.1, 0.5  # coefficients [0.1, 0.05] for G = 2
    # groups: channels {0, 1} -> 0.1, {2, 3} -> 0.05
    expected_w = 0.1 * (5 + 9) + 0.05 * (1 + 8)
    expected_b = 0.1 * 2 + 0.05 * 2
    expected_fc = 0.1 * 5
    r = group_regularization([w, bias], num_groups=2, lam=lam, alpha=alpha, plain_weights=[fc])
    assert r.item() == pytest.approx(expected_w + expected_b + expected_fc, rel=1e-6)
    r_w = group_regularization([w], num_groups=2, lam=lam, alpha=alpha)
    r_w.backward()
    # d/dW = 2 * coeff * W
    expected_grad = torch.tensor([[0.2, 0.4], [0.6, 0.0], [0.0, 0.1], [0.2, 0.2]])
    expected_grad = expected_grad.reshape(4, 1, 1, 2)
    torch.testing.assert_close(w.grad, expected_grad)
    # alpha = 0 is plain L2: lam * sum of squares
    plain = group_regularization([w.detach()], num_groups=2, lam=lam, alpha=0.0)
    assert plain.item() == pytest.approx(0.1 * 23, rel=1e-6)
    assert group_regularization([]).item() == 0.0


def test_group_reg_alpha_schedule() -> None:
    assert group_reg_alpha(5, 0.05, warmup_epochs=10, ramp_end_epoch=50) == 0.0
    assert group_reg_alpha(10, 0.05, warmup_epochs=10, ramp_end_epoch=50) == pytest.approx(0.0)
    assert group_reg_alpha(30, 0.05, warmup_epochs=10, ramp_end_epoch=50) == pytest.approx(0.025)
    assert group_reg_alpha(50, 0.05, warmup_epochs=10, ramp_end_epoch=50) == pytest.approx(0.05)
    assert group_reg_alpha(80, 0.05, warmup_epochs=10, ramp_end_epoch=50) == pytest.approx(0.05)
    assert group_reg_alpha(10, 0.05, warmup_epochs=10) == pytest.approx(0.05)
