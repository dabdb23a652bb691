"""Evaluate every member of a slimmable family with the same protocol, one row per member.

Universal (US-Net style) models get their BN statistics recalibrated on training images before
each member is evaluated (US3L; docs/design.md sec. 2), and so do depth-elastic families (DSPNet):
members of one width but different depths share a switchable BN whose running statistics mix
every sampled depth, so each member's own statistics are re-estimated (Once-for-All practice).
Width-only switchable models use their own statistics. Recalibrated statistics are cached per
member in the run directory (:mod:`slimssl.eval.bn_cache`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import torch

from slimssl.data import ordered_batches
from slimssl.data.views import eval_transform
from slimssl.dist import all_reduce_sum_
from slimssl.eval.bn_cache import BNStatsCache, weights_fingerprint
from slimssl.eval.feature_store import FeatureStore
from slimssl.eval.knn import knn_correct, knn_key
from slimssl.eval.linear_eval import FrozenFamily
from slimssl.nn.calibrate import recalibrate_bn
from slimssl.nn.spec import SubnetSpec
from slimssl.nn.switch import SlimmableModel


def calibration_batches(images, transform, num_images: int, batch_size: int,
                        device: torch.device, seed: int = 0, num_workers: int = 0,
                        max_images_held: int | None = None):
    """Batches of a fixed, seeded subset of training images for BN recalibration; ``images``
    is a uint8 tensor or a dataset (in memory or streamed: only the chosen files are read)."""
    n = images.shape[0] if isinstance(images, torch.Tensor) else len(images)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(n, generator=g)[:num_images]
    if isinstance(images, torch.Tensor):
        for start in range(0, idx.numel(), batch_size):
            yield transform(images[idx[start:start + batch_size]].to(device))
        return
    for x, _ in ordered_batches(images, idx, batch_size, num_workers, max_images_held):
        yield transform(x.to(device))


def needs_recalibration(model: SlimmableModel) -> bool:
    """Universal norm, or a depth-elastic family (see the module docstring)."""
    return model.norm_mode == "universal" or bool(model.depth_choices)


def bn_cache_for(model: SlimmableModel, run_dir: str | Path, settings: dict
                 ) -> BNStatsCache | None:
    """The run's statistics cache (``<run_dir>/bn_stats``) for these weights and calibration
    ``settings`` (images, data), or ``None`` when the model needs no recalibration."""
    if not needs_recalibration(model):
        return None
    return BNStatsCache(Path(run_dir) / "bn_stats", weights_fingerprint(model, settings))


def recalibrate_if_universal(model: SlimmableModel, spec: SubnetSpec, images,
                             transform, num_images: int = 2000, batch_size: int = 256,
                             cache: BNStatsCache | None = None) -> None:
    """Give ``model`` exact BN statistics at ``spec`` when it needs them
    (:func:`needs_recalibration`): from ``cache`` if it holds them, else recalibrated on
    ``images`` (a uint8 tensor or a training dataset, see :func:`calibration_batches`) and
    stored in ``cache``."""
    if not needs_recalibration(model):
        return
    if cache is not None and cache.load(model, spec):
        return
    device = next(model.parameters()).device
    recalibrate_bn(model, spec, calibration_batches(images, transform, num_images, batch_size,
                                                    device), num_images)
    if cache is not None:
        cache.save(model, spec)


def frozen_family(model: SlimmableModel, specs: Sequence[SubnetSpec], train_set, transform,
                  recalib_images: int = 2000, batch_size: int = 256,
                  cache: BNStatsCache | None = None) -> FrozenFamily:
    """Every member of the frozen ``model`` in one callable (``x -> {spec: features}``), with
    each member's own recalibrated BN statistics when the model needs them."""
    if not needs_recalibration(model):
        return FrozenFamily(model, specs)
    n = min(recalib_images, len(train_set))

    def recalibrate(m, spec) -> None:
        recalibrate_if_universal(m, spec, train_set, transform, n, batch_size, cache)

    return FrozenFamily(model, specs, recalibrate)


def knn_family(model: SlimmableModel, specs: Sequence[SubnetSpec], train_set, test_set,
               ks: Sequence[int] = (200, 20), t: float = 0.1, batch_size: int = 256,
               recalib_images: int = 2000, cache: BNStatsCache | None = None,
               store: FeatureStore | None = None, num_workers: int = 0,
               max_images_held: int | None = None, log=None,
               votes: Sequence[str] = ("weighted",)) -> list[dict]:
    """kNN top-1 (%) of each member: bank = ``train_set``, queries = ``test_set``, for each
    protocol in ``votes`` (``weighted``, ``majority``: :mod:`slimssl.eval.knn`).

    The sets are labelled datasets, in memory or streamed from a folder. Without ``store`` the
    features are held in memory; with a :class:`FeatureStore` they are read from (or written
    to) its shards and the bank is streamed shard by shard, so memory stays bounded; under
    ``torchrun`` each rank extracts its shards and scores its share of the queries, and the
    counts are summed. Returns rows ``{"subnet", "width", "depth", knn_key(k, vote)...,
    "knn_seconds"}`` (``knn_top1_k{k}``, ``knn_top1_k{k}_majority`` for the majority vote;
    ``knn_seconds``: the shared feature extraction split evenly over the members, plus the
    member's own search).
    """
    if train_set.labels is None or test_set.labels is None:
        raise ValueError("kNN evaluation needs labels for the bank and the queries")
    transform = eval_transform(train_set.mean, train_set.std)
    device = next(model.parameters()).device
    num_classes = int(max(train_set.labels.max(), test_set.labels.max())) + 1
    specs = list(specs)
    start = time.perf_counter()

    def make_family() -> FrozenFamily:
        return frozen_family(model, specs, train_set, transform, recalib_images, batch_size, cache)

    if store is None:
        family = make_family()
        bank = family.features(train_set, transform, batch_size, num_workers, max_images_held)
        query = family.features(test_set, transform, batch_size, num_workers, max_images_held)
        banks = {s: (lambda f=bank[s]: [(f, train_set.labels)]) for s in specs}
        queries = {s: (lambda f=query[s]: [(f, test_set.labels)]) for s in specs}
    else:
        kw = dict(batch_size=batch_size, num_workers=num_workers, max_images_held=max_images_held,
                  device=device, log=log)
        bank_sh = store.extract(make_family, specs, train_set, "train", transform, **kw)
        query_sh = store.extract(make_family, specs, test_set, "test", transform, **kw)
        banks = {s: bank_sh[s].shards for s in specs}
        rank, world = store.rank, store.world
        queries = {s: (lambda q=query_sh[s]: q.shards(range(rank, len(q.paths), world)))
                   for s in specs}
    shared = (time.perf_counter() - start) / max(1, len(specs))
    rows = []
    for spec in specs:
        t0 = time.perf_counter()
        row = {"subnet": spec.label, "width": spec.width,
               "depth": list(spec.depth) if spec.depth else None}
        for vote in votes:
            correct, n = knn_correct(banks[spec], queries[spec](), num_classes, ks, t, device,
                                     vote)
            counts = torch.tensor([*(correct[k] for k in ks), n], dtype=torch.float64,
                                  device=device)
            if store is not None and store.distributed:
                all_reduce_sum_(counts)
            row.update({knn_key(k, vote): 100.0 * float(counts[i]) / max(1.0, float(counts[-1]))
                        for i, k in enumerate(ks)})
        row["knn_seconds"] = shared + time.perf_counter() - t0
        rows.append(row)
    return rows
