"""Two-view augmentation recipes for self-supervised pre-training, batched on any device.

A view pipeline maps ``uint8 (B, 3, H, W)`` to normalised ``float32 (B, 3, S, S)``:
RandomResizedCrop -> horizontal flip -> colour jitter (random order per sample) -> random
grayscale -> Gaussian blur -> solarize -> normalise. Ops are in :mod:`slimssl.data.augment`.

Recipes (:data:`RECIPES`, :func:`make_views`):

- ``mocov2``: MoCo v2 (Chen et al. 2020, "Improved Baselines with Momentum Contrastive
  Learning"): crop scale (0.2, 1), jitter 0.4/0.4/0.4/0.1 p=0.8, grayscale p=0.2, blur p=0.5,
  flip; both views alike. SlimCLR-MoCov2 (Zhao et al. 2023) trains with it.
- ``byol`` / ``mocov3``: BYOL (Grill et al. 2020, Table 6) asymmetric views, reused by MoCo v3
  (Chen et al. 2021) and DSPNet: crop scale (0.08, 1), jitter 0.4/0.4/0.2/0.1 p=0.8, grayscale
  p=0.2; view 1 blur p=1.0, solarize p=0; view 2 blur p=0.1, solarize p=0.2.
- ``simclr``: SimCLR (Chen et al. 2020, "A Simple Framework for Contrastive Learning"): crop
  scale (0.08, 1), jitter 0.8/0.8/0.8/0.2 p=0.8, grayscale p=0.2, blur p=0.5.
- ``<name>_cifar``: the same at CIFAR size (32 px) without blur (blur hurts at 32 px, as the
  SimCLR paper's CIFAR appendix notes); BYOL's view-2 solarize stays.

Blur kernel: about 10% of the output side, sigma ~ U[0.1, 2.0] per sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from slimssl.data import augment as A
from slimssl.data.errors import DataError


@dataclass(frozen=True)
class ViewSpec:
    """Parameters of one view pipeline (probabilities per sample)."""

    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)
    jitter_p: float = 0.8
    grayscale_p: float = 0.2
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.0
    solarize_threshold: float = 0.5


class BatchAugment:
    """One view: ``(uint8 (B, 3, H, W), generator) -> float (B, 3, S, S)``.

    With ``normalize=False`` the output stays in [0, 1] (for tests and visualisation).
    """

    def __init__(
        self,
        spec: ViewSpec,
        image_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        normalize: bool = True,
    ) -> None:
        if image_size < 1:
            raise DataError(f"image_size must be >= 1, got {image_size}")
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise DataError(f"mean/std need 3 values and std > 0, got mean={mean}, std={std}")
        self.spec = spec
        self.image_size = image_size
        self.mean = torch.tensor([float(v) for v in mean])
        self.std = torch.tensor([float(v) for v in std])
        self.normalize = normalize
        self.kernel_size = A.blur_kernel_size(image_size)

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise DataError(
                f"views expect uint8 images (B, 3, H, W), got {images.dtype} {tuple(images.shape)}"
            )
        s, dev, n = self.spec, images.device, images.shape[0]
        x = images.float().div_(255.0)
        boxes = A.sample_crop_boxes(n, images.shape[2], images.shape[3], s.crop_scale, s.crop_ratio, generator)
        x = A.resized_crop(x, boxes, self.image_size)
        x = A.hflip(x, A.bernoulli(n, s.flip_p, generator, dev))
        if s.jitter_p > 0 and any(v > 0 for v in s.jitter):
            x = A.color_jitter(x, s.jitter, s.jitter_p, generator)
        if s.grayscale_p > 0:
            x = A.grayscale(x, A.bernoulli(n, s.grayscale_p, generator, dev))
        if s.blur_p > 0:
            mask = A.bernoulli(n, s.blur_p, generator, dev)
            sigma = A.uniform(n, s.blur_sigma[0], s.blur_sigma[1], generator, dev)
            x = A.gaussian_blur(x, mask, sigma, self.kernel_size)
        if s.solarize_p > 0:
            x = A.solarize(x, A.bernoulli(n, s.solarize_p, generator, dev), s.solarize_threshold)
        if self.normalize:
            x = A.normalize(x, self.mean.to(dev), self.std.to(dev))
        return x


class TwoViewTransform:
    """``(uint8 batch, generator) -> (view1, view2)``; the views share nothing but the input."""

    def __init__(self, view1: BatchAugment, view2: BatchAugment, name: str = "") -> None:
        self.view1 = view1
        self.view2 = view2
        self.name = name

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return self.view1(images, generator), self.view2(images, generator)


_MOCOV2 = ViewSpec(crop_scale=(0.2, 1.0), jitter=(0.4, 0.4, 0.4, 0.1), blur_p=0.5)
_BYOL_1 = ViewSpec(crop_scale=(0.08, 1.0), jitter=(0.4, 0.4, 0.2, 0.1), blur_p=1.0, solarize_p=0.0)
_BYOL_2 = replace(_BYOL_1, blur_p=0.1, solarize_p=0.2)
_SIMCLR = ViewSpec(crop_scale=(0.08, 1.0), jitter=(0.8, 0.8, 0.8, 0.2), blur_p=0.5)


# The embedded digits default (8x8 grey digits upsampled): no flips (a mirrored 2 is not a 2),
# milder crops (a 20% crop of an 8x8 digit is mostly background), brightness/contrast only.
_DIGITS = ViewSpec(crop_scale=(0.4, 1.0), flip_p=0.0, jitter=(0.4, 0.4, 0.0, 0.0),
                   grayscale_p=0.0)


#: Supervised training / fine-tuning and linear probes (MoCo v2 / BYOL linear protocol, timm's
#: ImageNet default): random resized crop (scale 0.08-1) and horizontal flip, no colour
#: distortion. The ``supervised`` recipe's two views are alike; a classifier uses the first.
SUPERVISED_VIEW = ViewSpec(crop_scale=(0.08, 1.0), jitter_p=0.0, grayscale_p=0.0)


def _no_blur(spec: ViewSpec) -> ViewSpec:
    return replace(spec, blur_p=0.0)


#: recipe name -> (view-1 spec, view-2 spec)
RECIPES: dict[str, tuple[ViewSpec, ViewSpec]] = {
    "mocov2": (_MOCOV2, _MOCOV2),
    "byol": (_BYOL_1, _BYOL_2),
    "mocov3": (_BYOL_1, _BYOL_2),
    "simclr": (_SIMCLR, _SIMCLR),
    "mocov2_cifar": (_no_blur(_MOCOV2), _no_blur(_MOCOV2)),
    "byol_cifar": (_no_blur(_BYOL_1), _no_blur(_BYOL_2)),
    "mocov3_cifar": (_no_blur(_BYOL_1), _no_blur(_BYOL_2)),
    "simclr_cifar": (_no_blur(_SIMCLR), _no_blur(_SIMCLR)),
    "digits": (_DIGITS, _DIGITS),
    "supervised": (SUPERVISED_VIEW, SUPERVISED_VIEW),
}


def make_views(
    name: str,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    normalize: bool = True,
) -> TwoViewTransform:
    """The :class:`TwoViewTransform` of recipe ``name`` (see :data:`RECIPES`) at ``image_size``."""
    key = name.lower()
    if key not in RECIPES:
        raise DataError(f"unknown view recipe {name!r}; choose one of {sorted(RECIPES)}")
    s1, s2 = RECIPES[key]
    return TwoViewTransform(
        BatchAugment(s1, image_size, mean, std, normalize),
        BatchAugment(s2, image_size, mean, std, normalize),
        name=key,
    )


class EvalTransform:
    """Deterministic evaluation transform: to float, optional resize, normalise.

    Small images need no resize/center-crop; ``image_size`` resizes (bilinear, antialiased)
    when the evaluation resolution differs from the stored one.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], image_size: int | None = None) -> None:
        self.mean = torch.tensor([float(v) for v in mean])
        self.std = torch.tensor([float(v) for v in std])
        self.image_size = image_size

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise DataError(f"eval transform expects uint8 (B, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        x = images.float().div_(255.0)
        if self.image_size is not None and tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                              align_corners=False, antialias=True).clamp_(0.0, 1.0)
        return A.normalize(x, self.mean.to(x.device), self.std.to(x.device))


def eval_transform(mean: Sequence[float], std: Sequence[float], image_size: int | None = None) -> EvalTransform:
    """Factory for :class:`EvalTransform`."""
    return EvalTransform(mean, std, image_size)
