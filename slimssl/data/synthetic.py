"""Seeded synthetic images for tests and smoke runs.

Each class owns a fixed pattern (an oriented colour grating plus a coloured blob at a class
position); samples add a random shift, contrast and noise. A small network can learn the
classes and the SSL views stay meaningful, yet everything is generated in milliseconds.
"""

from __future__ import annotations

import math

import torch

from slimssl.data.errors import DataError
from slimssl.data.tensor_dataset import ImageTensorDataset


def _class_patterns(num_classes: int, size: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(10_007 + seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    pats = []
    for c in range(num_classes):
        angle = math.pi * c / num_classes
        freq = 2.0 + 3.0 * float(torch.rand(1, generator=g))
        wave = torch.sin(2 * math.pi * freq * (xx * math.cos(angle) + yy * math.sin(angle)))
        colour = torch.rand(3, 1, 1, generator=g)
        cy, cx = torch.rand(2, generator=g) * 0.6 + 0.2
        blob = torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.02)
        blob_colour = torch.rand(3, 1, 1, generator=g)
        pats.append(0.5 + 0.25 * wave * colour + 0.4 * (blob * (blob_colour - 0.5)))
    return torch.stack(pats)  # (C, 3, S, S)


def make_synthetic(
    num_samples: int = 512,
    num_classes: int = 10,
    image_size: int = 32,
    seed: int = 0,
    split: str = "train",
    noise: float = 0.08,
) -> ImageTensorDataset:
    """``num_samples`` balanced synthetic images; ``split`` changes the samples, not the classes."""
    if num_samples < 1 or num_classes < 1 or image_size < 4:
        raise DataError(
            f"synthetic data needs num_samples>=1, num_classes>=1, image_size>=4; got "
            f"{num_samples}, {num_classes}, {image_size}"
        )
    pats = _class_patterns(num_classes, image_size, seed)
    g = torch.Generator().manual_seed(seed * 2 + (0 if split == "train" else 1) + 1)
    labels = torch.arange(num_samples) % num_classes
    labels = labels[torch.randperm(num_samples, generator=g)]
    x = pats[labels]
    shifts = torch.randint(-image_size // 8, image_size // 8 + 1, (num_samples, 2), generator=g)
    x = torch.stack([torch.roll(x[i], (int(s[0]), int(s[1])), dims=(1, 2)) for i, s in enumerate(shifts)])
    contrast = 0.7 + 0.6 * torch.rand(num_samples, 1, 1, 1, generator=g)
    x = (x - 0.5) * contrast + 0.5 + noise * torch.randn(x.shape, generator=g)
    images = x.clamp_(0, 1).mul_(255).round_().to(torch.uint8)
    return ImageTensorDataset(
        images=images, labels=labels.long(), classes=[f"class{c}" for c in range(num_classes)], source="synthetic"
    )
