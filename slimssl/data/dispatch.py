"""One entry point that turns a config's ``data:`` string into a dataset.

``load_dataset(None | "digits" | "synthetic" | path, split, image_size)`` decides by name and
folder layout, so configs and the CLI need no dataset-specific code.
"""

from __future__ import annotations

import os
from pathlib import Path

from slimssl.data.cifar import cifar_variant, load_cifar
from slimssl.data.digits import load_digits_splits
from slimssl.data.errors import DataError
from slimssl.data.folder import (
    DEFAULT_MAX_MEMORY_BYTES,
    DEFAULT_STREAM_THRESHOLD,
    Mode,
    StreamingImageFolder,
    check_data_dir,
    load_image_folder,
)
from slimssl.data.synthetic import make_synthetic
from slimssl.data.tensor_dataset import ImageTensorDataset

_SPLIT_ALIASES = {"train": "train", "test": "test", "val": "test", "valid": "test", "validation": "test"}
Dataset = ImageTensorDataset | StreamingImageFolder


def _split_name(split: str) -> str:
    key = split.lower()
    if key not in _SPLIT_ALIASES:
        raise DataError(f"split must be one of {sorted(_SPLIT_ALIASES)}, got {split!r}")
    return _SPLIT_ALIASES[key]


def find_split_folder(root: Path, split: str) -> Path | None:
    """``root/train`` for train; ``root/test``, else ``root/val`` / ``root/valid``, for test."""
    names = ["train"] if split == "train" else ["test", "val", "valid", "validation"]
    for n in names:
        if (root / n).is_dir():
            return root / n
    return None


def load_dataset(
    path_or_name: str | os.PathLike | None,
    split: str = "train",
    image_size: int | None = 32,
    *,
    seed: int = 0,
    test_fraction: float = 0.2,
    labelled: bool | None = None,
    mode: Mode = "auto",
    strict: bool = False,
    stream_threshold: int = DEFAULT_STREAM_THRESHOLD,
    max_memory_bytes: int = DEFAULT_MAX_MEMORY_BYTES,
    cache_dir: str | os.PathLike | None = None,
    num_threads: int | None = None,
    synthetic_samples: int = 512,
    synthetic_classes: int = 10,
) -> Dataset:
    """Load ``split`` (``train`` / ``test``; ``val`` is an alias of ``test``).

    Dispatch:

    - ``None`` or ``"digits"``: scikit-learn digits, upsampled to ``image_size``, seeded
      stratified split with ``test_fraction``;
    - ``"synthetic"``: :func:`~slimssl.data.synthetic.make_synthetic`;
    - a folder with CIFAR python batches: CIFAR-10/100 (always 32x32; ``image_size`` other than
      32/None raises, resize in the view pipeline instead);
    - a folder with ``train/`` and ``test/`` (or ``val/``) sub-folders: ImageFolder of that split;
    - any other folder: labelled ImageFolder or unlabeled images; only ``split="train"`` exists.
    """
    split = _split_name(split)
    name = None if path_or_name is None else str(path_or_name)
    if name is None or name.lower() == "digits":
        train, test = load_digits_splits(image_size or 32, test_fraction, seed)
        return train if split == "train" else test
    if name.lower() == "synthetic":
        return make_synthetic(
            num_samples=synthetic_samples if split == "train" else max(1, synthetic_samples // 4),
            num_classes=synthetic_classes,
            image_size=image_size or 32,
            seed=seed,
            split=split,
        )
    root = check_data_dir(name)
    if cifar_variant(root) is not None:
        if image_size not in (None, 32):
            raise DataError(
                f"CIFAR batches in '{root}' are 32x32 but image_size={image_size}; use image_size=32 "
                "and let the view pipeline crop/resize"
            )
        return load_cifar(root, split)
    folder_kw = dict(
        image_size=image_size,
        labelled=labelled,
        mode=mode,
        strict=strict,
        stream_threshold=stream_threshold,
        max_memory_bytes=max_memory_bytes,
        cache_dir=cache_dir,
        num_threads=num_threads,
    )
    if (root / "train").is_dir():
        sub = find_split_folder(root, split)
        if sub is None:
            raise DataError(
                f"folder '{root}' has 'train/' but no 'test/' or 'val/' sub-folder for split "
                f"{split!r}; add one, or use split='train'"
            )
        return load_image_folder(sub, **folder_kw)  # type: ignore[arg-type]
    if split != "train":
        raise DataError(
            f"folder '{root}' has no train/ and test/ (or val/) sub-folders, so only split='train' "
            "exists; arrange it as root/train/<class>/... and root/test/<class>/..."
        )
    return load_image_folder(root, **folder_kw)  # type: ignore[arg-type]


def load_split(data, split: str, seed: int = 0) -> Dataset:
    """``split`` of the dataset a run's ``data:`` config section names (``Config.data``: path,
    image_size, mode, max_images_held, strict, cache_dir), so that pre-training and every
    evaluation command load it the same way. ``mode: auto`` streams a folder with more than
    ``max_images_held`` images (or over 8 GiB decoded); ``memory`` / ``stream`` force a path."""
    return load_dataset(data.path, split, data.image_size, seed=seed, mode=data.mode,
                        strict=data.strict, stream_threshold=data.max_images_held,
                        cache_dir=data.cache_dir)
