"""What a recipe decides: which sub-networks train this iteration, and each one's loss term.

A recipe's total loss must be a sum of per-sub-network terms so that the engine can either sum
them and run one backward (``sum`` update mode, as SlimCLR's code) or run one backward per
sub-network (``accumulate``, memory of one network; DSPNet). The first sampled member is always
the largest: its detached output is the online teacher of the others.
"""

from __future__ import annotations

from typing import Any

import torch

from slimssl.methods.base import SubnetOutput
from slimssl.nn.spec import SubnetSpec


class Recipe:
    """Base class; subclasses implement :meth:`sample` and :meth:`subnet_loss`."""

    name = "recipe"

    def sample(self, epoch: float) -> list[SubnetSpec]:
        """Members to train at this iteration (``epoch`` is fractional), largest first."""
        raise NotImplementedError

    def subnet_loss(self, index: int, specs: list[SubnetSpec], out: SubnetOutput,
                    teacher: SubnetOutput | None) -> torch.Tensor:
        """Loss term of ``specs[index]``; ``teacher`` is the detached output of ``specs[0]``."""
        raise NotImplementedError

    def regularization(self, model: torch.nn.Module, epoch: float,
                       specs: list[SubnetSpec]) -> torch.Tensor | None:
        """Extra loss on the weights for the sub-networks ``specs`` of this step (US3L group
        regularization, one term per sub-network, summed); none by default."""
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass
