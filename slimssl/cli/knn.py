"""``slimssl knn RUN``: kNN-evaluate (and export) every member of a pre-trained run."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from slimssl.cli.members import open_run
    from slimssl.cli.report import evaluate_and_export

    run_ = open_run(args.run, args.data)
    evaluate_and_export(run_.cfg, run_.backbone, run_.directory,
                        f"{run_.cfg.recipe.name}-{run_.cfg.method.name}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("knn", help="kNN-evaluate and export every member of a pre-trained run")
    p.add_argument("run", help="run directory or checkpoint file")
    p.add_argument("--data", help="dataset to evaluate on (default: the run's)")
    p.set_defaults(func=run)
