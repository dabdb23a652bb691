"""Which sub-networks train at a step, and when sub-networks start training.

All randomness comes from a private ``torch.Generator`` seeded at construction, so every rank
built with the same seed draws the same stream (DDP needs every rank to run the same
sub-networks, otherwise gradient all-reduces mismatch). ``state_dict``/``load_state_dict``
save and restore the stream for exact resume.

Samplers (every ``sample()`` returns a list whose **first element is the largest** member):

* :class:`Sandwich`: largest, smallest and ``k - 2`` distinct random others from a finite set
  (DSPNet, Wang et al. 2022, Sec. 4.1, for width x depth sets; sandwich rule of US-Nets,
  Yu & Huang ICCV 2019).
* :class:`UniversalSandwich`: ``w_max``, ``w_min`` and ``n - 2`` widths uniform in
  ``[w_min, w_max]`` (US-Nets; US3L, Cao, Sun, Zhou CVPR 2023).

Schedules:

* :func:`slow_start_active`: SlimCLR's slow start (Sec. 3.4): only the full network trains
  during the first ``S`` epochs.
* :func:`dynamic_min_width`: US3L's dynamic sampling: the sampling space grows in stages
  ``[1.0, 1.0] -> [0.75, 1.0] -> [0.5, 1.0] -> [0.25, 1.0]`` (US3L slides, "Dynamic Sampling");
  :func:`dynamic_stages` gives the stage minima of any other width range.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Generic, TypeVar

import torch

__all__ = [
    "Sandwich",
    "UniversalSandwich",
    "slow_start_active",
    "dynamic_min_width",
    "dynamic_stages",
]

S = TypeVar("S", bound=Hashable)


class _Seeded:
    """Owns a CPU ``torch.Generator`` seeded once; its state can be saved and restored."""

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(self.seed)

    def state_dict(self) -> dict[str, Any]:
        """The generator state (resume reproduces the same future draws)."""
        return {"seed": self.seed, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seed = int(state["seed"])
        self.generator.set_state(state["generator"])


class Sandwich(_Seeded, Generic[S]):
    """Sandwich rule over a finite set of sub-network specs (DSPNet Sec. 4.1).

    Each call returns ``[largest, smallest, *others]`` where ``others`` are ``k - 2`` distinct
    members drawn uniformly without replacement from the remaining candidates (in draw order).
    DSPNet uses ``k = 4`` over its desired networks (widths x per-stage depths).

    Args:
        candidates: the finite set of specs (hashable: floats, tuples, frozen dataclasses...).
        k: members per step, ``2 <= k <= len(candidates)`` (``k = 1`` returns the largest only).
        key: size key used to find the largest and smallest (default: the spec itself, e.g. a
            width or a comparable tuple); must rank exactly one candidate largest and one
            smallest.
        seed: generator seed, identical on every rank.

    Example:
        >>> s = Sandwich([1.0, 0.75, 0.5, 0.25, 0.125], k=3, seed=0)
        >>> picked = s.sample()
        >>> picked[:2], picked[2] in (0.75, 0.5, 0.25)
        ([1.0, 0.125], True)
    """

    def __init__(
        self,
        candidates: Sequence[S],
        k: int,
        key: Callable[[S], Any] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(seed)
        cands = list(candidates)
        if not cands:
            raise ValueError("candidates must not be empty")
        if len(set(cands)) != len(cands):
            raise ValueError("duplicate candidates")
        if not 1 <= k <= len(cands):
            raise ValueError(f"k must be in [1, {len(cands)}], got {k}")
        self.key: Callable[[S], Any] = key if key is not None else (lambda s: s)
        ordered = sorted(cands, key=self.key, reverse=True)
        keys = [self.key(c) for c in ordered]
        if len(ordered) > 1 and (keys[0] == keys[1] or keys[-1] == keys[-2]):
            raise ValueError("key must single out one largest and one smallest candidate")
        self.largest: S = ordered[0]
        self.smallest: S = ordered[-1]
        # the others, in a fixed (size-descending) order so draws are reproducible
        self.others: list[S] = ordered[1:-1]
        self.k = k

    def sample(self) -> list[S]:
        if self.k == 1:
            return [self.largest]
        n_rand = self.k - 2
        picked: list[S] = []
        if n_rand > 0:
            perm = torch.randperm(len(self.others), generator=self.generator)[:n_rand]
            picked = [self.others[int(i)] for i in perm]
        return [self.largest, self.smallest, *picked]


class UniversalSandwich(_Seeded):
    """Sandwich rule over a continuous width range (US-Nets; US3L).

    Each call returns ``[w_max, w_min, u_1, ..., u_{n-2}]`` with ``u_j ~ U[w_min, w_max]``
    i.i.d. (python floats; channel rounding is the network's job). With ``include_min=False`` it
    returns ``[w_max, u_1, ..., u_{n-1}]`` (US3L's "dynamic sampling without the sandwich rule",
    slides ablation). When the range collapses (``w_min == w_max``, e.g. the first dynamic
    sampling stage) only ``[w_max]`` is returned: the full network once.

    ``sample(w_min=...)`` overrides the lower bound for this call, which is how dynamic
    sampling plugs in: ``sampler.sample(w_min=dynamic_min_width(epoch, epochs))``.

    Example:
        >>> us = UniversalSandwich(0.25, 1.0, n=4, seed=0)
        >>> ws = us.sample()
        >>> ws[:2], all(0.25 <= w <= 1.0 for w in ws)
        ([1.0, 0.25], True)
    """

    def __init__(
        self,
        w_min: float,
        w_max: float = 1.0,
        n: int = 4,
        seed: int = 0,
        include_min: bool = True,
    ) -> None:
        super().__init__(seed)
        if not 0.0 < w_min <= w_max <= 1.0:
            raise ValueError(f"need 0 < w_min <= w_max <= 1, got {w_min}, {w_max}")
        if n < (2 if include_min else 1):
            raise ValueError(f"n too small: {n}")
        self.w_min = float(w_min)
        self.w_max = float(w_max)
        self.n = int(n)
        self.include_min = include_min

    def sample(self, w_min: float | None = None) -> list[float]:
        lo = self.w_min if w_min is None else float(w_min)
        hi = self.w_max
        if not 0.0 < lo <= hi:
            raise ValueError(f"need 0 < w_min <= w_max ({hi}), got {lo}")
        if lo == hi:
            return [hi]
        fixed = [hi, lo] if self.include_min else [hi]
        n_rand = self.n - len(fixed)
        u = torch.rand(max(n_rand, 0), generator=self.generator, dtype=torch.float64)
        return fixed + [lo + (hi - lo) * x for x in u.tolist()]


def slow_start_active(epoch: float, slow_start_epochs: float) -> bool:
    """``True`` while SlimCLR's slow start holds (``epoch < S``): train the full network only.

    SlimCLR Sec. 3.4 ("slow start"): for the first ``S`` epochs only ``theta_1.0`` is updated;
    sub-networks join from epoch ``S`` on (``S`` = half the epochs in all SlimCLR recipes;
    authors' code: ``enable_slim = epoch >= slim_start_epoch``). ``S <= 0`` disables it.
    Epochs count from 0 and may be fractional (``epoch + step / steps_per_epoch``).
    DSPNet's 10 warm-up epochs with only the full network are the same rule with ``S = 10``.
    """
    return epoch < slow_start_epochs


def dynamic_min_width(
    epoch: float,
    total_epochs: float,
    stages: Sequence[float] = (1.0, 0.75, 0.5, 0.25),
) -> float:
    """US3L dynamic sampling: the minimum sampled width for this epoch.

    US3L slides ("Dynamic Sampling and Group Regularization"; Cao, Sun, Zhou CVPR 2023): "it is
    unnecessary to introduce the training of sub-networks at the beginning" and "the training
    of sub-networks should be gradual": the sampling space grows as ``[1.0, 1.0] -> [0.75, 1.0]
    -> [0.5, 1.0] -> [0.25, 1.0]`` with the training epochs. The slides do not print stage
    lengths; following docs/design.md we use ``len(stages)`` equal stages by epoch: stage
    ``min(floor(epoch * len(stages) / total_epochs), len(stages) - 1)``.

    Example (100 epochs): epochs 0-24 -> 1.0, 25-49 -> 0.75, 50-74 -> 0.5, 75-99 -> 0.25.
    """
    if total_epochs <= 0:
        raise ValueError(f"total_epochs must be > 0, got {total_epochs}")
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    if not stages:
        raise ValueError("stages must not be empty")
    n = len(stages)
    idx = min(math.floor(epoch * n / total_epochs), n - 1)
    return float(stages[idx])


def dynamic_stages(w_min: float, w_max: float = 1.0, num_stages: int = 4) -> tuple[float, ...]:
    """The minimum width of each dynamic-sampling stage for the range ``[w_min, w_max]``.

    Stage ``s`` of ``S`` samples from ``[m_s, w_max]`` with ``m_s = w_max - s (w_max - w_min) /
    (S - 1)``: the full network alone first, the whole range last, evenly spaced in between.
    This is the US3L authors' schedule (code, ``SAMPLE_SCHEDULER: A``: stage ``s >= 1`` uses
    ``w_min + (4 - 1 - s) (w_max - w_min) / 3``, stage 0 ``w_max``), which for ``[0.25, 1]``
    gives the slides' ``1.0, 0.75, 0.5, 0.25``; other ranges are interpolated between their own
    ends instead of reusing those four values (which would start below ``w_min`` or skip
    stages).

    Example:
        >>> [round(w, 4) for w in dynamic_stages(0.35, 1.0)]
        [1.0, 0.7833, 0.5667, 0.35]
    """
    if not 0.0 < w_min <= w_max <= 1.0:
        raise ValueError(f"need 0 < w_min <= w_max <= 1, got {w_min}, {w_max}")
    if num_stages < 1:
        raise ValueError(f"num_stages must be >= 1, got {num_stages}")
    if num_stages == 1:
        return (float(w_min),)
    step = (w_max - w_min) / (num_stages - 1)
    stages = [float(w_max - s * step) for s in range(num_stages)]
    stages[-1] = float(w_min)  # exactly the range's end, without rounding error
    return tuple(stages)
