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
the probe distillation of :mod:`slimssl.eval`. Alternatives offered here: MSE on embeddings
(:func:`mse_embedding_distillation`, Table 3c "MSE"), KL between softmaxes over the embedding
coordinates (``"kl_emb"``: the same soft-target loss, ``kind="kl"``, applied to embeddings as in
US-Net's inplace distillation, Yu & Huang 2019), and the two recent logit distillations of
Table 3c on the same contrastive logits: ATKD (:func:`atkd_distillation`) and DKD
(:func:`dkd_distillation`), with the settings of the SlimCLR authors' code
(``models/distiller/factory.py``: ATKD multiplier 2, temperature 4; DKD alpha 1, beta 0.5,
temperature 1, DKD's ImageNet setting). Table 3c finds the four losses within 0.5 points of
each other (R-50 at width 1.0: MSE 66.9, ATKD 66.4, DKD 66.8, KD 67.0).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from slimssl.nn.functional import soft_target_loss

__all__ = [
    "ATKD_MULTIPLIER",
    "ATKD_TEMPERATURE",
    "DKD_ALPHA",
    "DKD_BETA",
    "DKD_TEMPERATURE",
    "DistillKind",
    "atkd_distillation",
    "dkd_distillation",
    "mse_embedding_distillation",
    "distillation_loss",
]

DistillKind = Literal["ce", "mse", "kl_emb", "atkd", "dkd", "none"]

#: ATKD's scale of the standardised logits and its temperature (SlimCLR authors' code,
#: ``choose_kd_loss``: ``multiplier=2.0, temperature=4.0``).
ATKD_MULTIPLIER = 2.0
ATKD_TEMPERATURE = 4.0
#: DKD's weights of the target-class and non-target-class terms and its temperature: the DKD
#: release's ImageNet setting, which the SlimCLR authors' code uses ("default setting of dkd on
#: ImageNet is beta=0.5, alpha=1.0, T=1.0").
DKD_ALPHA = 1.0
DKD_BETA = 0.5
DKD_TEMPERATURE = 1.0


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


def atkd_distillation(student_logits: Tensor, teacher_logits: Tensor,
                      temperature: float = ATKD_TEMPERATURE,
                      multiplier: float = ATKD_MULTIPLIER, eps: float = 1e-5) -> Tensor:
    """ATKD (Guo 2022; SlimCLR Sec. 2.3, Table 3c): KD between logits standardised per sample.

    "ATKD reduces the difference in sharpness between distributions of teacher and student"
    (SlimCLR Sec. 4.4): each row of logits ``z`` (student and detached teacher alike) becomes

        z_hat = m * (z - mean(z)) / sqrt(var(z) + eps)      (mean, biased var over the row)

    so both have the same spread, and the loss is the temperature-``T`` KL of
    :func:`~slimssl.nn.functional.soft_target_loss`:

        L = T^2 * mean_b sum_j p_t[j] (log p_t[j] - log p_s[j]),   p = softmax(z_hat / T)

    ``m = 2``, ``T = 4``, ``eps = 1e-5`` (the authors' code standardises with ``F.layer_norm``,
    whose ``eps`` this is). The gradient flows through the student's standardisation. Invariant
    to ``z -> a z + b`` (``a > 0``) of either side, up to ``eps``.
    """
    def standardise(z: Tensor) -> Tensor:
        mean = z.mean(dim=1, keepdim=True)
        var = z.var(dim=1, unbiased=False, keepdim=True)
        return multiplier * (z - mean) / torch.sqrt(var + eps)

    teacher = teacher_logits.detach().to(student_logits.dtype)
    return soft_target_loss(standardise(student_logits), standardise(teacher), temperature,
                            "kl", scale_by_tau_sq=True)


def dkd_distillation(student_logits: Tensor, teacher_logits: Tensor,
                     positive_index: Tensor | None = None, alpha: float = DKD_ALPHA,
                     beta: float = DKD_BETA, temperature: float = DKD_TEMPERATURE) -> Tensor:
    """DKD (Zhao, Cui, Song, Qiu, Liang, CVPR 2022; SlimCLR Table 3c): decoupled KD.

    The "target class" of a contrastive row is its positive candidate: column
    ``positive_index[b]`` (default 0, MoCo v2's ``[k+, queue]`` layout; the authors' code passes
    MoCo's labels). With ``p = softmax(z / T)`` over the row and ``t`` the target:

    * TCKD = KL over the binary split ``b = [p_t, 1 - p_t]``:
      ``sum_{i in {t, rest}} b_T[i] log(b_T[i] / b_S[i])``;
    * NCKD = KL between the distributions over the non-target candidates alone,
      ``p_hat[j] = exp(z_j / T) / sum_{k != t} exp(z_k / T)`` (``j != t``);
    * ``L = T^2 * mean_b (alpha * TCKD + beta * NCKD)``, teacher detached.

    With ``alpha = 1`` and ``beta = 1 - p_t`` (teacher) this is classical KD (DKD Eq. 7,
    ``KD = TCKD + (1 - p_t^T) NCKD``). Defaults: alpha 1, beta 0.5, T 1 (see ``DKD_*``). The
    non-target distribution here excludes the target exactly (DKD's released code subtracts
    1000 from the target logit, the same to float precision for logits of moderate size).
    """
    if student_logits.shape != teacher_logits.shape or student_logits.dim() != 2:
        raise ValueError(f"DKD needs equal 2-D (batch, candidates) logits, got student "
                         f"{tuple(student_logits.shape)} and teacher "
                         f"{tuple(teacher_logits.shape)}")
    if student_logits.shape[1] < 2:
        raise ValueError("DKD needs at least 2 candidates per row (a target and a non-target)")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    batch = student_logits.shape[0]
    if positive_index is None:
        positive_index = torch.zeros(batch, dtype=torch.long, device=student_logits.device)
    positive_index = positive_index.reshape(-1).to(student_logits.device)
    if positive_index.numel() != batch:
        raise ValueError(f"positive_index has {positive_index.numel()} entries for {batch} rows")
    target = F.one_hot(positive_index, student_logits.shape[1]).bool()
    s = student_logits / temperature
    t = teacher_logits.detach().to(student_logits.dtype) / temperature

    def binary_and_rest(z: Tensor) -> tuple[Tensor, Tensor]:
        log_p = F.log_softmax(z, dim=1)
        log_target = log_p.masked_select(target)                              # log p_t
        log_other = log_p.masked_fill(target, float("-inf")).logsumexp(dim=1)  # log(1 - p_t)
        log_hat = F.log_softmax(z.masked_fill(target, float("-inf")), dim=1)  # -inf at t
        return torch.stack([log_target, log_other], dim=1), log_hat

    log_b_s, log_hat_s = binary_and_rest(s)
    log_b_t, log_hat_t = binary_and_rest(t)
    tckd = (log_b_t.exp() * (log_b_t - log_b_s)).sum(dim=1)
    nckd = (log_hat_t.exp() * (log_hat_t - log_hat_s)).masked_fill(target, 0.0).sum(dim=1)
    return (alpha * tckd + beta * nckd).mean() * temperature ** 2


def distillation_loss(
    kind: DistillKind,
    *,
    student_logits: Tensor | None = None,
    teacher_logits: Tensor | None = None,
    q_student: Tensor | None = None,
    q_teacher: Tensor | None = None,
    tau2: float = 1.0,
    scale_by_tau_sq: bool = True,
    positive_index: Tensor | None = None,
) -> Tensor | None:
    """Dispatch to one distillation loss; ``"none"`` returns ``None``.

    * ``"ce"``: :func:`~slimssl.nn.functional.soft_target_loss` on ``student_logits``/
      ``teacher_logits`` with temperature ``tau2`` (SlimCLR default; pass raw similarities
      ``[q_w . k+, q_w . queue]``, NOT divided by tau1).
    * ``"mse"``: :func:`mse_embedding_distillation` on ``q_student``/``q_teacher``.
    * ``"kl_emb"``: ``soft_target_loss(kind="kl")`` over the embedding coordinates of
      ``q_student``/``q_teacher`` with temperature ``tau2``.
    * ``"atkd"`` / ``"dkd"``: :func:`atkd_distillation` / :func:`dkd_distillation` on the
      logits, at temperature ``tau2`` (the config's default for them is their own: 4 / 1);
      DKD's target is ``positive_index`` (None: column 0).
    * ``"none"``: ``None``, meaning "no distillation term" to
      :func:`slimssl.recipes.loss_weights.weighted_term` (which then uses ``lambda_i L_i``
      instead of ``lambda_i (L_i + L_p,i) / 2``). It is deliberately not a zero tensor: a zero
      would halve the sub-network's loss.
    """
    if kind == "none":
        return None
    if kind in ("ce", "atkd", "dkd"):
        if student_logits is None or teacher_logits is None:
            raise ValueError(f"kind={kind!r} needs student_logits and teacher_logits")
        if kind == "atkd":
            return atkd_distillation(student_logits, teacher_logits, tau2)
        if kind == "dkd":
            return dkd_distillation(student_logits, teacher_logits, positive_index,
                                    temperature=tau2)
        return soft_target_loss(student_logits, teacher_logits, tau2, "ce", scale_by_tau_sq)
    if kind in ("mse", "kl_emb"):
        if q_student is None or q_teacher is None:
            raise ValueError(f"kind={kind!r} needs q_student and q_teacher")
        if kind == "mse":
            return mse_embedding_distillation(q_student, q_teacher)
        return soft_target_loss(q_student, q_teacher, tau2, "kl", scale_by_tau_sq)
    raise ValueError(
        f"unknown distillation kind {kind!r}; expected 'ce', 'mse', 'kl_emb', 'atkd', 'dkd' or "
        "'none'"
    )
