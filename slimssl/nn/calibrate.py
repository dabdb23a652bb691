"""Exact per-width recalibration of BatchNorm statistics.

A universally slimmable network (US-Net; US3L) cannot keep running statistics for infinitely many
widths, so before a width is evaluated or exported its statistics are re-estimated: fresh
statistics, no gradient, the cumulative average over N training images (default 2,000, as US-Nets
and Once-for-All do), all-reduced across ranks under DDP. The same routine also refreshes a
switchable model's private statistics for one width.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
import torch.distributed as dist
from torch import nn

from slimssl.nn.norm import _SlimBatchNorm
from slimssl.nn.spec import SubnetSpec

Batch = torch.Tensor


def _norms(model: nn.Module) -> list[_SlimBatchNorm]:
    return [m for m in model.modules() if isinstance(m, _SlimBatchNorm)]


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
            if dist.is_available() and dist.is_initialized():
                for norm in norms:
                    for buf in norm.calibrated_buffers():
                        reduced = buf.clone()
                        dist.all_reduce(reduced)
                        buf.copy_(reduced / dist.get_world_size())
        finally:
            for norm in norms:
                norm.end_calibration()
            model.train(was_training)
    return seen
