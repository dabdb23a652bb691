"""What ``slimssl linear`` and ``slimssl finetune`` share: open a pre-trained run, load its
labelled splits, and merge new per-member results into the run's table and plot."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Hashable, Mapping

import torch

#: Metrics drawn in the run's accuracy-vs-MACs plot when present (one line each).
PLOT_METRICS = ("knn_top1_k200", "linear_switchable_top1", "linear_slimmable_top1")


@dataclass
class EvalRun:
    """A pre-trained run opened for evaluation."""

    cfg: object
    backbone: torch.nn.Module
    run_dir: Path
    train_set: object
    test_set: object
    num_classes: int
    recalibrate: Callable | None


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run directory or checkpoint file")
    p.add_argument("--data", help="labelled dataset to evaluate on (default: the run's)")
    p.add_argument("--epochs", type=int, help="training epochs (default: the recipe's)")
    p.add_argument("--batch-size", type=int, help="training batch (default: the recipe's)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of probe init, batch order, augmentation and labelled subsets")


def open_run(args: argparse.Namespace) -> EvalRun:
    """Rebuild the backbone (on the GPU when there is one) and load the train/test splits."""
    from slimssl.data import eval_transform, load_dataset
    from slimssl.cli.members import open_run as open_checkpoint
    from slimssl.eval.family import recalibrate_if_universal

    run = open_checkpoint(args.run, args.data)
    cfg, run_dir = run.cfg, run.directory
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    backbone = run.backbone.to(device)
    d = cfg.data
    train = load_dataset(d.path, "train", d.image_size, seed=cfg.train.seed, cache_dir=d.cache_dir)
    test = load_dataset(d.path, "test", d.image_size, seed=cfg.train.seed, cache_dir=d.cache_dir)
    if not (hasattr(train, "images") and hasattr(test, "images")):
        raise NotImplementedError(
            f"dataset {d.path!r} is streamed from disk (too large to hold in memory); linear and "
            "semi-supervised evaluation need an in-memory dataset for now")
    if getattr(train, "labels", None) is None or getattr(test, "labels", None) is None:
        raise ValueError(f"dataset {d.path!r} has no labels; pass a labelled one with --data")
    num_classes = int(max(train.labels.max(), test.labels.max())) + 1
    transform = eval_transform(train.mean, train.std)

    def recalibrate(model, spec) -> None:
        recalibrate_if_universal(model, spec, train.images, transform, cfg.eval.recalib_images)

    return EvalRun(cfg, backbone, run_dir, train, test, num_classes,
                   recalibrate if backbone.norm_mode == "universal" else None)


def _cost(run: EvalRun, spec) -> dict[str, float]:
    """Params / MACs of the exported member, for rows of a run that has no kNN table yet."""
    from slimssl.export.extract import extract_subnet
    from slimssl.export.profile import count_macs, count_params

    plain = extract_subnet(run.backbone, spec).cpu()
    return {"params_m": count_params(plain) / 1e6,
            "macs_g": count_macs(plain, run.cfg.data.image_size) / 1e9}


def publish(run: EvalRun, per_member: Mapping[Hashable, dict]) -> list[dict]:
    """Merge ``{spec: {column: value}}`` into ``results.{json,csv,md}`` by sub-network label,
    redraw ``accuracy_vs_macs.png`` (one line per protocol) and print the table."""
    from slimssl.eval.plot import plot_metrics
    from slimssl.eval.report import format_table, merge_results, read_results

    path = run.run_dir / "results.json"
    known = {r.get("subnet"): r for r in read_results(path)} if path.exists() else {}
    rows = []
    for spec, values in per_member.items():
        row = {"subnet": spec.label, "width": spec.width,
               "depth": list(spec.depth) if spec.depth else None, **values}
        if known.get(spec.label, {}).get("macs_g") is None:
            row.update(_cost(run, spec))
        rows.append(row)
    merged = merge_results(run.run_dir, rows)
    semisup = sorted({k for r in merged for k in r
                      if k.startswith("semisup_") and k.endswith("_top1")})
    plot_metrics(merged, [*PLOT_METRICS, *semisup], run.run_dir / "accuracy_vs_macs.png",
                 f"{run.cfg.recipe.name}-{run.cfg.method.name}")
    print(format_table(merged))
    print(f"results: {run.run_dir.resolve() / 'results.md'}")
    return merged
