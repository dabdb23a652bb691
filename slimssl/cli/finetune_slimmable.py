"""``slimssl finetune RUN --slimmable``: supervised training of the WHOLE family in one run.

DSPNet appendix 0.B: the pre-trained slimmable network is the best initialisation for
supervised slimmable training (Fig. A1: above random initialisation and above a single BYOL
network loaded into every width, most of all for the small members). This runs that training
through the pre-training :class:`~slimssl.engine.trainer.Trainer` (AMP, DDP, resume, logs,
progress) with the supervised method and recipe (:mod:`slimssl.methods.supervised`,
:mod:`slimssl.recipes.supervised`), on the run's saved labelled subset (1%, 10% or 100%), then
scores every member on the held-out split into the run's results table and plot.

``--init`` chooses the starting weights: ``pretrained`` (the run's online backbone),
``scratch`` (random), or ``single:PATH`` (the largest member of another run or checkpoint,
e.g. a ``recipe.name=individual`` run, loaded into every width). The training run lives in
``--out-dir`` (default ``RUN/finetune_slimmable_{init}[_nokd|_kdlwW]_{N}pct``); re-running
the same command resumes it from its newest checkpoint.
"""

from __future__ import annotations

import argparse
from pathlib import Path

#: Defaults (our choice for small data; DSPNet 0.B uses timm's ImageNet recipe): SGD momentum
#: 0.9, lr 0.03 per 256 images with cosine decay, weight decay 1e-4 (US-Nets' ResNet-50), 1
#: warm-up epoch; epochs and batch as the per-member fine-tuning. lr 0.1 (US-Nets: 0.5 at batch
#: 1024) diverged on a 5k-image CIFAR-10 subset with resnet10_narrow at batch 256 (both from
#: SlimCLR weights and from scratch); 0.025 trained normally on digits. On that subset pure
#: inplace distillation (US-Nets) was itself unstable (the full width's label CE 2.4 -> 4.6 after
#: warm-up; top-1 19-27% vs 44-51% with labels only), hence a student's label CE is added to its
#: distillation term by default (KD_LABEL_WEIGHT, recipes/supervised.py): 43-51% (BENCHMARKS.md).
LR, WEIGHT_DECAY, WARMUP_EPOCHS, KD_LABEL_WEIGHT = 0.03, 1e-4, 1.0, 1.0


def init_kind(text: str) -> str:
    """``pretrained``, ``scratch`` or ``single:PATH`` (argparse type)."""
    if text in ("pretrained", "scratch") or (text.startswith("single:") and len(text) > 7):
        return text
    raise argparse.ArgumentTypeError(
        f"--init must be pretrained, scratch or single:PATH (a run or checkpoint), got {text!r}")


def distill_suffix(inplace_distill: bool, kd_label_weight: float) -> str:
    """Names the distillation setting in run directories and results columns: ``""`` for the
    default, ``_nokd`` without inplace distillation, ``_kdlw{W}`` for another label weight
    (``_kdlw0``: pure US-Nets distillation)."""
    if not inplace_distill:
        return "_nokd"
    return "" if kd_label_weight == KD_LABEL_WEIGHT else f"_kdlw{kd_label_weight:g}"


def column_prefix(init: str, suffix: str) -> str:
    """Results columns ``{prefix}_{N}pct_top1``: one per initialisation and per distillation
    setting (:func:`distill_suffix`), so they sit side by side in the run's table and plot
    instead of overwriting each other."""
    kind = init.split(":", 1)[0]
    prefix = "semisup_slimmable" if kind == "pretrained" else f"semisup_slimmable_{kind}"
    return prefix + suffix


def finetune_config(run_cfg, args: argparse.Namespace, subset: Path, num_classes: int,
                    num_labelled: int, out_dir: Path):
    """The supervised run's config: the pre-training run's model, data and loop settings with
    the supervised method/recipe, the labelled subset and the fine-tuning schedule."""
    from slimssl.engine.config import Config, config_to_dict

    d = config_to_dict(run_cfg)
    d["data"].update(subset_file=str(subset.resolve()), train_fraction=1.0, views="supervised",
                     batch_size=min(args.batch_size or 256, num_labelled))
    d["method"] = {"name": "supervised", "num_classes": num_classes,
                   "label_smoothing": args.label_smoothing}
    d["recipe"] = {"name": "supervised", "num_sampled": run_cfg.recipe.num_sampled,
                   "inplace_distill": "kl" if args.inplace_distill else "none",
                   "kd_label_weight": args.kd_label_weight if args.inplace_distill else 0.0,
                   "update_mode": "sum"}
    d["optim"] = {"name": "sgd", "lr": args.lr or LR, "weight_decay": WEIGHT_DECAY,
                  "warmup_epochs": WARMUP_EPOCHS}
    d["train"].update(epochs=args.epochs or 20, seed=args.seed)
    d["eval"]["knn_every_epochs"] = 0
    d["diagnostics"] = {}
    d["out_dir"] = str(out_dir)
    return Config.from_dict(d)


def initialise(backbone, init: str, pretrained) -> None:
    """Load the ``--init`` weights into the fresh run's backbone (``scratch``: keep them)."""
    from slimssl.engine.build import load_pretrained
    from slimssl.nn.transplant import load_single_network

    if init == "pretrained":
        backbone.load_state_dict(pretrained.state_dict())
    elif init.startswith("single:"):
        _, single = load_pretrained(init.split(":", 1)[1])
        load_single_network(backbone, single.online.backbone)


def run(args: argparse.Namespace) -> int:
    from slimssl.cli.evaluation import open_run, publish
    from slimssl.data import eval_transform
    from slimssl.dist import is_main
    from slimssl.engine.checkpoint import list_checkpoints
    from slimssl.engine.trainer import Trainer
    from slimssl.eval.family import recalibrate_if_universal
    from slimssl.eval.linear_eval import result_rows
    from slimssl.eval.semisup import classify_family, fraction_tag, labelled_subset

    run_ = open_run(args)
    fraction = args.fraction or 1.0
    tag = fraction_tag(fraction)
    idx, subset = labelled_subset(run_.train_set.labels, fraction, run_.run_dir, args.seed)
    suffix = distill_suffix(args.inplace_distill, args.kd_label_weight)
    init_name = args.init.split(":", 1)[0] + suffix
    out_dir = Path(args.out_dir or run_.run_dir / f"finetune_slimmable_{init_name}_{tag}")
    cfg = finetune_config(run_.cfg, args, subset, run_.num_classes, len(idx), out_dir)
    resume = "auto" if list_checkpoints(out_dir / "checkpoints") else None
    trainer = Trainer(cfg, out_dir, resume=resume, progress=args.progress)
    if resume is None:
        initialise(trainer.method.online.backbone, args.init, run_.backbone)
    print(f"supervised slimmable fine-tuning ({args.init}) on {len(idx)} labelled images "
          f"({100 * fraction:g}% of {len(run_.train_set)}; subset {subset}) -> {out_dir}")
    trainer.fit()
    if not is_main():
        return 0
    classifier = trainer.method.online
    labelled = run_.train_set.subset(idx)  # in memory or streamed: only these files are read
    transform = eval_transform(run_.train_set.mean, run_.train_set.std)

    def recalibrate(model, spec) -> None:
        recalibrate_if_universal(model, spec, labelled, transform, cfg.eval.recalib_images)

    results = classify_family(classifier, classifier.backbone.family(), run_.test_set,
                              recalibrate, **run_.loading)
    prefix = column_prefix(args.init, suffix)
    publish(run_, result_rows({tag: results}, prefix))
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``--slimmable`` options of ``slimssl finetune``."""
    p.add_argument("--init", type=init_kind, default="pretrained",
                   help="--slimmable: starting weights: pretrained (the run's backbone), scratch, "
                        "or single:PATH (one network's run/checkpoint loaded into every width)")
    p.add_argument("--lr", type=float, help=f"--slimmable: lr per 256 images (default {LR})")
    p.add_argument("--label-smoothing", type=float, default=0.0,
                   help="--slimmable: label smoothing of the cross-entropy (default 0)")
    p.add_argument("--inplace-distill", action=argparse.BooleanOptionalAction, default=True,
                   help="--slimmable: sub-networks learn from the full width's detached "
                        "predictions (US-Nets; default on); --no-inplace-distill trains every "
                        "member on the labels only")
    p.add_argument("--kd-label-weight", type=float, default=KD_LABEL_WEIGHT,
                   help="--slimmable: weight of each sub-network's own label cross-entropy next "
                        f"to its distillation term (default {KD_LABEL_WEIGHT:g}; 0 = pure "
                        "US-Nets inplace distillation, which was unstable on 5k CIFAR-10 images "
                        "and lost 22-29 points)")
    p.add_argument("--out-dir", help="--slimmable: the training run's directory (default "
                                     "RUN/finetune_slimmable_{init}[_nokd|_kdlwW]_{N}pct; "
                                     "re-run to resume)")
    p.add_argument("--progress", default="auto", choices=["auto", "bar", "lines", "off"])
