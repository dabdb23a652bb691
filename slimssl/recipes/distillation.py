"""Online distillation from the full network to its sub-networks (SlimCLR Sec. 3.3).

SlimCLR (Zhao, Wang, Zhu, Yang, ICCV 2023), Eq. 4-5: each sub-network ``w_i`` (``i >= 2``) is
pulled towards the full **online** network ``w_1`` by a cross-entropy between their softened
contrastive distributions over the same candidates (positive key + negatives)::

    p_w = softmax(s_w / tau2),        s_w = [q_w . k+, q_w . queue]   (raw, NOT divided by tau1)
    L_p,w = -sum_j p_w1[j] * log p_w[j]                               (mean over the batch)

``tau2`` = 5.0 for SlimCLR-MoCov2, 1.0 for SlimCLR-MoCov3 (Sec. 4.1). The teacher logits
``s_w1`` are detached (authors' code: the full network's logits are ``.clone().detach()``-ed, so
no gradient flows from the distillation term into the full network's own path). This is the
"KD" column of SlimCLR Table 3c, applied SEED-style to contrastive logits.

Alternatives of Table 3c offered here: MSE and KL on embeddings (:func:`mse_embedding_distillation`,
:func:`kl_embedding_distillation`); ATKD and DKD are not implemented.
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "DistillKind",
    "contrastive_logit_distillation",
    "mse_embedding_distillation",
    "kl_embedding_distillation",
    "distillation_loss",
]

DistillKind = Literal["ce", "mse", "kl_emb", "none"]


def _check_pair(student: Tensor, teacher: Tensor) -> None:
    if student.shape != teacher.shape:
        raise ValueError(
            f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)} shapes differ"
        )
    if student.dim() != 2:
        raise ValueError(f"expected 2-D (batch, classes) tensors, got {tuple(student.shape)}")


def contrastive_logit_distillation(
    student_logits: Tensor,
    teacher_logits: Tensor,
    tau2: float,
    scale_by_tau_sq: bool = True,
) -> Tensor:
    """SlimCLR online distillation on contrastive logits (Eq. 4-5).

    ``L_p = mean_b [ -sum_j softmax(t_b / tau2)_j * log_softmax(s_b / tau2)_j ]  (* tau2**2)``

    Args:
        student_logits: sub-network logits ``(B, C)``, e.g. ``moco_logits(q_w, k, queue, 1.0)``
            (raw similarities: SlimCLR applies ``tau2`` only, not ``tau1``).
        teacher_logits: full online network logits ``(B, C)`` over the same candidates;
            detached inside.
        tau2: distillation temperature (5.0 for SlimCLR-MoCov2, 1.0 for SlimCLR-MoCov3).
        scale_by_tau_sq: multiply by ``tau2**2`` (Hinton et al. 2015 gradient-scale correction).
            ``True`` (default) is what the authors' public code does (its KD loss multiplies the
            cross-entropy by ``T_student**2``), i.e. the setting behind SlimCLR's reported
            numbers (Tables 3c-3e, tau2 = 5 -> factor 25). ``False`` is Eq. 5 exactly as printed
            in the paper (no factor). With tau2 = 1.0 (MoCov3) both choices coincide.

    Returns:
        scalar loss. Its gradient w.r.t. the student logits is
        ``(softmax(s/tau2) - softmax(t/tau2)) / tau2 / B`` (times ``tau2**2`` if scaled).

    Example:
        >>> import torch
        >>> s, t = torch.randn(4, 17), torch.randn(4, 17)
        >>> loss = contrastive_logit_distillation(s, t, tau2=5.0)
    """
    _check_pair(student_logits, teacher_logits)
    if tau2 <= 0:
        raise ValueError(f"tau2 must be > 0, got {tau2}")
    p_t = F.softmax(teacher_logits.detach().to(student_logits.dtype) / tau2, dim=1)
    log_p_s = F.log_softmax(student_logits / tau2, dim=1)
    loss = -(p_t * log_p_s).sum(dim=1).mean()
    if scale_by_tau_sq:
        loss = loss * (tau2 * tau2)
    return loss


def mse_embedding_distillation(q_student: Tensor, q_teacher: Tensor) -> Tensor:
    """Mean-squared error between embeddings, teacher detached (SlimCLR Table 3c, "MSE").

    ``mean over all elements of (q_s - sg(q_t))**2`` (``F.mse_loss`` with ``reduction="mean"``).
    Pass normalised query embeddings ``q_w`` and ``q_1`` (the authors' code also allows the same
    on logits: any two equal-shape tensors work).

    Example:
        >>> import torch
        >>> mse_embedding_distillation(torch.zeros(1, 2), torch.ones(1, 2))
        tensor(1.)
    """
    if q_student.shape != q_teacher.shape:
        raise ValueError(
            f"student {tuple(q_student.shape)} and teacher {tuple(q_teacher.shape)} differ"
        )
    return F.mse_loss(q_student, q_teacher.detach().to(q_student.dtype), reduction="mean")


def kl_embedding_distillation(
    q_student: Tensor, q_teacher: Tensor, tau: float = 1.0, scale_by_tau_sq: bool = True
) -> Tensor:
    """KL divergence between softmaxes over the embedding dimensions (SlimCLR Table 3c variant).

    ``mean_b KL( softmax(sg(q_t)/tau) || softmax(q_s/tau) )  (* tau**2)`` with the softmax taken
    over the ``D`` embedding coordinates (inplace distillation of US-Net, Yu & Huang 2019,
    applied to embeddings). This is a true KL (teacher entropy subtracted), so it is 0 when the
    two embeddings agree; its gradient equals that of the cross-entropy form.

    Example:
        >>> import torch
        >>> kl_embedding_distillation(torch.ones(1, 3), torch.ones(1, 3))
        tensor(0.)
    """
    _check_pair(q_student, q_teacher)
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    log_p_t = F.log_softmax(q_teacher.detach().to(q_student.dtype) / tau, dim=1)
    log_p_s = F.log_softmax(q_student / tau, dim=1)
    loss = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1).mean()
    if scale_by_tau_sq:
        loss = loss * (tau * tau)
    return loss


def distillation_loss(
    kind: DistillKind,
    *,
    student_logits: Tensor | None = None,
    teacher_logits: Tensor | None = None,
    q_student: Tensor | None = None,
    q_teacher: Tensor | None = None,
    tau2: float = 1.0,
    scale_by_tau_sq: bool = True,
) -> Tensor | None:
    """Dispatch to one distillation loss; ``"none"`` returns ``None``.

    * ``"ce"``: :func:`contrastive_logit_distillation` on ``student_logits``/``teacher_logits``
      (SlimCLR default).
    * ``"mse"``: :func:`mse_embedding_distillation` on ``q_student``/``q_teacher``.
    * ``"kl_emb"``: :func:`kl_embedding_distillation` on ``q_student``/``q_teacher`` with
      ``tau = tau2``.
    * ``"none"``: ``None``, meaning "no distillation term" to
      :func:`slimssl.recipes.loss_weights.combine_losses` (which then uses ``lambda_i L_i``
      instead of ``lambda_i (L_i + L_p,i) / 2``). It is deliberately not a zero tensor: a zero
      would halve the sub-network's loss.
    """
    if kind == "none":
        return None
    if kind == "ce":
        if student_logits is None or teacher_logits is None:
            raise ValueError("kind='ce' needs student_logits and teacher_logits")
        return contrastive_logit_distillation(
            student_logits, teacher_logits, tau2, scale_by_tau_sq=scale_by_tau_sq
        )
    if kind in ("mse", "kl_emb"):
        if q_student is None or q_teacher is None:
            raise ValueError(f"kind={kind!r} needs q_student and q_teacher")
        if kind == "mse":
            return mse_embedding_distillation(q_student, q_teacher)
        return kl_embedding_distillation(
            q_student, q_teacher, tau=tau2, scale_by_tau_sq=scale_by_tau_sq
        )
    raise ValueError(
        f"unknown distillation kind {kind!r}; expected 'ce', 'mse', 'kl_emb' or 'none'"
    )
