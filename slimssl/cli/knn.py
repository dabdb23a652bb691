"""``slimssl knn RUN``: kNN-evaluate (and export) every member of a pre-trained run.

Runs in one process or under ``torchrun`` (each rank extracts its share of the feature shards
and scores its share of the queries; rank 0 exports and writes the table). Features are cached
in ``RUN/features`` and reused; after the weights change, ``--refresh-features`` re-extracts.
"""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from slimssl.cli.members import open_run
    from slimssl.cli.report import evaluate_and_export
    from slimssl.dist import cleanup_distributed, init_distributed

    run_ = open_run(args.run, args.data)
    if args.data_mode is not None:
        run_.cfg.data.mode = args.data_mode
    if args.knn_vote is not None:
        run_.cfg.eval.knn_vote = args.knn_vote
    info = init_distributed(run_.cfg.train.device)
    try:
        evaluate_and_export(run_.cfg, run_.backbone.to(info.device), run_.directory,
                            f"{run_.cfg.recipe.name}-{run_.cfg.method.name}",
                            distributed=True, refresh_features=args.refresh_features)
    finally:
        cleanup_distributed()
    return 0


def add_parser(sub) -> None:
    from slimssl.cli.evaluation import add_data_arguments

    p = sub.add_parser("knn", help="kNN-evaluate and export every member of a pre-trained run")
    p.add_argument("run", help="run directory or checkpoint file")
    p.add_argument("--data", help="dataset to evaluate on (default: the run's)")
    p.add_argument("--knn-vote", choices=["weighted", "majority"],
                   help="majority: also DSPNet's majority vote among the k neighbours "
                        "(knn_top1_k20_majority; ties to the class of the nearest tied "
                        "neighbour); weighted: InstDisc's exp(sim/T) vote only, always written "
                        "as knn_top1_k{k} (default: the run's eval.knn_vote: majority for "
                        "DSPNet runs, weighted otherwise)")
    add_data_arguments(p)
    p.set_defaults(func=run)
