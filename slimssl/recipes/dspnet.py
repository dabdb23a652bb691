"""DSPNet (Wang, Gao, Li, Li, Hu 2022): BYOL over a set of desired networks, sandwich rule.

Sec. 4.1: the desired networks (DNs) are widths x per-stage depths of one network (ResNet:
stages keep the first ``d`` of their blocks with ``d`` in {2,3}, {2,4}, {2,6}, {2,3}, so the
smallest DN is a ResNet-18 and the largest a ResNet-34, Sec. 5.1.5; MobileNetV3: widths only).
Each iteration trains ``K`` DNs (Sec. 5.2.1: ``K = 4``): the largest, the smallest and
``K - 2`` distinct random others (sandwich rule of US-Nets), drawn from a generator seeded by
the config seed, so every rank draws the same DNs, and saved in :meth:`state_dict` so a resumed
run draws exactly what the uninterrupted one would. The losses (BYOL of each DN against the
full-size EMA target, which is therefore "the teacher of all", Sec. 4.2) are summed without
weights (Eq. 5), and DSPNet back-propagates each one as soon as it is computed ("accumulate"
update mode, Sec. 4.1: memory of one network). During the first warm-up epochs (10, Sec. 5.1.1:
"we constrain the online encoder to be deployed at full scale at the first 10 warm-up epochs")
only the whole network trains.

``loss_reduction``: ``sum`` is Eq. 5. ``mean`` divides each DN's loss by the number of DNs of
the step (the warm-up's single loss is unchanged). Under the paper's LARS the two are the same
step for every weight matrix: LARS sets each layer's step to ``lr * eta * ||w||`` whatever the
gradient's norm, so the sum changes only the direction. Under SGD (which ``slimssl reproduce
--scale cpu`` needs at batch 128) the sum also multiplies the step of the weights the DNs share:
3.4-3.6x at the end of those runs, their gradients being nearly parallel
(``benchmarks/dspnet_cause.py grad``). ``mean`` gives them one network's step instead: the
control for whether that is why the small DNs of ``dspnet-fig5`` at ``cpu`` end below their
individually trained twins. It is not: with ``mean`` every DN ended 3.5-3.9 kNN points lower
(2 seeds; BENCHMARKS.md, issue 17).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from slimssl.methods.base import SubnetOutput
from slimssl.nn.spec import SubnetSpec
from slimssl.recipes.base import Recipe
from slimssl.recipes.registry import register_recipe
from slimssl.recipes.sampling import Sandwich, slow_start_active


def member_size(spec: SubnetSpec) -> tuple[float, int]:
    """Sandwich ordering of DNs: width, then total block count (``depth=None``: all blocks).

    In a product family (widths x depth choices) the largest member is the widest and deepest,
    the smallest the narrowest and shallowest, whatever the ordering in between.
    """
    return spec.width, sum(spec.depth) if spec.depth is not None else 0


@register_recipe("dspnet")
class DSPNet(Recipe):
    """Args:
        family: the desired networks (``model.family()``).
        k: DNs per iteration (4); capped at the family size.
        warmup_full_epochs: epochs during which only the largest DN trains (10).
        seed: sampler seed (the config seed: identical on every rank).
        loss_reduction: ``sum`` (Eq. 5) or ``mean`` over the step's DNs (module docstring).
    """

    name = "dspnet"
    update_mode = "accumulate"  # backward per DN as soon as its loss exists (Sec. 4.1)

    @classmethod
    def from_config(cls, cfg: Any, model: Any) -> "DSPNet":
        r = cfg.recipe
        return cls(model.family(), r.num_sampled, r.warmup_full_epochs, cfg.train.seed,
                   r.loss_reduction)

    def teacher_index(self, specs: list[SubnetSpec]) -> int | None:
        """None: the full-size EMA target is the teacher of all (Sec. 4.2), not an online
        member."""
        return None

    def __init__(self, family: Sequence[SubnetSpec], k: int = 4, warmup_full_epochs: float = 10.0,
                 seed: int = 0, loss_reduction: str = "sum") -> None:
        if loss_reduction not in ("sum", "mean"):
            raise ValueError(f"recipe.loss_reduction must be 'sum' (DSPNet Eq. 5) or 'mean', "
                             f"got {loss_reduction!r}")
        self.loss_reduction = loss_reduction
        members = list(family)
        self.sampler = Sandwich(members, min(k, len(members)), key=member_size, seed=seed)
        self.warmup_full_epochs = warmup_full_epochs

    def sample(self, epoch: float) -> list[SubnetSpec]:
        if slow_start_active(epoch, self.warmup_full_epochs):
            return [self.sampler.largest]
        return self.sampler.sample()

    def subnet_loss(self, index: int, specs: list[SubnetSpec], out: SubnetOutput,
                    teacher: SubnetOutput | None) -> torch.Tensor:
        return out.loss / len(specs) if self.loss_reduction == "mean" else out.loss

    def state_dict(self) -> dict[str, Any]:
        return {"sampler": self.sampler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state["sampler"])
