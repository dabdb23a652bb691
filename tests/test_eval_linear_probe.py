"""Switchable / slimmable linear probes and SlimCLR Appendix A (Zhao et al.)."""

from dataclasses import replace

import torch
from torch import nn

from slimssl.eval.linear_eval import RECIPES, linear_eval_cached
from slimssl.eval.linear_probe import (
    LinearProbes,
    appendix_a_residuals,
    least_squares_residual,
    probe_loss,
)
from slimssl.nn.functional import soft_target_loss

D64 = torch.float64


def _separable(n_per_class=60, num_classes=4, dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(num_classes, dim, generator=g) * 3
    y = torch.arange(num_classes).repeat_interleave(n_per_class)
    x = centers[y] + 0.5 * torch.randn(len(y), dim, generator=g)
    return x, y


def _width_feats(x):
    # sub-network features are the leading channels (slimmable convention)
    return {"w1.0": x, "w0.5": x[:, : x.shape[1] // 2]}


def test_probes_reach_near_perfect_on_separable_features():
    x, y = _separable(seed=0)
    xt, yt = _separable(seed=0)  # same centers (same seed), fresh noise below
    xt = xt + 0.1 * torch.randn(xt.shape, generator=torch.Generator().manual_seed(9))
    for bn, distill, bs in ((False, False, 240), (True, True, 120)):
        recipe = replace(RECIPES["dspnet"], epochs=30, lr=0.2, batch_size=bs, bn=bn)
        res = linear_eval_cached(_width_feats(x), y, _width_feats(xt), yt, 4, recipe,
                                 distill=distill)
        for kind in ("switchable", "slimmable"):
            assert set(res[kind]) == {"w1.0", "w0.5"}
            for r in res[kind].values():
                assert r["top1"] >= 98.0 and r["top5"] == 100.0, (kind, bn, distill, res)


def test_switchable_one_layer_per_key():
    probes = LinearProbes({"a": 16, "b": 8, "c": 4}, num_classes=5, kind="switchable", bn=True)
    assert len(probes.heads) == 3
    assert sorted(h.in_features for h in probes.heads.values()) == [4, 8, 16]
    assert all(not n.affine for n in probes.norms.values())
    assert sum(isinstance(m, nn.Linear) for m in probes.modules()) == 3


def test_slimmable_single_shared_weight_sliced():
    probes = LinearProbes({"full": 16, "half": 8}, num_classes=5, kind="slimmable")
    params = list(probes.parameters())
    assert len(params) == 2 and params[0].shape == (5, 16)  # one weight, one bias
    out = probes({"half": torch.randn(3, 8)})["half"]
    out.sum().backward()
    g = probes.head.weight.grad
    assert g[:, :8].abs().sum() > 0 and torch.all(g[:, 8:] == 0)


def test_distillation_teacher_is_detached():
    torch.manual_seed(0)
    probes = LinearProbes({"full": 8, "half": 4}, num_classes=3, kind="switchable")
    x = torch.randn(10, 8)
    y = torch.randint(0, 3, (10,))
    logits = probes({"full": x, "half": x[:, :4]})
    soft_target_loss(logits["half"], logits["full"]).backward()
    teacher, student = probes.heads[probes._names["full"]], probes.heads[probes._names["half"]]
    assert teacher.weight.grad is None
    assert student.weight.grad.abs().sum() > 0
    # In the full loss the teacher's gradient comes from its label CE only.
    probes.zero_grad(set_to_none=True)
    probe_loss(probes({"full": x, "half": x[:, :4]}), y, "full", distill=True).backward()
    g_with = teacher.weight.grad.clone()
    probes.zero_grad(set_to_none=True)
    probe_loss(probes({"full": x, "half": x[:, :4]}), y, "full", distill=False).backward()
    torch.testing.assert_close(g_with, teacher.weight.grad)
    # The student's loss is label CE + KL to the teacher's softened prediction (T = 1).
    logits = probes({"full": x, "half": x[:, :4]})
    p_t = logits["full"].detach().softmax(1)
    log_p_s = logits["half"].log_softmax(1)
    by_hand = (torch.nn.functional.cross_entropy(logits["full"], y)
               + torch.nn.functional.cross_entropy(logits["half"], y)
               + (p_t * (p_t.log() - log_p_s)).sum(1).mean())
    torch.testing.assert_close(probe_loss(logits, y, "full", distill=True), by_hand)


def test_least_squares_residual_exact_and_ridge():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(50, 5, generator=g, dtype=D64)
    Y = X @ torch.randn(5, 2, generator=g, dtype=D64)
    assert least_squares_residual(X, Y) < 1e-18 * float((Y**2).sum()) + 1e-20
    assert least_squares_residual(X, Y, ridge=10.0) > least_squares_residual(X, Y, ridge=1e-6)


def test_appendix_a_shared_linear_cannot_serve_conflicting_mappings():
    """SlimCLR Appendix A: one slimmable linear layer vs one per width (closed form).

    The sub-network's features X_small occupy the leading channels of the probe's input,
    but, as for a real slimmable network, they are a different representation from the
    full network's leading channels (here X_small = X_full[:, :d1] @ S). Each mapping is
    exactly realisable on its own, yet the shared first d1 rows of the weight matrix
    must fit the two conflicting mappings at once, so the shared residual is large.
    """
    g = torch.Generator().manual_seed(0)
    n, d1, d2, c = 200, 4, 4, 3
    x_full = torch.randn(n, d1 + d2, generator=g, dtype=D64)
    x_small = x_full[:, :d1] @ torch.randn(d1, d1, generator=g, dtype=D64)
    y = x_small @ torch.randn(d1, c, generator=g, dtype=D64)
    r = appendix_a_residuals(x_full, x_small, y)
    scale = float((y**2).sum())
    assert r["separate_full"] < 1e-9 * scale and r["separate_small"] < 1e-9 * scale
    assert r["shared"] > 2 * r["separate"] and r["shared"] > 0.1 * scale


def test_appendix_a_prefix_features():
    """With literal prefix features (X_small = X_full[:, :d1]) and shared targets:

    * if the targets are realisable from the prefix (Eq. 23 holds), the shared layer is
      as good as separate ones (both ~0);
    * if the targets also depend on extra channels correlated with the prefix, the
      full problem's optimal theta11 differs from the small one, so shared > separate.
      It is bounded by 2x here (theta11 = small optimum, theta21 = 0 gives <= 2 r_small).
    """
    g = torch.Generator().manual_seed(1)
    n, d1, d2, c = 200, 4, 4, 3
    x1 = torch.randn(n, d1, generator=g, dtype=D64)
    x2 = 2.0 * x1 @ torch.randn(d1, d2, generator=g, dtype=D64) + torch.randn(n, d2, generator=g, dtype=D64)
    x_full = torch.cat([x1, x2], 1)

    y_ok = x1 @ torch.randn(d1, c, generator=g, dtype=D64)
    r_ok = appendix_a_residuals(x_full, x_full[:, :d1], y_ok)
    assert r_ok["shared"] < 1e-9 * float((y_ok**2).sum())

    y = x_full @ torch.randn(d1 + d2, c, generator=g, dtype=D64)
    r = appendix_a_residuals(x_full, x_full[:, :d1], y)
    assert r["separate_full"] < 1e-9 * float((y**2).sum())
    assert 1.2 * r["separate"] < r["shared"] <= 2 * r["separate_small"] * (1 + 1e-9)
