"""The naive slimmable SSL baselines: S-Net / US-Net with the supervised loss replaced by an
SSL loss, optionally with inplace distillation from the full network.

US3L (Cao, Sun, Zhou, CVPR 2023) Table 1 and slides Table 2: SimSiam + S-Net collapses; with
inplace distillation (US-Nets, Yu & Huang ICCV 2019: sub-networks learn from the full
network's detached output in the same iteration) it trains but stays far below individual
networks; US + SimCLR (InfoNCE distillation) does better. These are those settings, through
the same loop:

* ``snet``: every member of a switchable family each iteration (S-Net, Yu et al. 2019);
* ``usnet``: sandwich rule over a universal width range (``w_max``, ``w_min``, ``n - 2``
  uniform; US-Nets use ``n = 4``).

Without distillation each member trains with its own SSL loss (``out.loss``; SimSiam: its own
stop-gradient projections; SimCLR: its own views). With inplace distillation the full network
keeps its SSL loss and every other member learns ONLY from the full ONLINE network's detached
outputs (US-Nets' inplace distillation replaces the label loss of sub-networks), pairing each
student view with the teacher's other view: ``cosine`` regresses the teacher's projections
(the students' predictions against ``sg(z_full)``, US3L ablation case 2) and ``infonce`` is the
relative, contrastive form (case 14, "US+SimCLR").
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

import torch

from slimssl.methods.base import SubnetOutput
from slimssl.methods.simclr import cross_view_distillation
from slimssl.nn.spec import SubnetSpec
from slimssl.recipes.base import Recipe, require_norm, setting
from slimssl.recipes.registry import register_recipe
from slimssl.recipes.sampling import UniversalSandwich

InplaceDistill = Literal["none", "cosine", "infonce"]


@register_recipe("snet")
@register_recipe("usnet")
class NaiveSlimmable(Recipe):
    """Give exactly one of ``family`` (S-Net: all of them, largest first) or ``width_sampler``
    (US-Net: sandwich rule over a width range).

    Args:
        distill: ``none``, ``cosine`` or ``infonce`` inplace distillation.
        temperature: NT-Xent temperature of ``infonce`` distillation.
    """

    name = "usnet"
    DEFAULT_TEMPERATURE = 0.5  # SimCLR's NT-Xent temperature (Chen et al. 2020)

    @classmethod
    def from_config(cls, cfg: Any, model: Any) -> "NaiveSlimmable":
        """``snet``: the switchable family; ``usnet``: the sandwich rule of
        ``recipe.num_sampled`` widths over the universal model's width range. The ``infonce``
        distillation uses the method's temperature."""
        r = cfg.recipe
        # infonce distillation: the method's NT-Xent temperature, else this class's (SimCLR's)
        tau = setting(cfg.method, "temperature", cls.DEFAULT_TEMPERATURE)
        if r.name == "snet":
            require_norm(r.name, model, "switchable")
            return cls(family=model.family(), distill=r.inplace_distill, temperature=tau)
        require_norm(r.name, model, "universal")
        w_min, w_max = model.width_range
        return cls(width_sampler=UniversalSandwich(w_min, w_max, r.num_sampled, cfg.train.seed),
                   distill=r.inplace_distill, temperature=tau)

    def teacher_index(self, specs: list[SubnetSpec]) -> int | None:
        """The full network (first) under inplace distillation; none without."""
        return 0 if self.distill != "none" and len(specs) > 1 else None

    def __init__(self, family: Sequence[SubnetSpec] | None = None,
                 width_sampler: UniversalSandwich | None = None,
                 distill: InplaceDistill = "none",
                 temperature: float = DEFAULT_TEMPERATURE) -> None:
        if (family is None) == (width_sampler is None):
            raise ValueError("give exactly one of family= (snet) or width_sampler= (usnet)")
        if distill not in ("none", "cosine", "infonce"):
            raise ValueError(f"inplace distillation must be none, cosine or infonce: {distill!r}")
        self.family = list(family) if family is not None else None
        self.width_sampler = width_sampler
        self.distill, self.temperature = distill, temperature

    def sample(self, epoch: float) -> list[SubnetSpec]:
        if self.family is not None:
            return list(self.family)
        return [SubnetSpec(w) for w in self.width_sampler.sample()]

    def subnet_loss(self, index: int, specs: list[SubnetSpec], out: SubnetOutput,
                    teacher: SubnetOutput | None) -> torch.Tensor:
        if index == 0 or self.distill == "none":
            return out.loss
        assert teacher is not None
        return cross_view_distillation(out.embedding, teacher.teacher_embedding, self.distill,
                                       self.temperature)

    def state_dict(self) -> dict[str, Any]:
        return {} if self.width_sampler is None else {"sampler": self.width_sampler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.width_sampler is not None:
            self.width_sampler.load_state_dict(state["sampler"])
