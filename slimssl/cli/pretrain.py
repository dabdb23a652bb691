"""``slimssl pretrain``: train a slimmable family, then evaluate and export every member.

With no arguments it runs the built-in default job: SlimCLR-MoCov2 on a small slimmable ResNet
(CIFAR stem, widths [1, .75, .5, .25]) on scikit-learn's embedded digits dataset.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def config_from_args(args: argparse.Namespace):
    from slimssl.engine.config import load_config

    overrides = list(args.set or [])
    if args.data is not None:
        overrides.append(f"data.path={args.data}")
    if args.epochs is not None:
        overrides.append(f"train.epochs={args.epochs}")
    if args.out_dir is not None:
        overrides.append(f"out_dir={args.out_dir}")
    return load_config(args.config, overrides)


def run(args: argparse.Namespace) -> int:
    from slimssl.cli.diagnose import diagnose, format_summary
    from slimssl.cli.report import evaluate_and_export
    from slimssl.dist import is_main
    from slimssl.cli.callbacks import build_callbacks
    from slimssl.engine.trainer import Trainer

    cfg = config_from_args(args)
    run_dir = Path(cfg.out_dir)
    start = time.perf_counter()
    trainer = Trainer(cfg, run_dir, resume=args.resume, progress=args.progress,
                      callbacks=build_callbacks(cfg))
    history = trainer.fit()
    if is_main():
        if history:
            print(f"loss, summed over the members each step trains: epoch {history[0]['epoch']} "
                  f"{history[0]['loss']:.4f} -> epoch {history[-1]['epoch']} "
                  f"{history[-1]['loss']:.4f}")
        kd = [h for h in history if "kd" in h]
        if kd:
            print(f"distillation as KL (0: the sub-networks match the full network): epoch "
                  f"{kd[0]['epoch']} {kd[0]['kd']:.4f} -> epoch {kd[-1]['epoch']} "
                  f"{kd[-1]['kd']:.4f}")
        print(format_summary(diagnose(run_dir)))
    if not args.no_eval:  # every rank: under torchrun the kNN work is shared, rank 0 writes
        evaluate_and_export(cfg, trainer.method.online.backbone, run_dir,
                            f"{cfg.recipe.name}-{cfg.method.name}", distributed=True)
    if not is_main():
        return 0
    print(f"run directory: {run_dir.resolve()}  ({time.perf_counter() - start:.0f} s)")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("pretrain", help="pre-train a slimmable family, evaluate and export it "
                       "(no arguments: SlimCLR-MoCov2 on the embedded digits dataset)")
    p.add_argument("--config", help="a packaged config's name (slimssl config list) or a YAML "
                   "path; default: the built-in job")
    p.add_argument("--data", help="dataset: a folder (ImageFolder / CIFAR batches) or 'digits'")
    p.add_argument("--epochs", type=int)
    p.add_argument("--out-dir", help="run directory (default: the config's out_dir)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config value, e.g. --set optim.lr=0.1 (repeatable)")
    p.add_argument("--resume", help="'auto' (newest valid checkpoint of the run) or a path")
    p.add_argument("--no-eval", action="store_true", help="skip kNN evaluation and export")
    p.add_argument("--progress", default="auto", choices=["auto", "bar", "lines", "off"])
    p.set_defaults(func=run)
