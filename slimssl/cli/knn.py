"""``slimssl knn RUN``: kNN-evaluate (and export) every member of a pre-trained run."""

from __future__ import annotations

import argparse
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    from slimssl.cli.report import evaluate_and_export
    from slimssl.engine.build import load_pretrained

    cfg, method = load_pretrained(args.run)
    if args.data is not None:
        cfg.data.path = args.data
    path = Path(args.run)
    run_dir = path if path.is_dir() else path.parent.parent
    evaluate_and_export(cfg, method.online.backbone, run_dir,
                        f"{cfg.recipe.name}-{cfg.method.name}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("knn", help="kNN-evaluate and export every member of a pre-trained run")
    p.add_argument("run", help="run directory or checkpoint file")
    p.add_argument("--data", help="dataset to evaluate on (default: the run's)")
    p.set_defaults(func=run)
