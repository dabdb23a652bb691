"""Does augmentation starve training? Augmentation img/s against training-step img/s.

For each config (the built-in default job and the CIFAR-10 SlimCLR-MoCov2 recipe) it builds the
real :class:`~slimssl.engine.trainer.Trainer`, then times, alternating in one process, (a) the
two-view augmentation of a batch and (b) one full training step of every member (which also
augments, as in real training), and reports the medians and their ratio (goal: augmentation >= 3x faster than training, so it never starves it).

Usage::

    python benchmarks/bench_pipeline.py [--cifar-dir ../shared/data/cifar10-jpeg] [--repeats 7]

Writes ``benchmarks/results/pipeline.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from slimssl.engine.config import load_config
from slimssl.engine.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "pipeline.json"


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(config: str | None, overrides: list[str], repeats: int) -> dict:
    with tempfile.TemporaryDirectory() as run_dir:
        cfg = load_config(config, overrides + [f"out_dir={run_dir}", "train.tensorboard=false"])
        trainer = Trainer(cfg, run_dir, progress="off")
        images = next(iter(trainer.loader))[0]
        batch = images.shape[0]
        trainer.train_step(images, float(cfg.train.epochs))  # warm-up, every member active
        aug, step = [], []
        for _ in range(repeats):
            aug.append(_time(lambda: trainer.views(images, trainer.aug_generator)))
            step.append(_time(lambda: trainer.train_step(images, float(cfg.train.epochs))))
        aug_ips = batch / statistics.median(aug)
        step_ips = batch / statistics.median(step)
        return {"config": config or "built-in default", "overrides": overrides, "batch": batch,
                "augment_img_per_s": round(aug_ips, 1), "train_step_img_per_s": round(step_ips, 1),
                "ratio": round(aug_ips / step_ips, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cifar-dir", type=Path, default=ROOT.parent / "shared" / "data" / "cifar10-jpeg")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    runs = [measure(None, [], args.repeats)]
    if args.cifar_dir.is_dir():
        runs.append(measure(str(ROOT / "configs" / "slimclr_mocov2_cifar10.yaml"),
                            [f"data.path={args.cifar_dir}", "data.train_fraction=0.02",
                             "data.batch_size=128"], args.repeats))
    result = {"machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                          "torch": torch.__version__, "torch_threads": args.threads},
              "note": "median over repeats, augmentation and step timed alternately; the step "
                      "runs every member (after slow start)", "runs": runs}
    for r in runs:
        print(f"{r['config']}: augmentation {r['augment_img_per_s']} img/s, training step "
              f"{r['train_step_img_per_s']} img/s, ratio {r['ratio']}x")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
