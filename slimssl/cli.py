"""``slimssl`` command line: pretrain | knn | export | profile | plot.

The only module that prints tables for people (DESIGN.md sec. 1). Each command is a thin layer
over the library: configs and overrides in, a run directory and a table out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence

import torch


def _parse_widths(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"widths must be comma-separated numbers, got {text!r}")


# ----------------------------------------------------------------------------- profile
def cmd_profile(args: argparse.Namespace) -> int:
    from slimssl.export.profile import format_profile_table, profile_family
    from slimssl.models import create

    model = create(args.arch, widths=args.widths, stem=args.stem, num_classes=args.num_classes)
    rows = profile_family(model, None, args.input_size)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{args.arch} ({args.stem} stem, {args.num_classes} classes, input "
              f"{args.input_size}x{args.input_size}); counted on the exported sub-networks; "
              "MACs = multiply-accumulates of conv + linear layers")
        print(format_profile_table(rows))
    return 0


# ----------------------------------------------------------------------------- pretrain
def _config_from_args(args: argparse.Namespace):
    from slimssl.engine.config import load_config

    overrides = list(args.set or [])
    if args.data is not None:
        overrides.append(f"data.path={args.data}")
    if args.epochs is not None:
        overrides.append(f"train.epochs={args.epochs}")
    if args.out_dir is not None:
        overrides.append(f"out_dir={args.out_dir}")
    return load_config(args.config, overrides)


def evaluate_and_export(cfg, backbone, run_dir: Path, label: str) -> list[dict]:
    """kNN per member on the held-out split, export every member, params/MACs, table + plot."""
    from slimssl.data import load_dataset
    from slimssl.eval.family import knn_family, recalibrate_if_universal
    from slimssl.eval.plot import plot_accuracy_vs_macs
    from slimssl.eval.report import format_table, write_results
    from slimssl.data.views import eval_transform
    from slimssl.export.extract import extract_subnet
    from slimssl.export.io import save_subnet
    from slimssl.export.profile import count_macs, count_params
    from slimssl.models.registry import create

    d = cfg.data
    train_set = load_dataset(d.path, "train", d.image_size, seed=cfg.train.seed,
                             cache_dir=d.cache_dir)
    test_set = load_dataset(d.path, "test", d.image_size, seed=cfg.train.seed,
                            cache_dir=d.cache_dir)
    specs = backbone.family()
    ks = sorted({cfg.eval.knn_k, 20}, reverse=True)
    backbone.eval()
    rows = knn_family(backbone, specs, train_set, test_set, ks, cfg.eval.knn_t,
                      recalib_images=cfg.eval.recalib_images)
    if cfg.eval.random_init_baseline:
        torch.manual_seed(cfg.train.seed)
        random_net = create(cfg.model.arch, widths=backbone.widths, norm=backbone.norm_mode,
                            stem=cfg.model.stem).to(next(backbone.parameters()).device)
        base = knn_family(random_net, specs, train_set, test_set, ks, cfg.eval.knn_t,
                          recalib_images=cfg.eval.recalib_images)
        for row, b in zip(rows, base):
            row["knn_random_init"] = b[f"knn_top1_k{ks[0]}"]
    transform = eval_transform(train_set.mean, train_set.std)
    for spec, row in zip(specs, rows):
        recalibrate_if_universal(backbone, spec, train_set.images, transform,
                                 cfg.eval.recalib_images)
        plain = extract_subnet(backbone, spec).cpu()
        save_subnet(plain, run_dir / "export" / spec.slug,
                    extra={"spec": spec.to_dict(), "mean": train_set.mean, "std": train_set.std,
                           "image_size": d.image_size})
        row["params_m"] = count_params(plain) / 1e6
        row["macs_g"] = count_macs(plain, d.image_size) / 1e9
    write_results(run_dir, rows)
    plot_accuracy_vs_macs({label: rows}, f"knn_top1_k{ks[0]}", run_dir / "accuracy_vs_macs.png")
    print(format_table(rows))
    return rows


def cmd_pretrain(args: argparse.Namespace) -> int:
    from slimssl.dist import is_main
    from slimssl.engine.trainer import Trainer

    cfg = _config_from_args(args)
    run_dir = Path(cfg.out_dir)
    start = time.perf_counter()
    trainer = Trainer(cfg, run_dir, resume=args.resume, progress=args.progress)
    history = trainer.fit()
    if not is_main():
        return 0
    if history:
        print(f"loss: epoch 1 {history[0]['loss']:.4f} -> epoch {history[-1]['epoch']} "
              f"{history[-1]['loss']:.4f}")
    if not args.no_eval:
        evaluate_and_export(cfg, trainer.method.online.backbone, run_dir,
                            f"{cfg.recipe.name}-{cfg.method.name}")
    print(f"run directory: {run_dir.resolve()}  ({time.perf_counter() - start:.0f} s)")
    return 0


def cmd_knn(args: argparse.Namespace) -> int:
    from slimssl.engine.build import load_pretrained

    cfg, method = load_pretrained(args.run)
    if args.data is not None:
        cfg.data.path = args.data
    run_dir = Path(args.run if Path(args.run).is_dir() else Path(args.run).parent.parent)
    evaluate_and_export(cfg, method.online.backbone, run_dir, f"{cfg.recipe.name}-{cfg.method.name}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from slimssl.eval.plot import plot_runs

    path = plot_runs(args.runs, args.metric, args.output)
    print(f"wrote {path}")
    return 0


# ----------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slimssl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("pretrain", help="pre-train a slimmable family, evaluate and export it "
                       "(no arguments: SlimCLR-MoCov2 on the embedded digits dataset)")
    p.add_argument("--config", help="YAML config (configs/*.yaml); default: the built-in job")
    p.add_argument("--data", help="dataset: a folder (ImageFolder / CIFAR batches) or 'digits'")
    p.add_argument("--epochs", type=int)
    p.add_argument("--out-dir", help="run directory (default: the config's out_dir)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config value, e.g. --set optim.lr=0.1 (repeatable)")
    p.add_argument("--resume", help="'auto' (newest valid checkpoint of the run) or a path")
    p.add_argument("--no-eval", action="store_true", help="skip kNN evaluation and export")
    p.add_argument("--progress", default="auto", choices=["auto", "bar", "lines", "off"])
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("knn", help="kNN-evaluate and export every member of a pre-trained run")
    p.add_argument("run", help="run directory or checkpoint file")
    p.add_argument("--data", help="dataset to evaluate on (default: the run's)")
    p.set_defaults(func=cmd_knn)

    p = sub.add_parser("profile", help="params and MACs of every member, counted on its export")
    p.add_argument("--arch", default="resnet50")
    p.add_argument("--widths", type=_parse_widths, default=[1.0, 0.75, 0.5, 0.25])
    p.add_argument("--stem", default="imagenet", choices=["imagenet", "cifar"])
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("plot", help="accuracy vs MACs of several runs on one chart")
    p.add_argument("runs", nargs="+", help="run directories holding results.json")
    p.add_argument("--metric", default="knn_top1_k200")
    p.add_argument("--output", default="accuracy_vs_macs.png")
    p.set_defaults(func=cmd_plot)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from slimssl.data.errors import DataError
    from slimssl.engine.checkpoint import CheckpointError
    from slimssl.engine.config import ConfigError

    try:
        return int(args.func(args) or 0)
    except (ConfigError, DataError, CheckpointError, FileNotFoundError, ValueError) as err:
        print(f"slimssl {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
