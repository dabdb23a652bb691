"""Cost of the online per-width kNN monitor (issue 12) on the CIFAR-10 recipe, on this machine.

The monitor's budget is ~10% of the training time. Both costs are linear in the number of
images, so on a slow CPU they are measured at reduced sizes and scaled: training steps of the
recipe's model (``configs/slimclr_mocov2_cifar10.yaml``: ResNet-18, widths [1, .75, .5, .25])
at ``--batch`` images, both kinds of step (slow start: full width only; afterwards: every
width), scaled to the recipe's batch and steps per epoch; one monitor check at ``--bank`` +
``--queries`` images, scaled to the configured sizes (``eval.knn_monitor_bank`` /
``knn_monitor_queries``). Writes ``benchmarks/results/knn_monitor_overhead.json``.

    python benchmarks/knn_monitor_overhead.py --data ../shared/data/cifar10-jpeg
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from slimssl.engine.config import load_config
from slimssl.cli.monitors import KnnMonitor
from slimssl.engine.trainer import Trainer

RESULTS = Path(__file__).resolve().parent / "results"
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "slimclr_mocov2_cifar10.yaml"


def step_seconds(trainer: Trainer, images: torch.Tensor, epoch: float, repeats: int) -> float:
    trainer.train_step(images, epoch)  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        trainer.train_step(images, epoch)
    return (time.perf_counter() - start) / repeats


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data/cifar10-jpeg")
    p.add_argument("--cache-dir", default="/tmp/slimssl-cache")
    p.add_argument("--run-dir", default="/tmp/slimssl-knn-overhead")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--bank", type=int, default=500)
    p.add_argument("--queries", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(str(CONFIG), [f"data.path={args.data}", f"data.cache_dir={args.cache_dir}",
                                    "data.num_workers=0", "train.tensorboard=false",
                                    f"out_dir={args.run_dir}"])
    trainer = Trainer(cfg, args.run_dir, progress="off")
    images = trainer.train_set.images[:args.batch]
    full_only = step_seconds(trainer, images, 0.0, args.repeats)
    all_widths = step_seconds(trainer, images, trainer.recipe.slow_start_epochs, args.repeats)
    scale = cfg.data.batch_size / args.batch
    steps = len(trainer.train_set) // cfg.data.batch_size
    epoch_before, epoch_after = full_only * scale * steps, all_widths * scale * steps

    monitor = KnnMonitor(cfg.eval.knn_every_epochs, args.bank, args.queries, cfg.eval.knn_k,
                         cfg.eval.knn_t, cfg.eval.knn_monitor_batch, cfg.eval.recalib_images)
    monitor.on_fit_start(trainer)
    start = time.perf_counter()
    monitor.measure(trainer)
    measured = time.perf_counter() - start
    check = measured * (cfg.eval.knn_monitor_bank + cfg.eval.knn_monitor_queries) / (
        len(monitor.bank) + len(monitor.queries))
    every = cfg.eval.knn_every_epochs
    result = {
        "device": "cpu", "torch_threads": args.threads, "arch": cfg.model.arch,
        "widths": cfg.model.widths, "recipe_batch": cfg.data.batch_size,
        "steps_per_epoch": steps, "measured_batch": args.batch,
        "step_s_full_only": full_only, "step_s_all_widths": all_widths,
        "epoch_s_slow_start": epoch_before, "epoch_s_all_widths": epoch_after,
        "monitor_measured_images": len(monitor.bank) + len(monitor.queries),
        "monitor_measured_s": measured,
        "monitor_bank": cfg.eval.knn_monitor_bank, "monitor_queries": cfg.eval.knn_monitor_queries,
        "monitor_check_s": check, "knn_every_epochs": every,
        "overhead_slow_start": check / (every * epoch_before),
        "overhead_all_widths": check / (every * epoch_after),
        "overhead_one_check_per_epoch_all_widths": check / epoch_after,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "knn_monitor_overhead.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
