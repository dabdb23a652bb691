"""The one class-balanced subset function (slimssl.data.subset): counts by hand, one rounding,
and the same images for the pre-training ``train_fraction`` subset and the semi-supervised
labelled subset of the same fraction and seed."""

import torch

from slimssl.data.subset import balanced_subset, load_subset, per_class_count, save_subset
from slimssl.engine.trainer import Trainer
from slimssl.eval.semisup import labelled_subset

from tinyrun import tiny_config, write_image_folder


def _labels():
    # imbalanced classes: 100, 37, 5, 1 samples, interleaved
    y = torch.cat([torch.full((100,), 0), torch.full((37,), 1), torch.full((5,), 2),
                   torch.full((1,), 3)])
    return y[torch.randperm(len(y), generator=torch.Generator().manual_seed(0))]


def test_exact_counts_per_class_rounding_half_up():
    y = _labels()
    # 0.1 * [100, 37, 5, 1] = [10, 3.7, 0.5, 0.1] -> [10, 4, 1 (half up), 1 (at least one)]
    for frac, expected in [(0.1, [10, 4, 1, 1]), (0.01, [1, 1, 1, 1]), (0.5, [50, 19, 3, 1])]:
        idx = balanced_subset(y, fraction=frac, seed=0)
        assert idx.dtype == torch.long
        assert len(set(idx.tolist())) == len(idx)
        assert torch.equal(idx, idx.sort().values)
        assert torch.bincount(y[idx], minlength=4).tolist() == expected
    # halves go up, not to even (Python's round(2.5) == 2): 0.5 * 5 = 2.5 -> 3, 0.1 * 25 -> 3
    assert [per_class_count(n, f) for n, f in ((5, 0.5), (25, 0.1), (15, 0.1), (5, 0.1))] \
        == [3, 3, 2, 1]
    assert per_class_count(0, 0.5) == 0 and per_class_count(3, 1.0) == 3


def test_deterministic_and_seed_dependent():
    y = _labels()
    a = balanced_subset(y, fraction=0.1, seed=1)
    assert torch.equal(a, balanced_subset(y.tolist(), fraction=0.1, seed=1))
    assert not torch.equal(a, balanced_subset(y, fraction=0.1, seed=2))


def test_save_load_roundtrip(tmp_path):
    idx = balanced_subset(_labels(), fraction=0.1, seed=0)
    p = save_subset(idx, tmp_path / "sub" / "labels_10pct.json", fraction=0.1, seed=0)
    assert torch.equal(load_subset(p), idx)
    (tmp_path / "bare.json").write_text("[3, 1, 2]")
    assert load_subset(tmp_path / "bare.json").tolist() == [3, 1, 2]


def test_pretraining_and_semisup_subsets_are_the_same_images(tmp_path):
    data = write_image_folder(tmp_path / "data", per_class=10, classes=3)  # 30 train images
    full = Trainer(tiny_config(data, tmp_path / "full"), tmp_path / "full", progress="off")
    part = Trainer(tiny_config(data, tmp_path / "part", "data.train_fraction=0.25", "train.seed=3",
                               "data.batch_size=8"),
                   tmp_path / "part", progress="off")
    # 0.25 * 10 = 2.5 -> 3 images of each class
    assert torch.bincount(part.train_set.labels).tolist() == [3, 3, 3]
    idx, _ = labelled_subset(full.train_set.labels, 0.25, tmp_path / "run", seed=3)
    assert torch.equal(part.train_set.images, full.train_set.images[idx])
