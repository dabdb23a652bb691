"""Exact per-width recalibration of BatchNorm statistics.

A universally slimmable network (US-Net; US3L) cannot keep running statistics for infinitely many
widths, so before a width is evaluated or exported its statistics are re-estimated: fresh
statistics, no gradient, the cumulative average over N training images (default 2,000, as US-Nets
and Once-for-All do), all-reduced across ranks under DDP. The same routine also refreshes a
switchable model's private statistics for one width.

Under DDP every rank's BatchNorms also track their own running statistics during training (no
SyncBN: the loss uses batch statistics). :func:`average_running_stats_` replaces them by their
mean over ranks (every width's private statistics of a switchable BN, a universal BN's shared
ones, any plain BatchNorm; the mean of the per-rank variances, as recalibration and timm's
``distribute_bn(reduce=True)`` do); the trainer calls it before a checkpoint is saved and before
the end-of-epoch monitors evaluate, so what is saved, exported and evaluated is every rank's
data, not rank 0's alone.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn

from slimssl.dist import all_reduce_mean_tensors_, get_world_size, is_dist
from slimssl.nn.norm import _SlimBatchNorm
from slimssl.nn.spec import SubnetSpec

Batch = torch.Tensor


def _norms(model: nn.Module) -> list[_SlimBatchNorm]:
    return [m for m in model.modules() if isinstance(m, _SlimBatchNorm)]


def running_stats(model: nn.Module) -> list[torch.Tensor]:
    """Every ``running_mean`` / ``running_var`` buffer of ``model``: each switchable width's
    private BatchNorm, each universal BN, any plain BatchNorm (online and target networks)."""
    return [buf for module in model.modules() for name in ("running_mean", "running_var")
            if (buf := module._buffers.get(name)) is not None]


def average_running_stats_(model: nn.Module) -> int:
    """Replace every BatchNorm running statistic of ``model`` by its mean over ranks (in place,
    one all-reduce; every rank must call it). Returns the number of tensors averaged; a single
    process (or world size 1) changes nothing and returns 0."""
    if not (is_dist() and get_world_size() > 1):
        return 0
    stats = running_stats(model)
    all_reduce_mean_tensors_(stats)
    return len(stats)


@torch.no_grad()
def recalibrate_bn(model: nn.Module, spec: SubnetSpec | float, batches: Iterable[Batch],
                   num_images: int = 2000,
                   forward: Callable[[nn.Module, Batch], object] | None = None) -> int:
    """Re-estimate the BN statistics of ``model`` at ``spec`` from ``batches``.

    Args:
        model: a :class:`~slimssl.nn.switch.SlimmableModel`.
        spec: the member whose statistics to compute.
        batches: iterable of input tensors (already augmented/normalised as in evaluation).
        num_images: stop after this many images (the last batch is used whole).
        forward: how to run a batch (default ``model(batch)``).

    Returns the number of images used. Gradients are never computed; parameters are untouched;
    the model's train/eval mode is restored.
    """
    norms = _norms(model)
    was_training = model.training
    seen = 0
    with model.subnet(spec):
        model.train()
        for norm in norms:
            norm.begin_calibration()
        try:
            for batch in batches:
                if forward is None:
                    model(batch)
                else:
                    forward(model, batch)
                seen += int(batch.shape[0])
                if seen >= num_images:
                    break
            if seen == 0:
                raise ValueError("recalibrate_bn got no batches: pass training images")
            all_reduce_mean_tensors_([buf for norm in norms for buf in norm.calibrated_buffers()])
        finally:
            for norm in norms:
                norm.end_calibration()
            model.train(was_training)
    return seen
