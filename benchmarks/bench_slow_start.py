"""Whole-run cost of SlimCLR with slow start at half the epochs, and without, vs vanilla (issue 8, item 2).

Three real ``Trainer.fit()`` runs of the same job, each repeated ``--repeats`` times, the three
interleaved in one process (fresh trainer and run directory each time; only ``fit()`` is
timed): vanilla MoCo v2 (full network only), SlimCLR-MoCov2 [1, .75, .5, .25] with slow start
at half the epochs (the paper's setting), and SlimCLR without slow start. Ratios of medians
against vanilla, next to the FLOP limit from the exported members' MACs averaged over the
steps each run actually trained (``(1 + 1.66) / 2 = 1.33`` with slow start; the paper's
33 h / 20 h = 1.65x).

Default job: the built-in default (digits at 16 px, ``resnet10_narrow``), batch 64, 4 epochs.

Usage::

    python benchmarks/bench_slow_start.py [--epochs 4] [--batch 64] [--repeats 3] [--threads 1]
        [--fraction 1.0]

Writes ``benchmarks/results/slow_start.json``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (SpecRecorder, flop_limit, loadavg, machine_info, make_trainer,  # noqa: E402
                    temp_run_dir, write_result)

VARIANTS: dict[str, list[str]] = {
    "vanilla": ["recipe.name=individual", "model.widths=[1.0]"],
    "slow_start_half": ["recipe.name=slimclr", "recipe.slow_start_epochs=null"],
    "no_slow_start": ["recipe.name=slimclr", "recipe.slow_start_epochs=0"],
}


def one_run(overrides: list[str]) -> tuple[float, list[float], list[list], object, int]:
    """Build a fresh trainer, time ``fit()``; returns seconds, each epoch's seconds, the specs
    of every step, the backbone and the image size."""
    with temp_run_dir() as d:
        trainer = make_trainer(None, overrides, d)
        recorder = SpecRecorder(trainer)
        start = time.perf_counter()
        history = trainer.fit()
        secs = time.perf_counter() - start
        epochs = [round(h["epoch_time_s"], 3) for h in history]
        return secs, epochs, recorder.steps, trainer.backbone, trainer.cfg.data.image_size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--fraction", type=float, default=1.0, help="data.train_fraction")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="slow_start", help="results/<OUT>.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    shared = [f"train.epochs={args.epochs}", f"data.batch_size={args.batch}",
              f"data.train_fraction={args.fraction}", "optim.warmup_epochs=0",
              "train.log_every=1000"]
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    epoch_times: dict[str, list[list[float]]] = {name: [] for name in VARIANTS}
    limits: dict[str, dict] = {}
    steps_per_run = 0
    load_before = loadavg()
    for _ in range(args.repeats):
        for name, extra in VARIANTS.items():
            secs, epochs, steps, backbone, size = one_run(shared + extra)
            times[name].append(secs)
            epoch_times[name].append(epochs)
            limits[name] = flop_limit(steps, backbone, size)
            steps_per_run = len(steps)
            print(f"{name:16s} {secs:7.2f} s ({len(steps)} steps, epochs {epochs} s, "
                  f"load {loadavg()[0]})")
    median = {name: statistics.median(t) for name, t in times.items()}
    van_limit = limits["vanilla"]["limit"]
    result = {"machine": machine_info(args.threads), "args": vars(args), "shared_overrides": shared,
              "variants": VARIANTS, "steps_per_run": steps_per_run,
              "loadavg_before": load_before, "loadavg_after": loadavg(),
              "median_fit_s": {k: round(v, 3) for k, v in median.items()},
              "samples_s": {k: [round(x, 3) for x in v] for k, v in times.items()},
              "epoch_times_s": epoch_times,
              "ratio": {k: round(median[k] / median["vanilla"], 3) for k in VARIANTS},
              "flop_limit": {k: round(limits[k]["limit"] / van_limit, 3) for k in VARIANTS},
              "paper_ratio": round(33 / 20, 3)}
    for k in ("slow_start_half", "no_slow_start"):
        print(f"{k}: whole run {result['ratio'][k]:.2f}x vanilla (FLOP limit "
              f"{result['flop_limit'][k]:.2f}x)")
    write_result(args.out, result)


if __name__ == "__main__":
    main()
