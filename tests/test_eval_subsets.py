"""Class-balanced labelled subsets for semi-supervised evaluation."""

import torch

from slimssl.eval.subsets import balanced_label_subset, load_subset, per_class_count, save_subset


def _labels():
    # imbalanced classes: 100, 37, 5, 1 samples, interleaved
    y = torch.cat([torch.full((100,), 0), torch.full((37,), 1), torch.full((5,), 2), torch.full((1,), 3)])
    return y[torch.randperm(len(y), generator=torch.Generator().manual_seed(0))]


def test_exact_counts_per_class():
    y = _labels()
    for frac, expected in [(0.1, {0: 10, 1: 4, 2: 1, 3: 1}), (0.01, {0: 1, 1: 1, 2: 1, 3: 1})]:
        idx = balanced_label_subset(y, frac, seed=0)
        assert idx.dtype == torch.long
        assert len(set(idx.tolist())) == len(idx)
        assert torch.equal(idx, idx.sort().values)
        counts = torch.bincount(y[idx], minlength=4).tolist()
        assert counts == [expected[c] for c in range(4)]
    assert per_class_count(5, 0.1) == 1 and per_class_count(15, 0.1) == 2 and per_class_count(0, 0.5) == 0


def test_deterministic_and_seed_dependent():
    y = _labels()
    a = balanced_label_subset(y, 0.1, seed=1)
    b = balanced_label_subset(y.tolist(), 0.1, seed=1)
    c = balanced_label_subset(y, 0.1, seed=2)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_save_load_roundtrip(tmp_path):
    idx = balanced_label_subset(_labels(), 0.1, seed=0)
    p = save_subset(idx, tmp_path / "sub" / "labels_10pct.json", fraction=0.1, seed=0)
    assert p.exists()
    assert torch.equal(load_subset(p), idx)
