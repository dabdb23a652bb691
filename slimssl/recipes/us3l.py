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
* **the penalty per sub-network** (authors' training loop, ``workers/ssl.py``): every sampled
  width adds the whole penalty to its own loss, except that the full width leaves out the
  auxiliary distillation head it does not use. With ``N`` widths per step the strength that
  follows is ``N R(shared) + (N - 1) R(head)`` per iteration, not ``R`` once: 3x at the
  authors' ``N = 3``. (Feature-distillation projections are never penalised, as in that code.)

Losses of the sampled widths are summed without weights. **One optimizer step per iteration**
(``update_mode: sum``) is the default: the authors' loop steps the optimizer after each width
(``update_mode: step_per_subnet`` reproduces it), but to first order in the learning rate ``N``
successive steps on the ``N`` losses equal one step on their sum, the sandwich rule of US-Nets
that US3L builds on accumulates the widths' gradients into one update, and one step keeps one
gradient all-reduce per iteration under DDP and the schedules' steps equal to iterations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from slimssl.methods.base import SubnetOutput
from slimssl.nn.spec import WIDTH_TOL, SubnetSpec
from slimssl.recipes.base import Recipe, require_norm
from slimssl.recipes.group_reg import group_reg_alpha, group_regularization
from slimssl.recipes.registry import register_recipe
from slimssl.recipes.sampling import UniversalSandwich, dynamic_min_width, dynamic_stages

DYNAMIC_NUM_STAGES = 4  # slides: [1, 1] -> [.75, 1] -> [.5, 1] -> [.25, 1]


@dataclass(frozen=True)
class GroupReg:
    """US3L group-regularization settings (authors' code: 5e-5, 0.05, 8 groups)."""

    lam: float = 5e-5
    alpha: float = 0.05
    groups: int = 8
    warmup_epochs: float = 0.0

    def __call__(self, params: Sequence[torch.Tensor], epoch: float,
                 total_epochs: float) -> torch.Tensor:
        """The penalty of ``params`` at ``epoch``: conv weights and 1-D parameters grouped by
        output channel, other (linear) weights plain L2."""
        alpha_t = group_reg_alpha(epoch, self.alpha, self.warmup_epochs, total_epochs / 2)
        params = [p for p in params if p.requires_grad]
        grouped = [p for p in params if p.dim() in (1, 4)]
        plain = [p for p in params if p.dim() not in (1, 4)]
        return group_regularization(grouped, self.groups, self.lam, alpha_t, plain)


@register_recipe("us3l")
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

    @classmethod
    def from_config(cls, cfg: Any, model: Any) -> "US3L":
        """The universal model's width range, ``recipe.num_sampled`` widths per step, dynamic
        sampling over the run's epochs, group regularization when ``recipe.group_reg > 0``."""
        r = cfg.recipe
        require_norm(r.name, model, "universal")
        w_min, w_max = model.width_range
        reg = (GroupReg(r.group_reg, r.group_reg_alpha, r.group_reg_groups,
                        r.group_reg_warmup_epochs) if r.group_reg > 0 else None)
        return cls(w_min, w_max, r.num_sampled, cfg.train.epochs, r.dynamic_sampling, reg,
                   cfg.train.seed)

    def teacher_index(self, specs: list[SubnetSpec]) -> int | None:
        """None: the method's momentum teacher serves every width (guideline 3)."""
        return None

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

    def regularization(self, model: nn.Module, epoch: float,
                       specs: list[SubnetSpec]) -> torch.Tensor | None:
        """Sum over ``specs`` of each width's penalty (module docstring): every parameter of
        ``model`` except feature-distillation projections, and the predictor (auxiliary
        distillation head) only for widths below ``w_max``."""
        if self.group_reg is None or not specs:
            return None
        head = getattr(model, "predictor", None)
        head_ids = {id(p) for p in head.parameters()} if head is not None else set()
        skip = {id(p) for name, p in model.named_parameters() if "feature_proj" in name}
        shared = [p for p in model.parameters() if id(p) not in head_ids | skip]
        total = len(specs) * self.group_reg(shared, epoch, self.total_epochs)
        students = sum(1 for s in specs if s.width < self.sampler.w_max - WIDTH_TOL)
        if students and head_ids:
            total = total + students * self.group_reg(list(head.parameters()), epoch,
                                                      self.total_epochs)
        return total

    def state_dict(self) -> dict[str, Any]:
        return {"sampler": self.sampler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state["sampler"])
