"""``slimssl select RUN_DIR --budget-macs X | --budget-ms X``: the best member that fits.

Candidates are the run's members (for universally slimmable runs, a grid of widths); each is
extracted, its MACs counted and, for a latency budget, its latency measured on ``--device``.
The most accurate candidate within the budget is printed with the Pareto front, and the plot
is saved.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

_SUFFIX = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}


def parse_macs(text: str) -> float:
    """``"1.1G"``, ``"300M"``, ``"2.5e8"`` -> MACs (argparse type)."""
    m = re.fullmatch(r"\s*([0-9.eE+-]+)\s*([KMGT]?)\s*(MACs?)?\s*", text, re.IGNORECASE)
    try:
        return float(m.group(1)) * _SUFFIX[m.group(2).upper()] if m else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"MAC budget must be a number with an optional K/M/G suffix, e.g. 1.1G; got "
            f"{text!r}") from None


def grid_widths(lo: float, hi: float, points: int, evaluated: list[float]) -> list[float]:
    """``points`` evenly spaced widths in [lo, hi] plus the evaluated ones, largest first."""
    steps = max(points - 1, 1)
    grid = {round(lo + (hi - lo) * i / steps, 4) for i in range(points)}
    return sorted(grid | {round(w, 4) for w in evaluated}, reverse=True)


def run(args: argparse.Namespace) -> int:
    from slimssl.cli.members import member_specs, open_run
    from slimssl.eval.report import read_results
    from slimssl.export.budget import (Candidate, accuracy_by_label, accuracy_metric,
                                       interpolate_accuracy, pick_within_budget, plot_front)
    from slimssl.export.extract import extract_subnet
    from slimssl.export.latency import measure_latency
    from slimssl.export.profile import count_macs, count_params, statistics_ignored

    run_ = open_run(args.run)
    backbone = run_.backbone
    results_path = run_.directory / "results.json"
    if not results_path.is_file():
        raise FileNotFoundError(f"{results_path} is missing: evaluate the run first "
                                f"(slimssl knn {run_.directory})")
    rows = read_results(run_.directory)
    metric = accuracy_metric(rows, args.metric)
    measured = accuracy_by_label(rows, metric)
    widths = args.widths
    if widths is None and backbone.norm_mode == "universal":
        evaluated = [float(r["width"]) for r in rows if r.get("subnet") in measured]
        widths = grid_widths(*backbone.width_range, args.grid, evaluated)
    kind, budget = ("ms", args.budget_ms) if args.budget_ms is not None else ("macs",
                                                                              args.budget_macs)
    size = args.input_size or run_.cfg.data.image_size
    candidates = []
    for spec in member_specs(backbone, widths, args.depths):
        with statistics_ignored(backbone, spec.width):  # sizes and speed: no recalibration
            plain = extract_subnet(backbone, spec)
        same_depth = {float(r["width"]): measured[r["subnet"]] for r in rows
                      if r.get("subnet") in measured
                      and (tuple(r["depth"]) if r.get("depth") else None) == spec.depth}
        accuracy = measured.get(spec.label, interpolate_accuracy(spec.width, same_depth))
        latency = (measure_latency(plain, size, args.device, args.batch_size).median_ms
                   if kind == "ms" else None)
        candidates.append(Candidate(spec.label, spec.width, spec.depth, count_params(plain),
                                    count_macs(plain, size), accuracy,
                                    spec.label not in measured, latency))
    chosen = pick_within_budget(candidates, kind, budget)
    print(format_candidates(candidates, kind, chosen, metric))
    where = (f" on {args.device} ({args.batch_size} image(s) per pass, input {size}px)"
             if kind == "ms" else f" (input {size}px)")
    print(f"selected {chosen.label}: {metric} {chosen.accuracy:.2f}"
          f"{' (interpolated)' if chosen.estimated else ''}, {chosen.macs / 1e9:.3f} GMACs"
          + (f", {chosen.latency_ms:.2f} ms" if kind == "ms" else "") + where)
    depth = f" --depths {'-'.join(map(str, chosen.depth))}" if chosen.depth else ""
    print(f"export it: slimssl export {run_.directory} --widths {chosen.width:g}{depth}")
    plot = Path(args.plot) if args.plot else run_.directory / f"select_{kind}.png"
    print(f"plot: {plot_front(candidates, kind, budget, chosen, metric, plot)}")
    return 0


def format_candidates(candidates, kind: str, chosen, metric: str) -> str:
    """Candidates, cheapest first; ``*`` marks the Pareto front, ``<-`` the pick, ``~`` an
    interpolated accuracy."""
    from slimssl.export.budget import pareto_front

    front = {id(c) for c in pareto_front(candidates, kind)}
    header = ["member", "params (M)", "GMACs", *(["latency (ms)"] if kind == "ms" else []),
              metric, "front"]
    lines = []
    for c in sorted(candidates, key=lambda c: c.cost(kind)):
        acc = "-" if c.accuracy is None else f"{'~' if c.estimated else ''}{c.accuracy:.2f}"
        lines.append([c.label, f"{c.params / 1e6:.2f}", f"{c.macs / 1e9:.4f}",
                      *([f"{c.latency_ms:.2f}"] if kind == "ms" else []), acc,
                      ("*" if id(c) in front else "") + (" <-" if c is chosen else "")])
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]

    def fmt(row: list[str]) -> str:
        return "  ".join(v.ljust(w) if i == 0 else v.rjust(w)
                         for i, (v, w) in enumerate(zip(row, widths))).rstrip()

    return "\n".join([fmt(header), "  ".join("-" * w for w in widths), *map(fmt, lines)])


def add_parser(sub) -> None:
    from slimssl.cli.members import add_member_arguments

    p = sub.add_parser("select", help="the most accurate member within a MAC or latency "
                       "budget, with the Pareto front and its plot")
    add_member_arguments(p)
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument("--budget-macs", type=parse_macs, metavar="X",
                        help="multiply-accumulates per image, e.g. 1.1G or 300M")
    budget.add_argument("--budget-ms", type=float, metavar="X",
                        help="latency per forward pass in milliseconds, measured on --device")
    p.add_argument("--device", default="cpu", help="device to measure latency on (cpu, cuda)")
    p.add_argument("--batch-size", type=int, default=1, help="images per timed forward pass")
    p.add_argument("--input-size", type=int, help="image size (default: the run's)")
    p.add_argument("--metric", help="accuracy column of results.json (default: the best "
                   "protocol present: linear probe, then kNN)")
    p.add_argument("--grid", type=int, default=9,
                   help="widths tried in a universally slimmable run's range (default 9)")
    p.add_argument("--plot", help="where to save the plot (default RUN_DIR/select_<ms|macs>.png)")
    p.set_defaults(func=run)
