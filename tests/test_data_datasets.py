"""Tests of slimssl.data datasets: folders, CIFAR batches, digits, synthetic, subsets, cache."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from slimssl.data import (
    DataError,
    DataWarning,
    ImageTensorDataset,
    StreamingImageFolder,
    balanced_subset,
    channel_mean_std,
    load_cifar,
    load_dataset,
    load_digits_splits,
    load_image_folder,
    make_loader,
    make_synthetic,
)

torch.set_num_threads(1)


def _save(path: Path, img: Image.Image, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format=fmt)
    return path


@pytest.fixture()
def messy_folder(tmp_path: Path) -> Path:
    """root/cat: 2 RGB PNG + grayscale + corrupt; root/dog: CMYK JPEG, RGBA PNG, palette GIF."""
    root = tmp_path / "messy"
    _save(root / "cat" / "a.png", Image.new("RGB", (8, 8), (255, 0, 0)))
    _save(root / "cat" / "b.png", Image.new("RGB", (8, 8), (0, 255, 0)))
    _save(root / "cat" / "gray.png", Image.new("L", (8, 8), 100))
    (root / "cat" / "broken.jpg").write_bytes(b"this is not a jpeg")
    _save(root / "dog" / "cmyk.jpg", Image.new("CMYK", (8, 8), (0, 0, 0, 0)), "JPEG")
    _save(root / "dog" / "rgba.png", Image.new("RGBA", (8, 8), (10, 20, 30, 0)))
    _save(root / "dog" / "pal.gif", Image.new("RGB", (8, 8), (0, 0, 255)).convert("P"))
    (root / "dog" / "notes.txt").write_text("ignored: not an image extension")
    return root


def test_image_folder_skips_corrupt_with_one_warning(messy_folder: Path) -> None:
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        ds = load_image_folder(messy_folder, mode="memory", num_threads=1)
    data_warnings = [w for w in rec if issubclass(w.category, DataWarning)]
    assert len(data_warnings) == 1
    msg = str(data_warnings[0].message)
    assert "1 unreadable" in msg and "broken.jpg" in msg and "strict=True" in msg
    assert isinstance(ds, ImageTensorDataset)
    assert ds.images.shape == (6, 3, 8, 8) and ds.images.dtype == torch.uint8
    assert ds.classes == ["cat", "dog"]
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 1]
    # sorted file order: cat/a, cat/b, cat/gray; dog/cmyk, dog/pal, dog/rgba
    assert ds.images[0, :, 0, 0].tolist() == [255, 0, 0]
    assert ds.images[2, :, 0, 0].tolist() == [100, 100, 100]  # grayscale replicated
    cmyk = ds.images[3, :, 0, 0].tolist()
    assert all(v >= 250 for v in cmyk)  # CMYK (0,0,0,0) is white
    assert ds.images[4, :, 0, 0].tolist() == [0, 0, 255]  # palette
    assert ds.images[5, :, 0, 0].tolist() == [255, 255, 255]  # fully transparent -> white
    assert len(ds.mean) == 3 and all(0.0 <= m <= 1.0 for m in ds.mean)


def test_image_folder_strict_raises_naming_file(messy_folder: Path) -> None:
    with pytest.raises(DataError, match=r"broken\.jpg.*strict=False"):
        load_image_folder(messy_folder, mode="memory", strict=True, num_threads=1)


def test_image_folder_resize_and_size_mismatch(tmp_path: Path) -> None:
    root = tmp_path / "sizes"
    _save(root / "a" / "1.png", Image.new("RGB", (10, 6), (1, 2, 3)))
    _save(root / "a" / "2.png", Image.new("RGB", (8, 8), (4, 5, 6)))
    with pytest.raises(DataError, match=r"different sizes.*image_size"):
        load_image_folder(root, mode="memory")
    ds = load_image_folder(root, image_size=4, mode="memory")
    assert ds.images.shape == (2, 3, 4, 4)
    assert ds.images[0, :, 2, 2].tolist() == [1, 2, 3]


def test_unlabeled_folder_flat_and_nested(tmp_path: Path) -> None:
    root = tmp_path / "unl"
    _save(root / "x.png", Image.new("RGB", (5, 5)))
    _save(root / "sub" / "deeper" / "y.jpg", Image.new("RGB", (5, 5)), "JPEG")
    ds = load_image_folder(root, mode="memory")
    assert ds.labels is None and ds.classes == [] and len(ds) == 2
    assert ds[0][1] == -1
    only_nested = load_image_folder(root / "sub", labelled=False, mode="memory")
    assert len(only_nested) == 1 and only_nested.labels is None


def test_bad_paths_name_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match="nope.*does not exist"):
        load_dataset(str(missing), "train")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="empty.*is empty"):
        load_image_folder(empty)
    noimg = tmp_path / "noimg"
    (noimg / "cls").mkdir(parents=True)
    (noimg / "cls" / "readme.txt").write_text("hi")
    with pytest.raises(DataError, match="noimg.*no image files"):
        load_image_folder(noimg)
    with pytest.raises(DataError, match="noimg.*only split='train'"):
        load_dataset(str(noimg), "test")
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    with pytest.raises(DataError, match="file.txt"):
        load_dataset(str(afile), "train")
    with pytest.raises(DataError, match="all_corrupt.*could be decoded"):
        bad = tmp_path / "all_corrupt"
        bad.mkdir()
        (bad / "z.png").write_bytes(b"junk")
        load_image_folder(bad, mode="memory")
    assert issubclass(DataError, ValueError)


def test_streaming_folder_and_auto_threshold(messy_folder: Path) -> None:
    ds = load_image_folder(messy_folder, image_size=8, stream_threshold=3)  # 7 files > 3 -> stream
    assert isinstance(ds, StreamingImageFolder)
    assert len(ds) == 7 and ds.classes == ["cat", "dog"]
    img, label = ds[0]
    assert img.shape == (3, 8, 8) and img.dtype == torch.uint8 and label == 0
    # index 2 in sorted order (a, b, broken, gray) is cat/broken.jpg: replaced by the next readable file with a warning
    with pytest.warns(DataWarning, match="broken.jpg"):
        img1, _ = ds[2]
    assert img1.shape == (3, 8, 8)
    strict = StreamingImageFolder(messy_folder, image_size=8, strict=True)
    with pytest.raises(DataError, match="broken.jpg"):
        strict[2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert len(ds.mean) == 3 and all(s > 0 for s in ds.std)
        loader = make_loader(ds, batch_size=3, num_workers=0, drop_last=True)
        batches = list(loader)
    assert len(batches) == 2 and batches[0][0].shape == (3, 3, 8, 8)
    with pytest.warns(DataWarning, match="skipped 1"):
        mem = load_image_folder(messy_folder, image_size=8, mode="memory", stream_threshold=3)
    assert isinstance(mem, ImageTensorDataset)


def test_split_folders_and_cache(tmp_path: Path) -> None:
    root = tmp_path / "splits"
    for split, n in (("train", 3), ("val", 2)):
        for c in ("a", "b"):
            for i in range(n):
                _save(root / split / c / f"{i}.png", Image.new("RGB", (6, 6), (i * 40, 0, 0)))
    tr = load_dataset(str(root), "train", image_size=None)
    te = load_dataset(str(root), "test", image_size=None)
    assert len(tr) == 6 and len(te) == 4 and tr.classes == ["a", "b"]
    cache = tmp_path / "cache"
    c1 = load_dataset(str(root), "train", image_size=None, cache_dir=cache)
    files = list(cache.glob("*.pt"))
    assert len(files) == 1
    c2 = load_dataset(str(root), "train", image_size=None, cache_dir=cache)
    assert torch.equal(c1.images, c2.images) and torch.equal(c1.labels, c2.labels)
    _save(root / "train" / "a" / "9.png", Image.new("RGB", (6, 6)))  # folder changed -> new key
    c3 = load_dataset(str(root), "train", image_size=None, cache_dir=cache)
    assert len(c3) == 7 and len(list(cache.glob("*.pt"))) == 2


def _write_pickle(path: Path, obj: object, protocol: int) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)


def _cifar10(root: Path, per_batch: int = 4, protocol: int = 2) -> np.ndarray:
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    first = None
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        first = data if first is None else first
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        _write_pickle(root / name, {b"batch_label": b"x", b"data": data, b"labels": labels, b"filenames": [b"f"] * per_batch}, protocol)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    _write_pickle(root / "batches.meta", {b"label_names": names, b"num_cases_per_batch": per_batch}, protocol)
    return first


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar10_batches(tmp_path: Path, protocol: int) -> None:
    root = tmp_path / "cifar-10-batches-py"
    first = _cifar10(root, protocol=protocol)
    tr = load_dataset(str(root), "train", image_size=32)
    te = load_cifar(root, "test")
    assert tr.images.shape == (20, 3, 32, 32) and te.images.shape == (4, 3, 32, 32)
    assert tr.classes[0] == "airplane" and len(tr.classes) == 10
    # channel-major layout: first 1024 bytes are the red plane, row by row
    assert tr.images[0, 0, 0, 1].item() == first[0, 1]
    assert tr.images[0, 1, 0, 0].item() == first[0, 1024]
    assert tr.images[0, 2, 31, 31].item() == first[0, 3071]


def test_cifar100_batches(tmp_path: Path) -> None:
    root = tmp_path / "cifar-100-python"
    root.mkdir()
    data = np.zeros((3, 3072), np.uint8)
    _write_pickle(root / "train", {b"data": data, b"fine_labels": [0, 99, 5], b"coarse_labels": [0, 1, 2]}, 2)
    _write_pickle(root / "test", {b"data": data[:1], b"fine_labels": [7], b"coarse_labels": [1]}, 2)
    _write_pickle(root / "meta", {b"fine_label_names": [f"c{i}".encode() for i in range(100)]}, 2)
    tr = load_dataset(str(root), "train")
    assert tr.labels.tolist() == [0, 99, 5] and tr.classes[99] == "c99"
    assert len(load_dataset(str(root), "val")) == 1


class _Evil:
    def __reduce__(self):  # noqa: D105
        import os

        return (os.system, ("echo pwned",))


def test_cifar_rejects_arbitrary_globals(tmp_path: Path) -> None:
    root = tmp_path / "cifar-evil"
    _cifar10(root)
    _write_pickle(root / "data_batch_3", {b"data": _Evil(), b"labels": []}, 2)
    with pytest.raises(DataError, match=r"data_batch_3.*not allowed"):
        load_cifar(root, "train")


def test_cifar_bad_layout_and_content(tmp_path: Path) -> None:
    root = tmp_path / "cifar-bad"
    _cifar10(root)
    _write_pickle(root / "test_batch", {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, 2)
    with pytest.raises(DataError, match=r"test_batch.*3072"):
        load_cifar(root, "test")
    (root / "test_batch").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"test_batch.*re-download"):
        load_cifar(root, "test")
    with pytest.raises(DataError, match=r"not a CIFAR python folder"):
        load_cifar(tmp_path, "train")


def test_digits_shapes_and_stratified_split() -> None:
    tr, te = load_digits_splits(image_size=16, test_fraction=0.2, seed=0)
    assert len(tr) + len(te) == 1797 and len(te) == 360
    assert tr.images.shape[1:] == (3, 16, 16) and tr.images.dtype == torch.uint8
    assert torch.equal(tr.images[:, 0], tr.images[:, 1])  # gray replicated
    assert tr.classes == [str(i) for i in range(10)]
    tr_frac = tr.labels.bincount(minlength=10).float() / len(tr)
    te_frac = te.labels.bincount(minlength=10).float() / len(te)
    assert (tr_frac - te_frac).abs().max() < 0.01
    assert te.mean == tr.mean
    tr2, _ = load_digits_splits(image_size=16, seed=0)
    tr3, _ = load_digits_splits(image_size=16, seed=1)
    assert torch.equal(tr.images, tr2.images) and not torch.equal(tr.images, tr3.images)
    default = load_dataset(None, "train")
    assert default.images.shape[1:] == (3, 32, 32)


def test_synthetic_is_seeded_and_class_dependent() -> None:
    a = make_synthetic(num_samples=100, num_classes=5, image_size=16, seed=3)
    b = make_synthetic(num_samples=100, num_classes=5, image_size=16, seed=3)
    assert torch.equal(a.images, b.images) and a.labels.bincount().tolist() == [20] * 5
    # nearest class mean classifies held-out samples well above chance
    te = make_synthetic(num_samples=50, num_classes=5, image_size=16, seed=3, split="test")
    means = torch.stack([a.images[a.labels == c].float().mean(0) for c in range(5)])
    d = torch.cdist(te.images.float().flatten(1), means.flatten(1))
    assert (d.argmin(1) == te.labels).float().mean() > 0.5


def test_balanced_subset() -> None:
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    idx = balanced_subset(labels, fraction=0.1, seed=0)
    assert labels[idx].bincount().tolist() == [5, 3, 2]
    assert torch.equal(idx, balanced_subset(labels, fraction=0.1, seed=0))
    assert not torch.equal(idx, balanced_subset(labels, fraction=0.1, seed=1))
    idx = balanced_subset(labels, count=30, seed=0)
    assert labels[idx].bincount().tolist() == [10, 10, 10]
    idx = balanced_subset(labels, count=80, seed=0)  # class 2 has only 20: rest spread
    assert labels[idx].bincount().tolist() == [30, 30, 20]
    assert len(balanced_subset(labels, count=31, seed=0)) == 31
    assert len(balanced_subset(None, fraction=0.5, num_samples=10)) == 5
    with pytest.raises(DataError):
        balanced_subset(labels, fraction=0.1, count=3)
    with pytest.raises(DataError, match="count"):
        balanced_subset(labels, count=1000)


def test_tensor_loader_epochs_and_shards() -> None:
    ds = make_synthetic(num_samples=10, num_classes=2, image_size=8)
    loader = make_loader(ds, batch_size=4, seed=1)
    assert len(loader) == 2
    e0 = torch.cat([y for _, y in loader])
    loader.set_epoch(1)
    e1 = torch.cat([y for _, y in loader])
    assert e0.shape == (8,) and e1.shape == (8,)
    shards = [make_loader(ds, batch_size=5, rank=r, world_size=2, seed=0, drop_last=False) for r in (0, 1)]
    seen = [x for s in shards for x, _ in s]
    assert sum(len(x) for x in seen) == 10
    with pytest.raises(DataError, match="fewer than one batch"):
        make_loader(ds, batch_size=64)


def test_channel_mean_std_hand_computed() -> None:
    imgs = torch.zeros(2, 3, 2, 2, dtype=torch.uint8)
    imgs[0, 0] = 255  # red channel: half the pixels 1.0
    mean, std = channel_mean_std(imgs)
    assert mean[0] == pytest.approx(0.5) and std[0] == pytest.approx(0.5)
    assert mean[1] == 0.0 and std[1] > 0  # constant channel gets a floor, never zero
