"""Accuracy-vs-MACs plot: one line per run, one marker per sub-network.

The standard way to compare slimmable pre-training methods (SlimCLR, Zhao et al., Fig. 1;
DSPNet, Wang et al.) is accuracy against compute for every width. MACs go on a log
axis because widths scale cost roughly quadratically.
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

__all__ = ["plot_accuracy_vs_macs", "plot_runs", "plot_metrics"]

FIGSIZE = (7.0, 5.0)
ACCURACY = "accuracy"  # the y key of plot_metrics' per-metric lines
DPI = 150


def _point_label(row: dict) -> str:
    if row.get("width") is not None:
        return f"w{float(row['width']):g}"
    return str(row.get("subnet", ""))


def _valid(v: object) -> bool:
    return isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v))


def plot_accuracy_vs_macs(
    runs: Mapping[str, Sequence[dict]],
    metric: str,
    path: str | Path,
    title: str | None = None,
) -> Path:
    """Save a PNG of ``metric`` (y) against ``macs_g`` (x, log scale) for each run.

    Rows lacking MACs or the metric are skipped; points of a run are joined in MACs
    order and labelled with the width (``row["width"]``, else the sub-network label).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=FIGSIZE, dpi=DPI)
    try:
        plotted = 0
        all_x: list[float] = []
        for run_label, rows in runs.items():
            pts = sorted(
                (r for r in rows if _valid(r.get("macs_g")) and _valid(r.get(metric))),
                key=lambda r: r["macs_g"],
            )
            if not pts:
                continue
            xs = [float(r["macs_g"]) for r in pts]
            ys = [float(r[metric]) for r in pts]
            all_x += xs
            (line,) = ax.plot(xs, ys, marker="o", label=run_label)
            for x, y, r in zip(xs, ys, pts):
                ax.annotate(
                    _point_label(r), (x, y), textcoords="offset points", xytext=(4, 4),
                    fontsize=8, color=line.get_color(),
                )
            plotted += 1
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
        header(m): [{**r, ACCURACY: r[m]} for r in rows if _valid(r.get(m))]
        for m in metrics
        if any(_valid(r.get(m)) for r in rows)
    }
    return plot_accuracy_vs_macs(runs, ACCURACY, path, title or "Accuracy vs MACs")
