"""Learning-rate and momentum schedules as pure functions of the step.

Why pure functions: the value at step ``k`` depends only on ``k`` and the config, so a resumed run
gets exactly the same schedule as an uninterrupted one without saving any scheduler state.

- Linear warm-up then half-cosine decay (Goyal et al. 2017 warm-up; Loshchilov & Hutter 2017
  cosine without restarts), as used by MoCo v2/v3 and BYOL pre-training.
- Optional step change of the base rate: SlimCLR-MoCov3 (code) raises LARS lr 1.2 -> 3.2 once the
  slow-start phase ends; the cosine keeps its position, only its amplitude changes.
- EMA-momentum schedule of BYOL (Grill et al. 2020) / MoCo v3 (Chen, Xie, He 2021):
  ``m_k = 1 - (1 - m_0) (cos(pi k / K) + 1) / 2``, rising from ``m_0`` to 1.
- Step decay for linear probes (MoCo v2 protocol: x0.1 at epochs 60 and 80 of 100).
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import torch

__all__ = [
    "BASE_BATCH",
    "scaled_lr",
    "cosine_lr",
    "momentum_schedule",
    "step_decay_lr",
    "build_lr_schedule",
    "set_lr",
]

BASE_BATCH = 256
"""Reference batch of the linear scaling rule ``lr = base_lr * batch / 256`` (Goyal et al. 2017)."""


def scaled_lr(lr: float, batch_size: int, scaling: str = "linear", base_batch: int = BASE_BATCH) -> float:
    """Apply the linear scaling rule (``scaling='linear'``) or return ``lr`` as is (``'none'``).
    ``batch_size`` is the global batch (all ranks, all accumulation steps)."""
    if scaling == "linear":
        return lr * batch_size / base_batch
    if scaling == "none":
        return lr
    raise ValueError(f"unknown lr scaling {scaling!r} (expected 'linear' or 'none')")


def cosine_lr(
    step: int,
    total_steps: int,
    base_lr: float,
    warmup_steps: int = 0,
    min_lr: float = 0.0,
    change_step: Optional[int] = None,
    change_to: Optional[float] = None,
) -> float:
    """LR at ``step`` (0-based): ``base * step / warmup`` during warm-up (0 at step 0), then
    ``min + (base - min) * (1 + cos(pi * p)) / 2`` with ``p`` the fraction of post-warm-up steps done.

    From ``change_step`` on, ``base`` is replaced by ``change_to`` (the cosine position ``p`` is
    unchanged). Steps past ``total_steps`` return ``min_lr``.
    """
    if total_steps <= 0:
        raise ValueError("total_steps must be positive")
    base = base_lr
    if change_step is not None and change_to is not None and step >= change_step:
        base = change_to
    if warmup_steps > 0 and step < warmup_steps:
        return base * step / warmup_steps
    decay_steps = max(total_steps - warmup_steps, 1)
    p = min(max((step - warmup_steps) / decay_steps, 0.0), 1.0)
    return min_lr + (base - min_lr) * 0.5 * (1.0 + math.cos(math.pi * p))


def momentum_schedule(step: int, total_steps: int, base: float, kind: str = "constant") -> float:
    """EMA momentum at ``step``: ``base`` (``'constant'``) or BYOL's cosine from ``base`` (step 0)
    to 1 (step ``total_steps``)."""
    if kind == "constant":
        return base
    if kind == "cosine":
        if total_steps <= 0:
            raise ValueError("total_steps must be positive")
        p = min(max(step / total_steps, 0.0), 1.0)
        return 1.0 - (1.0 - base) * (math.cos(math.pi * p) + 1.0) / 2.0
    raise ValueError(f"unknown momentum schedule {kind!r} (expected 'constant' or 'cosine')")


def step_decay_lr(
    epoch: float, base_lr: float, milestones: Sequence[float] = (60, 80), gamma: float = 0.1
) -> float:
    """``base_lr * gamma ** (number of milestones <= epoch)`` (MoCo v2 linear-probe schedule)."""
    return base_lr * gamma ** sum(1 for m in milestones if epoch >= m)


def build_lr_schedule(
    optim_cfg,
    global_batch: int,
    steps_per_epoch: int,
    epochs: int,
) -> Callable[[int], float]:
    """Turn an ``OptimConfig`` into ``step -> lr``.

    Epoch-valued settings (``warmup_epochs``, ``lr_change_epoch``) become step counts with
    ``steps_per_epoch`` (optimizer steps, i.e. after gradient accumulation). ``lr`` and
    ``lr_change_to`` are both scaled by ``lr_scaling``; ``min_lr`` is absolute.
    """
    total = max(int(epochs * steps_per_epoch), 1)
    base = scaled_lr(optim_cfg.lr, global_batch, optim_cfg.lr_scaling)
    warmup = int(round(optim_cfg.warmup_epochs * steps_per_epoch))
    change_step = change_to = None
    if optim_cfg.lr_change_epoch is not None and optim_cfg.lr_change_to is not None:
        change_step = int(round(optim_cfg.lr_change_epoch * steps_per_epoch))
        change_to = scaled_lr(optim_cfg.lr_change_to, global_batch, optim_cfg.lr_scaling)
    min_lr = optim_cfg.min_lr

    def lr_at(step: int) -> float:
        return cosine_lr(step, total, base, warmup, min_lr, change_step, change_to)

    return lr_at


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every param group's lr to ``lr * group.get('lr_scale', 1.0)`` (a group may ask for a
    fixed fraction of the schedule, e.g. a classifier with its own rate)."""
    for g in optimizer.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)
