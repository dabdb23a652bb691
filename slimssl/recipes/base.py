"""What a recipe decides: which sub-networks train this iteration, and each one's loss term.

A recipe's total loss must be a sum of per-sub-network terms so that the engine can either sum
them and run one backward (``sum`` update mode, as SlimCLR's code) or run one backward per
sub-network (``accumulate``, memory of one network; DSPNet): :attr:`Recipe.update_mode`. The
recipe also decides which member, if any, is the online teacher of the others
(:meth:`Recipe.teacher_index`); the engine only runs that member first and hands its detached
output to the others' :meth:`Recipe.subnet_loss`.
"""

from __future__ import annotations

from typing import Any

import torch

from slimssl.methods.base import SubnetOutput
from slimssl.nn.spec import SubnetSpec


def require_norm(recipe: str, model: Any, mode: str) -> None:
    """``ValueError`` unless ``model`` normalises as ``mode`` (``switchable``/``universal``)."""
    if model.norm_mode != mode:
        raise ValueError(f"recipe {recipe!r} needs model.norm={mode!r}, got {model.norm_mode!r}")


def setting(section: Any, key: str, default: Any) -> Any:
    """``section.key``, or ``default`` written back into ``section`` when it is ``None`` (so the
    saved config shows the value used)."""
    if getattr(section, key) is None:
        setattr(section, key, default)
    return getattr(section, key)


class Recipe:
    """Base class; subclasses implement :meth:`sample`, :meth:`subnet_loss` and
    :meth:`from_config`, and register with :func:`slimssl.recipes.registry.register_recipe`."""

    name = "recipe"
    #: ``sum`` (one backward over all members' terms) or ``accumulate`` (one backward per
    #: member); the default of the config's ``recipe.update_mode``, which may override it
    update_mode: str = "sum"

    @classmethod
    def from_config(cls, cfg: Any, model: Any) -> "Recipe":
        """Build from a run's config (``cfg.recipe`` and whatever else the recipe needs, e.g.
        ``cfg.train.seed``) for the slimmable ``model``. Settings left ``None`` are filled with
        the value used and written back into ``cfg.recipe`` (the saved config shows them). Bad
        settings raise ``ValueError`` naming the key and the fix."""
        raise NotImplementedError(f"recipe {cls.__name__} cannot be built from a config")

    def teacher_index(self, specs: list[SubnetSpec]) -> int | None:
        """Position in ``specs`` of the member whose detached output the others' loss terms
        receive as ``teacher`` (it runs first), or ``None`` when no term uses a teacher.
        Default: the first member, the largest (:meth:`sample` returns it first)."""
        return 0 if specs else None

    def sample(self, epoch: float) -> list[SubnetSpec]:
        """Members to train at this iteration (``epoch`` is fractional), largest first."""
        raise NotImplementedError

    def subnet_loss(self, index: int, specs: list[SubnetSpec], out: SubnetOutput,
                    teacher: SubnetOutput | None) -> torch.Tensor:
        """Loss term of ``specs[index]``; ``teacher`` is the detached output of
        ``specs[teacher_index(specs)]`` (``None`` for the teacher itself, or without one)."""
        raise NotImplementedError

    def report(self, index: int, specs: list[SubnetSpec], out: SubnetOutput,
               teacher: SubnetOutput | None) -> dict[str, torch.Tensor]:
        """Detached numbers for people about :meth:`subnet_loss`'s term (nothing trains on them):
        ``"kd"``, the member's distillation as a divergence (0 when it matches its teacher), and
        ``"offset"``, the part of the term no parameter can change (a cross-entropy
        distillation's teacher entropy), which the logged objective leaves out so that it has
        the trained gradient and 0 as its distillation floor. Default: nothing to report."""
        return {}

    def regularization(self, model: torch.nn.Module, epoch: float,
                       specs: list[SubnetSpec]) -> torch.Tensor | None:
        """Extra loss on the weights for the sub-networks ``specs`` of this step (US3L group
        regularization, one term per sub-network, summed); none by default."""
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass
