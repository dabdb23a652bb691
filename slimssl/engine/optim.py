"""Optimizers: SGD and LARS, with biases and normalisation parameters kept out of weight decay.

LARS (You, Gitman, Ginsburg 2017, "Large Batch Training of Convolutional Networks") in the variant
used by MoCo v3 (Chen, Xie, He 2021) and BYOL (Grill et al. 2020): for each weight tensor ``w``
with gradient ``g``

    u     = g + wd * w
    trust = eta * ||w|| / ||u||          (1 when ||w|| == 0 or ||u|| == 0)
    u     = u * trust
    buf   = mu * buf + u
    w     = w - lr * buf

with trust coefficient ``eta = 0.001``. Parameters flagged ``exclude`` (biases and BN/LN affine
parameters) skip both the weight decay and the trust ratio, and get plain SGD-with-momentum.

Why exclude 1-D parameters: MoCo v3 and BYOL exclude biases and normalisation parameters from
LARS adaptation and weight decay; decaying BN scales toward zero shrinks the effective width of
the network, and a trust ratio on a bias vector (whose norm can be ~0) gives erratic steps. We
apply the same split to SGD for consistency (no-decay group), which is the common practice.

Fixed-rate parameters (``fixed_lr_params``): SimSiam (Chen & He, CVPR 2021, Sec. 4.2 and
Table 1c: 68.1% with a constant predictor lr vs 67.7% decayed; its released pre-training command
passes ``--fix-pred-lr``) keeps the predictor at the base rate for the whole run. Those
parameters get their own groups flagged ``fixed_lr=True`` whose ``lr`` is the ``lr`` given here
(pass the scaled base rate); :func:`slimssl.schedule.set_lr` leaves them alone, so they
skip warm-up and cosine alike.
"""

from __future__ import annotations

from typing import Iterable, Optional, Union

import torch
from torch import nn

__all__ = ["LARS", "split_decay_params", "build_optimizer"]


class LARS(torch.optim.Optimizer):
    """Layer-wise adaptive rate scaling on top of SGD with momentum (see module docstring).

    Param-group options: ``lr``, ``weight_decay``, ``momentum``, ``trust_coefficient`` and
    ``exclude``: ``True`` -> no weight decay, no trust ratio; ``False`` -> always adapted;
    ``None`` (default) -> excluded iff the tensor is 1-D or scalar (bias / norm parameter).
    """

    def __init__(
        self,
        params,
        lr: float = 0.0,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        trust_coefficient: float = 0.001,
        exclude: Optional[bool] = None,
    ) -> None:
        if lr < 0 or weight_decay < 0 or not (0.0 <= momentum < 1.0) or trust_coefficient <= 0:
            raise ValueError("invalid LARS hyper-parameters")
        defaults = dict(
            lr=lr,
            weight_decay=weight_decay,
            momentum=momentum,
            trust_coefficient=trust_coefficient,
            exclude=exclude,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr = group["lr"]
            wd = group["weight_decay"]
            mu = group["momentum"]
            eta = group["trust_coefficient"]
            exclude = group["exclude"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                update = p.grad
                skip = exclude if exclude is not None else p.ndim <= 1
                if not skip:
                    if wd != 0:
                        update = update.add(p, alpha=wd)
                    w_norm = torch.linalg.vector_norm(p)
                    u_norm = torch.linalg.vector_norm(update)
                    ratio = eta * w_norm / u_norm
                    # keep the step well-defined for zero weights (fresh init) or zero updates
                    trust = torch.where((w_norm > 0) & (u_norm > 0), ratio, torch.ones_like(ratio))
                    update = update * trust
                state = self.state[p]
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = torch.zeros_like(p)
                buf.mul_(mu).add_(update)
                p.add_(buf, alpha=-lr)
        return loss


def split_decay_params(
    params_or_model: Union[nn.Module, Iterable[torch.Tensor]],
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Split trainable parameters into ``(decay, no_decay)``: tensors with ``ndim <= 1`` (biases,
    BN/LN affine parameters) go to ``no_decay``. Frozen parameters are dropped; duplicates
    (shared tensors) appear once."""
    if isinstance(params_or_model, nn.Module):
        params = list(params_or_model.parameters())
    else:
        params = list(params_or_model)
    seen: set[int] = set()
    decay, no_decay = [], []
    for p in params:
        if not isinstance(p, torch.Tensor):
            raise TypeError("build_optimizer expects a module or an iterable of tensors")
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (no_decay if p.ndim <= 1 else decay).append(p)
    return decay, no_decay


def build_optimizer(
    params_or_model: Union[nn.Module, Iterable[torch.Tensor]],
    name: str,
    lr: float,
    weight_decay: float,
    momentum: float = 0.9,
    trust_coefficient: float = 0.001,
    fixed_lr_params: Iterable[torch.Tensor] = (),
    decay_norm_bias: bool = False,
) -> torch.optim.Optimizer:
    """SGD or LARS with two groups: weights (decay, LARS-adapted) and 1-D parameters (no decay,
    not adapted), each split once more when ``fixed_lr_params`` is given: those parameters
    (a subset of ``params_or_model``'s) go to groups flagged ``fixed_lr=True`` that keep ``lr``
    for the whole run (SimSiam's predictor). For the other groups ``lr`` is only the initial
    value; the loop sets it every step (:func:`slimssl.schedule.set_lr`).

    ``decay_norm_bias=True`` also decays the 1-D parameters (they stay unadapted under LARS),
    as MoCo v2's code does (``SGD(model.parameters(), weight_decay=...)``); the config's
    ``optim.decay_norm_bias`` (auto: on for SGD, off for LARS) chooses."""
    if name not in ("sgd", "lars"):
        raise ValueError(f"unknown optimizer {name!r} (expected 'sgd' or 'lars')")
    decay, no_decay = split_decay_params(params_or_model)
    fixed = {id(p) for p in fixed_lr_params}
    unknown = fixed - {id(p) for p in decay + no_decay}
    if unknown:
        raise ValueError(f"{len(unknown)} fixed-lr parameter(s) are not trainable parameters of "
                         "the optimised model; pass a subset of its parameters")
    lars = name == "lars"
    groups = []
    wd_1d = weight_decay if decay_norm_bias else 0.0
    for params, wd, adapted in ((decay, weight_decay, True), (no_decay, wd_1d, False)):
        for is_fixed in (False, True):
            chosen = [p for p in params if (id(p) in fixed) == is_fixed]
            if not chosen:
                continue
            group = {"params": chosen, "weight_decay": wd}
            if is_fixed:
                group.update(fixed_lr=True, lr=lr)
            if lars:
                group["exclude"] = not adapted
            groups.append(group)
    if lars:
        return LARS(groups, lr=lr, momentum=momentum, trust_coefficient=trust_coefficient)
    return torch.optim.SGD(groups, lr=lr, momentum=momentum)
