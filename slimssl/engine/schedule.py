"""The pre-training learning-rate schedule built from an ``OptimConfig``.

The schedule functions themselves (warm-up + cosine, EMA momentum, probe step decay, linear
scaling, ``set_lr``) live in :mod:`slimssl.schedule`, below every layer, so that ``eval`` and the
benchmarks use the same code without importing the engine (docs/design.md sec. 1).
"""

from __future__ import annotations

from typing import Callable

from slimssl.schedule import cosine_lr, scaled_lr

__all__ = ["build_lr_schedule"]


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
