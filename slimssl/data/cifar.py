"""CIFAR-10 / CIFAR-100 "python version" batches (the files torchvision reads).

The batches are pickles. Unpickling runs code named in the file, so we (1) only open files whose
names match the official layout and (2) unpickle with :class:`RestrictedUnpickler`, which
resolves nothing but the few numpy reconstruction helpers that arrays need. Anything else in
the pickle raises :class:`DataError` instead of executing.

Layout: CIFAR-10 ``data_batch_1..5``, ``test_batch``, ``batches.meta``;
CIFAR-100 ``train``, ``test``, ``meta``. Each batch is a dict with ``data`` (uint8
``(N, 3072)``, channel-major 32x32) and ``labels`` (CIFAR-10) or ``fine_labels`` (CIFAR-100).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slimssl.data.errors import DataError
from slimssl.data.tensor_dataset import ImageTensorDataset

CIFAR10_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR10_TEST = ["test_batch"]
CIFAR10_META = "batches.meta"
CIFAR100_TRAIN = ["train"]
CIFAR100_TEST = ["test"]
CIFAR100_META = "meta"


def _allowed_globals() -> dict[tuple[str, str], Any]:
    from numpy import dtype, ndarray

    try:  # numpy >= 2
        from numpy._core.multiarray import _reconstruct, scalar
        from numpy._core.numeric import _frombuffer
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct, scalar  # type: ignore[no-redef]
        from numpy.core.numeric import _frombuffer  # type: ignore[no-redef]
    import codecs

    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): ndarray, ("numpy", "dtype"): dtype}
    for mod in ("numpy.core", "numpy._core"):
        allowed[(f"{mod}.multiarray", "_reconstruct")] = _reconstruct
        allowed[(f"{mod}.multiarray", "scalar")] = scalar
        allowed[(f"{mod}.numeric", "_frombuffer")] = _frombuffer
    # protocol-2 pickles written by Python 3 encode bytes objects as codecs.encode(str, 'latin1')
    allowed[("_codecs", "encode")] = codecs.encode
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that allows builtin containers/scalars and numpy arrays only."""

    _allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102
        obj = self._allowed.get((module, name))
        if obj is None:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in a CIFAR batch")
        return obj


def restricted_load(path: Path) -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler` (bytes keys kept as bytes)."""
    try:
        with open(path, "rb") as f:
            return RestrictedUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise DataError(
            f"'{path}' is not a valid CIFAR python batch ({exc}); re-download the 'python version' "
            "archive (cifar-10-python.tar.gz / cifar-100-python.tar.gz) and extract it"
        ) from exc


def _str_keys(d: Any, path: Path) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise DataError(f"'{path}' does not hold a dict; it is not a CIFAR python batch")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in d.items()}


def _names(values: Any) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def cifar_variant(root: str | os.PathLike) -> str | None:
    """``"cifar10"`` / ``"cifar100"`` when ``root`` has that layout's file names, else None."""
    p = Path(root)
    if not p.is_dir():
        return None
    if all((p / n).is_file() for n in CIFAR10_TRAIN + CIFAR10_TEST):
        return "cifar10"
    if all((p / n).is_file() for n in CIFAR100_TRAIN + CIFAR100_TEST):
        return "cifar100"
    return None


def load_cifar(root: str | os.PathLike, split: str = "train") -> ImageTensorDataset:
    """Load the ``train`` or ``test`` split of CIFAR-10/100 python batches in ``root``."""
    p = Path(root).expanduser()
    if not p.exists():
        raise DataError(f"CIFAR folder '{p}' does not exist; extract cifar-10-python.tar.gz there")
    variant = cifar_variant(p)
    if variant is None:
        raise DataError(
            f"folder '{p}' is not a CIFAR python folder: expected {', '.join(CIFAR10_TRAIN + CIFAR10_TEST)} "
            f"(CIFAR-10) or {', '.join(CIFAR100_TRAIN + CIFAR100_TEST)} (CIFAR-100); point to the "
            "extracted 'cifar-10-batches-py' / 'cifar-100-python' folder"
        )
    if split in ("val", "valid", "validation"):
        split = "test"
    if split not in ("train", "test"):
        raise DataError(f"CIFAR split must be 'train' or 'test', got {split!r} (folder '{p}')")
    if variant == "cifar10":
        files, meta_name, label_key, names_key = (
            CIFAR10_TRAIN if split == "train" else CIFAR10_TEST,
            CIFAR10_META,
            "labels",
            "label_names",
        )
    else:
        files, meta_name, label_key, names_key = (
            CIFAR100_TRAIN if split == "train" else CIFAR100_TEST,
            CIFAR100_META,
            "fine_labels",
            "fine_label_names",
        )
    data: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    for name in files:
        path = p / name
        batch = _str_keys(restricted_load(path), path)
        if "data" not in batch or label_key not in batch:
            raise DataError(
                f"'{path}' lacks '{'data' if 'data' not in batch else label_key}'; it is not a "
                f"{variant} python batch"
            )
        arr = np.asarray(batch["data"])
        if arr.dtype != np.uint8 or arr.ndim != 2 or arr.shape[1] != 3072:
            raise DataError(f"'{path}' data is {arr.dtype} {arr.shape}, expected uint8 (N, 3072)")
        lab = np.asarray(batch[label_key], dtype=np.int64).reshape(-1)
        if lab.shape[0] != arr.shape[0]:
            raise DataError(f"'{path}' has {arr.shape[0]} images but {lab.shape[0]} labels")
        data.append(arr)
        labels.append(lab)
    images = torch.from_numpy(np.concatenate(data).reshape(-1, 3, 32, 32).copy())
    label_t = torch.from_numpy(np.concatenate(labels))
    meta_path = p / meta_name
    n_classes = 10 if variant == "cifar10" else 100
    classes = [str(i) for i in range(n_classes)]
    if meta_path.is_file():
        meta = _str_keys(restricted_load(meta_path), meta_path)
        if names_key in meta:
            classes = _names(meta[names_key])
    if int(label_t.max()) >= len(classes) or int(label_t.min()) < 0:
        raise DataError(f"labels in '{p}' fall outside 0..{len(classes) - 1}")
    return ImageTensorDataset(images=images, labels=label_t, classes=classes, source=str(p))
