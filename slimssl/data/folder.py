"""Image folders: ``root/<class>/<image>`` (labelled) or any tree of images (unlabeled).

Two representations (docs/design.md section 1, ``data/``):

- :func:`dataset_from_index` decodes every file once into an
  :class:`~slimssl.data.tensor_dataset.ImageTensorDataset` (fast epochs, batched augmentation),
  kept in ``cache_dir`` by :mod:`slimssl.data.cache` when one is given;
- :class:`StreamingImageFolder` decodes per item, for folders too large for memory
  (ImageNet), used with DataLoader workers.

:func:`load_image_folder` picks one by image count (``stream_threshold``) or as asked.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from slimssl.data.cache import cached_folder_dataset
from slimssl.data.decode import decode_image, is_image_file, peek_size
from slimssl.data.errors import DataError, DataWarning
from slimssl.data.tensor_dataset import ImageTensorDataset, channel_mean_std

#: Default image count above which ``mode="auto"`` streams instead of decoding into memory.
DEFAULT_STREAM_THRESHOLD = 100_000
#: Default byte budget of the decoded tensor above which ``mode="auto"`` streams.
DEFAULT_MAX_MEMORY_BYTES = 8 * 1024**3

Mode = Literal["auto", "memory", "stream"]


@dataclass
class FolderIndex:
    """Result of scanning a folder: files, their labels (or None) and the class names."""

    root: Path
    files: list[Path]
    labels: list[int] | None
    classes: list[str]


def check_data_dir(root: str | os.PathLike) -> Path:
    """``root`` as an existing folder, else a :class:`DataError` saying what to pass instead."""
    path = Path(root).expanduser()
    if not path.exists():
        raise DataError(
            f"data path '{path}' does not exist; check the spelling, or use None / 'digits' "
            "(built-in) or 'synthetic'"
        )
    if not path.is_dir():
        raise DataError(f"data path '{path}' is a file, not a folder; pass the folder that holds "
                        "the dataset")
    return path


def _walk_images(folder: Path) -> list[Path]:
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out.extend(Path(dirpath) / f for f in sorted(filenames) if not f.startswith(".") and is_image_file(f))
    return out


def scan_folder(root: str | os.PathLike, labelled: bool | None = None) -> FolderIndex:
    """List the images under ``root``.

    ``labelled=None`` decides by layout: if every image lies in a first-level sub-folder the
    sub-folder names are the classes (``root/<class>/...``, sorted, as torchvision's
    ImageFolder); images directly in ``root`` make the folder unlabeled (labels None).
    ``labelled=False`` forces unlabeled (flat or nested); ``labelled=True`` requires the class
    layout.
    """
    path = check_data_dir(root)
    entries = sorted(p for p in path.iterdir() if not p.name.startswith("."))
    if not entries:
        raise DataError(f"folder '{path}' is empty; put images in it (root/<class>/<image> for labels)")
    top_images = [p for p in entries if p.is_file() and is_image_file(p)]
    class_dirs = [p for p in entries if p.is_dir()]
    if labelled is None:
        labelled = not top_images and bool(class_dirs)
    if labelled:
        if top_images:
            raise DataError(
                f"folder '{path}' has images at its top level (e.g. '{top_images[0].name}') but "
                "labelled=True needs root/<class>/<image>; move them into class sub-folders or "
                "load it as unlabeled"
            )
        files: list[Path] = []
        labels: list[int] = []
        classes: list[str] = []
        for d in class_dirs:
            imgs = _walk_images(d)
            if not imgs:
                continue  # torchvision skips empty class folders too; we keep label ids dense
            classes.append(d.name)
            files.extend(imgs)
            labels.extend([len(classes) - 1] * len(imgs))
        if not files:
            raise DataError(
                f"folder '{path}' has no image files ({', '.join(sorted(_ext_examples()))}) in its "
                "class sub-folders; check the path or the file extensions"
            )
        return FolderIndex(path, files, labels, classes)
    files = _walk_images(path)
    if not files:
        raise DataError(
            f"folder '{path}' contains no image files ({', '.join(sorted(_ext_examples()))}); "
            "check the path or the file extensions"
        )
    return FolderIndex(path, files, None, [])


def _ext_examples() -> list[str]:
    return [".jpg", ".png", ".bmp", ".webp"]


def _decode_or_none(path: Path, image_size: int | None) -> torch.Tensor | DataError:
    try:
        return decode_image(path, image_size)
    except DataError as exc:
        return exc


def _summarise_bad(bad: list[Path], root: Path) -> None:
    names = ", ".join(f"'{p}'" for p in bad[:5])
    more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
    warnings.warn(
        f"skipped {len(bad)} unreadable image file(s) under '{root}': {names}{more}; delete or "
        "replace them, or pass strict=True to stop on the first one",
        DataWarning,
        stacklevel=3,
    )


def decode_files(
    files: list[Path],
    image_size: int | None,
    strict: bool = False,
    num_threads: int | None = None,
    root: Path | None = None,
) -> tuple[torch.Tensor, list[int]]:
    """Decode ``files`` into one ``uint8`` tensor; returns (images, indices of kept files).

    PIL releases the GIL while decoding, so a small thread pool speeds this up without the
    start-up cost of processes. Corrupt files are skipped with one summary warning, or raise
    :class:`DataError` when ``strict``.
    """
    threads = num_threads or min(4, os.cpu_count() or 1)
    if threads > 1 and len(files) > 64:
        with ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(lambda p: _decode_or_none(p, image_size), files, chunksize=256))
    else:
        results = [_decode_or_none(p, image_size) for p in files]
    kept: list[int] = []
    tensors: list[torch.Tensor] = []
    bad: list[Path] = []
    for i, r in enumerate(results):
        if isinstance(r, DataError):
            if strict:
                raise r
            bad.append(files[i])
        else:
            kept.append(i)
            tensors.append(r)
    where = root if root is not None else (files[0].parent if files else Path("."))
    if not tensors:
        raise DataError(
            f"none of the {len(files)} image files under '{where}' could be decoded (first: "
            f"'{files[0] if files else '?'}'); check that they are real image files"
        )
    if bad:
        _summarise_bad(bad, where)
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) > 1:
        first = tensors[0].shape
        other = next(i for i, t in enumerate(tensors) if t.shape != first)
        raise DataError(
            f"images under '{where}' have different sizes ('{files[kept[0]]}' is "
            f"{first[1]}x{first[2]}, '{files[kept[other]]}' is {tensors[other].shape[1]}x"
            f"{tensors[other].shape[2]}); pass image_size=... to resize them to one size"
        )
    return torch.stack(tensors), kept


def dataset_from_index(
    index: FolderIndex, image_size: int | None, strict: bool = False, num_threads: int | None = None
) -> ImageTensorDataset:
    """Decode the files of a :class:`FolderIndex` (no cache)."""
    images, kept = decode_files(index.files, image_size, strict, num_threads, index.root)
    labels = None if index.labels is None else torch.tensor([index.labels[i] for i in kept], dtype=torch.long)
    return ImageTensorDataset(images=images, labels=labels, classes=list(index.classes), source=str(index.root))


class StreamingImageFolder(torch.utils.data.Dataset):
    """Decode-per-item folder dataset for folders too large to hold in memory.

    ``__getitem__`` returns ``(uint8 (3, S, S), label)`` (label ``-1`` when unlabeled). Use it
    with DataLoader workers (:func:`slimssl.data.loaders.make_loader`); then augment whole batches
    with :mod:`slimssl.data.views`. ``image_size`` is the caller's choice: without it images
    keep their own size and only batch if they all match.

    A corrupt file raises :class:`DataError` when ``strict``; otherwise it warns and the next
    readable file is returned in its place (files are not all verified up front: too slow for
    a million images). ``mean``/``std`` are estimated lazily from a seeded sample of
    ``stats_samples`` images.
    """

    def __init__(
        self,
        root: str | os.PathLike | FolderIndex,
        image_size: int | None = None,
        labelled: bool | None = None,
        strict: bool = False,
        stats_samples: int = 512,
        mean: list[float] | None = None,
        std: list[float] | None = None,
    ) -> None:
        index = root if isinstance(root, FolderIndex) else scan_folder(root, labelled)
        self.root = index.root
        self.files = index.files
        self.labels = None if index.labels is None else torch.tensor(index.labels, dtype=torch.long)
        self.classes = list(index.classes)
        self.image_size = image_size
        self.strict = strict
        self.stats_samples = stats_samples
        self.source = str(index.root)
        self._mean = mean
        self._std = std

    def __len__(self) -> int:
        return len(self.files)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, indices: torch.Tensor) -> "StreamingImageFolder":
        """The files ``indices`` (e.g. a labelled 1% subset) as a new streamed dataset; chosen
        from the file list and labels alone (no image is read), normalised with this
        dataset's mean/std like :meth:`ImageTensorDataset.subset`."""
        idx = torch.as_tensor(indices, dtype=torch.long).flatten().tolist()
        index = FolderIndex(self.root, [self.files[i] for i in idx],
                            None if self.labels is None else self.labels[idx].tolist(),
                            list(self.classes))
        return StreamingImageFolder(index, self.image_size, strict=self.strict,
                                    stats_samples=self.stats_samples, mean=self.mean, std=self.std)

    def to_memory(self, num_threads: int | None = None) -> ImageTensorDataset:
        """Decode every file into an :class:`ImageTensorDataset` with this dataset's mean/std
        (for a small subset of a large folder, e.g. the kNN monitor's bank)."""
        images, kept = decode_files(self.files, self.image_size, self.strict, num_threads, self.root)
        labels = None if self.labels is None else self.labels[kept]
        return ImageTensorDataset(images=images, labels=labels, classes=list(self.classes),
                                  mean=self.mean, std=self.std, source=self.source)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        n = len(self.files)
        for attempt in range(min(n, 16)):
            i = (index + attempt) % n
            try:
                img = decode_image(self.files[i], self.image_size)
            except DataError as exc:
                if self.strict:
                    raise
                warnings.warn(f"{exc}; using the next file instead", DataWarning, stacklevel=2)
                continue
            return img, -1 if self.labels is None else int(self.labels[i])
        raise DataError(
            f"16 consecutive files from '{self.files[index % n]}' under '{self.root}' could not be "
            "decoded; check the folder's contents"
        )

    def _compute_stats(self) -> None:
        g = torch.Generator().manual_seed(0)
        count = min(self.stats_samples, len(self.files))
        idx = torch.randperm(len(self.files), generator=g)[:count].tolist()
        size = self.image_size or 64  # sizes may differ; stats only need a common grid
        imgs, _ = decode_files([self.files[i] for i in idx], size, strict=False, root=self.root)
        self._mean, self._std = channel_mean_std(imgs)

    @property
    def mean(self) -> list[float]:
        """Per-channel mean in [0, 1], estimated from a seeded sample of images."""
        if self._mean is None:
            self._compute_stats()
        return list(self._mean)  # type: ignore[arg-type]

    @property
    def std(self) -> list[float]:
        """Per-channel standard deviation in [0, 1], estimated like :attr:`mean`."""
        if self._std is None:
            self._compute_stats()
        return list(self._std)  # type: ignore[arg-type]


def choose_mode(
    index: FolderIndex,
    image_size: int | None,
    stream_threshold: int = DEFAULT_STREAM_THRESHOLD,
    max_memory_bytes: int = DEFAULT_MAX_MEMORY_BYTES,
) -> Literal["memory", "stream"]:
    """``"stream"`` when the folder has more than ``stream_threshold`` images or its decoded
    tensor (estimated from ``image_size`` or the first image's header) exceeds
    ``max_memory_bytes``; ``"memory"`` otherwise."""
    n = len(index.files)
    if n > stream_threshold:
        return "stream"
    if image_size is not None:
        h = w = image_size
    else:
        size = peek_size(index.files[0])
        w, h = size if size is not None else (0, 0)
    return "stream" if n * 3 * h * w > max_memory_bytes else "memory"


def load_image_folder(
    root: str | os.PathLike,
    image_size: int | None = None,
    labelled: bool | None = None,
    mode: Mode = "auto",
    strict: bool = False,
    stream_threshold: int = DEFAULT_STREAM_THRESHOLD,
    max_memory_bytes: int = DEFAULT_MAX_MEMORY_BYTES,
    num_threads: int | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> ImageTensorDataset | StreamingImageFolder:
    """Load a labelled (``root/<class>/<image>``) or unlabeled folder.

    ``mode="auto"`` decodes into memory unless :func:`choose_mode` says stream;
    ``"memory"``/``"stream"`` force a representation. In memory, ``image_size`` resizes the
    shorter side and center-crops, and ``cache_dir`` stores the decoded tensor keyed by path,
    file sizes and mtimes (:mod:`slimssl.data.cache`), so the next run skips decoding.
    """
    if mode not in ("auto", "memory", "stream"):
        raise DataError(f"mode must be 'auto', 'memory' or 'stream', got {mode!r}")
    index = scan_folder(root, labelled)
    if mode == "auto":
        mode = choose_mode(index, image_size, stream_threshold, max_memory_bytes)
    if mode == "stream":
        return StreamingImageFolder(index, image_size=image_size, strict=strict)
    if cache_dir is not None:
        return cached_folder_dataset(
            index, image_size, cache_dir,
            lambda: dataset_from_index(index, image_size, strict, num_threads))
    return dataset_from_index(index, image_size, strict, num_threads)
