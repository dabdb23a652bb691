"""Per-width loss weights and the combined SlimCLR objective (SlimCLR Sec. 3.4, Eq. 6-7).

SlimCLR (Zhao, Wang, Zhu, Yang, ICCV 2023) gives the full network a larger weight so that the
majority of parameters dominate the gradient ("loss reweighting"). Table 3e compares four
schemes for widths ``[1.0, 0.75, 0.5, 0.25]``; all are available here, plus ``"uniform"``
(the unweighted sum of DSPNet, Eq. 5, and of plain S-Nets, SlimCLR Eq. 2).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from torch import Tensor

__all__ = ["WeightScheme", "loss_weights", "weighted_term"]

WeightScheme = Literal["sum_others", "max_other", "proportional", "cumulative", "uniform"]


def _check_widths(widths: Sequence[float]) -> list[float]:
    ws = [float(w) for w in widths]
    if not ws:
        raise ValueError("widths must not be empty")
    if any(w <= 0 for w in ws):
        raise ValueError(f"widths must be positive, got {ws}")
    for a, b in zip(ws, ws[1:]):
        if a == b:
            raise ValueError(f"duplicate width {a} in {ws}")
        if a < b:
            raise ValueError(f"widths must be sorted largest first, got {ws}")
    return ws


def loss_weights(widths: Sequence[float], scheme: WeightScheme = "sum_others") -> list[float]:
    """Loss weights ``lambda_i`` for widths ``w_1 > w_2 > ... > w_n`` (largest first).

    Schemes (SlimCLR Sec. 4.4 "loss reweighting", Table 3e; values for ``[1, .75, .5, .25]``):

    * ``"sum_others"`` (1), Eq. 6, **SlimCLR's default**:
      ``lambda_i = 1 + 1{i = 1} * sum_{j>=2} w_j`` -> ``[2.5, 1, 1, 1]``.
    * ``"max_other"`` (2): ``lambda_i = 1 + 1{i = 1} * max_{j>=2} w_j`` -> ``[1.75, 1, 1, 1]``.
    * ``"proportional"`` (3): ``lambda_i = n * w_i / sum_j w_j`` -> ``[1.6, 1.2, 0.8, 0.4]``.
    * ``"cumulative"`` (4): ``u_i = 1 + sum_{j>i} w_j`` (1 plus the sum of the **strictly
      smaller** widths), ``lambda_i = n * u_i / sum_j u_j`` -> ``u = [2.5, 1.75, 1.25, 1]``,
      ``lambda = [10/6.5, 7/6.5, 5/6.5, 4/6.5] = [1.538, 1.077, 0.769, 0.615]``, which rounds to
      the table's ``[1.54, 1.08, 0.77, 0.62]`` exactly. The formula printed in the paper sums
      from ``j = i`` (``1 + sum_{j>=i} w_j``), which gives ``[1.56, 1.11, 0.78, 0.56]`` and does
      **not** match the table; we follow the table (the authors' code computes the same
      ``1 + sum of the widths after i``, normalised to sum to ``n``). Note ``u_1`` equals scheme
      (1)'s ``lambda_1``.
    * ``"uniform"``: all ones (DSPNet's unweighted sum; SlimCLR Eq. 2).

    Weights are returned unrounded. Widths must be positive, strictly decreasing.
    """
    ws = _check_widths(widths)
    n = len(ws)
    if scheme == "sum_others":
        return [1.0 + sum(ws[1:])] + [1.0] * (n - 1)
    if scheme == "max_other":
        return [1.0 + (max(ws[1:]) if n > 1 else 0.0)] + [1.0] * (n - 1)
    if scheme == "proportional":
        total = sum(ws)
        return [n * w / total for w in ws]
    if scheme == "cumulative":
        u = [1.0 + sum(ws[i + 1 :]) for i in range(n)]
        total = sum(u)
        return [n * x / total for x in u]
    if scheme == "uniform":
        return [1.0] * n
    raise ValueError(
        f"unknown scheme {scheme!r}; expected one of sum_others, max_other, proportional, "
        "cumulative, uniform"
    )


def weighted_term(
    index: int, weight: float, base_loss: Tensor, distill_loss: Tensor | None
) -> Tensor:
    """One member's term of SlimCLR Eq. 7, ``L = lambda_1 L_1 + sum_{i>=2} lambda_i (L_i + L_p,i)
    / 2``; the recipe sums the terms over the members (backward per sub-network / accumulation).

    * ``index == 0`` (the full network): ``weight * L_1``; ``distill_loss`` must be ``None``.
    * ``index >= 1`` with a distillation loss: ``weight * (L_i + L_p,i) / 2``.
    * ``index >= 1`` without (``None``): ``weight * L_i``, not halved: in the authors' code the
      sub-network loss is ``lambda_i ((1 - a) L_i + a L_p,i)`` with ``a = 0.5`` when a
      distillation loss is enabled and ``a = 0`` otherwise; SlimCLR's "w/o distillation"
      ablations (Fig. 3, Table 3) are therefore ``sum_i lambda_i L_i``.

    Slow start is the caller's business: before epoch ``S`` SlimCLR trains only ``L_1`` and the
    authors' code leaves it **unweighted** (``lambda_1`` applies only once sub-networks train).
    """
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    if index == 0:
        if distill_loss is not None:
            raise ValueError("the full network (index 0) has no distillation term")
        return weight * base_loss
    if distill_loss is None:
        return weight * base_loss
    return weight * (base_loss + distill_loss) / 2.0
