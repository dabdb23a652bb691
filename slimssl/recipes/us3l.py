"""US3L (Cao, Sun, Zhou, CVPR 2023): universally slimmable SSL, sampling and regularization.

The loss design (guidelines 1-3: relative base loss, relative distillation, momentum teacher,
auxiliary distillation head) lives in the method, :class:`slimssl.methods.simclr.MomentumSimCLR`,
because the head is a trained part of the online network; this recipe decides which widths
train and adds the group regularization:

* **sandwich rule with continuous widths**: ``w_max``, ``w_min`` and ``N - 2`` widths uniform in
  ``[w_min, w_max]`` (``N = 3``: authors' code ``NUM_SAMPLE_TRAINING: 3``); no width twice.
* **dynamic sampling** (slides, "Dynamic Sampling"): the sampling space grows
  ``[1.0, 1.0] -> [0.75, 1.0] -> [0.5, 1.0] -> [0.25, 1.0]`` over 4 equal stages of the epochs
  (:func:`~slimssl.recipes.sampling.dynamic_min_width`); for another width range the stage
  minima are interpolated between the range's ends as in the authors' code
  (:func:`~slimssl.recipes.sampling.dynamic_stages`: ``[0.35, 1]`` -> 1, 0.783, 0.567, 0.35);
  while the space is ``[w_max, w_max]`` only the full network trains.
* **group regularization instead of weight decay** (slides, "Group Regularization";
  :mod:`slimssl.recipes.group_reg`): output channels of every conv weight and every 1-D
  parameter (norm affine, biases) in 8 groups with ``lambda_i = lambda (1 - alpha_t i)``: the
  leading channels, shared by every width, get the LARGEST coefficient and the later channels,
  used only by wide sub-networks, the smaller ones ("more degrees of freedom (smaller
  coefficients) to the later channels"); 2-D (linear) weights get plain ``lambda ||W||^2``.
  ``alpha_t`` is 0 during the regularizer's warm-up, then ramps linearly to ``alpha`` at half
  the epochs (authors' code). Every online parameter is regularised (the EMA teacher is not),
  so the optimizer's weight decay must be 0: the config refuses ``optim.weight_decay != 0``
  together with ``recipe.group_reg > 0``.

Losses of the sampled widths are summed without weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from slimssl.methods.base import SubnetOutput
from slimssl.nn.spec import SubnetSpec
from slimssl.recipes.base import Recipe
from slimssl.recipes.group_reg import group_reg_alpha, group_regularization
from slimssl.recipes.sampling import UniversalSandwich, dynamic_min_width, dynamic_stages

DYNAMIC_NUM_STAGES = 4  # slides: [1, 1] -> [.75, 1] -> [.5, 1] -> [.25, 1]


@dataclass(frozen=True)
class GroupReg:
    """US3L group-regularization settings (authors' code: 5e-5, 0.05, 8 groups)."""

    lam: float = 5e-5
    alpha: float = 0.05
    groups: int = 8
    warmup_epochs: float = 0.0

    def __call__(self, model: nn.Module, epoch: float, total_epochs: float) -> torch.Tensor:
        alpha_t = group_reg_alpha(epoch, self.alpha, self.warmup_epochs, total_epochs / 2)
        params = [p for p in model.parameters() if p.requires_grad]
        grouped = [p for p in params if p.dim() in (1, 4)]
        plain = [p for p in params if p.dim() not in (1, 4)]
        return group_regularization(grouped, self.groups, self.lam, alpha_t, plain)


class US3L(Recipe):
    """Args:
        w_min / w_max: the width range (0.25, 1.0).
        n: widths per iteration (3).
        total_epochs: the run's epochs (dynamic sampling stages, regularizer ramp).
        dynamic: dynamic sampling on (default) or the plain sandwich rule over ``[w_min, w_max]``.
        stages: the stage minima (default: :func:`dynamic_stages` of ``[w_min, w_max]``).
        group_reg: regularization settings, or ``None`` (plain weight decay in the optimizer).
        seed: sampler seed (identical on every rank).
    """

    name = "us3l"

    def __init__(self, w_min: float = 0.25, w_max: float = 1.0, n: int = 3,
                 total_epochs: float = 100.0, dynamic: bool = True,
                 group_reg: GroupReg | None = GroupReg(), seed: int = 0,
                 stages: Sequence[float] | None = None) -> None:
        self.sampler = UniversalSandwich(w_min, w_max, n, seed=seed)
        if stages is None:
            stages = dynamic_stages(w_min, w_max, DYNAMIC_NUM_STAGES)
        self.total_epochs, self.dynamic, self.stages = total_epochs, dynamic, tuple(stages)
        self.group_reg = group_reg

    def min_width(self, epoch: float) -> float:
        """The smallest width sampled at ``epoch`` (dynamic sampling, floored at ``w_min``)."""
        if not self.dynamic:
            return self.sampler.w_min
        stage_min = dynamic_min_width(epoch, self.total_epochs, self.stages)
        return min(max(stage_min, self.sampler.w_min), self.sampler.w_max)

    def sample(self, epoch: float) -> list[SubnetSpec]:
        return [SubnetSpec(w) for w in self.sampler.sample(w_min=self.min_width(epoch))]

    def subnet_loss(self, index: int, specs: list[SubnetSpec], out: SubnetOutput,
                    teacher: SubnetOutput | None) -> torch.Tensor:
        return out.loss

    def regularization(self, model: nn.Module, epoch: float) -> torch.Tensor | None:
        if self.group_reg is None:
            return None
        return self.group_reg(model, epoch, self.total_epochs)

    def state_dict(self) -> dict[str, Any]:
        return {"sampler": self.sampler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state["sampler"])
