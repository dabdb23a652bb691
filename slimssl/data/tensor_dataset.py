"""In-memory image dataset: one ``uint8`` tensor ``(N, 3, H, W)`` plus labels.

Why: small datasets (CIFAR, digits, few-shot folders) decode once and then every epoch is pure
tensor indexing; augmentation runs on whole batches (see :mod:`slimssl.data.views`), which is far
faster than per-image PIL pipelines on CPU and lets a GPU do the augmentation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from slimssl.data.errors import DataError


def channel_mean_std(images: torch.Tensor, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of ``uint8`` images, in [0, 1] units.

    Computed in float64 over chunks so that 50k+ images never need a full float copy.
    """
    if images.dim() != 4 or images.shape[1] != 3:
        raise DataError(f"expected images of shape (N, 3, H, W), got {tuple(images.shape)}")
    n = images.shape[0]
    if n == 0:
        raise DataError("cannot compute mean/std of an empty image tensor")
    total = torch.zeros(3, dtype=torch.float64)
    total_sq = torch.zeros(3, dtype=torch.float64)
    for start in range(0, n, chunk):
        x = images[start : start + chunk].to(torch.float64).div_(255.0)
        total += x.sum(dim=(0, 2, 3))
        total_sq += x.square().sum(dim=(0, 2, 3))
    count = n * images.shape[2] * images.shape[3]
    mean = total / count
    var = (total_sq / count - mean.square()).clamp_min(0.0)
    std = var.sqrt().clamp_min(1e-6)  # constant images must not give division by zero later
    return [float(v) for v in mean], [float(v) for v in std]


@dataclass(eq=False)
class ImageTensorDataset(torch.utils.data.Dataset):
    """Images as ``uint8`` ``(N, 3, H, W)``; ``labels`` a ``LongTensor`` ``(N,)`` or None.

    ``mean``/``std`` are per-channel floats in [0, 1], computed from the images when not given.
    ``__getitem__`` returns ``(image uint8 (3, H, W), label)`` with label ``-1`` when unlabeled,
    so that it also works with a plain :class:`torch.utils.data.DataLoader`.
    """

    images: torch.Tensor
    labels: torch.Tensor | None = None
    classes: list[str] = field(default_factory=list)
    mean: list[float] | None = None
    std: list[float] | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4 or self.images.shape[1] != 3:
            raise DataError(
                f"images must be uint8 (N, 3, H, W), got {self.images.dtype} "
                f"{tuple(self.images.shape)}" + (f" from '{self.source}'" if self.source else "")
            )
        if self.labels is not None:
            self.labels = torch.as_tensor(self.labels, dtype=torch.long)
            if self.labels.shape != (self.images.shape[0],):
                raise DataError(
                    f"labels shape {tuple(self.labels.shape)} does not match "
                    f"{self.images.shape[0]} images" + (f" in '{self.source}'" if self.source else "")
                )
        if self.mean is None or self.std is None:
            self.mean, self.std = channel_mean_std(self.images)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        label = -1 if self.labels is None else int(self.labels[index])
        return self.images[index], label

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of every image."""
        return int(self.images.shape[2]), int(self.images.shape[3])

    @property
    def num_classes(self) -> int:
        """Number of classes (0 for unlabeled data)."""
        return len(self.classes)

    def to_memory(self) -> "ImageTensorDataset":
        """Itself (already in memory); see :meth:`StreamingImageFolder.to_memory`."""
        return self

    def subset(self, indices: torch.Tensor, keep_stats: bool = True) -> "ImageTensorDataset":
        """New dataset with the rows ``indices``.

        ``keep_stats=True`` keeps this dataset's mean/std (a labelled 1% subset should be
        normalised like the pre-training data), otherwise they are recomputed.
        """
        idx = torch.as_tensor(indices, dtype=torch.long)
        return ImageTensorDataset(
            images=self.images[idx],
            labels=None if self.labels is None else self.labels[idx],
            classes=list(self.classes),
            mean=list(self.mean) if keep_stats else None,
            std=list(self.std) if keep_stats else None,
            source=self.source,
        )
