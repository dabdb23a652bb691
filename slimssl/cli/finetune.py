"""``slimssl finetune RUN --fraction 0.01|0.1``: semi-supervised evaluation of every member.

``--slimmable`` instead trains all members together on the labels
(:mod:`slimssl.cli.finetune_slimmable`).

The labelled subset (seeded, class-balanced) is saved in the run directory. ``--linear-only``
trains linear probes on the frozen backbone instead of fine-tuning it. The protocol flags form
one mutually exclusive group, so further protocols join as one more flag each.
"""

from __future__ import annotations

import argparse
from dataclasses import replace


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"--fraction must be in (0, 1], e.g. 0.01 or 0.1; got {text}")
    return value


def run(args: argparse.Namespace) -> int:
    from slimssl.cli.evaluation import run_then_clean_up

    return run_then_clean_up(_run, args)


def _run(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from slimssl.cli import finetune_slimmable
    from slimssl.cli.evaluation import open_run, probe_checkpoint, publish
    from slimssl.eval.linear_eval import SEMISUP_LINEAR, result_rows
    from slimssl.eval.semisup import (FinetuneRecipe, finetune_family, fraction_tag,
                                      labelled_subset, semisup_linear)

    if args.protocol == "slimmable":
        return finetune_slimmable.run(args)
    if args.fraction is None:
        raise SystemExit(f"slimssl finetune: --fraction is required for the {args.protocol} "
                         "protocol (e.g. --fraction 0.01)")
    if args.protocol == "finetune" and args.resume:
        raise NotImplementedError("--resume continues linear probes (linear, finetune "
                                  "--linear-only, finetune --slimmable); per-member fine-tuning "
                                  "restarts: run it again without --resume")
    run_ = open_run(args)
    idx, path = labelled_subset(run_.train_set.labels, args.fraction, run_.run_dir, args.seed)
    train = run_.train_set.subset(idx)
    specs = run_.backbone.family()
    print(f"semi-supervised ({args.protocol}) on {len(train)} labelled images "
          f"({100 * args.fraction:g}% of {len(run_.train_set)}; subset {path}) | {len(specs)} members")
    overrides = {"epochs": args.epochs, "batch_size": args.batch_size}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if args.protocol == "linear":
        recipe = replace(SEMISUP_LINEAR, **overrides, **({"lr": args.lr_head} if args.lr_head else {}))
        tag = f"train_{fraction_tag(args.fraction)}_seed{args.seed}"  # the subset's features
        checkpoint = probe_checkpoint(run_, args, {
            "name": f"semisup_linear_{fraction_tag(args.fraction)}", "mode": args.mode,
            "recipe": asdict(recipe), "seed": args.seed, "subset": str(path),
            "data": run_.cfg.data.path, "train_images": len(train)})
        results = semisup_linear(run_.backbone, specs, train, run_.test_set, run_.num_classes,
                                 recipe, args.mode, run_.recalibrate, seed=args.seed, log=print,
                                 store=run_.store, checkpoint=checkpoint, train_split=tag,
                                 **run_.loading)
    else:
        lrs = {"backbone_lr": args.lr_backbone, "head_lr": args.lr_head}
        recipe = replace(FinetuneRecipe(), **overrides,
                         **{k: v for k, v in lrs.items() if v is not None})
        results = finetune_family(run_.backbone, specs, train, run_.test_set, run_.num_classes,
                                  recipe, run_.recalibrate, seed=args.seed, log=print,
                                  **run_.loading)
    publish(run_, result_rows({fraction_tag(args.fraction): results}, f"semisup_{args.protocol}"))
    return 0


def add_parser(sub) -> None:
    from slimssl.cli import finetune_slimmable
    from slimssl.cli.evaluation import add_common_arguments

    p = sub.add_parser("finetune", help="semi-supervised (1%% / 10%% labels) evaluation of "
                       "every member")
    add_common_arguments(p)
    p.add_argument("--fraction", type=_fraction,
                   help="labelled fraction of the training set, e.g. 0.01 or 0.1 (required; "
                        "--slimmable: default 1.0)")
    protocol = p.add_mutually_exclusive_group()
    protocol.add_argument("--linear-only", dest="protocol", action="store_const", const="linear",
                          help="train a linear probe per member on the frozen backbone (DSPNet "
                               "0.A.3: lr 0.02, 50 epochs) instead of fine-tuning")
    protocol.add_argument("--slimmable", dest="protocol", action="store_const",
                          const="slimmable",
                          help="train EVERY member together on the labels (sandwich rule, "
                               "inplace distillation; DSPNet appendix 0.B) through the "
                               "pre-training engine")
    p.set_defaults(protocol="finetune")
    p.add_argument("--lr-backbone", type=float,
                   help="fine-tuning lr of the backbone (default 0.001, DSPNet 0.A.3)")
    p.add_argument("--lr-head", type=float, help="lr of the classifier (default 0.02)")
    p.add_argument("--mode", default="fast", choices=["fast", "augment"],
                   help="--linear-only: cached features (fast) or augmented batches")
    finetune_slimmable.add_arguments(p)
    p.set_defaults(func=run)
