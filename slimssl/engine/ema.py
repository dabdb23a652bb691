"""Exponential moving average of an online network into a target (momentum) network.

``t <- m t + (1 - m) o`` over parameters, as in MoCo (He et al. 2020; MoCo v3: Chen, Xie, He 2021)
and BYOL (Grill et al. 2020). Buffers (BN running statistics, counters) are copied from the
online network rather than averaged: the target's statistics then match the weights it is run
with in the same way MoCo v2's key encoder does (code). A target with momentum BN (DSPNet,
Momentum^2 Teacher) keeps its own statistics: ``copy_buffers=False``.

The update uses the multi-tensor ``torch._foreach_*`` kernels, one launch for all parameters of a
(device, dtype) instead of one per tensor; this matters on GPU where an EMA of a ResNet-50 is
~160 small tensors every step.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ema_update_"]


def _pairs(target: nn.Module, online: nn.Module, what: str):
    t_items = list(getattr(target, f"named_{what}")())
    o_items = list(getattr(online, f"named_{what}")())
    if len(t_items) != len(o_items):
        raise ValueError(
            f"EMA: target has {len(t_items)} {what}, online has {len(o_items)}; "
            "the target must be a copy of (the shared part of) the online network"
        )
    for (tn, t), (on, o) in zip(t_items, o_items):
        if t.shape != o.shape:
            raise ValueError(f"EMA: {what} shape mismatch {tn} {tuple(t.shape)} vs {on} {tuple(o.shape)}")
    return [t for _, t in t_items], [o for _, o in o_items]


@torch.no_grad()
def ema_update_(target: nn.Module, online: nn.Module, m: float, copy_buffers: bool = True) -> None:
    """In place: target params ``= m * target + (1 - m) * online``; target buffers ``= online``
    unless ``copy_buffers`` is false (a target with its own momentum-BN statistics).

    Modules are matched by registration order (``named_parameters``), so the target must be a
    structural copy of the online module (e.g. ``copy.deepcopy``).
    """
    t_params, o_params = _pairs(target, online, "parameters")
    if t_params:
        o_params = [o.detach().to(dtype=t.dtype, device=t.device) for t, o in zip(t_params, o_params)]
        torch._foreach_mul_(t_params, m)
        torch._foreach_add_(t_params, o_params, alpha=1.0 - m)
    if not copy_buffers:
        return
    t_bufs, o_bufs = _pairs(target, online, "buffers")
    for t, o in zip(t_bufs, o_bufs):
        t.copy_(o)
