"""Frozen features of every member, extracted once, kept on disk in shards and reused.

Scoring a family on ImageNet means one forward pass of 1.28 M training images per member;
kNN and the "fast" linear probe only need the pooled features of un-augmented images, so
they are extracted once and written to ``<run>/features/<split>/<member>/``:

* ``shard_00000.safetensors``, ... -- consecutive runs of ``shard_size`` images of the split (in
  the dataset's order), each holding ``features`` (float32, ``(n, C)``), ``labels`` and
  ``index`` (the images' positions in the split), and in its metadata the member, the weights'
  hash, the transform and the data it came from, so a shard file describes itself;
* ``meta.json`` -- the same description for the whole member.

Later commands reuse complete shards (an interrupted extraction continues where it stopped).
Features of other weights (training went on, another checkpoint), another transform or other
data are refused with an error naming what changed; ``refresh=True`` (``--refresh-features``)
deletes and re-extracts them.

Memory stays bounded: images are decoded by :func:`slimssl.data.ordered_batches` (at most
``max_images_held`` alive), a shard's features are held only until written, and readers
(:class:`ShardedFeatures`) load one shard at a time or memory-map rows.

Multi-process (``torchrun``): shard ``s`` is extracted by rank ``s % world_size``, each member's
shards by the same ranks; after a barrier every rank reads every shard, so the run directory
must be on a filesystem all ranks share (as it is for checkpoints on one node).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable, Iterator, Mapping, Sequence

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from slimssl.data import ImageTensorDataset, StreamingImageFolder, ordered_batches
from slimssl.dist import barrier, get_rank, get_world_size
from slimssl.fileio import atomic_write_text

__all__ = ["SHARD_SIZE", "FeatureCacheError", "state_fingerprint", "data_fingerprint",
           "ShardedFeatures", "FeatureStore"]

#: Images per shard: 8192 x 2048 float32 features (ResNet-50) = 64 MiB per file.
SHARD_SIZE = 8192

Family = Callable[[torch.Tensor], Mapping[Hashable, torch.Tensor]]
Log = Callable[[str], None]


class FeatureCacheError(ValueError):
    """Cached features do not belong to this model, transform or data."""


def state_fingerprint(model: torch.nn.Module) -> str:
    """SHA-256 of every parameter AND buffer (BN statistics change features too): names,
    dtypes, shapes and bytes."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        if not isinstance(t, torch.Tensor):
            continue
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def data_fingerprint(dataset: ImageTensorDataset | StreamingImageFolder) -> str:
    """SHA-256 naming a split without reading an image: its source folder, size and labels.
    The same for the split decoded into memory and streamed, so ``data.mode`` can change
    between commands and the features stay valid."""
    h = hashlib.sha256(f"{getattr(dataset, 'source', '')}|{len(dataset)}|".encode())
    if dataset.labels is not None:
        h.update(dataset.labels.to(torch.int64).contiguous().numpy().tobytes())
    return h.hexdigest()


def describe_transform(transform: Callable) -> Any:
    """What a transform does to the images, for the features' metadata: the normalisation
    (mean/std, to 6 decimals) and the resize of an :class:`~slimssl.data.EvalTransform`, else its
    name. (A streamed split's statistics come from a 512-image sample, a decoded one's from all
    images, so features of the two paths match only when these agree.)"""
    mean, std = getattr(transform, "mean", None), getattr(transform, "std", None)
    if mean is None or std is None:
        return getattr(transform, "__qualname__", type(transform).__name__)
    return {"mean": [round(float(v), 6) for v in mean], "std": [round(float(v), 6) for v in std],
            "image_size": getattr(transform, "image_size", None)}


def _shard_name(index: int) -> str:
    return f"shard_{index:05d}.safetensors"


def _tensor_offset(path: Path, name: str) -> tuple[int, list[int], str]:
    """Byte offset, shape and dtype of tensor ``name`` in a safetensors file (for np.memmap)."""
    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
    info = header[name]
    return 8 + header_len + int(info["data_offsets"][0]), list(info["shape"]), info["dtype"]


@dataclass
class ShardedFeatures:
    """One member's features of one split, as shard files (see the module docstring)."""

    paths: list[Path]
    counts: list[int]
    dim: int
    labels: torch.Tensor
    _memmaps: list[np.memmap] | None = field(default=None, init=False, repr=False)

    def __len__(self) -> int:
        return sum(self.counts)

    def shards(self, which: Sequence[int] | None = None
               ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(features, labels)`` of each shard (or of the shards ``which``), one in memory at
        a time."""
        for s in range(len(self.paths)) if which is None else which:
            with safe_open(str(self.paths[s]), "pt") as f:
                yield f.get_tensor("features"), f.get_tensor("labels")

    def load(self) -> torch.Tensor:
        """All features as one tensor (small data only)."""
        return torch.cat([x for x, _ in self.shards()]) if self.paths else torch.empty(0, self.dim)

    def rows(self, index: torch.Tensor) -> torch.Tensor:
        """Features of the images ``index`` (positions in the split), read through memory maps:
        only the touched pages are read, so a random batch of a 10 GiB split costs its rows."""
        maps = self._maps()
        idx = torch.as_tensor(index, dtype=torch.long)
        size = self.counts[0] if self.counts else 1
        shard, row = (idx // size).numpy(), (idx % size).numpy()
        out = np.empty((idx.numel(), self.dim), dtype=np.float32)
        for s in np.unique(shard):
            mask = shard == s
            out[mask] = maps[s][row[mask]]
        return torch.from_numpy(out)

    def _maps(self) -> list[np.memmap]:
        if self._memmaps is None:
            maps = []
            for path, n in zip(self.paths, self.counts):
                offset, shape, dtype = _tensor_offset(path, "features")
                if dtype != "F32":
                    raise FeatureCacheError(f"{path}: features are {dtype}, expected F32")
                maps.append(np.memmap(path, np.float32, "r", offset, tuple(shape)))
            self._memmaps = maps
        return self._memmaps


class FeatureStore:
    """Feature shards of one model under ``directory`` (``<run>/features``).

    ``weights`` is :func:`state_fingerprint` of the model; ``settings`` describes everything
    else the features depend on (transform, BN recalibration); both go into every file and
    must match for a shard to be reused. ``distributed=True`` (the default) shares the work
    among the ``torchrun`` ranks, which must all call :meth:`extract`; ``False`` is for one
    process working alone (e.g. rank 0 after pre-training).
    """

    def __init__(self, directory: str | Path, weights: str, settings: Mapping[str, Any],
                 shard_size: int = SHARD_SIZE, refresh: bool = False,
                 distributed: bool = True) -> None:
        if shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {shard_size}")
        self.directory = Path(directory)
        self.weights, self._settings = weights, json.loads(json.dumps(dict(settings)))
        self.settings = self._settings
        self.shard_size, self.refresh = shard_size, refresh
        self.distributed = distributed and get_world_size() > 1
        self.rank, self.world = (get_rank(), get_world_size()) if self.distributed else (0, 1)
        if self.distributed:  # rank 0's hash names every rank's shards
            box = [self.weights]
            torch.distributed.broadcast_object_list(box, src=0)
            self.weights = box[0]

    def _barrier(self) -> None:
        if self.distributed:
            barrier()

    def member_dir(self, split: str, spec: Hashable) -> Path:
        return self.directory / split / str(getattr(spec, "slug", spec))

    def _meta(self, split: str, spec: Hashable, dataset) -> dict[str, Any]:
        member = spec.to_dict() if hasattr(spec, "to_dict") else str(spec)
        return {"format": "slimssl-features-v1", "member": member, "weights": self.weights,
                "settings": self.settings, "data": data_fingerprint(dataset),
                "source": str(getattr(dataset, "source", "")), "split": split,
                "count": len(dataset), "shard_size": self.shard_size}

    def _check(self, folder: Path, meta: dict[str, Any]) -> None:
        """Refuse (or with ``refresh`` delete) features that describe something else."""
        path = folder / "meta.json"
        if self.refresh:
            if self.rank == 0 and folder.exists():
                shutil.rmtree(folder)
            return
        if not path.is_file():
            return
        old = json.loads(path.read_text())
        changed = [k for k in ("weights", "settings", "data", "count", "shard_size", "member")
                   if old.get(k) != meta[k]]
        if not changed:
            return
        what = {"weights": f"the weights changed since they were extracted (hash "
                           f"{str(old.get('weights'))[:12]} then, {self.weights[:12]} now)",
                "settings": f"the transform or BN settings differ ({old.get('settings')} then, "
                            f"{meta['settings']} now)",
                "data": "the images of the split differ", "count": "the number of images differs",
                "shard_size": "the shard size differs", "member": "the member differs"}
        reasons = "; ".join(what[k] for k in changed)
        raise FeatureCacheError(
            f"cached features in {folder} do not belong to this evaluation: {reasons}. Pass "
            "--refresh-features to re-extract them (or delete the folder)")

    def _valid(self, path: Path) -> bool:
        if not path.is_file():
            return False
        try:
            with safe_open(str(path), "pt") as f:
                md = f.metadata() or {}
        except Exception:  # noqa: BLE001 - a truncated or foreign file is simply re-extracted
            return False
        return md.get("weights") == self.weights and md.get("settings") == json.dumps(
            self.settings, sort_keys=True)

    def extract(self, make_family: Callable[[], Family], specs: Sequence[Hashable], dataset,
                split: str, transform: Callable[[torch.Tensor], torch.Tensor],
                batch_size: int = 256, num_workers: int = 4, max_images_held: int | None = None,
                device: torch.device | str = "cpu", log: Log | None = None
                ) -> dict[Hashable, ShardedFeatures]:
        """Features of every member of ``specs`` on ``dataset``, from the cache or extracted.

        ``make_family()`` builds the callable ``x -> {spec: (B, C)}`` only if some shard is
        missing (so a fully cached evaluation runs no model and recalibrates nothing). Missing
        shards of this rank are extracted in one pass over their images for all members."""
        specs = list(dict.fromkeys(specs))
        self.settings = {**self._settings, "transform": describe_transform(transform)}
        n = len(dataset)
        if n == 0:
            raise ValueError(f"split {split!r} has no images to extract features from")
        num_shards = -(-n // self.shard_size)
        rank, world = self.rank, self.world
        folders = {spec: self.member_dir(split, spec) for spec in specs}
        metas = {spec: self._meta(split, spec, dataset) for spec in specs}
        for spec in specs:
            self._check(folders[spec], metas[spec])
        self._barrier()  # a refresh deleted the folder on rank 0 before anyone writes
        if self.rank == 0:
            for spec in specs:
                folders[spec].mkdir(parents=True, exist_ok=True)
                atomic_write_text(folders[spec] / "meta.json", json.dumps(metas[spec], indent=1))
        self._barrier()
        todo = [s for s in range(rank, num_shards, world)
                if not all(self._valid(folders[spec] / _shard_name(s)) for spec in specs)]
        if todo:
            self._extract_shards(make_family(), specs, dataset, split, todo, folders, metas,
                                 transform, batch_size, num_workers, max_images_held,
                                 torch.device(device), log)
        self._barrier()
        return {spec: self._open(folders[spec], num_shards) for spec in specs}

    def _extract_shards(self, family: Family, specs: list, dataset, split: str,
                        todo: list[int], folders: dict, metas: dict, transform, batch_size: int,
                        num_workers: int, max_images_held: int | None, device: torch.device,
                        log: Log | None) -> None:
        """One pass over the images of the shards ``todo`` (one set of DataLoader workers, no
        batch across two shards); each shard is written as soon as its images are embedded."""
        n, start_time, done = len(dataset), time.perf_counter(), 0
        ranges = [(s * self.shard_size, min(n, (s + 1) * self.shard_size)) for s in todo]
        index = torch.cat([torch.arange(lo, hi) for lo, hi in ranges])
        ends = list(itertools.accumulate(hi - lo for lo, hi in ranges))
        batches = ordered_batches(dataset, index, batch_size, num_workers, max_images_held,
                                  breaks=ends)
        total, shard = int(index.numel()), 0
        parts: dict[Hashable, list[torch.Tensor]] = {spec: [] for spec in specs}
        labels: list[torch.Tensor] = []
        for x, y in batches:
            with torch.no_grad():
                out = family(transform(x.to(device, non_blocking=True)))
            for spec in specs:
                parts[spec].append(out[spec].float().cpu())
            labels.append(torch.as_tensor(y, dtype=torch.long))
            done += int(x.shape[0])
            if done < ends[shard]:
                continue
            self._write_shard(todo[shard], ranges[shard], parts, torch.cat(labels), specs,
                              folders, metas, split)
            parts, labels = {spec: [] for spec in specs}, []
            shard += 1
            if log is not None:
                elapsed = time.perf_counter() - start_time
                rate = done / max(elapsed, 1e-9)
                log(f"features {split}: shard {todo[shard - 1] + 1}/{-(-n // self.shard_size)} "
                    f"({done}/{total} images of this process, {rate:.0f} img/s, ETA "
                    f"{(total - done) / max(rate, 1e-9):.0f} s)")

    def _write_shard(self, s: int, bounds: tuple[int, int], parts: dict, labels: torch.Tensor,
                     specs: list, folders: dict, metas: dict, split: str) -> None:
        lo, hi = bounds
        for spec in specs:
            md = {"member": json.dumps(metas[spec]["member"]), "weights": self.weights,
                  "settings": json.dumps(self.settings, sort_keys=True),
                  "data": metas[spec]["data"], "split": split, "shard": str(s), "start": str(lo)}
            path = folders[spec] / _shard_name(s)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            save_file({"features": torch.cat(parts[spec]).contiguous(), "labels": labels,
                       "index": torch.arange(lo, hi)}, str(tmp), metadata=md)
            tmp.replace(path)

    def _open(self, folder: Path, num_shards: int) -> ShardedFeatures:
        paths = [folder / _shard_name(s) for s in range(num_shards)]
        missing = [p for p in paths if not self._valid(p)]
        if missing:
            raise FeatureCacheError(
                f"feature shard {missing[0]} is missing after extraction ({len(missing)} of "
                f"{num_shards}); with several processes the run directory must be on a "
                "filesystem every rank sees")
        counts, labels, dim = [], [], 0
        for p in paths:
            with safe_open(str(p), "pt") as f:
                y = f.get_tensor("labels")
                dim = f.get_slice("features").get_shape()[1]
            counts.append(int(y.numel()))
            labels.append(y)
        return ShardedFeatures(paths, counts, int(dim), torch.cat(labels))
