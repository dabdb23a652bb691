"""``slimssl diagnose RUN_DIR``: plots and a summary of a run's interference diagnostics.

Reads ``metrics.jsonl`` (gradient-norm ratios, collapse monitor, per-width kNN, stage changes)
and the saved last-layer gradient snapshots, writes PNGs to ``RUN_DIR/diagnostics/`` with the
slow-start (stage) boundaries marked, and prints what SlimCLR Sec. 3.2 asks to look at: the
ratios before/after the slow-start point (Fig. 3), how stable the gradient direction is (Fig. 4),
and per width the embedding spread (collapse) and kNN accuracy. ``slimssl pretrain`` prints the
same summary at the end of a run.

``slimssl diagnose trajectory RUN_DIR [RUN_DIR ...]`` and ``slimssl diagnose landscape RUN_DIR
[RUN_DIR ...]`` draw SlimCLR Fig. 5 (optimisation trajectory, error surface) from a run's weight
snapshots: see :mod:`slimssl.cli.landscape`.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from slimssl.engine.config import load_config

# torch, matplotlib and the diagnostics are imported by the functions that use them, so that
# building the parser (``slimssl --help``) stays light.

__all__ = ["diagnose", "format_summary", "add_parser", "MODES"]

MODES = ("trajectory", "landscape")


def _embedding_dim(run_dir: Path) -> int | None:
    try:
        return load_config(str(run_dir / "config.yaml")).method.proj_dim
    except (OSError, ValueError):
        return None


def _direction(run_dir: Path, out: Path, boundary: float | None, summary: dict) -> None:
    from slimssl.diagnostics import (SnapshotStore, consecutive_cosine, plot_direction,
                                     principal_projection)
    from slimssl.cli.monitors import DIRECTION_DIR

    snaps = SnapshotStore(run_dir / DIRECTION_DIR).load()
    if snaps is None or len(snaps.steps) < 2:
        return
    proj, explained = principal_projection(snaps.grads)
    summary["plots"].append(plot_direction(proj, snaps.epochs, out / "grad_direction.png",
                                           explained=explained, boundary=boundary,
                                           title=f"gradient direction: {snaps.layer}"))
    cos = consecutive_cosine(snaps.grads).tolist()
    split = -math.inf if boundary is None else boundary
    phases = {"before": [c for c, e in zip(cos, snaps.epochs[1:]) if e <= split],
              "after": [c for c, e in zip(cos, snaps.epochs[1:]) if e > split]}
    summary["direction"] = {"snapshots": len(snaps.steps), "explained": explained.tolist(),
                            **{k: sum(v) / len(v) if v else None for k, v in phases.items()}}


def diagnose(run_dir: str | Path, out_dir: str | Path | None = None) -> dict:
    """Write the diagnostic PNGs of ``run_dir`` and return the summary (see module docstring)."""
    from slimssl.diagnostics import plot_curves
    from slimssl.diagnostics.records import (GRAD_KIND, KNN_KIND, curves, last_values,
                                             phase_means, slow_start_epoch, stage_boundaries)
    from slimssl.engine.logging import read_metrics

    run_dir = Path(run_dir)
    if not (run_dir / "metrics.jsonl").is_file():
        raise FileNotFoundError(f"{run_dir} has no metrics.jsonl: pass a run directory of "
                                "slimssl pretrain")
    out = Path(out_dir) if out_dir is not None else run_dir / "diagnostics"
    records = read_metrics(run_dir)
    boundaries, slow = stage_boundaries(records), slow_start_epoch(records)
    marks = dict(boundaries=boundaries, boundary_label="sub-networks change")
    summary: dict = {"slow_start_epoch": slow, "boundaries": boundaries, "plots": []}

    ratios = curves(records, GRAD_KIND, "grad/")
    if "rest_over_wmin" in ratios:
        params = ratios["param_rest_over_wmin"][1][-1]
        summary["grad"] = {k: phase_means(records, GRAD_KIND, f"grad/{k}", slow)
                           for k in ("rest_over_wmin", "full_over_wmin")}
        summary["grad"]["param_rest_over_wmin"] = params
        summary["plots"].append(plot_curves(
            {"||g_rest|| / ||g_wmin||": ratios["rest_over_wmin"],
             "||g_full|| / ||g_wmin||": ratios["full_over_wmin"]}, out / "grad_ratios.png",
            title=f"gradient-norm ratios (|rest| / |wmin| = {params:.1f} parameters)",
            ylabel="ratio of mean layer-wise norms", reference=(1.0, "equal norms"), **marks))
    _direction(run_dir, out, slow, summary)

    collapse = curves(records, "train", "std/")
    if collapse:
        dim = _embedding_dim(run_dir)
        summary["collapse"] = last_values(records, "train", "std/", window=5)
        summary["plots"].append(plot_curves(
            collapse, out / "collapse.png", title="collapse monitor (0 = collapsed)",
            ylabel="std of normalised embedding over the batch",
            reference=(1 / math.sqrt(dim), "1/sqrt(dim): uniform") if dim else None, **marks))
    knn = curves(records, KNN_KIND, "knn/top1/")
    if knn:
        summary["knn"] = last_values(records, KNN_KIND, "knn/top1/")
        summary["knn_seconds"] = phase_means(records, KNN_KIND, "knn/seconds", None)["all"]
        summary["knn_overhead"] = phase_means(records, KNN_KIND, "knn/overhead", None)["all"]
        summary["plots"].append(plot_curves(knn, out / "knn_curves.png",
                                            title="online kNN top-1 per sub-network",
                                            ylabel="kNN top-1 (%)", **marks))
    return summary


def _fmt(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def format_summary(summary: dict) -> str:
    """The printed form of :func:`diagnose`'s summary."""
    lines = []
    slow = summary["slow_start_epoch"]
    if summary["boundaries"]:
        lines.append("sub-networks change at epoch(s) "
                     + ", ".join(f"{b:g}" for b in summary["boundaries"])
                     + (f" (slow start ends at {slow:g})" if slow is not None else ""))
    if "grad" in summary:
        g = summary["grad"]
        lines.append(f"gradient-norm ratios (SlimCLR Fig. 3; |rest|/|wmin| = "
                     f"{g['param_rest_over_wmin']:.1f} params)   all   before  after slow start")
        for key, label in (("rest_over_wmin", "||g_rest||/||g_wmin||"),
                           ("full_over_wmin", "||g_full||/||g_wmin||")):
            m = g[key]
            lines.append(f"  {label:58s}{_fmt(m['all']):>6s} {_fmt(m['before']):>7s} "
                         f"{_fmt(m['after']):>6s}")
    if "direction" in summary:
        d = summary["direction"]
        ev = d["explained"] + [0.0]
        lines.append(f"gradient direction (Fig. 4): {d['snapshots']} snapshots, "
                     f"PC1 {100 * ev[0]:.0f}% PC2 {100 * ev[1]:.0f}% of variance; consecutive "
                     f"cosine before {_fmt(d['before'])} / after {_fmt(d['after'])} the "
                     "slow-start point")
    widths = sorted(set(summary.get("collapse", {})) | set(summary.get("knn", {})), reverse=True)
    if widths:
        col = max(9, *(len(w) + 2 for w in widths))  # DSPNet labels: "w1.00 d1-1-1-1"
        lines.append("per sub-network      " + "".join(f"{w:>{col}s}" for w in widths))
        if "collapse" in summary:
            lines.append("  collapse std (last)" + "".join(
                f"{_fmt(summary['collapse'].get(w), 3):>{col}s}" for w in widths))
        if "knn" in summary:
            lines.append("  kNN top-1 (last)   " + "".join(
                f"{_fmt(summary['knn'].get(w), 1):>{col}s}" for w in widths))
            overhead = summary["knn_overhead"]
            lines.append(f"  kNN monitor: {_fmt(summary['knn_seconds'], 1)} s per check, "
                         f"{_fmt(None if overhead is None else 100 * overhead, 1)}% of the "
                         "training time")
    if summary["plots"]:
        lines.append("plots: " + ", ".join(str(p) for p in summary["plots"]))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    target = args.target
    if target[0] in MODES and len(target) > 1:
        from slimssl.cli.landscape import landscape_report, trajectory_report

        args.runs = target[1:]
        _, lines = (trajectory_report(args.runs, args.out) if target[0] == "trajectory"
                    else landscape_report(args))
        print("\n".join(lines))
        return 0
    if len(target) != 1:
        raise SystemExit(f"slimssl diagnose: expected RUN_DIR, or one of {MODES} and run "
                         f"directories; got {target}")
    print(format_summary(diagnose(target[0], args.out)))
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of the two modes (``slimssl diagnose`` parses them after the mode)."""
    p.add_argument("--directions", choices=("pca", "random"), default="pca",
                   help="landscape plane: the trajectory's PCA directions (default; trajectory "
                   "drawn on top) or filter-normalised random directions (Li et al. Sec. 4)")
    p.add_argument("--grid", type=int, default=21, help="points per axis (default 21)")
    p.add_argument("--extent", type=float, help="grid half-width (default: 1.2 x the largest "
                   "trajectory offset of all runs for pca, 1.0 for random)")
    p.add_argument("--width", type=float, help="sub-network width (default: the largest)")
    # Cost per grid point: one forward pass over calib + bank + queries images (default 600).
    p.add_argument("--bank", type=int, default=250, help="kNN bank images, class-balanced "
                   "from the train split (default 250)")
    p.add_argument("--queries", type=int, default=250, help="kNN query images from the test "
                   "split (default 250)")
    p.add_argument("--calib", type=int, default=100, help="bank images that recompute the BN "
                   "statistics at every point (default 100)")
    p.add_argument("--k", type=int, default=20, help="kNN neighbours (default 20)")
    p.add_argument("--data", help="data path (default: the run's data.path)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random directions")


def add_parser(sub) -> None:
    p = sub.add_parser("diagnose", help="plot and summarise a run's diagnostics: gradient-norm "
                       "ratios, gradient directions, collapse and per-width kNN (SlimCLR Fig. 3-4);"
                       " 'trajectory' / 'landscape' RUN_DIR [RUN_DIR ...]: optimisation "
                       "trajectory and error surface, runs side by side (SlimCLR Fig. 5)")
    p.add_argument("target", nargs="+", metavar="[trajectory|landscape] RUN_DIR",
                   help="a run directory of slimssl pretrain; after trajectory/landscape, one or "
                   "more (pre-trained with train.snapshot_every_epochs > 0)")
    p.add_argument("--out", help="folder for the PNGs (default: (first) RUN_DIR/diagnostics)")
    add_arguments(p.add_argument_group("trajectory / landscape"))
    p.set_defaults(func=run)
