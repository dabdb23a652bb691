"""Batch iteration that yields ``(uint8 images (B, 3, H, W), labels | None)``.

In-memory datasets are indexed directly (no per-item Python, no workers): one random
permutation per epoch from a seeded generator, optional sharding over DDP ranks with the same
permutation on every rank. Streaming datasets go through a DataLoader with workers. Either way
the batch is then augmented on the target device by :mod:`slimssl.data.views`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import torch

from slimssl.data.errors import DataError
from slimssl.data.folder import StreamingImageFolder
from slimssl.data.tensor_dataset import ImageTensorDataset

Batch = tuple[torch.Tensor, torch.Tensor | None]


class TensorBatchLoader:
    """Seeded, shardable batch iterator over an :class:`ImageTensorDataset`.

    Epoch ``e`` uses permutation ``randperm(N, seed + e)``; rank ``r`` of ``world_size`` takes
    every ``world_size``-th item (padded by wrap-around so every rank has the same number of
    batches, as DistributedSampler does). Call :meth:`set_epoch` before each epoch.
    """

    _start = 0

    def __init__(
        self,
        dataset: ImageTensorDataset,
        batch_size: int,
        shuffle: bool = True,
        drop_last: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | str | None = None,
    ) -> None:
        if batch_size < 1:
            raise DataError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise DataError(f"rank {rank} outside world_size {world_size}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.device = torch.device(device) if device is not None else None
        self.epoch = 0
        if drop_last and self._per_rank() < batch_size:
            raise DataError(
                f"dataset '{dataset.source}' has {len(dataset)} images, fewer than one batch of "
                f"{batch_size} per rank; lower batch_size or pass drop_last=False"
            )

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the permutation of ``epoch`` (same on every rank); iteration begins at batch
        ``start_batch`` of it (a resumed run: the earlier batches are never gathered)."""
        self.epoch, self._start = epoch, _check_start(start_batch, len(self))

    def _per_rank(self) -> int:
        return -(-len(self.dataset) // self.world_size)

    def __len__(self) -> int:
        n = self._per_rank()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _indices(self) -> torch.Tensor:
        n = len(self.dataset)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            idx = torch.randperm(n, generator=g)
        else:
            idx = torch.arange(n)
        total = self._per_rank() * self.world_size
        if total > n:
            idx = torch.cat([idx, idx[: total - n]])
        return idx[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[Batch]:
        idx = self._indices()
        images, labels = self.dataset.images, self.dataset.labels
        for b in range(self._start, len(self)):
            sel = idx[b * self.batch_size : (b + 1) * self.batch_size]
            x = images[sel]
            y = None if labels is None else labels[sel]
            if self.device is not None and self.device.type != "cpu":
                x = x.pin_memory().to(self.device, non_blocking=True)
                y = None if y is None else y.to(self.device, non_blocking=True)
            yield x, y


def _check_start(start_batch: int, num_batches: int) -> int:
    if not 0 <= start_batch <= num_batches:
        raise DataError(f"start_batch {start_batch} outside this epoch's {num_batches} batches")
    return start_batch


class _SkippingSampler(torch.utils.data.DistributedSampler):
    """DistributedSampler that leaves out the first ``skip`` indices of its epoch's order."""

    skip = 0

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(super().__iter__(), self.skip, None)

    def __len__(self) -> int:
        return self.num_samples - self.skip


class StreamingBatchLoader:
    """DataLoader over a :class:`StreamingImageFolder` yielding ``(uint8, labels | None)``.

    ``max_images_held`` bounds the decoded images alive at once (see :func:`prefetch_for_cap`).
    """

    def __init__(
        self,
        dataset: StreamingImageFolder,
        batch_size: int,
        shuffle: bool = True,
        drop_last: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 4,
        device: torch.device | str | None = None,
        max_images_held: int | None = None,
    ) -> None:
        self.dataset = dataset
        self.device = torch.device(device) if device is not None else None
        self.batch_size, self.drop_last = batch_size, drop_last
        self.sampler = _SkippingSampler(
            dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed, drop_last=False
        )
        self.loader = _bounded_loader(dataset, batch_size, num_workers, max_images_held,
                                      self.device, sampler=self.sampler, drop_last=drop_last)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """As :meth:`TensorBatchLoader.set_epoch`: the skipped batches' files are never
        decoded (the sampler drops their indices)."""
        self.sampler.set_epoch(epoch)
        self.sampler.skip = _check_start(start_batch, len(self)) * self.batch_size

    def __len__(self) -> int:
        """Batches in a whole epoch (also while :meth:`set_epoch` skips some)."""
        n = self.sampler.num_samples
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        unlabeled = self.dataset.labels is None
        for x, y in self.loader:
            if self.device is not None and self.device.type != "cpu":
                x = x.to(self.device, non_blocking=True)
                y = y.to(self.device, non_blocking=True)
            yield x, (None if unlabeled else y)


def make_loader(
    dataset: ImageTensorDataset | StreamingImageFolder,
    batch_size: int,
    shuffle: bool = True,
    drop_last: bool = True,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 4,
    device: torch.device | str | None = None,
    max_images_held: int | None = None,
) -> TensorBatchLoader | StreamingBatchLoader:
    """The right batch loader for ``dataset``; both have ``set_epoch`` and ``__len__``.

    Both draw the same order for one process (``randperm(N)`` seeded with ``seed + epoch``), so
    a folder gives the same batches streamed or in memory."""
    if isinstance(dataset, ImageTensorDataset):
        return TensorBatchLoader(dataset, batch_size, shuffle, drop_last, seed, rank, world_size, device)
    if isinstance(dataset, StreamingImageFolder):
        return StreamingBatchLoader(
            dataset, batch_size, shuffle, drop_last, seed, rank, world_size, num_workers, device,
            max_images_held,
        )
    raise DataError(f"make_loader needs an ImageTensorDataset or StreamingImageFolder, got {type(dataset).__name__}")


#: DataLoader's own default number of batches each worker prepares ahead.
DEFAULT_PREFETCH = 2


def prefetch_for_cap(batch_size: int, num_workers: int, max_images_held: int | None) -> int:
    """Batches each worker may prepare ahead so that at most ``max_images_held`` decoded images
    are alive: ``batch_size * (num_workers * prefetch + 2)`` -- the queued batches, the batch
    being used and the next one arriving. Raises :class:`DataError` when even one batch ahead
    per worker does not fit."""
    if max_images_held is None:
        return DEFAULT_PREFETCH
    if num_workers == 0:
        need = 2 * batch_size
        if need > max_images_held:
            raise DataError(
                f"data.max_images_held={max_images_held} is below two batches of {batch_size} "
                f"(the batch in use and the next); raise it to at least {need} or lower the batch")
        return 0
    spare = max_images_held // batch_size - 2
    if spare < num_workers:
        need = batch_size * (num_workers + 2)
        raise DataError(
            f"data.max_images_held={max_images_held} cannot hold one batch of {batch_size} per "
            f"worker ({num_workers} workers) plus two in use: raise it to at least {need}, or "
            "lower data.num_workers or the batch size")
    return min(DEFAULT_PREFETCH, spare // num_workers)


def _bounded_loader(dataset: torch.utils.data.Dataset, batch_size: int, num_workers: int,
                    max_images_held: int | None, device: torch.device | None,
                    sampler=None, drop_last: bool = False,
                    batch_sampler=None) -> torch.utils.data.DataLoader:
    prefetch = prefetch_for_cap(batch_size, num_workers, max_images_held)
    batching = ({"batch_sampler": batch_sampler} if batch_sampler is not None else
                {"batch_size": batch_size, "sampler": sampler, "shuffle": False,
                 "drop_last": drop_last})
    return torch.utils.data.DataLoader(
        dataset,
        **batching,
        num_workers=num_workers,
        prefetch_factor=prefetch if num_workers > 0 else None,
        pin_memory=device is not None and device.type == "cuda",
        persistent_workers=num_workers > 0 and sampler is not None,  # epochs reuse them
        # each new iterator draws its workers' base seed from this generator, not from the
        # global RNG (which resume restores mid-epoch: an extra draw would shift it)
        generator=torch.Generator(),
    )


def ordered_batches(
    dataset: ImageTensorDataset | StreamingImageFolder,
    indices: torch.Tensor | None,
    batch_size: int,
    num_workers: int = 4,
    max_images_held: int | None = None,
    breaks: Sequence[int] = (),
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(uint8 images, labels)`` of ``dataset[indices]`` (default: all) in that order, batch by
    batch, for feature extraction and BN recalibration; no batch straddles a position in
    ``breaks`` (e.g. the ends of feature shards), and one set of workers serves them all.
    In-memory datasets are sliced; folders are decoded by ``num_workers`` workers with at most
    ``max_images_held`` decoded images alive (:func:`prefetch_for_cap`). Labels are ``-1`` for
    unlabeled data."""
    idx = torch.arange(len(dataset)) if indices is None else torch.as_tensor(indices).long()
    edges = sorted({0, idx.numel(), *(b for b in breaks if 0 < b < idx.numel())})
    batches = [idx[i:min(i + batch_size, hi)] for lo, hi in zip(edges, edges[1:])
               for i in range(lo, hi, batch_size)]
    if isinstance(dataset, ImageTensorDataset):
        labels = dataset.labels if dataset.labels is not None else torch.full((len(dataset),), -1)
        for sel in batches:
            yield dataset.images[sel], labels[sel]
        return
    if not isinstance(dataset, StreamingImageFolder):
        raise DataError(f"ordered_batches needs an ImageTensorDataset or StreamingImageFolder, got "
                        f"{type(dataset).__name__}")
    if not batches:
        return
    workers = min(num_workers, len(batches) - 1)  # no idle workers
    loader = _bounded_loader(dataset, batch_size, workers, max_images_held, None,
                             batch_sampler=[b.tolist() for b in batches])
    for x, y in loader:
        yield x, y
