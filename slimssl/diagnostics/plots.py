"""PNG plots of the interference diagnostics, with the recipe's stage boundaries marked, and the
error-surface / trajectory panels of SlimCLR Fig. 5 (Li et al. 2018).

Every curve is drawn against epochs so that the slow-start point (SlimCLR Sec. 3.4; the moment
the sub-networks join, where Fig. 3d's ratios drop and Fig. 4b's directions start to scatter) and
dynamic-sampling stages (US3L) appear as vertical lines at the same place in every figure.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # headless: never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

__all__ = ["Series", "plot_curves", "plot_direction", "LandscapePanel", "plot_landscapes"]

Series = Mapping[str, tuple[Sequence[float], Sequence[float]]]
FIGSIZE = (7.0, 4.5)
DPI = 130


def _mark(ax, boundaries: Sequence[float], label: str) -> None:
    for i, x in enumerate(boundaries):
        ax.axvline(x, color="0.35", linestyle="--", linewidth=1.0, label=label if i == 0 else None)


def plot_curves(series: Series, path: str | Path, *, title: str, ylabel: str,
                boundaries: Sequence[float] = (), boundary_label: str = "stage change",
                reference: tuple[float, str] | None = None, logy: bool = False) -> Path:
    """One line per entry of ``series`` (``name -> (epochs, values)``); ``boundaries`` are
    vertical dashed lines, ``reference`` = (y, label) a horizontal dotted line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=FIGSIZE, dpi=DPI)
    try:
        for name, (x, y) in series.items():
            ax.plot(list(x), list(y), label=name, linewidth=1.4,
                    marker="o" if len(x) <= 30 else None, markersize=3)
        _mark(ax, boundaries, boundary_label)
        if reference is not None:
            ax.axhline(reference[0], color="0.5", linestyle=":", linewidth=1.0, label=reference[1])
        if logy:
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def plot_direction(projection: torch.Tensor, epochs: Sequence[float], path: str | Path, *,
                   explained: Sequence[float], boundary: float | None = None,
                   title: str = "gradient direction (last linear layer)") -> Path:
    """Trajectory of the snapshots on the first two principal components, coloured by epoch
    (SlimCLR Fig. 4); the first snapshot at or after ``boundary`` is ringed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    xy = projection.detach().cpu().float()
    y = xy[:, 1] if xy.shape[1] > 1 else torch.zeros(xy.shape[0])
    fig, ax = plt.subplots(figsize=(5.5, 5.0), dpi=DPI)
    try:
        ax.plot(xy[:, 0], y, color="0.8", linewidth=0.8, zorder=1)
        points = ax.scatter(xy[:, 0], y, c=list(epochs), cmap="viridis", s=14, zorder=2)
        fig.colorbar(points, ax=ax, label="epoch")
        if boundary is not None:
            after = [i for i, e in enumerate(epochs) if e >= boundary]
            if after:
                i = after[0]
                ax.scatter([xy[i, 0]], [y[i]], s=140, facecolors="none", edgecolors="red",
                           linewidths=1.5, zorder=3, label=f"slow-start point (epoch {boundary:g})")
                ax.legend(fontsize=8)
        ev = list(explained) + [0.0, 0.0]
        ax.set_xlabel(f"PC1 ({100 * ev[0]:.0f}% var.)")
        ax.set_ylabel(f"PC2 ({100 * ev[1]:.0f}% var.)")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


@dataclass
class LandscapePanel:
    """One run's picture: an optional surface ``values`` (len(ys), len(xs)) on the grid ``xs`` x
    ``ys``, an optional trajectory ``coords`` (T, 2) with its ``epochs``, axis labels."""

    title: str
    xlabel: str
    ylabel: str
    xs: Sequence[float] | None = None
    ys: Sequence[float] | None = None
    values: torch.Tensor | None = None
    coords: torch.Tensor | None = None
    epochs: Sequence[float] = ()


def _extent(panels: Sequence[LandscapePanel]) -> float:
    """Half-width of the shared square axes: the grid, else 1.1 x the largest trajectory offset."""
    grids = [max(abs(v) for v in [*p.xs, *p.ys]) for p in panels if p.xs is not None]
    if grids:
        return max(grids)
    return 1.1 * max(float(p.coords.abs().max()) for p in panels if p.coords is not None)


def plot_landscapes(panels: Sequence[LandscapePanel], path: str | Path, *, title: str,
                    metric: str = "kNN top-1 (%)", levels: int = 12) -> Path:
    """Panels side by side on the same axes scale and, for surfaces, the same contour levels
    (SlimCLR Fig. 5 puts an individual network next to the same width of a slimmable family):
    filled contours of the surface, the trajectory on top (start ringed, final weights = the
    origin, starred)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    surfaces = [p.values for p in panels if p.values is not None]
    if surfaces:
        low, high = min(float(v.min()) for v in surfaces), max(float(v.max()) for v in surfaces)
        if high - low < 1e-6:  # a flat surface still needs increasing levels
            low, high = low - 1.0, high + 1.0
        contour_levels = torch.linspace(low, high, levels).tolist()
    extent = _extent(panels)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels) + 1.0, 4.8), dpi=DPI,
                             squeeze=False, layout="constrained")
    try:
        filled = None
        for ax, panel in zip(axes[0], panels):
            if panel.values is not None:
                filled = ax.contourf(list(panel.xs), list(panel.ys), panel.values.numpy(),
                                     levels=contour_levels, cmap="viridis", extend="neither")
                lines = ax.contour(list(panel.xs), list(panel.ys), panel.values.numpy(),
                                   levels=contour_levels, colors="white", linewidths=0.5)
                ax.clabel(lines, fontsize=6, fmt="%.0f")
            if panel.coords is not None:
                xy = panel.coords.float()
                ax.plot(xy[:, 0], xy[:, 1], color="red", linewidth=1.2, marker="o",
                        markersize=3, zorder=3, label="trajectory")
                ax.scatter([xy[0, 0]], [xy[0, 1]], s=80, facecolors="none", edgecolors="red",
                           zorder=4, label=f"start (epoch {panel.epochs[0]:g})"
                           if panel.epochs else "start")
                ax.legend(fontsize=7, loc="lower right")
            ax.scatter([0.0], [0.0], marker="*", s=120, color="orange", zorder=5)
            ax.set_xlim(-extent, extent)
            ax.set_ylim(-extent, extent)
            ax.set_aspect("equal")
            ax.set_xlabel(panel.xlabel)
            ax.set_ylabel(panel.ylabel)
            ax.set_title(panel.title, fontsize=9)
            ax.grid(True, alpha=0.25)
        if filled is not None:
            fig.colorbar(filled, ax=list(axes[0]), label=metric, shrink=0.85)
        fig.suptitle(title, fontsize=10)
        fig.savefig(path, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path
