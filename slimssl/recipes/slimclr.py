"""SlimCLR (Zhao, Zhu, Wang, Yang, ICCV 2023): fixed widths trained together with three fixes.

Sec. 3.4: (1) slow start — only the full network trains for the first S epochs (S = half the
epochs); (2) online distillation — every sub-network distils the full ONLINE network's detached
contrastive logits (Eq. 4-5; tau2 = 5.0 for MoCov2, 1.0 for MoCov3); (3) loss reweighting
(Eq. 6; Table 3e gives four schemes). Total (Eq. 7):
``L = lambda_1 L_1 + sum_{i>=2} lambda_i (L_i + L_p,i) / 2``.

Each technique can be switched off for ablations (``slow_start_epochs=0``, ``distill="none"``,
``weights="uniform"``); the naive S-Net baseline is :mod:`slimssl.recipes.usnet`. One width
alone is the individual-network baseline — see :func:`individual`.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from slimssl.methods.base import SubnetOutput
from slimssl.nn.functional import soft_target_loss
from slimssl.nn.spec import SubnetSpec
from slimssl.recipes.base import Recipe, setting
from slimssl.recipes.distillation import distillation_loss
from slimssl.recipes.loss_weights import loss_weights, weighted_term
from slimssl.recipes.registry import register_recipe
from slimssl.recipes.sampling import slow_start_active


@register_recipe("slimclr")
@register_recipe("individual")
class SlimCLR(Recipe):
    """Args:
        family: the members, largest first (e.g. widths [1, .75, .5, .25]).
        slow_start_epochs: S; 0 disables slow start.
        distill: ``ce`` (logits, SlimCLR's KD), ``mse`` / ``kl_emb`` (embeddings), ``atkd`` /
            ``dkd`` (logits; Table 3c), or ``none``
            (:func:`slimssl.recipes.distillation.distillation_loss`).
        tau2: distillation temperature.
        weights: reweighting scheme (``sum_others`` = Eq. 6, default; ``uniform`` = off).
    """

    name = "slimclr"

    @classmethod
    def from_config(cls, cfg: Any, model: Any) -> "SlimCLR":
        """``slimclr``: every member of ``model``'s family; slow start S defaults to half the
        epochs (Sec. 3.4). ``individual``: :func:`individual` at the model's only width."""
        r = cfg.recipe
        if r.name == "individual":
            if len(model.widths) != 1:
                raise ValueError(f"recipe 'individual' trains one network: give exactly one width "
                                 f"in model.widths, got {list(model.widths)}")
            return individual(model.full_spec)
        slow = setting(r, "slow_start_epochs", cfg.train.epochs / 2)
        tau2 = setting(r, "distill_temperature", 5.0)  # SlimCLR-MoCov2's tau_2 (Sec. 4.1)
        return cls(model.family(), slow, r.distill, tau2, r.weights)

    def teacher_index(self, specs: list[SubnetSpec]) -> int | None:
        """The full ONLINE network (first) is the teacher of the online distillation (Eq. 4-5);
        none while it trains alone or without distillation."""
        return 0 if self.distill != "none" and len(specs) > 1 else None

    def __init__(self, family: Sequence[SubnetSpec], slow_start_epochs: float = 0.0,
                 distill: str = "ce", tau2: float = 5.0, weights: str = "sum_others") -> None:
        self.family = sorted(family, key=lambda s: (-s.width, -sum(s.depth or ())))
        self.slow_start_epochs, self.distill, self.tau2 = slow_start_epochs, distill, tau2
        self.weights = weights

    def sample(self, epoch: float) -> list[SubnetSpec]:
        if slow_start_active(epoch, self.slow_start_epochs):
            return self.family[:1]
        return list(self.family)

    def subnet_loss(self, index: int, specs: list[SubnetSpec], out: SubnetOutput,
                    teacher: SubnetOutput | None) -> torch.Tensor:
        # While only the full network trains (slow start, or a one-member family) its loss is
        # left unweighted, as in the authors' code (lambda_1 applies once sub-networks train).
        lam = loss_weights([s.width for s in specs], self.weights) if len(specs) > 1 else [1.0]
        distill = None
        if index > 0 and self.distill != "none":
            assert teacher is not None, "SlimCLR distils from the full online network (first)"
            distill = distillation_loss(
                self.distill, student_logits=out.similarities,
                teacher_logits=teacher.similarities, q_student=out.embedding,
                q_teacher=teacher.embedding, tau2=self.tau2, positive_index=out.positive_index)
        return weighted_term(index, lam[index], out.loss, distill)

    def report(self, index: int, specs: list[SubnetSpec], out: SubnetOutput,
               teacher: SubnetOutput | None) -> dict[str, torch.Tensor]:
        """The distillation of ``specs[index]`` as KL, and the constant its term carries.

        SlimCLR's ``ce`` distillation (Eq. 4-5, scaled by tau2^2 as in the authors' code) is
        ``CE = tau2^2 (H(p_t) + KL(p_t || p_s))``: the teacher entropy ``H(p_t)`` depends on no
        trainable parameter (the teacher is detached) but is up to ``ln K`` for ``K`` candidates,
        i.e. 25 ln 1025 = 173 per member for MoCo v2 with a 1024-key queue at tau2 = 5, which made
        the logged loss jump from about 5 to 281 when slow start ended. Reported: ``kd`` = CE
        minus the teacher's entropy term = ``tau2^2 KL`` (0 when the student's softened
        distribution equals the teacher's), and ``offset`` = ``lambda_i / 2 * tau2^2 H(p_t)``,
        the constant of this member's weighted term (:func:`weighted_term`). The other kinds
        (MSE, KL on embeddings, ATKD, DKD) are 0 at equality already: their value, offset 0.
        """
        if index == 0 or teacher is None or self.distill == "none":
            return {}
        with torch.no_grad():
            value = distillation_loss(
                self.distill, student_logits=out.similarities,
                teacher_logits=teacher.similarities, q_student=out.embedding,
                q_teacher=teacher.embedding, tau2=self.tau2, positive_index=out.positive_index)
            if self.distill != "ce":
                return {"kd": value, "offset": torch.zeros_like(value)}
            t = teacher.similarities.to(out.similarities.dtype)
            entropy = soft_target_loss(t, t, self.tau2, "ce")  # tau2^2 H(p_t), batch mean
            lam = loss_weights([s.width for s in specs], self.weights)[index]
            return {"kd": value - entropy, "offset": lam / 2 * entropy}


def individual(spec: SubnetSpec) -> SlimCLR:
    """One ordinary network at one width, through the same loop (every paper's baseline)."""
    return SlimCLR([spec], slow_start_epochs=0.0, distill="none", weights="uniform")
