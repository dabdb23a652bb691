"""The sub-network specification and the channel arithmetic every slimmable op shares.

A slimmable network is a family of weight-sharing sub-networks; a :class:`SubnetSpec` names one
member: a width multiplier and, for depth-elastic backbones, how many blocks each stage keeps
(the first ``d`` blocks, as Once-for-All does; DSPNet Sec. 3.2 samples width AND depth).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

WIDTH_TOL = 1e-6


def make_divisible(value: float, divisor: int = 1, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` (MobileNet rule).

    With ``divisor`` 1 this is plain rounding half up (ResNets: ResNet-50 at 0.25 has a
    16-channel stem, docs/design.md sec. 2). With ``divisor`` 8 it is the MobileNetV2/V3 rule that
    never rounds down by more than 10%.
    """
    if divisor <= 1:
        return max(min_value or 1, int(math.floor(value + 0.5)))
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def channels_at(full: int, width: float, divisor: int = 1) -> int:
    """Active channel count of a layer with ``full`` channels at width multiplier ``width``.

    Leading channels are shared by every width, so this is also the length of the weight slice.
    """
    if abs(width - 1.0) <= WIDTH_TOL:
        return full
    return min(full, make_divisible(full * width, divisor))


@dataclass(frozen=True)
class SubnetSpec:
    """One member of a slimmable family.

    Attributes:
        width: width multiplier in (0, 1]; every sliced layer keeps its leading channels.
        depth: blocks kept per stage (first ``d`` of each stage), or ``None`` for all blocks.

    Example:
        >>> SubnetSpec(0.5, (2, 2, 2, 2)).label
        'w0.50 d2-2-2-2'
    """

    width: float = 1.0
    depth: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not (0.0 < float(self.width) <= 1.0 + WIDTH_TOL):
            raise ValueError(f"width multiplier must be in (0, 1], got {self.width}")
        object.__setattr__(self, "width", float(self.width))
        if self.depth is not None:
            depth = tuple(int(d) for d in self.depth)
            if any(d < 1 for d in depth):
                raise ValueError(f"every stage must keep at least one block, got depth {depth}")
            object.__setattr__(self, "depth", depth)

    @property
    def label(self) -> str:
        """Short human label used in tables, metric names and file names."""
        text = f"w{self.width:.2f}"
        if self.depth is not None:
            text += " d" + "-".join(str(d) for d in self.depth)
        return text

    @property
    def slug(self) -> str:
        """File-name safe label."""
        return self.label.replace(" ", "_")

    def to_dict(self) -> dict:
        return {"width": self.width, "depth": list(self.depth) if self.depth else None}

    @classmethod
    def from_dict(cls, data: dict) -> "SubnetSpec":
        depth = data.get("depth")
        return cls(float(data["width"]), tuple(depth) if depth else None)


def as_spec(spec: "SubnetSpec | float | int") -> SubnetSpec:
    """Accept a bare width for convenience: ``as_spec(0.5) == SubnetSpec(0.5)``."""
    if isinstance(spec, SubnetSpec):
        return spec
    if isinstance(spec, (int, float)):
        return SubnetSpec(float(spec))
    raise TypeError(f"expected a SubnetSpec or a width multiplier, got {type(spec).__name__}")
