"""What ``slimssl linear`` and ``slimssl finetune`` share: open a pre-trained run, load its
labelled splits, and merge new per-member results into the run's table and plot."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Hashable, Mapping

if TYPE_CHECKING:  # torch is imported where it is used: the parser must stay light
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
    store: object = None  # the run's FeatureStore (RUN/features)
    loading: dict | None = None  # num_workers / max_images_held of the data loaders


def run_then_clean_up(body: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """``body(args)``, then the process group (``torchrun``) torn down whatever happened."""
    from slimssl.dist import cleanup_distributed

    try:
        return body(args)
    finally:
        cleanup_distributed()


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run directory or checkpoint file")
    p.add_argument("--data", help="labelled dataset to evaluate on (default: the run's)")
    p.add_argument("--epochs", type=int, help="training epochs (default: the recipe's)")
    p.add_argument("--batch-size", type=int, help="training batch (default: the recipe's)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of probe init, batch order, augmentation and labelled subsets")
    p.add_argument("--resume", choices=["auto"],
                   help="auto: continue an interrupted probe from its last epoch checkpoint "
                        "(RUN/probe_checkpoints/)")
    add_data_arguments(p)


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    """``--data-mode`` and ``--refresh-features`` (every evaluation command)."""
    p.add_argument("--data-mode", choices=["auto", "memory", "stream"],
                   help="decode the data into memory or stream it from disk with DataLoader "
                        "workers (default: the run's data.mode; auto streams large folders)")
    p.add_argument("--refresh-features", action="store_true",
                   help="re-extract cached features (RUN/features) instead of refusing ones "
                        "of other weights")


def open_run(args: argparse.Namespace) -> EvalRun:
    """Rebuild the backbone (on the GPU when there is one) and load the train/test splits."""
    import torch

    from slimssl.cli.members import open_run as open_checkpoint
    from slimssl.cli.report import feature_store
    from slimssl.data import eval_transform, load_split
    from slimssl.dist import init_distributed
    from slimssl.eval.family import needs_recalibration, recalibrate_if_universal

    run = open_checkpoint(args.run, args.data)
    cfg, run_dir = run.cfg, run.directory
    if getattr(args, "data_mode", None):
        cfg.data.mode = args.data_mode
    info = init_distributed()  # under torchrun: this rank's GPU (else the GPU, else the CPU)
    backbone = run.backbone.to(info.device)
    d = cfg.data
    train = load_split(d, "train", cfg.train.seed)  # in memory or streamed (data.mode)
    test = load_split(d, "test", cfg.train.seed)
    if getattr(train, "labels", None) is None or getattr(test, "labels", None) is None:
        raise ValueError(f"dataset {d.path!r} has no labels; pass a labelled one with --data")
    num_classes = int(max(train.labels.max(), test.labels.max())) + 1
    transform = eval_transform(train.mean, train.std)

    def recalibrate(model, spec) -> None:
        recalibrate_if_universal(model, spec, train, transform, cfg.eval.recalib_images)

    store = feature_store(cfg, backbone, run_dir / "features",
                          getattr(args, "refresh_features", False), distributed=True)
    return EvalRun(cfg, backbone, run_dir, train, test, num_classes,
                   recalibrate if needs_recalibration(backbone) else None, store,
                   {"num_workers": d.num_workers, "max_images_held": d.max_images_held})


def probe_checkpoint(run: EvalRun, args: argparse.Namespace, protocol: dict):
    """Epoch checkpoints of one probe training (``RUN/probe_checkpoints/<name>-<hash>/``, the
    engine's atomic files), keyed by ``protocol`` and the weights; with ``--resume auto`` the
    newest is loaded. Only rank 0 writes."""
    import hashlib
    import json

    from slimssl.dist import is_main
    from slimssl.engine.checkpoint import load_latest_checkpoint, save_checkpoint
    from slimssl.eval.linear_eval import ProbeCheckpoint

    key = json.dumps({**protocol, "weights": run.store.weights}, sort_keys=True, default=str)
    directory = (run.run_dir / "probe_checkpoints" /
                 f"{protocol['name']}-{hashlib.sha256(key.encode()).hexdigest()[:12]}")
    state = None
    if getattr(args, "resume", None) == "auto":
        found = load_latest_checkpoint(directory)
        if found is not None:
            state = found[1]["probe"]
            print(f"resuming from {found[0]} (epoch {state['epoch']})")
        else:
            print(f"--resume auto: no checkpoint in {directory} yet, starting from scratch")

    def save(probe_state: dict) -> None:
        if is_main():
            save_checkpoint(directory, {"format": "slimssl-probe-v1", "protocol": key,
                                        "probe": probe_state},
                            probe_state["epoch"], probe_state["step"], keep=2)

    return ProbeCheckpoint(save, state)


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
    from slimssl.dist import is_main
    from slimssl.eval.plot import plot_metrics
    from slimssl.eval.report import format_table, merge_results, read_results

    if not is_main():  # under torchrun every rank holds the numbers; rank 0 writes them
        return []
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
