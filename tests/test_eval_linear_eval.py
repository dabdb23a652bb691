"""Linear evaluation of every member in one pass: switchable and slimmable probes together
(SlimCLR Sec. 4.1 / Table 3a; DSPNet 0.A.2), fast (cached) and augment modes."""

import math
from dataclasses import replace

import pytest
import torch

from slimssl.data import eval_transform, load_dataset
from slimssl.eval.features import extract_features
from slimssl.eval.family import recalibrate_if_universal
from slimssl.eval.linear_eval import (RECIPES, SEMISUP_LINEAR, FrozenFamily, ProbeSet,
                                      linear_eval, linear_eval_cached, result_rows)
from slimssl.models.registry import create
from slimssl.nn.spec import SubnetSpec

SPECS = [SubnetSpec(1.0), SubnetSpec(0.5)]


def _tiny_recipe(epochs=3, **kw):
    return replace(RECIPES["dspnet"], epochs=epochs, batch_size=32, **kw)


@pytest.fixture(scope="module")
def data():
    train = load_dataset("synthetic", "train", 8, synthetic_samples=96)
    test = load_dataset("synthetic", "test", 8, synthetic_samples=96)
    return train, test


def _model(norm="switchable"):
    torch.manual_seed(0)
    return create("resnet10_narrow", widths=[1.0, 0.5], stem="cifar", norm=norm).eval()


def test_recipes_follow_the_papers():
    m2, m3, ds = RECIPES["mocov2"], RECIPES["mocov3"], RECIPES["dspnet"]
    assert (m2.epochs, m2.lr, m2.schedule, m2.milestones) == (100, 60.0, "step", (60, 80))
    assert (m3.epochs, m3.lr, m3.schedule, m3.batch_size) == (90, 0.4, "cosine", 1024)
    assert (ds.epochs, ds.lr, ds.batch_size, ds.bn) == (80, 0.2, 256, True)
    assert (SEMISUP_LINEAR.epochs, SEMISUP_LINEAR.lr, SEMISUP_LINEAR.bn) == (50, 0.02, True)
    # step decay by 10 at epochs 60 and 80 of 100 (1000 steps = 10 per epoch)
    assert [m2.lr_at(s, 1000) for s in (0, 599, 600, 799, 800)] == pytest.approx(
        [60, 60, 6, 6, 0.6])
    assert m3.lr_at(0, 100) == 0.4 and m3.lr_at(50, 100) == pytest.approx(0.2)


def _clusters(n_per_class=40, classes=4, dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = 3 * torch.randn(classes, dim, generator=g)
    y = torch.arange(classes).repeat_interleave(n_per_class)
    return centers[y] + 0.5 * torch.randn(len(y), dim, generator=g), y


def test_cached_mode_trains_both_kinds_for_every_member():
    x, y = _clusters()
    xt, yt = _clusters(seed=0)
    feats = {"w1.0": x, "w0.5": x[:, :8]}
    feats_t = {"w1.0": xt, "w0.5": xt[:, :8]}
    res = linear_eval_cached(feats, y, feats_t, yt, 4, _tiny_recipe(20, lr=0.5), distill=True)
    assert set(res) == {"switchable", "slimmable"}
    for kind in res:
        assert set(res[kind]) == {"w1.0", "w0.5"}
        assert res[kind]["w1.0"]["feature_dim"] == 16 and res[kind]["w0.5"]["feature_dim"] == 8
        assert all(r["top1"] >= 95 for r in res[kind].values()), res
    rows = result_rows(res)
    assert set(rows["w0.5"]) == {"linear_switchable_top1", "linear_switchable_top5",
                                 "linear_slimmable_top1", "linear_slimmable_top5", "feature_dim"}


def test_probe_set_shares_one_sliced_layer_only_for_slimmable():
    probes = ProbeSet({"a": 16, "b": 8}, 3)
    sw, sl = probes.probes["switchable"], probes.probes["slimmable"]
    assert len(list(sw.parameters())) == 4 and len(list(sl.parameters())) == 2
    assert probes.teacher_key == "a"


def test_augment_mode_one_backbone_pass_serves_every_probe(data):
    train, test = data
    model = _model()
    calls = {"n": 0}
    model.register_forward_hook(lambda *_: calls.__setitem__("n", calls["n"] + 1))
    recipe = _tiny_recipe(2)
    res = linear_eval(model, SPECS, train, test, 10, recipe, mode="augment", batch_size=64)
    steps = math.ceil(len(train) / recipe.batch_size)
    test_batches = math.ceil(len(test) / 64)
    # per step ONE forward per member feeds both probe kinds; plus the test features
    assert calls["n"] == len(SPECS) * (recipe.epochs * steps + test_batches)
    dims = {s: res["switchable"][s]["feature_dim"] for s in SPECS}
    assert dims[SPECS[0]] == 2 * dims[SPECS[1]]  # each member read its own features
    assert {s: res["slimmable"][s]["feature_dim"] for s in SPECS} == dims
    for kind in ("switchable", "slimmable"):
        for r in res[kind].values():  # whole numbers of the test images, top-1 within top-5
            counts = [r[k] * len(test) / 100 for k in ("top1", "top5")]
            assert all(abs(c - round(c)) < 1e-6 for c in counts) and counts[0] <= counts[1]


def test_fast_mode_matches_cached_features_and_is_seeded(data):
    train, test = data
    model = _model()
    recipe = _tiny_recipe(3)
    a = linear_eval(model, SPECS, train, test, 10, recipe, kinds=("slimmable",), seed=1)
    b = linear_eval(model, SPECS, train, test, 10, recipe, kinds=("slimmable",), seed=1)
    assert a == b and set(a) == {"slimmable"}


def test_frozen_family_keeps_each_universal_members_statistics(data):
    train, _ = data
    model = _model("universal")
    tf = eval_transform(train.mean, train.std)

    def recal(m, s):
        recalibrate_if_universal(m, s, train.images, tf, num_images=64, batch_size=32)

    family = FrozenFamily(model, SPECS, recal)  # recalibrates w1.0, then w0.5
    x = tf(train.images[:16])
    got = family(x)[SPECS[0]]  # w1.0 must get ITS statistics back, not w0.5's
    recal(model, SPECS[0])
    want = extract_features(model, SPECS[0], x, transform=lambda t: t)
    assert torch.allclose(got, want, atol=1e-5)
    assert model.training is False
