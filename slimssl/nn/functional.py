"""Stateless functions on logits shared by the training recipes and by evaluation.

They live at the bottom of the import direction (docs/design.md sec. 1) so that ``recipes`` (online
distillation during pre-training) and ``eval`` (probe distillation), which may not import each
other, use the same code.
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor

__all__ = ["SoftTargetKind", "soft_target_loss"]

SoftTargetKind = Literal["ce", "kl"]


def soft_target_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 1.0,
                     kind: SoftTargetKind = "ce", scale_by_tau_sq: bool = True) -> Tensor:
    """Soft-label distillation (Hinton, Vinyals, Dean 2015) from a DETACHED teacher.

    With ``p_t = softmax(t / T)`` and ``log p_s = log_softmax(s / T)`` over dim 1, averaged over
    the batch (dim 0):

    * ``"ce"``: ``-sum_j p_t[j] log p_s[j]`` -- SlimCLR Eq. 4-5 (Zhao et al., ICCV 2023);
    * ``"kl"``: ``sum_j p_t[j] (log p_t[j] - log p_s[j])`` -- the same minus the teacher's
      entropy, so 0 when the two agree; its gradient w.r.t. the student is identical.

    ``scale_by_tau_sq`` multiplies by ``T**2`` (Hinton et al.'s gradient-scale correction; the
    SlimCLR authors' code does it, so SlimCLR's reported numbers use it). The gradient w.r.t. the
    student logits is ``(softmax(s/T) - p_t) / T / B`` (times ``T**2`` if scaled). The teacher is
    cast to the student's dtype.

    Example:
        >>> import torch
        >>> soft_target_loss(torch.zeros(1, 2), torch.zeros(1, 2), kind="kl")
        tensor(0.)
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student {tuple(student_logits.shape)} and teacher "
                         f"{tuple(teacher_logits.shape)} shapes differ")
    if student_logits.dim() != 2:
        raise ValueError(f"expected 2-D (batch, classes) logits, got {tuple(student_logits.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if kind not in ("ce", "kl"):
        raise ValueError(f"unknown soft-target kind {kind!r}; expected 'ce' or 'kl'")
    t = temperature
    log_p_t = F.log_softmax(teacher_logits.detach().to(student_logits.dtype) / t, dim=1)
    log_p_s = F.log_softmax(student_logits / t, dim=1)
    per_class = log_p_t.exp() * ((log_p_t - log_p_s) if kind == "kl" else -log_p_s)
    loss = per_class.sum(dim=1).mean()
    return loss * (t * t) if scale_by_tau_sq else loss
