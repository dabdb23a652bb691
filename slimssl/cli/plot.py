"""``slimssl plot RUN_DIR...``: accuracy against MACs of several runs on one chart."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from slimssl.eval.plot import plot_runs

    print(f"wrote {plot_runs(args.runs, args.metric, args.output)}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("plot", help="accuracy vs MACs of several runs on one chart")
    p.add_argument("runs", nargs="+", help="run directories holding results.json")
    p.add_argument("--metric", default="knn_top1_k200")
    p.add_argument("--output", default="accuracy_vs_macs.png")
    p.set_defaults(func=run)
