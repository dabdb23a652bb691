"""A resumed epoch starts at its first untrained batch: the earlier ones are never decoded
(streamed folders) or gathered (in-memory sets), and the rest are the same batches."""

from __future__ import annotations

import pytest
import torch

from slimssl.data import DataError, load_image_folder, make_loader
from tinyrun import count_decodes, write_image_folder

# 64 images, 2 ranks -> 32 per rank, batch 8 -> 4 batches per epoch
BATCH, WORLD, RANK = 8, 2, 1


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("images")) / "train"


def _batches(loader, epoch: int, start_batch: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    loader.set_epoch(epoch, start_batch=start_batch)
    return list(loader)


def _assert_same(got, want) -> None:
    assert len(got) == len(want)
    for (x, y), (u, v) in zip(got, want):
        assert torch.equal(x, u) and torch.equal(y, v)


def test_streamed_folder_skips_without_decoding(root, monkeypatch):
    decoded = count_decodes(monkeypatch)
    dataset = load_image_folder(root, image_size=8, mode="stream")
    loader = make_loader(dataset, BATCH, seed=3, rank=RANK, world_size=WORLD, num_workers=0)
    assert len(loader) == 4
    full = _batches(loader, epoch=1)
    assert len(decoded) == 32  # this rank's 32 images, each decoded once
    decoded.clear()
    resumed = _batches(loader, epoch=1, start_batch=3)
    assert len(decoded) == 8  # the last batch only: batches 0..2 were trained before the stop
    _assert_same(resumed, full[3:])
    assert len(loader) == 4  # still a whole epoch (the trainer's steps_per_epoch)
    decoded.clear()
    assert _batches(loader, epoch=1) and len(decoded) == 32  # the next epoch starts at 0 again


class _CountingImages:
    """Stands for ``ImageTensorDataset.images``; counts the batches gathered from it."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images, self.shape, self.gathered = images, images.shape, 0

    def __getitem__(self, sel):
        self.gathered += 1
        return self.images[sel]


def test_in_memory_set_skips_without_gathering(root):
    dataset = load_image_folder(root, image_size=8, mode="memory")
    loader = make_loader(dataset, BATCH, seed=3, rank=RANK, world_size=WORLD)
    full = _batches(loader, epoch=2)
    counter = _CountingImages(dataset.images)
    dataset.images = counter
    resumed = _batches(loader, epoch=2, start_batch=1)
    assert counter.gathered == 3
    _assert_same(resumed, full[1:])
    assert _batches(loader, epoch=2, start_batch=4) == []  # stopped after the epoch's last step


@pytest.mark.parametrize("mode", ["memory", "stream"])
def test_start_batch_outside_the_epoch_is_refused(root, mode):
    dataset = load_image_folder(root, image_size=8, mode=mode)
    loader = make_loader(dataset, BATCH, seed=3, rank=RANK, world_size=WORLD, num_workers=0)
    with pytest.raises(DataError, match="start_batch 5 outside this epoch's 4 batches"):
        loader.set_epoch(0, start_batch=5)
