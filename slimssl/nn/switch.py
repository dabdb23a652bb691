"""Switching a whole model to one sub-network, explicitly.

The active sub-network is instance state set by :func:`set_subnet` (or the
:meth:`SlimmableModel.subnet` context manager), never a module-level global, so two models (an
online network at width 0.25 and its full-width EMA teacher) can run side by side in one process.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

from torch import nn

from slimssl.nn.norm import NormMode
from slimssl.nn.spec import WIDTH_TOL, SubnetSpec, as_spec


def set_subnet(module: nn.Module, spec: SubnetSpec) -> None:
    """Tell every spec-aware sub-module (slim ops, norms, depth-elastic stages) the active member."""
    for m in module.modules():
        apply = getattr(m, "apply_spec", None)
        if callable(apply):
            apply(spec)


class SlimmableModel(nn.Module):
    """Base of every slimmable backbone and head stack.

    Args:
        widths: the trained widths, largest first (switchable norm: exactly these are valid).
        norm: ``switchable`` or ``universal``.
        width_range: (w_min, w_max) for universal models; any width inside is valid.
        stage_depths: full block count per stage for depth-elastic backbones, else ``None``.
        depth_choices: the per-stage depths of the family's members (DSPNet's desired
            networks), or ``None`` for width-only families.
    """

    def __init__(self, widths: Sequence[float] = (1.0,), norm: NormMode = "switchable",
                 width_range: tuple[float, float] | None = None,
                 stage_depths: Sequence[int] | None = None,
                 depth_choices: Sequence[Sequence[int]] | None = None) -> None:
        super().__init__()
        widths = sorted({float(w) for w in widths}, reverse=True)
        if not widths or widths[0] > 1.0 + WIDTH_TOL or widths[-1] <= 0:
            raise ValueError(f"widths must lie in (0, 1], got {widths}")
        self.widths = tuple(widths)
        self.norm_mode = norm
        self.width_range = (tuple(float(v) for v in width_range) if width_range is not None
                            else (self.widths[-1], self.widths[0]))
        self.stage_depths = tuple(stage_depths) if stage_depths is not None else None
        self.depth_choices = ([tuple(int(v) for v in d) for d in depth_choices]
                              if depth_choices else None)
        for depth in self.depth_choices or []:
            self._check_depth(depth)
        if self.depth_choices and self.stage_depths not in self.depth_choices:
            # the full member (the EMA target, "the teacher of all" in DSPNet) runs every block
            raise ValueError(
                f"depth choices {self.depth_choices} lack the full depth "
                f"{self.stage_depths}: the full member (a momentum target, a teacher) runs every "
                "block, and blocks no member uses would never train; add "
                f"{list(self.stage_depths)} to the choices, or take a backbone with fewer blocks "
                "per stage (e.g. resnet10_narrow for one block per stage) and no depth choices")
        self._active_spec = self.full_spec

    @property
    def active_spec(self) -> SubnetSpec:
        return self._active_spec

    @property
    def full_spec(self) -> SubnetSpec:
        """The largest member (width ``widths[0]``: 1.0, or the one width of an individual
        network built with ``widths=[w]``; every block)."""
        width = self.widths[0] if self.norm_mode == "switchable" else self.width_range[1]
        return SubnetSpec(width, None)

    @property
    def smallest_spec(self) -> SubnetSpec:
        depth = min(self.depth_choices, key=sum) if self.depth_choices else None
        width = self.width_range[0] if self.norm_mode == "universal" else self.widths[-1]
        return self.validate_spec(SubnetSpec(width, depth))

    def family(self, widths: Sequence[float] | None = None) -> list[SubnetSpec]:
        """The members to evaluate/export: the trained widths (x depth choices), largest first."""
        widths = list(widths) if widths is not None else list(self.widths)
        depths = sorted(self.depth_choices, key=lambda d: -sum(d)) if self.depth_choices else [None]
        return [self.validate_spec(SubnetSpec(w, d)) for w in widths for d in depths]

    def _check_depth(self, depth: Sequence[int]) -> None:
        if self.stage_depths is None:
            raise ValueError("this backbone is not depth-elastic: give depth=None")
        if len(depth) != len(self.stage_depths) or any(
                not 1 <= d <= full for d, full in zip(depth, self.stage_depths)):
            raise ValueError(
                f"depth {tuple(depth)} does not fit this backbone: it has "
                f"{len(self.stage_depths)} stages with at most {self.stage_depths} blocks; "
                "each stage keeps between 1 and its full block count"
            )

    def validate_spec(self, spec: SubnetSpec | float) -> SubnetSpec:
        """Check a member exists in this family. ``depth=None`` means every block; a depth equal
        to the full block counts is normalised to ``None`` in width-only families, so a member has
        one name (``w0.50``); depth families name every member's depths."""
        spec = as_spec(spec)
        if self.norm_mode == "switchable":
            if not any(abs(spec.width - w) <= WIDTH_TOL for w in self.widths):
                raise ValueError(
                    f"width {spec.width:g} is not one of this model's trained widths "
                    f"{list(self.widths)} (switchable BatchNorm); pick one of them")
        else:
            lo, hi = self.width_range
            if not lo - WIDTH_TOL <= spec.width <= hi + WIDTH_TOL:
                raise ValueError(
                    f"width {spec.width:g} is outside this universal model's trained range "
                    f"[{lo:g}, {hi:g}]; pick a width inside it")
        if spec.depth is None:
            return spec
        self._check_depth(spec.depth)
        if spec.depth == self.stage_depths and not self.depth_choices:
            return SubnetSpec(spec.width, None)
        return spec

    def apply_spec(self, spec: SubnetSpec) -> None:
        self._active_spec = spec

    def set_subnet(self, spec: SubnetSpec | float) -> SubnetSpec:
        """Validate ``spec`` and switch this model (and any nested slimmable model) to it."""
        spec = self.validate_spec(spec)
        set_subnet(self, spec)
        return spec

    @contextmanager
    def subnet(self, spec: SubnetSpec | float | None = None, *, width: float | None = None,
               depth: Sequence[int] | None = None) -> Iterator["SlimmableModel"]:
        """``with model.subnet(0.5): y = model(x)`` runs the width-0.5 member; restores after."""
        if spec is None:
            spec = SubnetSpec(1.0 if width is None else width,
                              tuple(depth) if depth is not None else None)
        previous = self._active_spec
        self.set_subnet(spec)
        try:
            yield self
        finally:
            self.set_subnet(previous)
