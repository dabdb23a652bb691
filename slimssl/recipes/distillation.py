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

The loss itself is :func:`slimssl.nn.functional.soft_target_loss` (``kind="ce"``), shared with
the probe distillation of :mod:`slimssl.eval`. Alternatives of Table 3c offered here: MSE on
embeddings (:func:`mse_embedding_distillation`) and KL between softmaxes over the embedding
coordinates (``"kl_emb"``: the same soft-target loss, ``kind="kl"``, applied to embeddings as in
US-Net's inplace distillation, Yu & Huang 2019); ATKD and DKD are not implemented.
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor

from slimssl.nn.functional import soft_target_loss

__all__ = [
    "DistillKind",
    "mse_embedding_distillation",
    "distillation_loss",
]

DistillKind = Literal["ce", "mse", "kl_emb", "none"]


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

    * ``"ce"``: :func:`~slimssl.nn.functional.soft_target_loss` on ``student_logits``/
      ``teacher_logits`` with temperature ``tau2`` (SlimCLR default; pass raw similarities
      ``[q_w . k+, q_w . queue]``, NOT divided by tau1).
    * ``"mse"``: :func:`mse_embedding_distillation` on ``q_student``/``q_teacher``.
    * ``"kl_emb"``: ``soft_target_loss(kind="kl")`` over the embedding coordinates of
      ``q_student``/``q_teacher`` with temperature ``tau2``.
    * ``"none"``: ``None``, meaning "no distillation term" to
      :func:`slimssl.recipes.loss_weights.weighted_term` (which then uses ``lambda_i L_i``
      instead of ``lambda_i (L_i + L_p,i) / 2``). It is deliberately not a zero tensor: a zero
      would halve the sub-network's loss.
    """
    if kind == "none":
        return None
    if kind == "ce":
        if student_logits is None or teacher_logits is None:
            raise ValueError("kind='ce' needs student_logits and teacher_logits")
        return soft_target_loss(student_logits, teacher_logits, tau2, "ce", scale_by_tau_sq)
    if kind in ("mse", "kl_emb"):
        if q_student is None or q_teacher is None:
            raise ValueError(f"kind={kind!r} needs q_student and q_teacher")
        if kind == "mse":
            return mse_embedding_distillation(q_student, q_teacher)
        return soft_target_loss(q_student, q_teacher, tau2, "kl", scale_by_tau_sq)
    raise ValueError(
        f"unknown distillation kind {kind!r}; expected 'ce', 'mse', 'kl_emb' or 'none'"
    )
