"""Pick the most accurate member of a family within a cost budget; its Pareto front and plot.

A deployment question is "the best network that fits": under a MAC budget (device-independent)
or a latency budget (measured on the target device, :mod:`slimssl.export.latency`). Accuracy
comes from the run's evaluation table (``results.json``). For universally slimmable runs the
candidates are a grid of widths, most never evaluated: their accuracy is interpolated linearly
in width between evaluated members of the same depth (never extrapolated) and marked as an
estimate, since evaluating every grid point would cost a full evaluation each.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

COST_UNITS = {"macs": "MACs", "ms": "ms"}
# preferred accuracy columns, best protocol first (linear probe, then kNN)
ACCURACY_KEYS = ("linear_switchable_top1", "linear_slimmable_top1", "knn_top1_k200",
                 "knn_top1_k20")


@dataclass
class Candidate:
    """One member: its cost, and its accuracy (``estimated`` when interpolated)."""

    label: str
    width: float
    depth: tuple[int, ...] | None
    params: int
    macs: int
    accuracy: float | None
    estimated: bool = False
    latency_ms: float | None = None

    def cost(self, kind: str) -> float:
        value = self.macs if kind == "macs" else self.latency_ms
        if value is None:
            raise ValueError(f"{self.label} has no {kind} measured")
        return float(value)


def accuracy_metric(rows: Sequence[Mapping], preferred: str | None = None) -> str:
    """The accuracy column to rank by: ``preferred`` if given, else the best one present."""
    present = {k for r in rows for k, v in r.items() if isinstance(v, (int, float))}
    if preferred is not None:
        if preferred not in present:
            raise ValueError(f"results have no numeric column {preferred!r}; available: "
                             f"{', '.join(sorted(present))}")
        return preferred
    for key in ACCURACY_KEYS:
        if key in present:
            return key
    knn = sorted(k for k in present if k.startswith("knn_top1_k"))
    if knn:
        return knn[0]
    raise ValueError("results.json has no accuracy column (linear probe or kNN); evaluate the "
                     "run first: slimssl knn RUN_DIR")


def accuracy_by_label(rows: Sequence[Mapping], metric: str) -> dict[str, float]:
    """``{sub-network label: accuracy}`` for rows that have ``metric``."""
    return {str(r["subnet"]): float(r[metric]) for r in rows
            if isinstance(r.get(metric), (int, float)) and "subnet" in r}


def interpolate_accuracy(width: float, known: Mapping[float, float]) -> float | None:
    """Linear interpolation in width between the nearest evaluated widths; None outside them."""
    points = sorted(known.items())
    for (w0, a0), (w1, a1) in zip(points, points[1:]):
        if w0 <= width <= w1:
            return a0 + (a1 - a0) * (width - w0) / (w1 - w0)
    exact = [a for w, a in points if abs(w - width) < 1e-9]
    return exact[0] if exact else None


def pareto_front(candidates: Sequence[Candidate], kind: str) -> list[Candidate]:
    """Members no other member beats on both cost and accuracy, cheapest first."""
    ranked = sorted((c for c in candidates if c.accuracy is not None),
                    key=lambda c: (c.cost(kind), -c.accuracy))
    front: list[Candidate] = []
    for c in ranked:
        if not front or c.accuracy > front[-1].accuracy:
            front.append(c)
    return front


def pick_within_budget(candidates: Sequence[Candidate], kind: str, budget: float) -> Candidate:
    """The most accurate member costing at most ``budget`` (ties: the cheaper one)."""
    scored = [c for c in candidates if c.accuracy is not None]
    if not scored:
        raise ValueError("no candidate has an accuracy; evaluate the run first: slimssl knn RUN")
    fits = [c for c in scored if c.cost(kind) <= budget]
    if not fits:
        cheapest = min(scored, key=lambda c: c.cost(kind))
        raise ValueError(
            f"no member fits the budget of {budget:g} {COST_UNITS[kind]}: the cheapest, "
            f"{cheapest.label}, costs {cheapest.cost(kind):g}; raise the budget")
    return max(fits, key=lambda c: (c.accuracy, -c.cost(kind)))


def plot_front(candidates: Sequence[Candidate], kind: str, budget: float, chosen: Candidate,
               metric: str, path: str | Path) -> Path:
    """Accuracy vs cost: every candidate (hollow if estimated), the front, the budget, the pick."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scale = 1e9 if kind == "macs" else 1.0
    unit = "GMACs" if kind == "macs" else "latency (ms)"
    fig, ax = plt.subplots(figsize=(6, 4))
    scored = [c for c in candidates if c.accuracy is not None]
    for estimated in (False, True):
        pts = [c for c in scored if c.estimated == estimated]
        if pts:
            ax.scatter([c.cost(kind) / scale for c in pts], [c.accuracy for c in pts],
                       facecolors="none" if estimated else "C0", edgecolors="C0",
                       label="interpolated" if estimated else "evaluated")
    front = pareto_front(scored, kind)
    ax.plot([c.cost(kind) / scale for c in front], [c.accuracy for c in front], "C1-",
            label="Pareto front")
    ax.axvline(budget / scale, color="C3", linestyle="--", label="budget")
    ax.scatter([chosen.cost(kind) / scale], [chosen.accuracy], s=160, marker="*", color="C3",
               zorder=3, label=f"pick: {chosen.label}")
    ax.set_xlabel(unit)
    ax.set_ylabel(metric)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
