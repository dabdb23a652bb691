"""Batched image augmentations with per-sample randomness.

Every op works on a whole batch ``(B, 3, H, W)`` of floats in [0, 1] on any device, with
per-sample parameters drawn from a caller's :class:`torch.Generator`. One kernel call per op for
the whole batch is much faster than a per-image PIL/torchvision pipeline on CPU, and lets a GPU
do the augmentation next to the model.

Randomness contract: parameters are drawn on the generator's device in a fixed order and with
fixed sizes (independent of the data and of which samples an op selects), then moved to the
data's device; the same seed therefore gives the same views on CPU and GPU (up to kernel
rounding).

Semantics follow torchvision's definitions (RandomResizedCrop, ColorJitter, RandomGrayscale,
GaussianBlur, RandomSolarize), reimplemented batched.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

#: ITU-R 601-2 luma weights, as PIL and torchvision use for grayscale.
GRAY_WEIGHTS = (0.299, 0.587, 0.114)


def uniform(n: int, low: float, high: float, g: torch.Generator, device: torch.device) -> torch.Tensor:
    """``n`` samples of U[low, high) drawn on ``g``'s device, returned on ``device``."""
    u = torch.rand(n, generator=g, device=g.device)
    return (low + (high - low) * u).to(device)


def bernoulli(n: int, p: float, g: torch.Generator, device: torch.device) -> torch.Tensor:
    """Boolean mask of ``n`` independent draws with probability ``p`` (always draws ``n``)."""
    return (torch.rand(n, generator=g, device=g.device) < p).to(device)


# ---------------------------------------------------------------------------------------- crop
def sample_crop_boxes(
    n: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    g: torch.Generator,
    attempts: int = 10,
) -> torch.Tensor:
    """Per-sample RandomResizedCrop boxes ``(n, 4)`` as ``(x1, y1, x2, y2)`` in pixels.

    As torchvision: area fraction ~ U(scale), log aspect ~ U(log ratio), the first of
    ``attempts`` tries that fits inside the image is used, else a center crop with the aspect
    ratio clamped to ``ratio``. Boxes are continuous (no rounding to whole pixels).
    """
    area = float(height * width)
    dev = g.device
    target = area * (scale[0] + (scale[1] - scale[0]) * torch.rand(n, attempts, generator=g, device=dev))
    logr = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * torch.rand(
        n, attempts, generator=g, device=dev
    )
    aspect = logr.exp()
    w = (target * aspect).sqrt()
    h = (target / aspect).sqrt()
    ok = (w <= width) & (h <= height)
    first = ok.float().argmax(dim=1)  # index of first valid attempt (0 when none)
    rows = torch.arange(n, device=dev)
    w, h, any_ok = w[rows, first], h[rows, first], ok.any(dim=1)
    # fallback: whole-image center crop with clamped aspect ratio
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fw, fh = float(width), width / ratio[0]
    elif in_ratio > ratio[1]:
        fw, fh = height * ratio[1], float(height)
    else:
        fw, fh = float(width), float(height)
    w = torch.where(any_ok, w, torch.full_like(w, fw))
    h = torch.where(any_ok, h, torch.full_like(h, fh))
    pos = torch.rand(n, 2, generator=g, device=dev)
    x1 = torch.where(any_ok, pos[:, 0] * (width - w), (width - w) / 2)
    y1 = torch.where(any_ok, pos[:, 1] * (height - h), (height - h) / 2)
    return torch.stack([x1, y1, x1 + w, y1 + h], dim=1)


def resized_crop(x: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Crop each sample's box and resize it to ``size x size`` in one ``roi_align`` call.

    ``roi_align`` with ``aligned=True`` maps output pixel centres like bilinear resizing with
    ``align_corners=False``, and its adaptive sampling ratio averages ``ceil(box/size)^2``
    points per output pixel, i.e. it antialiases when a large crop is shrunk.
    """
    b = x.shape[0]
    idx = torch.arange(b, device=x.device, dtype=x.dtype).unsqueeze(1)
    rois = torch.cat([idx, boxes.to(device=x.device, dtype=x.dtype)], dim=1)
    return roi_align(x, rois, (size, size), spatial_scale=1.0, sampling_ratio=-1, aligned=True)


def _apply_masked(x: torch.Tensor, mask: torch.Tensor, fn) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """``fn`` on the masked samples only (index subset: cheaper than a full-batch ``where`` when
    the probability is small); returns a new tensor, ``x`` untouched."""
    idx = torch.nonzero(mask).flatten()
    if idx.numel() == 0:
        return x
    out = x.clone()
    out[idx] = fn(x[idx])
    return out


def hflip(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mirror the samples where ``mask`` is True (left-right)."""
    return _apply_masked(x, mask, lambda v: v.flip(-1))


# ---------------------------------------------------------------------------------- colour ops
def rgb_to_gray(x: torch.Tensor) -> torch.Tensor:
    """Luma ``(B, 1, H, W)`` with weights 0.299 / 0.587 / 0.114."""
    r, g, b = x.unbind(dim=1)
    return (GRAY_WEIGHTS[0] * r + GRAY_WEIGHTS[1] * g + GRAY_WEIGHTS[2] * b).unsqueeze(1)


def _per(v: torch.Tensor) -> torch.Tensor:
    return v.view(-1, 1, 1, 1)


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``x * f`` clipped to [0, 1] (per-sample ``f``)."""
    return (x * _per(factor)).clamp_(0.0, 1.0)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with the sample's mean gray level: ``f x + (1 - f) mean(gray(x))``."""
    mean = rgb_to_gray(x).mean(dim=(1, 2, 3), keepdim=True)
    f = _per(factor)
    return (f * x + (1 - f) * mean).clamp_(0.0, 1.0)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with the sample's grayscale image: ``f x + (1 - f) gray(x)``."""
    f = _per(factor)
    return (f * x + (1 - f) * rgb_to_gray(x)).clamp_(0.0, 1.0)


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate hue by ``shift`` (fraction of a turn, in [-0.5, 0.5]) in HSV space.

    HSV round trip without materialising S: with chroma ``c = max - min`` the hue sector is
    ``h6 = (g - b) / c`` (max = r), ``2 + (b - r) / c`` (max = g) or ``4 + (r - g) / c``; the
    shifted colour is ``v - c * clamp(min(k, 4 - k), 0, 1)`` with ``k = (n + h6) mod 6`` and
    ``n = 5, 3, 1`` for R, G, B (the closed form of the usual sector table).
    """
    maxc = x.amax(dim=1)
    chroma = maxc - x.amin(dim=1)
    inv = chroma.clamp_min(1e-12).reciprocal_()  # gray pixels: numerators are 0 too
    r, g, b = x.unbind(dim=1)
    h = torch.where(
        maxc == r,
        g - b,
        torch.where(maxc == g, (b - r).add_(2.0 * chroma), (r - g).add_(4.0 * chroma)),
    )
    h.mul_(inv).add_(6.0 * shift.view(-1, 1, 1))
    n = torch.tensor([5.0, 3.0, 1.0], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    k = torch.remainder(h.unsqueeze(1) + n, 6.0)
    k = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
    return maxc.unsqueeze(1) - k.mul_(chroma.unsqueeze(1))


def solarize(x: torch.Tensor, mask: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Invert pixels ``>= threshold`` (``1 - x``) in the samples where ``mask`` is True."""
    return _apply_masked(x, mask, lambda v: torch.where(v >= threshold, 1.0 - v, v))


def grayscale(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Replace the masked samples by their luma, replicated on 3 channels."""
    return _apply_masked(x, mask, lambda v: rgb_to_gray(v).expand_as(v))


def color_jitter(
    x: torch.Tensor,
    strengths: tuple[float, float, float, float],
    p: float,
    g: torch.Generator,
) -> torch.Tensor:
    """torchvision ``RandomApply([ColorJitter(b, c, s, h)], p)`` on each sample.

    Factors: brightness/contrast/saturation ~ U[max(0, 1 - s), 1 + s], hue shift ~ U[-h, h].
    The four ops run in a random order drawn per sample (as ColorJitter does per image): at
    each of the 4 positions, each op runs once on the subset of samples that have it there.
    """
    n, dev = x.shape[0], x.device
    b, c, s, h = strengths
    apply = bernoulli(n, p, g, dev)
    factors = [
        uniform(n, max(0.0, 1 - b), 1 + b, g, dev),
        uniform(n, max(0.0, 1 - c), 1 + c, g, dev),
        uniform(n, max(0.0, 1 - s), 1 + s, g, dev),
        uniform(n, -h, h, g, dev),
    ]
    order = torch.argsort(torch.rand(n, 4, generator=g, device=g.device), dim=1).to(dev)
    ops = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)
    active = [b > 0, c > 0, s > 0, h > 0]
    x = x.clone()
    for pos in range(4):
        for k, op in enumerate(ops):
            if not active[k]:
                continue
            idx = torch.nonzero(apply & (order[:, pos] == k)).flatten()
            if idx.numel():
                x[idx] = op(x[idx], factors[k][idx])
    return x


# ------------------------------------------------------------------------------------- blur
def blur_kernel_size(image_size: int) -> int:
    """Odd kernel of about 10% of the image side (23 at 224, as SimCLR / MoCo v2), >= 3."""
    return max(3, int(0.1 * image_size) // 2 * 2 + 1)


def gaussian_blur(
    x: torch.Tensor,
    mask: torch.Tensor,
    sigma: torch.Tensor,
    kernel_size: int,
) -> torch.Tensor:
    """Separable Gaussian blur of the masked samples, per-sample ``sigma``, reflect padding.

    All selected samples run as one grouped convolution (one group per sample-channel).
    """
    idx = torch.nonzero(mask).flatten()
    if idx.numel() == 0:
        return x
    sel = x[idx]
    m, ch, hh, ww = sel.shape
    half = kernel_size // 2
    t = torch.arange(kernel_size, device=x.device, dtype=x.dtype) - half
    k = torch.exp(-(t.view(1, -1) ** 2) / (2 * sigma[idx].to(x.dtype).view(-1, 1) ** 2))
    k = (k / k.sum(dim=1, keepdim=True)).repeat_interleave(ch, dim=0)  # (m*ch, K)
    y = sel.reshape(1, m * ch, hh, ww)
    pad_h, pad_w = min(half, hh - 1), min(half, ww - 1)
    if pad_h < half or pad_w < half:  # tiny images: reflect padding needs pad < size
        y = F.pad(y, (pad_w, pad_w, pad_h, pad_h), mode="reflect")
        y = F.pad(y, (half - pad_w,) * 2 + (half - pad_h,) * 2, mode="replicate")
    else:
        y = F.pad(y, (half, half, half, half), mode="reflect")
    y = F.conv2d(y, k.view(m * ch, 1, kernel_size, 1), groups=m * ch)
    y = F.conv2d(y, k.view(m * ch, 1, 1, kernel_size), groups=m * ch)
    out = x.clone()
    out[idx] = y.view(m, ch, hh, ww)
    return out


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``(x - mean) / std`` per channel (``mean``/``std`` of shape (3,))."""
    return (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
