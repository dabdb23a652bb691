"""``slimssl linear RUN``: linear probes for every member of a pre-trained run, in one pass.

Switchable (one probe per member, SlimCLR's choice) and slimmable (one shared sliced probe)
probes train together on the frozen backbone; results join the run's table and plot.
"""

from __future__ import annotations

import argparse
from dataclasses import replace


def _recipe(args: argparse.Namespace):
    from slimssl.eval.linear_eval import RECIPES

    recipe = RECIPES[args.recipe]
    overrides = {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
                 "bn": args.bn}
    return replace(recipe, **{k: v for k, v in overrides.items() if v is not None})


def _kinds(text: str) -> tuple[str, ...]:
    from slimssl.eval.linear_eval import PROBE_KINDS

    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    bad = [k for k in kinds if k not in PROBE_KINDS]
    if bad or not kinds:
        raise argparse.ArgumentTypeError(
            f"--probe takes a comma-separated list of {', '.join(PROBE_KINDS)}; got {text!r}")
    return kinds


def run(args: argparse.Namespace) -> int:
    from slimssl.dist import cleanup_distributed

    try:
        return _run(args)
    finally:
        cleanup_distributed()


def _run(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from slimssl.cli.evaluation import open_run, probe_checkpoint, publish
    from slimssl.eval.linear_eval import linear_eval, result_rows

    run_ = open_run(args)
    recipe = _recipe(args)
    specs = run_.backbone.family()
    print(f"linear probes ({', '.join(args.probe)}) | mode {args.mode} | recipe {recipe.name}: "
          f"{recipe.epochs} epochs, lr {recipe.lr:g} ({recipe.schedule}), batch "
          f"{recipe.batch_size}, BN {'on' if recipe.bn else 'off'}, distill "
          f"{'on' if args.distill else 'off'} | {len(specs)} members, "
          f"{len(run_.train_set)} train / {len(run_.test_set)} test images")
    checkpoint = probe_checkpoint(run_, args, {
        "name": "linear", "mode": args.mode, "recipe": asdict(recipe), "kinds": args.probe,
        "distill": args.distill, "seed": args.seed, "data": run_.cfg.data.path,
        "train_images": len(run_.train_set)})
    results = linear_eval(run_.backbone, specs, run_.train_set, run_.test_set, run_.num_classes,
                          recipe, args.mode, args.probe, args.distill, run_.recalibrate,
                          seed=args.seed, log=print, store=run_.store, checkpoint=checkpoint,
                          **run_.loading)
    protocol = (f"{recipe.name} {args.mode} {recipe.epochs}ep lr{recipe.lr:g} "
                f"bs{recipe.batch_size}{' bn' if recipe.bn else ''}{' distill' if args.distill else ''}")
    rows = result_rows(results)
    for row in rows.values():  # which protocol produced each kind's numbers, kept in JSON/CSV
        row.update({f"linear_{kind}_protocol": protocol for kind in args.probe})
    publish(run_, rows)
    return 0


def add_parser(sub) -> None:
    from slimssl.cli.evaluation import add_common_arguments

    p = sub.add_parser("linear", help="linear probes (switchable and slimmable) for every member")
    add_common_arguments(p)
    p.add_argument("--mode", default="fast", choices=["fast", "augment"],
                   help="fast: cached features (small data); augment: crops+flips through the "
                        "frozen backbone every step (the papers' protocol)")
    p.add_argument("--recipe", default="dspnet", choices=["mocov2", "mocov3", "dspnet"],
                   help="mocov2: lr 60 step decay at 60/80 of 100 epochs, batch 1024; mocov3: "
                        "lr 0.4 cosine 90 epochs, batch 1024; dspnet (default): BN + lr 0.2 "
                        "cosine 80 epochs, batch 256 (least sensitive to lr)")
    p.add_argument("--probe", type=_kinds, default=("switchable", "slimmable"),
                   help="comma-separated probe kinds (default: switchable,slimmable)")
    p.add_argument("--distill", action="store_true",
                   help="distil every member's probe from the full member's (T = 1.0, SlimCLR)")
    p.add_argument("--lr", type=float, help="base learning rate (default: the recipe's)")
    p.add_argument("--bn", action=argparse.BooleanOptionalAction, default=None,
                   help="BatchNorm before the probe (default: the recipe's)")
    p.set_defaults(func=run)
