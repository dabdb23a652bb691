"""Accuracy-vs-MACs plot: one line per run, one marker per sub-network.

The standard way to compare slimmable pre-training methods (SlimCLR, Zhao et al., Fig. 1;
DSPNet, Wang et al.) is accuracy against compute for every width. MACs go on a log
axis because widths scale cost roughly quadratically.

Two choices keep the picture honest:

* The same network at random initialisation (``knn_random_init``, the kNN floor any
  pre-training must beat) is drawn as a dashed line under the kNN line it belongs to.
* The y-axis spans at least :data:`MIN_SPAN` = 10 accuracy points (:func:`accuracy_limits`):
  the data's range plus 5% margins, widened around its middle to 10 points when narrower, kept
  inside [0, 100]. One image of the default job's 360 held-out digits is 0.28 points and kNN's
  binomial standard error there is about 1.6 points at 90% accuracy, so differences of a few
  images stay small on the axis instead of filling it, while a 2-SE difference (about 3
  points) still shows.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # headless: never needs a display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter  # noqa: E402

from slimssl.eval.report import header, read_results  # noqa: E402

__all__ = ["plot_accuracy_vs_macs", "plot_runs", "plot_metrics", "accuracy_limits", "MIN_SPAN"]

FIGSIZE = (7.0, 5.0)
ACCURACY = "accuracy"  # the y key of plot_metrics' per-metric lines
BASELINE = "baseline"  # the random-init key of plot_metrics' per-metric lines
DPI = 150
MIN_SPAN = 10.0  # accuracy points; see the module docstring
#: metric -> the column of the same network at random initialisation
RANDOM_INIT = {"knn_top1_k200": "knn_random_init"}


def _point_label(row: dict) -> str:
    if row.get("width") is not None:
        return f"w{float(row['width']):g}"
    return str(row.get("subnet", ""))


def _valid(v: object) -> bool:
    return isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v))


def accuracy_limits(values: Sequence[float], min_span: float = MIN_SPAN,
                    margin: float = 0.05) -> tuple[float, float]:
    """y-axis limits: the range of ``values`` plus ``margin`` of it on each side, widened around
    its middle to ``min_span`` when narrower, then shifted (not squeezed) into [0, 100]."""
    lo, hi = min(values), max(values)
    pad = margin * (hi - lo)
    lo, hi = lo - pad, hi + pad
    if hi - lo < min_span:
        mid = (lo + hi) / 2
        lo, hi = mid - min_span / 2, mid + min_span / 2
    if lo < 0:
        lo, hi = 0.0, hi - lo
    if hi > 100:
        lo, hi = max(0.0, lo - (hi - 100)), 100.0
    return lo, hi


def accuracy_series(runs: Mapping[str, Sequence[dict]], metric: str,
                    baseline: str | None = None) -> list[tuple[str, list[dict], str, bool]]:
    """``(label, rows in MACs order, y key, is_baseline)`` of every line to draw: each run's
    ``metric``, and under it its ``baseline`` column (default: the metric's random-init column,
    :data:`RANDOM_INIT`) where the rows have one."""
    baseline = baseline or RANDOM_INIT.get(metric)
    out = []
    for run_label, rows in runs.items():
        for key, label, is_base in ((metric, run_label, False),
                                    (baseline, f"{run_label}: random init", True)):
            if key is None:
                continue
            pts = sorted((r for r in rows if _valid(r.get("macs_g")) and _valid(r.get(key))),
                         key=lambda r: r["macs_g"])
            if pts:
                out.append((label, pts, key, is_base))
    return out


def plot_accuracy_vs_macs(
    runs: Mapping[str, Sequence[dict]],
    metric: str,
    path: str | Path,
    title: str | None = None,
    baseline: str | None = None,
) -> Path:
    """Save a PNG of ``metric`` (y) against ``macs_g`` (x, log scale) for each run.

    Rows lacking MACs or the metric are skipped; points of a run are joined in MACs
    order and labelled with the width (``row["width"]``, else the sub-network label). A run's
    random-init column (``baseline``; default :data:`RANDOM_INIT` of ``metric``) is drawn dashed
    in the run's colour; the y-axis follows :func:`accuracy_limits`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=FIGSIZE, dpi=DPI)
    try:
        plotted = 0
        all_x: list[float] = []
        all_y: list[float] = []
        color = None
        for label, pts, key, is_base in accuracy_series(runs, metric, baseline):
            xs = [float(r["macs_g"]) for r in pts]
            ys = [float(r[key]) for r in pts]
            all_x += xs
            all_y += ys
            if is_base:
                ax.plot(xs, ys, marker="x", linestyle="--", alpha=0.7, label=label, color=color)
                continue
            (line,) = ax.plot(xs, ys, marker="o", label=label)
            color = line.get_color()
            for x, y, r in zip(xs, ys, pts):
                ax.annotate(
                    _point_label(r), (x, y), textcoords="offset points", xytext=(4, 4),
                    fontsize=8, color=color,
                )
            plotted += 1
        if all_y:
            ax.set_ylim(*accuracy_limits(all_y))
        if all_x and min(all_x) > 0:
            ax.set_xscale("log")
            # Label the measured MACs themselves: default log ticks crowd or vanish when
            # the widths span less than a decade.
            ticks = sorted(set(all_x))
            if len(ticks) <= 12:
                ax.xaxis.set_major_locator(FixedLocator(ticks))
                ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
                ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("MACs (G, log scale)")
        ax.set_ylabel(f"{header(metric)} (%)")
        ax.set_title(title or f"{header(metric)} vs MACs")
        ax.grid(True, which="both", alpha=0.3)
        if plotted:
            ax.legend(loc="lower right")
        fig.tight_layout()
        fig.savefig(path, dpi=DPI)
    finally:
        plt.close(fig)
    return path


def plot_runs(
    run_dirs: Sequence[str | Path],
    metric: str,
    path: str | Path,
    labels: Sequence[str] | None = None,
) -> Path:
    """``slimssl plot RUN_DIR...``: read each ``results.json`` and plot them together.

    Runs are labelled by their directory name unless ``labels`` is given.
    """
    if labels is not None and len(labels) != len(run_dirs):
        raise ValueError("labels must match run_dirs")
    runs: dict[str, list[dict]] = {}
    for i, d in enumerate(run_dirs):
        name = labels[i] if labels is not None else Path(d).resolve().name
        if name in runs:
            name = f"{name} ({i})"
        runs[name] = read_results(d)
    return plot_accuracy_vs_macs(runs, metric, path)


def plot_metrics(rows: Sequence[dict], metrics: Sequence[str], path: str | Path,
                 title: str | None = None) -> Path:
    """One run, several protocols: one line per metric in ``metrics`` that any row has
    (e.g. kNN, switchable / slimmable linear probes, semi-supervised), against MACs."""
    runs = {
        header(m): [{**r, ACCURACY: r[m], BASELINE: r.get(RANDOM_INIT.get(m, ""))}
                    for r in rows if _valid(r.get(m))]
        for m in metrics
        if any(_valid(r.get(m)) for r in rows)
    }
    return plot_accuracy_vs_macs(runs, ACCURACY, path, title or "Accuracy vs MACs",
                                 baseline=BASELINE)
