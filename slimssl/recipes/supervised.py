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

Pure inplace distillation feeds back into the teacher. A student's term moves the weights it
shares with the largest member, and so moves the teacher's logits too, in the direction
``p_teacher - p_student``: towards the teacher's own preferences, labels or not. Three students
push that way against one label term. On 5k CIFAR-10 images this made the largest member's
label cross-entropy climb from 2.4 to 3.2 (from scratch) and 4.6 (from SlimCLR weights; ln 10
= 2.3 is uniform) within 40 steps, and cost 22-29 points of top-1 (BENCHMARKS.md).
``label_weight > 0`` keeps every student anchored to the labels as well:
``label_weight * CE(labels) + KD``, the form of Once-for-All's ``kd_ratio`` (Cai et al., ICLR
2020). ``label_weight = 0`` is US-Nets as published.
"""

from __future__ import annotations

from typing import Any

import torch

from slimssl.methods.base import SubnetOutput
from slimssl.nn.functional import soft_target_loss
from slimssl.nn.spec import SubnetSpec, as_spec
from slimssl.nn.switch import SlimmableModel
from slimssl.recipes.base import Recipe
from slimssl.recipes.dspnet import member_size
from slimssl.recipes.registry import register_recipe
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


@register_recipe("supervised")
class SupervisedSlimmable(Recipe):
    """Args:
        sampler: :func:`sandwich_sampler` (largest first, smallest second).
        distill: inplace distillation for every member but the largest (else each member
            learns from the labels).
        label_weight: weight of a student's own label cross-entropy added to its distillation
            term (0: pure inplace distillation, as in US-Nets).
    """

    name = "supervised"

    @classmethod
    def from_config(cls, cfg: Any, model: Any) -> "SupervisedSlimmable":
        """Sandwich rule over ``recipe.num_sampled`` members; ``recipe.inplace_distill``
        ``kl`` (soft labels of the largest member) or ``none``."""
        r = cfg.recipe
        if r.inplace_distill not in ("none", "kl"):
            raise ValueError(f"recipe 'supervised' distils soft labels: recipe.inplace_distill "
                             f"must be 'kl' or 'none', got {r.inplace_distill!r}")
        return cls(sandwich_sampler(model, r.num_sampled, cfg.train.seed),
                   distill=r.inplace_distill == "kl", label_weight=r.kd_label_weight)

    def teacher_index(self, specs: list[SubnetSpec]) -> int | None:
        """The largest member (first), whose soft labels the others learn; none without KD."""
        return 0 if self.distill and len(specs) > 1 else None

    def __init__(self, sampler: Sandwich | UniversalSandwich, distill: bool = True,
                 label_weight: float = 0.0) -> None:
        if label_weight < 0:
            raise ValueError(f"label_weight must be >= 0, got {label_weight}")
        self.sampler, self.distill, self.label_weight = sampler, distill, label_weight

    def sample(self, epoch: float) -> list[SubnetSpec]:
        return [as_spec(s) for s in self.sampler.sample()]

    def subnet_loss(self, index: int, specs: list[SubnetSpec], out: SubnetOutput,
                    teacher: SubnetOutput | None) -> torch.Tensor:
        if index == 0 or not self.distill:
            return out.loss
        assert teacher is not None
        kd = soft_target_loss(out.embedding.float(), teacher.embedding.float(), 1.0)
        return kd + self.label_weight * out.loss if self.label_weight else kd

    def state_dict(self) -> dict[str, Any]:
        return {"sampler": self.sampler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state["sampler"])
