"""Supervised slimmable training: sandwich rule + inplace distillation (DSPNet appendix 0.B).

DSPNet appendix 0.B fine-tunes its pre-trained family on labels with "the sandwich rule [12]
and inplace distillation [12]" of US-Nets (Yu & Huang, ICCV 2019, Sec. 3.3-3.4):

* sandwich rule: each iteration trains the largest member, the smallest and ``k - 2`` others
  (the accuracies of all members are bounded by the two ends). A switchable width-only family
  (S-Net) trains ALL its members every iteration; a width x depth family (DSPNet's desired
  networks) draws ``k - 2`` of the others; a universal family draws widths uniformly in its
  range (:mod:`slimssl.recipes.sampling`).
* inplace distillation: the largest member learns from the labels, every other member from
  the largest member's DETACHED predicted distribution of the same iteration (cross-entropy
  with soft targets at temperature 1, US-Nets Sec. 3.4); no gradient reaches the teacher
  through a student's term.
"""

from __future__ import annotations

from typing import Any

import torch

from slimssl.methods.base import SubnetOutput
from slimssl.nn.spec import SubnetSpec, as_spec
from slimssl.nn.switch import SlimmableModel
from slimssl.recipes.base import Recipe
from slimssl.recipes.distillation import contrastive_logit_distillation
from slimssl.recipes.dspnet import member_size
from slimssl.recipes.sampling import Sandwich, UniversalSandwich


def sandwich_sampler(model: SlimmableModel, k: int, seed: int) -> Sandwich | UniversalSandwich:
    """The sandwich rule fitting ``model``'s family (see the module docstring)."""
    if model.norm_mode == "universal":
        if model.depth_choices:
            raise NotImplementedError("supervised training of a universal width x depth family: "
                                      "use switchable norm for depth-elastic models")
        w_min, w_max = model.width_range
        return UniversalSandwich(w_min, w_max, k, seed)
    family = model.family()
    size = len(family) if not model.depth_choices else min(k, len(family))
    return Sandwich(family, size, key=member_size, seed=seed)


class SupervisedSlimmable(Recipe):
    """Args:
        sampler: :func:`sandwich_sampler` (largest first, smallest second).
        distill: inplace distillation for every member but the largest (else each member
            learns from the labels).
    """

    name = "supervised"

    def __init__(self, sampler: Sandwich | UniversalSandwich, distill: bool = True) -> None:
        self.sampler, self.distill = sampler, distill

    def sample(self, epoch: float) -> list[SubnetSpec]:
        return [as_spec(s) for s in self.sampler.sample()]

    def subnet_loss(self, index: int, specs: list[SubnetSpec], out: SubnetOutput,
                    teacher: SubnetOutput | None) -> torch.Tensor:
        if index == 0 or not self.distill:
            return out.loss
        assert teacher is not None
        return contrastive_logit_distillation(out.embedding.float(),
                                              teacher.embedding.detach().float(), 1.0)

    def state_dict(self) -> dict[str, Any]:
        return {"sampler": self.sampler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state["sampler"])
