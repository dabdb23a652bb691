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
from typing import Any, Callable

import torch

from slimssl.data.errors import DataError
from slimssl.data.tensor_dataset import ImageTensorDataset

CACHE_VERSION = 1


def cache_key(index: Any, image_size: int | None) -> str:
    """Hex digest identifying the folder's current contents and the decode settings; ``index``
    is a :class:`slimssl.data.folder.FolderIndex` (``folder`` imports this module, never the
    other way round)."""
    h = hashlib.sha256()
    h.update(f"v{CACHE_VERSION}|{index.root.resolve()}|{image_size}|{index.labels is not None}".encode())
    for f in index.files:
        st = f.stat()
        h.update(f"|{f.relative_to(index.root)}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:32]


def cached_folder_dataset(
    index: Any,
    image_size: int | None,
    cache_dir: str | os.PathLike,
    decode: Callable[[], ImageTensorDataset],
) -> ImageTensorDataset:
    """Load ``index`` from ``cache_dir`` when cached, else ``decode()`` it and store the result
    (``decode`` is :func:`slimssl.data.folder.dataset_from_index` with the caller's settings)."""
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
    ds = decode()
    tmp = file.with_suffix(".tmp")
    torch.save(
        {"images": ds.images, "labels": ds.labels, "classes": ds.classes, "mean": ds.mean, "std": ds.std},
        tmp,
    )
    os.replace(tmp, file)  # atomic: a concurrent reader never sees half a file
    return ds
