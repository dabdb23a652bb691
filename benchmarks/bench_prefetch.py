"""``data.prefetch_views`` on against off: real Trainer steps, alternating, in one process.

One :class:`~slimssl.engine.trainer.Trainer` per config; each timed call trains ``--steps``
consecutive batches of the loader exactly as ``fit()`` does (``Trainer.epoch_batches``: with
prefetch the views of batch k+1 are drawn on a thread while batch k trains; the first batch of
a call waits for its views, as the first batch of an epoch does), every member active (after
slow start). On and off alternate (``common.alternate``, medians); the switch is flipped on the
same trainer, so both sides train the same weights. The figure of merit is the step time
off / on; its ceiling is (batch + views + step) / step, so taking a batch and drawing its views
is timed alone too.

Configs: the built-in default job (digits at 16 px, resnet10_narrow, batch 128); a views-heavy
one (synthetic 64 px, BYOL views, one member at width 0.25, batch 64), to see the overlap where
there is much to overlap; and, when the CIFAR-10 JPEG folder is there, resnet10_narrow on it at
32 px streamed from disk with the decoding in the training process (``data.mode=stream``,
``data.num_workers=0``), where the thread also decodes the next batch.

Threads: libgomp's default wait policy lets idle OpenMP workers spin; on a machine whose cores
are all busy with other processes that made 2-thread calls without the thread take 10 s a step
instead of 0.8 (the first run of this script, at load 4-5 on 2 cores: a measurement of the
spinning, not of the prefetch). The script therefore sets ``OMP_WAIT_POLICY=passive`` unless it
is set already, before torch loads, and records it.

Usage::

    python benchmarks/bench_prefetch.py [--threads 1 2] [--steps 3] [--repeats 4]

Writes ``benchmarks/results/prefetch.json``.
"""

from __future__ import annotations

import os

# before torch loads OpenMP (see the module docstring)
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from itertools import islice  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from common import (CIFAR_DIR, alternate, loadavg, machine_info, make_trainer,  # noqa: E402
                    temp_run_dir, write_result)


def train_steps(trainer, steps: int, epoch_f: float) -> None:
    """``steps`` batches of epoch 0 through the loop's own path (Trainer.epoch_batches)."""
    trainer.loader.set_epoch(0)
    with trainer.epoch_batches() as batches:
        for images, labels, views in islice(batches, steps):
            trainer.train_step(images, epoch_f, labels, read_logs=False, views=views)


def measure(name: str, config: str | None, overrides: list[str], steps: int,
            repeats: int) -> dict:
    with temp_run_dir() as run_dir:
        trainer = make_trainer(config, overrides, run_dir)
        epoch_f = float(trainer.cfg.train.epochs)  # after slow start: every member trains

        def side(on: bool):
            def run() -> None:
                trainer.prefetch_views = on
                train_steps(trainer, steps, epoch_f)
            return run

        trainer.loader.set_epoch(0)
        batches, prepare = iter(trainer.loader), []
        for _ in range(repeats + 1):  # what the thread does: take a batch, draw its views
            start = time.perf_counter()
            images = next(batches)[0]
            trainer.draw_views(images)
            prepare.append(time.perf_counter() - start)
        batches.close()
        timings = alternate({"off": side(False), "on": side(True)}, repeats=repeats)
        off, on = (timings[k]["median_s"] / steps for k in ("off", "on"))
        prepare_s = statistics.median(prepare[1:])
        return {"config": name, "overrides": overrides, "batch": images.shape[0],
                "steps_per_call": steps, "step_s_off": round(off, 4), "step_s_on": round(on, 4),
                "speedup_off_over_on": round(off / on, 4),
                "load_and_views_s": round(prepare_s, 4),
                "ceiling_off_over_on": round(off / (off - prepare_s), 4),
                "timings": timings}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--steps", type=int, default=3, help="batches per timed call")
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--cifar-dir", type=Path, default=CIFAR_DIR)
    args = ap.parse_args()
    jobs = [("built-in default (digits 16 px, resnet10_narrow, batch 128)", None,
             ["train.device=cpu"])]
    # the views' share made large: 64 px, BYOL views (blur on every view-1 image), one member
    # at width 0.25 on the synthetic set (512 images: batch 64 for enough batches)
    jobs.append(("views-heavy: synthetic 64 px, byol views, one member at width 0.25, batch 64",
                 None, ["train.device=cpu", "data.path=synthetic", "data.image_size=64",
                        "data.views=byol", "model.widths=[0.25]", "recipe.name=individual",
                        "data.batch_size=64"]))
    if args.cifar_dir.is_dir():
        jobs.append(("CIFAR-10 JPEG streamed, 32 px, resnet10_narrow, batch 64", None,
                     ["train.device=cpu", f"data.path={args.cifar_dir}", "data.image_size=32",
                      "data.views=mocov2_cifar", "data.mode=stream", "data.batch_size=64",
                      "data.train_fraction=0.05"]))
    result = {"machine": {**machine_info(args.threads[0]),
                          "OMP_WAIT_POLICY": os.environ["OMP_WAIT_POLICY"],
                          "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
              "runs": []}
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name, config, overrides in jobs:
            run = {"torch_threads": threads, **measure(name, config, overrides, args.steps,
                                                        args.repeats)}
            result["runs"].append(run)
            print(f"{threads} thread(s) | {name}: step {run['step_s_off']:.3f} s off, "
                  f"{run['step_s_on']:.3f} s on -> off/on {run['speedup_off_over_on']:.3f} "
                  f"(batch + views alone {run['load_and_views_s']:.4f} s: ceiling "
                  f"{run['ceiling_off_over_on']:.3f}) | load {loadavg()}", flush=True)
    result["loadavg_at_end"] = loadavg()
    result["note"] = ("step time = median over alternating calls of --steps consecutive "
                      "batches through Trainer.epoch_batches + train_step, divided by --steps; "
                      "prefetch on/off flipped on one trainer")
    write_result("prefetch", result)


if __name__ == "__main__":
    main()
