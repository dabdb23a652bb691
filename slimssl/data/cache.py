"""On-disk cache of decoded folders.

Decoding 50k JPEGs costs seconds to minutes; the cache stores the decoded ``uint8`` tensor with
``torch.save`` and reads it back with ``torch.load(weights_only=True)`` (no arbitrary code on
load). The key hashes the folder path, every file's relative path, size and mtime, the
requested image size and a format version, so any change to the folder misses the cache.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from slimssl.data.errors import DataError
from slimssl.data.folder import FolderIndex, decode_files
from slimssl.data.tensor_dataset import ImageTensorDataset

CACHE_VERSION = 1


def cache_key(index: FolderIndex, image_size: int | None) -> str:
    """Hex digest identifying the folder's current contents and the decode settings."""
    h = hashlib.sha256()
    h.update(f"v{CACHE_VERSION}|{index.root.resolve()}|{image_size}|{index.labels is not None}".encode())
    for f in index.files:
        st = f.stat()
        h.update(f"|{f.relative_to(index.root)}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:32]


def cached_folder_dataset(
    index: FolderIndex,
    image_size: int | None,
    cache_dir: str | os.PathLike,
    strict: bool = False,
    num_threads: int | None = None,
) -> ImageTensorDataset:
    """Load ``index`` from ``cache_dir`` when cached, else decode and store it."""
    cdir = Path(cache_dir).expanduser()
    try:
        cdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create cache folder '{cdir}' ({exc}); pass a writable cache_dir") from exc
    file = cdir / f"{index.root.name}-{cache_key(index, image_size)}.pt"
    if file.exists():
        try:
            blob = torch.load(file, map_location="cpu", weights_only=True)
            return ImageTensorDataset(
                images=blob["images"],
                labels=blob["labels"],
                classes=list(blob["classes"]),
                mean=list(blob["mean"]),
                std=list(blob["std"]),
                source=str(index.root),
            )
        except Exception:  # noqa: BLE001 - a broken cache file is rebuilt, never fatal
            file.unlink(missing_ok=True)
    images, kept = decode_files(index.files, image_size, strict, num_threads, index.root)
    labels = None if index.labels is None else torch.tensor([index.labels[i] for i in kept], dtype=torch.long)
    ds = ImageTensorDataset(images=images, labels=labels, classes=list(index.classes), source=str(index.root))
    tmp = file.with_suffix(".tmp")
    torch.save(
        {"images": ds.images, "labels": ds.labels, "classes": ds.classes, "mean": ds.mean, "std": ds.std},
        tmp,
    )
    os.replace(tmp, file)  # atomic: a concurrent reader never sees half a file
    return ds
