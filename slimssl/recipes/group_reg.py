"""US3L group regularization (Cao, Sun, Zhou, CVPR 2023; slides "Group Regularization").

Why: in US-Net training the leading channels are used by every sampled width, so "the majority
of the weights will be concentrated on the earlier channels". US3L therefore replaces plain
weight decay by a group-wise L2 penalty that gives "more degrees of freedom (**smaller
coefficients**) to the later channels" (slides, verbatim). The **earlier** channels, shared by
every sub-network, get the **largest** coefficient; the later channels, used only by wide
sub-networks, are penalised less. (This is the opposite of "penalise the later channels more";
we follow the slides and the authors' code, which agree.)

Penalty, with the output channels (dim 0) of each weight split into ``G`` contiguous groups
``i = 0 .. G-1`` (group 0 = leading channels)::

    R = sum_W sum_i lambda_i * ||W[group_i]||^2,      lambda_i = lam * (1 - alpha_t * i)

Authors' code (US3L repository): ``G = 8``, ``lam = 5e-5`` ("set it to 1/2 weight decay":
the gradient of ``lam ||w||^2`` is ``2 lam w``, i.e. weight decay ``1e-4``), ``alpha = 0.05``
(``lambda_7 = 0.65 lam``), linear decay; ``alpha_t`` is 0 during warm-up (ordinary L2), then
ramps linearly to ``alpha`` at half the training epochs (:func:`group_reg_alpha`). Grouping
applies to conv weights (4-D) and norm affine parameters (1-D); linear (fc) weights get plain
``lam ||W||^2`` (pass them as ``plain_weights``); the momentum target is not regularised.
Group size is ``C // G``, the last group taking the remainder.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

__all__ = [
    "group_reg_alpha",
    "group_coefficients",
    "channel_group_index",
    "group_regularization",
]


def _widen(w: Tensor) -> Tensor:
    """Accumulate in at least float32 (bf16/fp16 weights under AMP)."""
    return w.to(torch.promote_types(w.dtype, torch.float32))


def group_reg_alpha(
    epoch: float,
    alpha: float = 0.05,
    warmup_epochs: float = 0.0,
    ramp_end_epoch: float | None = None,
) -> float:
    """The current decay slope ``alpha_t`` of the group coefficients.

    ``0`` for ``epoch < warmup_epochs`` (uniform coefficients = plain L2), then linear from 0 at
    ``warmup_epochs`` to ``alpha`` at ``ramp_end_epoch``, constant ``alpha`` afterwards. The
    authors' code uses ``ramp_end_epoch = total_epochs // 2``. ``ramp_end_epoch=None`` or
    ``<= warmup_epochs`` switches ``alpha`` on at once after warm-up.

    Example:
        >>> group_reg_alpha(50, alpha=0.05, warmup_epochs=0, ramp_end_epoch=100)
        0.025
    """
    if epoch < warmup_epochs:
        return 0.0
    if ramp_end_epoch is None or ramp_end_epoch <= warmup_epochs or epoch >= ramp_end_epoch:
        return float(alpha)
    return float(alpha) * (epoch - warmup_epochs) / (ramp_end_epoch - warmup_epochs)


def group_coefficients(num_groups: int = 8, lam: float = 5e-5, alpha: float = 0.05) -> list[float]:
    """``[lam * (1 - alpha * i) for i in range(num_groups)]`` (group 0 = leading channels).

    Raises if a coefficient would be negative (``alpha * (num_groups - 1) > 1``).

    Example:
        >>> [round(c / 5e-5, 2) for c in group_coefficients(8, 5e-5, 0.05)]
        [1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65]
    """
    if num_groups < 1:
        raise ValueError(f"num_groups must be >= 1, got {num_groups}")
    coeffs = [lam * (1.0 - alpha * i) for i in range(num_groups)]
    if min(coeffs) < 0 <= lam:
        raise ValueError(f"alpha={alpha} makes the last of {num_groups} coefficients negative")
    return coeffs


def channel_group_index(num_channels: int, num_groups: int = 8) -> Tensor:
    """Group index of every channel: ``min(c // max(C // G, 1), G - 1)``, shape ``(C,)``.

    ``C >= G``: groups of ``C // G`` channels, the last one absorbing the remainder (authors'
    code). ``C < G``: channel ``c`` is its own group ``c``.

    Example:
        >>> channel_group_index(10, 4).tolist()
        [0, 0, 1, 1, 2, 2, 3, 3, 3, 3]
    """
    if num_channels < 1 or num_groups < 1:
        raise ValueError(f"need positive sizes, got C={num_channels}, G={num_groups}")
    size = max(num_channels // num_groups, 1)
    idx = torch.arange(num_channels) // size
    return idx.clamp_(max=num_groups - 1)


def group_regularization(
    weights: Iterable[Tensor],
    num_groups: int = 8,
    lam: float = 5e-5,
    alpha: float = 0.05,
    plain_weights: Iterable[Tensor] = (),
) -> Tensor:
    """US3L group L2 penalty ``sum_W sum_i lam (1 - alpha i) ||W[group_i]||^2``.

    Args:
        weights: tensors grouped along dim 0 (output channels): conv weights, norm
            gamma/beta. Full-size weights of the slimmable model (the penalty is on the shared
            parameters, whatever width is sampled).
        num_groups: ``G`` (US3L: 8).
        lam: base coefficient (US3L: 5e-5 = half of weight decay 1e-4).
        alpha: the **current** slope ``alpha_t`` (from :func:`group_reg_alpha`; 0 = plain L2).
        plain_weights: tensors penalised uniformly by ``lam ||W||^2`` (linear layers in US3L).

    Returns:
        a 0-dim tensor (float32 or wider), differentiable w.r.t. the weights; ``tensor(0.)``
        when nothing is given. Add it to the loss and set the optimizer's weight decay to 0
        for these parameters.

    Example:
        >>> w = torch.ones(8, 3)
        >>> round(float(group_regularization([w], num_groups=8, lam=1.0, alpha=0.05)), 4)
        19.8
    """
    coeffs = group_coefficients(num_groups, lam, alpha)
    total: Tensor | None = None
    for w in weights:
        if w.dim() == 0:
            raise ValueError("cannot group a 0-dim tensor")
        c = w.shape[0]
        per_channel = _widen(w).reshape(c, -1).pow(2).sum(dim=1)  # (C,)
        idx = channel_group_index(c, num_groups).to(w.device)
        coeff = torch.tensor(coeffs, dtype=per_channel.dtype, device=w.device)[idx]
        term = (coeff * per_channel).sum()
        total = term if total is None else total + term
    for w in plain_weights:
        term = lam * _widen(w).pow(2).sum()
        total = term if total is None else total + term
    if total is None:
        return torch.zeros(())
    return total
