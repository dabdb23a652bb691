"""Evaluate every member of a slimmable family with the same protocol, one row per member.

Universal (US-Net style) models get their BN statistics recalibrated on training images before
each member is evaluated (US3L; DESIGN.md sec. 2), and so do depth-elastic families (DSPNet):
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

from slimssl.data.views import eval_transform
from slimssl.eval.bn_cache import BNStatsCache, weights_fingerprint
from slimssl.eval.features import extract_features
from slimssl.eval.knn import knn_accuracy
from slimssl.nn.calibrate import recalibrate_bn
from slimssl.nn.spec import SubnetSpec
from slimssl.nn.switch import SlimmableModel


def calibration_batches(images: torch.Tensor, transform, num_images: int, batch_size: int,
                        device: torch.device, seed: int = 0):
    """Batches of a fixed, seeded subset of training images for BN recalibration."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(images.shape[0], generator=g)[:num_images]
    for start in range(0, idx.numel(), batch_size):
        yield transform(images[idx[start:start + batch_size]].to(device))


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


def recalibrate_if_universal(model: SlimmableModel, spec: SubnetSpec, images: torch.Tensor,
                             transform, num_images: int = 2000, batch_size: int = 256,
                             cache: BNStatsCache | None = None) -> None:
    """Give ``model`` exact BN statistics at ``spec`` when it needs them
    (:func:`needs_recalibration`): from ``cache`` if it holds them, else recalibrated (and
    stored in ``cache``)."""
    if not needs_recalibration(model):
        return
    if cache is not None and cache.load(model, spec):
        return
    device = next(model.parameters()).device
    recalibrate_bn(model, spec, calibration_batches(images, transform, num_images, batch_size,
                                                    device), num_images)
    if cache is not None:
        cache.save(model, spec)


def knn_family(model: SlimmableModel, specs: Sequence[SubnetSpec], train_set, test_set,
               ks: Sequence[int] = (200, 20), t: float = 0.1, batch_size: int = 256,
               recalib_images: int = 2000, cache: BNStatsCache | None = None) -> list[dict]:
    """Weighted kNN top-1 (%) of each member: bank = ``train_set``, queries = ``test_set``.

    Both sets are in-memory datasets with ``images`` (uint8), ``labels``, ``mean``, ``std``.
    Returns rows ``{"subnet", "width", "depth", "knn_top1_k{k}"..., "knn_seconds"}``.
    """
    if train_set.labels is None or test_set.labels is None:
        raise ValueError("kNN evaluation needs labels for the bank and the queries")
    transform = eval_transform(train_set.mean, train_set.std)
    device = next(model.parameters()).device
    num_classes = int(max(train_set.labels.max(), test_set.labels.max())) + 1
    rows = []
    for spec in specs:
        start = time.perf_counter()
        recalibrate_if_universal(model, spec, train_set.images, transform, recalib_images,
                                 batch_size, cache)
        bank = extract_features(model, spec, train_set.images, transform, batch_size, device)
        query = extract_features(model, spec, test_set.images, transform, batch_size, device)
        acc = knn_accuracy(bank, train_set.labels, query, test_set.labels, num_classes, ks, t)
        row = {"subnet": spec.label, "width": spec.width,
               "depth": list(spec.depth) if spec.depth else None}
        row.update({f"knn_top1_k{k}": acc[k] for k in ks})
        row["knn_seconds"] = time.perf_counter() - start
        rows.append(row)
    return rows
