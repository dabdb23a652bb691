"""The embedded default dataset: scikit-learn's handwritten digits.

1,797 real 8x8 grayscale digits (UCI optdigits test set) ship inside the scikit-learn wheel, so
the library runs end to end with no download. They are upsampled to ``image_size`` (bicubic)
and made 3-channel so that the same CIFAR-style backbones and view recipes apply.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from slimssl.data.errors import DataError
from slimssl.data.tensor_dataset import ImageTensorDataset


def load_digits_splits(
    image_size: int = 32, test_fraction: float = 0.2, seed: int = 0
) -> tuple[ImageTensorDataset, ImageTensorDataset]:
    """(train, test) digits as uint8 ``(N, 3, S, S)``, stratified split seeded by ``seed``.

    Both splits share the train split's mean/std (the test split is normalised like training).
    """
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if image_size < 8:
        raise DataError(f"image_size must be >= 8 for digits, got {image_size}")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = torch.from_numpy(bunch.images).float().div_(16.0)  # (N, 8, 8) in [0, 1]
    y = torch.from_numpy(bunch.target).long()
    x = x.unsqueeze(1)
    if image_size != 8:
        x = F.interpolate(x, size=(image_size, image_size), mode="bicubic", align_corners=False)
    x = x.clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    idx = torch.arange(len(y)).numpy()
    tr, te = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=y.numpy())
    tr_t, te_t = torch.from_numpy(tr).sort().values, torch.from_numpy(te).sort().values
    classes = [str(i) for i in range(10)]
    train = ImageTensorDataset(images=x[tr_t].clone(), labels=y[tr_t].clone(), classes=classes, source="digits")
    test = ImageTensorDataset(
        images=x[te_t].clone(), labels=y[te_t].clone(), classes=classes, mean=train.mean, std=train.std,
        source="digits",
    )
    return train, test
