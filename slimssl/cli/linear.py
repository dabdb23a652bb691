"""``slimssl linear RUN``: linear probes for every member of a pre-trained run, in one pass.

Switchable (one probe per member, SlimCLR's choice) and slimmable (one shared sliced probe)
probes train together on the frozen backbone; results join the run's table and plot.

The protocol follows the run's own paper unless ``--recipe`` / ``--[no-]distill`` say otherwise
(:func:`run_defaults`): a SlimCLR run is probed with its method's SlimCLR protocol and with probe
distillation, a DSPNet run with DSPNet's.
"""

from __future__ import annotations

import argparse
from dataclasses import replace


def run_defaults(recipe: str, method: str) -> tuple[str, bool, str]:
    """The linear-probe protocol of the paper a run reproduces: (probe recipe, probe
    distillation, why).

    * SlimCLR (``recipe.name: slimclr``) with MoCo v2 / v3: SlimCLR Sec. 4.1, "Linear
      evaluation": lr 60 step decay at 60/80 of 100 epochs (MoCo v2) or lr 0.4 cosine over 90
      epochs (MoCo v3), batch 1024, and "we also apply online distillation with a temperature
      tau_2 = 1.0 when training these linear layers": distillation on.
    * Other MoCo v2 / v3 runs (the individual-network and naive slimmable baselines SlimCLR
      compares against): the same protocol, without distillation (there is no SlimCLR family
      to distil; Table 1's baselines are plain linear evaluations).
    * DSPNet, and every other method (no paper protocol here): DSPNet App. 0.A.2 (BN before the
      probe, lr 0.2 cosine, 80 epochs, batch 256; the least sensitive to the learning rate).
    """
    if recipe != "dspnet" and method in ("mocov2", "mocov3"):
        distill = recipe == "slimclr"
        return method, distill, (f"SlimCLR Sec. 4.1 for {recipe} + {method}"
                                 f"{', probe distillation T=1' if distill else ''}")
    why = "DSPNet App. 0.A.2" if recipe == "dspnet" else \
        f"no paper protocol for {recipe} + {method}: DSPNet App. 0.A.2's"
    return "dspnet", False, why


def _recipe(args: argparse.Namespace, name: str):
    from slimssl.eval.linear_eval import RECIPES

    recipe = RECIPES[name]
    overrides = {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
                 "bn": args.bn}
    if args.epochs is not None and recipe.milestones:
        # a step schedule keeps its shape: MoCo v2's decays at 60 and 80 of 100 epochs stay at
        # 60% and 80% of a shorter run (they would otherwise never be reached)
        overrides["milestones"] = tuple(m * args.epochs / recipe.epochs
                                        for m in recipe.milestones)
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
    from slimssl.cli.evaluation import run_then_clean_up

    return run_then_clean_up(_run, args)


def _run(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from slimssl.cli.evaluation import open_run, probe_checkpoint, publish
    from slimssl.eval.linear_eval import linear_eval, result_rows

    run_ = open_run(args)
    name, distill, why = run_defaults(run_.cfg.recipe.name, run_.cfg.method.name)
    if args.recipe is not None or args.distill is not None:
        why += " (overridden by --recipe/--distill)"
    args.recipe = name if args.recipe is None else args.recipe
    args.distill = distill if args.distill is None else args.distill
    recipe = _recipe(args, args.recipe)
    specs = run_.backbone.family()
    print(f"protocol from the run: {why}")
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
    p.add_argument("--recipe", default=None, choices=["mocov2", "mocov3", "dspnet"],
                   help="mocov2: lr 60 step decay at 60/80 of 100 epochs, batch 1024; mocov3: "
                        "lr 0.4 cosine 90 epochs, batch 1024; dspnet: BN + lr 0.2 cosine 80 "
                        "epochs, batch 256 (default: the run's paper: its MoCo version for "
                        "MoCo v2/v3 runs, dspnet otherwise)")
    p.add_argument("--probe", type=_kinds, default=("switchable", "slimmable"),
                   help="comma-separated probe kinds (default: switchable,slimmable)")
    p.add_argument("--distill", action=argparse.BooleanOptionalAction, default=None,
                   help="distil every member's probe from the full member's (T = 1.0, SlimCLR "
                        "Sec. 4.1; default: on for SlimCLR runs, off otherwise)")
    p.add_argument("--lr", type=float, help="base learning rate (default: the recipe's)")
    p.add_argument("--bn", action=argparse.BooleanOptionalAction, default=None,
                   help="BatchNorm before the probe (default: the recipe's)")
    p.set_defaults(func=run)
