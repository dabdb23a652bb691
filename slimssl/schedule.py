"""Learning-rate and momentum schedules as pure functions of the step: the only copy.

It sits beside :mod:`slimssl.dist` at the bottom of the imports (docs/design.md sec. 1), so
the pre-training engine, linear probes and fine-tuning (``eval``, which may not import
``engine``) and the benchmarks share one implementation. The engine's config-driven
``build_lr_schedule`` (:mod:`slimssl.engine.schedule`) is built on it.

Why pure functions: the value at step ``k`` depends only on ``k`` and the settings, so a resumed
run gets exactly the same schedule as an uninterrupted one without saving any scheduler state.

- Linear warm-up then half-cosine decay (Goyal et al. 2017 warm-up; Loshchilov & Hutter 2017
  cosine without restarts), as used by MoCo v2/v3 and BYOL pre-training. The warm-up factor is
  ``step / warmup`` (0 at step 0, reaching 1 at the first post-warm-up step), as in the MoCo v3
  authors' code (``main_moco.py``: ``lr * epoch / warmup_epochs`` with the fractional epoch
  ``epoch + i / iters_per_epoch``, set every iteration) and the SlimCLR authors' code
  (``utils/lr_scheduler.py``: ``T / slow_start_iters``). ``(step + 1) / warmup`` would instead
  reach the full rate one step early and differ from both.
- Optional step change of the base rate: SlimCLR-MoCov3 (code) raises LARS lr 1.2 -> 3.2 once the
  slow-start phase ends; the cosine keeps its position, only its amplitude changes.
- EMA-momentum schedule of BYOL (Grill et al. 2020) / MoCo v3 (``adjust_moco_momentum``):
  ``m_k = 1 - (1 - m_0) (cos(pi k / K) + 1) / 2``, rising from ``m_0`` to 1.
- Step decay for linear probes (MoCo v2 protocol: x0.1 at epochs 60 and 80 of 100).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

__all__ = [
    "BASE_BATCH",
    "scaled_lr",
    "warmup_cosine",
    "cosine_lr",
    "momentum_schedule",
    "schedule_scale",
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


def warmup_cosine(step: int, total_steps: int, warmup_steps: int = 0) -> float:
    """Multiplier in [0, 1] at ``step`` (0-based): ``step / warmup_steps`` during warm-up, then
    ``(1 + cos(pi * p)) / 2`` with ``p`` the fraction of the post-warm-up steps done (clamped to
    [0, 1], so steps past ``total_steps`` give 0)."""
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    if warmup_steps > 0 and step < warmup_steps:
        return step / warmup_steps
    p = min(max((step - warmup_steps) / max(total_steps - warmup_steps, 1), 0.0), 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * p))


def cosine_lr(
    step: int,
    total_steps: int,
    base_lr: float,
    warmup_steps: int = 0,
    min_lr: float = 0.0,
    change_step: Optional[int] = None,
    change_to: Optional[float] = None,
) -> float:
    """LR at ``step``: ``base * step / warmup`` during warm-up (0 at step 0), then
    ``min + (base - min) * (1 + cos(pi * p)) / 2`` (:func:`warmup_cosine`).

    From ``change_step`` on, ``base`` is replaced by ``change_to`` (the cosine position ``p`` is
    unchanged). Steps past ``total_steps`` return ``min_lr``.
    """
    base = base_lr
    if change_step is not None and change_to is not None and step >= change_step:
        base = change_to
    factor = warmup_cosine(step, total_steps, warmup_steps)
    if warmup_steps > 0 and step < warmup_steps:
        return base * factor
    return min_lr + (base - min_lr) * factor


def momentum_schedule(step: int, total_steps: int, base: float, kind: str = "constant") -> float:
    """EMA momentum at ``step``: ``base`` (``'constant'``) or BYOL's cosine from ``base`` (step 0)
    to 1 (step ``total_steps``)."""
    if kind == "constant":
        return base
    if kind == "cosine":
        return 1.0 - (1.0 - base) * warmup_cosine(step, total_steps)
    raise ValueError(f"unknown momentum schedule {kind!r} (expected 'constant' or 'cosine')")


def schedule_scale(schedule: str, step: int, total_steps: int, epochs: int,
                   milestones: Sequence[float] = (), gamma: float = 0.1) -> float:
    """Multiplier of a probe's base learning rate at ``step`` of ``total_steps`` spread over
    ``epochs``: ``"step"`` decays by ``gamma`` at each milestone epoch (MoCo v2 probes: x0.1 at
    60 and 80 of 100), ``"cosine"`` is :func:`warmup_cosine` without warm-up."""
    if schedule == "step":
        epoch = min(max(step / max(total_steps, 1), 0.0), 1.0) * epochs
        return gamma ** sum(1 for m in milestones if epoch >= m)
    if schedule == "cosine":
        return warmup_cosine(step, max(total_steps, 1))
    raise ValueError(f"unknown schedule {schedule!r} (expected 'step' or 'cosine')")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every param group's lr to ``lr * group.get('lr_scale', 1.0)`` (a group may ask for a
    fixed fraction of the schedule, e.g. a classifier with its own rate). Groups flagged
    ``fixed_lr=True`` keep their lr (SimSiam's predictor, see :mod:`slimssl.engine.optim`)."""
    for g in optimizer.param_groups:
        if not g.get("fixed_lr", False):
            g["lr"] = lr * g.get("lr_scale", 1.0)
