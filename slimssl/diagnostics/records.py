"""Turn a run's metric records (``metrics.jsonl`` rows) into curves, phases and final values.

Every diagnostic is read against the recipe's stages: SlimCLR's claims are about what happens
before and after the slow-start point (Fig. 3d: ratios large before, dropping after; Fig. 4b:
directions stable before, scattered after). Stage changes come from the ``stage`` records the
training loop writes when the set of trained sub-networks changes.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

__all__ = ["STAGE_KIND", "GRAD_KIND", "KNN_KIND", "stage_boundaries", "slow_start_epoch",
           "curves", "phase_means", "last_values"]

Record = Mapping[str, object]
# record kinds (TensorBoard tags are ``<kind>/<metric>``: ``eval/knn/top1/w0.50``)
STAGE_KIND, GRAD_KIND, KNN_KIND = "stage", "diag", "eval"


def _of_kind(records: Iterable[Record], kind: str) -> list[Record]:
    return [r for r in records if r.get("kind") == kind]


def _finite(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def stage_boundaries(records: Sequence[Record]) -> list[float]:
    """Epochs (exact, fractional) at which the trained set of sub-networks changed."""
    return [float(r["epoch_start"]) for r in _of_kind(records, STAGE_KIND)[1:]]


def slow_start_epoch(records: Sequence[Record]) -> float | None:
    """The epoch at which sub-networks joined a full-network-only start, or None."""
    stages = _of_kind(records, STAGE_KIND)
    for prev, cur in zip(stages, stages[1:]):
        if prev["num_subnets"] == 1 and cur["num_subnets"] > 1:
            return float(cur["epoch_start"])
    return None


def curves(records: Sequence[Record], kind: str, prefix: str
           ) -> dict[str, tuple[list[float], list[float]]]:
    """``{name without prefix: (epochs, values)}`` of every metric starting with ``prefix``."""
    out: dict[str, tuple[list[float], list[float]]] = {}
    for r in _of_kind(records, kind):
        for key, value in r.items():
            if key.startswith(prefix) and _finite(value):
                xs, ys = out.setdefault(key[len(prefix):], ([], []))
                xs.append(float(r["epoch"]))
                ys.append(float(value))
    return out


def phase_means(records: Sequence[Record], kind: str, key: str, boundary: float | None
                ) -> dict[str, float | None]:
    """Mean of ``key`` over all records, before and at/after ``boundary`` (an epoch)."""
    pts = [(float(r["epoch"]), float(r[key])) for r in _of_kind(records, kind)
           if _finite(r.get(key))]

    def mean(vals: list[float]) -> float | None:
        return sum(vals) / len(vals) if vals else None

    if boundary is None:
        return {"all": mean([v for _, v in pts]), "before": None, "after": None}
    return {"all": mean([v for _, v in pts]),
            "before": mean([v for e, v in pts if e <= boundary]),
            "after": mean([v for e, v in pts if e > boundary])}


def last_values(records: Sequence[Record], kind: str, prefix: str, window: int = 1
                ) -> dict[str, float]:
    """Mean of the last ``window`` values of each ``prefix`` metric (smooths per-step noise)."""
    return {name: sum(ys[-window:]) / len(ys[-window:])
            for name, (_, ys) in curves(records, kind, prefix).items()}
