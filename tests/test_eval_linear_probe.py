"""Switchable / slimmable linear probes (SlimCLR Zhao et al. Sec. 3.3, Table 3a)."""

from dataclasses import replace

import torch
from torch import nn

from slimssl.eval.linear_eval import RECIPES, linear_eval_cached
from slimssl.eval.linear_probe import LinearProbes, probe_loss
from slimssl.nn.functional import soft_target_loss

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
