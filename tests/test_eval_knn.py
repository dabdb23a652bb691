"""Weighted kNN (InstDisc, Wu et al. 2018) on synthetic features."""

import math

import pytest

import torch
import torch.nn.functional as F

from slimssl.eval.knn import default_chunk, knn_accuracy, knn_predict


def _clusters(n_per_class: int, num_classes: int, dim: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(num_classes, dim, generator=g) * 5
    y = torch.arange(num_classes).repeat_interleave(n_per_class)
    x = centers[y] + 0.3 * torch.randn(len(y), dim, generator=g)
    return x, y


def test_separated_clusters_near_perfect():
    x, y = _clusters(100, 5, 16, seed=0)
    g = torch.Generator().manual_seed(1)
    perm = torch.randperm(len(y), generator=g)
    tr, te = perm[:400], perm[400:]
    acc = knn_accuracy(x[tr], y[tr], x[te], y[te], num_classes=5, ks=(200, 20), chunk=7)
    assert set(acc) == {200, 20}
    assert acc[200] >= 99.0 and acc[20] >= 99.0


def test_random_labels_near_chance():
    g = torch.Generator().manual_seed(0)
    xtr, xte = torch.randn(2000, 32, generator=g), torch.randn(1000, 32, generator=g)
    ytr, yte = torch.randint(0, 10, (2000,), generator=g), torch.randint(0, 10, (1000,), generator=g)
    acc = knn_accuracy(xtr, ytr, xte, yte, num_classes=10, ks=(200, 20))
    for k in (200, 20):
        assert abs(acc[k] - 10.0) < 4.0, acc


def test_weighted_vote_matches_hand_computation():
    # 4 bank points in 2-D; features are NOT unit length: kNN must normalise them.
    bank = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0], [-1.0, 0.0]])
    labels = torch.tensor([0, 1, 1, 0])
    query = torch.tensor([[3.0, 1.0]])
    t = 0.1

    def cos(a, b):
        return (a[0] * b[0] + a[1] * b[1]) / (math.hypot(*a) * math.hypot(*b))

    q = (3.0, 1.0)
    sims = [cos(q, p) for p in [(2.0, 0.0), (0.0, 3.0), (1.0, 1.0), (-1.0, 0.0)]]
    # Ranking: (2,0): 0.949, (1,1): 0.894, (0,3): 0.316, (-1,0): -0.949 -> top-3 = 0, 2, 1.
    expected0 = math.exp(sims[0] / t)
    expected1 = math.exp(sims[2] / t) + math.exp(sims[1] / t)
    scores = knn_predict(bank, labels, query, num_classes=2, k=3, t=t)
    assert scores.shape == (1, 2)
    assert math.isclose(scores[0, 0].item(), expected0, rel_tol=1e-5)
    assert math.isclose(scores[0, 1].item(), expected1, rel_tol=1e-5)
    # exp(9.49) for the single nearest label-0 point beats exp(8.94) + exp(3.16) of label 1:
    # with T = 0.1 the weighting strongly favours the closest neighbours.
    assert expected0 > expected1 and scores.argmax(1).item() == 0
    # With k=1 only the nearest point votes.
    s1 = knn_predict(bank, labels, query, num_classes=2, k=1, t=t)
    assert s1[0, 1].item() == 0.0 and s1.argmax(1).item() == 0


def test_accuracy_reuses_topk_consistently_and_chunk_invariant():
    x, y = _clusters(30, 4, 8, seed=3)
    x = x + 4.0 * torch.randn(x.shape, generator=torch.Generator().manual_seed(4))  # overlap
    xtr, ytr, xte, yte = x[::2], y[::2], x[1::2], y[1::2]
    acc = knn_accuracy(xtr, ytr, xte, yte, 4, ks=(50, 5), chunk=3)
    for k in (50, 5):
        pred = knn_predict(xtr, ytr, xte, 4, k=k, chunk=1000).argmax(1)
        assert math.isclose(acc[k], 100.0 * int((pred == yte).sum()) / len(yte), rel_tol=1e-12)
    a = knn_predict(xtr, ytr, xte, 4, k=10, chunk=1)
    b = knn_predict(xtr, ytr, xte, 4, k=10, chunk=None)
    torch.testing.assert_close(a, b)


def test_k_larger_than_bank_and_memory_bound():
    x, y = _clusters(3, 2, 4, seed=0)
    scores = knn_predict(x, y, x, num_classes=2, k=200)
    assert scores.shape == (6, 2)
    # Default chunk keeps a 50k x 50k problem's similarity block at <= 128 MiB.
    assert default_chunk(50_000) * 50_000 * 4 <= 128 * 2**20
    assert default_chunk(10**9) == 1


def test_scores_equal_dense_reference():
    g = torch.Generator().manual_seed(0)
    xtr, xte = torch.randn(50, 6, generator=g), torch.randn(20, 6, generator=g)
    ytr = torch.randint(0, 3, (50,), generator=g)
    sim = F.normalize(xte, dim=1) @ F.normalize(xtr, dim=1).T
    s, i = sim.topk(7, dim=1)
    ref = torch.zeros(20, 3).scatter_add_(1, ytr[i], torch.exp(s / 0.07))
    torch.testing.assert_close(knn_predict(xtr, ytr, xte, 3, k=7, t=0.07, chunk=6), ref)


# ----------------------------------------------------------------------- majority vote (DSPNet)

def _arc(angles):
    a = torch.tensor(angles, dtype=torch.float64)
    return torch.stack([a.cos(), a.sin()], 1).float()


def test_majority_vote_by_hand_with_tie_to_the_nearest_class():
    from slimssl.eval.knn import knn_key
    # bank on the unit circle at angles .1 .. .5 from the query (angle 0): sorted by similarity
    bank = _arc([0.1, 0.2, 0.3, 0.4, 0.5])
    labels = torch.tensor([2, 1, 1, 2, 0])
    query = _arc([0.0])
    # k = 5: votes 2 -> 2, 1 -> 2, 0 -> 1; the tie 1 / 2 goes to the class of the nearest
    # neighbour (label 2 at rank 0), not to the lowest index. Scores = votes + (k - r) / (k + 1):
    # class 0: 1 + 1/6, class 1: 2 + 4/6, class 2: 2 + 5/6
    s = knn_predict(bank, labels, query, num_classes=3, k=5, vote="majority")
    assert s[0].tolist() == pytest.approx([1 + 1 / 6, 2 + 4 / 6, 2 + 5 / 6], abs=1e-6)
    assert int(s.argmax(1)) == 2
    # 3 neighbours at angles .1 (label 2), .8 and .9 (label 1): majority says 1; the weighted
    # vote at T = 0.05 says 2: exp(cos .1 / .05) = e^19.90 > e^13.93 + e^12.43
    bank, labels, y = _arc([0.1, 0.8, 0.9]), torch.tensor([2, 1, 1]), torch.tensor([1])
    maj = knn_accuracy(bank, labels, query, y, 3, ks=(3,), t=0.05, vote="majority")
    wtd = knn_accuracy(bank, labels, query, y, 3, ks=(3,), t=0.05)
    assert maj == {3: 100.0} and wtd == {3: 0.0}
    assert knn_key(20, "majority") == "knn_top1_k20_majority" and knn_key(200) == "knn_top1_k200"
    with pytest.raises(ValueError, match="majority"):
        knn_accuracy(bank, labels, query, y, 3, ks=(3,), vote="plurality")


def test_majority_columns_in_the_table_and_dspnet_default():
    from slimssl.engine.config import Config
    from slimssl.eval.report import format_table
    table = format_table([{"subnet": "w1.00", "knn_top1_k200": 50.0, "knn_top1_k20": 51.0,
                           "knn_top1_k20_majority": 52.0, "knn_top1_k200_majority": 49.0}])
    head = table.splitlines()[0]
    assert "kNN@20 majority top-1" in head and "kNN@200 majority top-1" in head
    assert head.index("kNN@20 top-1") < head.index("kNN@200 majority top-1")
    assert Config.from_dict({"recipe": {"name": "dspnet"},
                             "method": {"name": "byol"}}).eval.knn_vote == "majority"
    assert Config().eval.knn_vote == "weighted"


def test_knn_family_writes_both_protocols():
    from slimssl.data import load_dataset
    from slimssl.eval.family import knn_family
    from slimssl.eval.knn import knn_accuracy as acc
    from slimssl.models import create
    torch.manual_seed(0)
    model = create("resnet10_narrow", widths=[1.0, 0.5], stem="cifar").eval()
    train = load_dataset("synthetic", "train", 8)
    test = load_dataset("synthetic", "test", 8)
    rows = knn_family(model, model.family()[:1], train, test, ks=(20,),
                      votes=("weighted", "majority"), recalib_images=64)
    assert {"knn_top1_k20", "knn_top1_k20_majority"} <= set(rows[0])
    from slimssl.data.views import eval_transform
    from slimssl.eval.features import extract_features
    tf = eval_transform(train.mean, train.std)
    spec = model.family()[0]
    bank = extract_features(model, spec, train.images, tf, 256, torch.device("cpu"))
    query = extract_features(model, spec, test.images, tf, 256, torch.device("cpu"))
    classes = int(max(train.labels.max(), test.labels.max())) + 1
    want = acc(bank, train.labels, query, test.labels, classes, ks=(20,), vote="majority")[20]
    assert rows[0]["knn_top1_k20_majority"] == pytest.approx(want)
