"""A CPU speed switch on or off: the real training step, alternating, per recipe (issue 18.2).

``--switch channels_last`` (default; model and views in NHWC), ``--switch compile``
(``torch.compile`` of the online network, the trainer's ``train.compile``; inductor's C++
kernels, so it needs a C++ compiler) or both (``--switch compile+channels_last``). For each case
two trainers are built from the same config, one with ``train.<switch>=true`` (each switch), and their ``Trainer.train_step`` is timed alternately in this process
on the same images (``common.alternate``). Steps are taken where every member trains (past slow
start / warm-up / sampling stages); the first step of each trainer is untimed (``torch.compile``
compiles there, and its compile time is reported separately). With one torch thread the default clock is the main
thread's CPU time (robust to other processes on a shared machine; ``--clock wall`` otherwise).

Cases:

* ``peer``: the peer-accuracy protocol's network (``benchmarks/peer_accuracy.py``): individual
  MoCo v2, narrow ResNet-18 (stem 16), batch 128, queue 4096;
* ``slimclr``: SlimCLR-MoCov2 on ``resnet10_narrow``, widths [1, .75, .5, .25], batch 128;
* ``us3l``: US3L on ``resnet10_narrow``, batch 128;
* ``dspnet``: DSPNet-BYOL on its config's ResNet-18 (stem 32), batch 64.

Usage::

    python benchmarks/bench_channels_last.py [--cases peer,slimclr,us3l,dspnet] [--repeats 5]
        [--threads 1] [--clock thread|wall] [--switch channels_last|compile|compile+channels_last]

Writes ``benchmarks/results/<switch>.json`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import alternate, loadavg, machine_info, make_trainer, temp_run_dir, write_result  # noqa: E402

SYNTH = ["data.path=synthetic", "data.image_size=32"]
CASES: dict[str, tuple[str, list[str]]] = {
    "peer": ("individual_mocov2_cifar10", SYNTH + [
        "data.batch_size=128", "model.arch=resnet18", "model.widths=[1.0]",
        "model.base_width=16", "method.queue_size=4096", "method.proj_dim=128"]),
    "slimclr": ("slimclr_mocov2_cifar10", SYNTH + ["data.batch_size=128",
                                                    "model.arch=resnet10_narrow"]),
    "us3l": ("us3l_simclr_cifar10", SYNTH + ["data.batch_size=128",
                                              "model.arch=resnet10_narrow"]),
    "dspnet": ("dspnet_byol_cifar10", SYNTH + ["data.batch_size=64"]),
}


def measure(case: str, repeats: int, clock, switch: str = "channels_last") -> dict:
    config, overrides = CASES[case]
    with temp_run_dir() as d_off, temp_run_dir() as d_on:
        trainers = {"off": make_trainer(config, overrides, d_off),
                    "on": make_trainer(config, overrides + [f"train.{s}=true" for s in switch.split("+")],
                                   d_on)}
        images = next(iter(trainers["off"].loader))[0]
        epoch = float(trainers["off"].cfg.train.epochs) - 0.01
        first = {}
        for k, tr in trainers.items():  # untimed by alternate(): compiles for --switch compile
            t0 = time.perf_counter()
            tr.train_step(images, epoch, read_logs=False)
            first[k] = time.perf_counter() - t0
        t = alternate({k: (lambda tr=tr: tr.train_step(images, epoch, read_logs=False))
                       for k, tr in trainers.items()}, repeats, warmup=1, clock=clock)
    ratio = t["on"]["median_s"] / t["off"]["median_s"]
    return {"case": case, "config": config, "overrides": overrides, "switch": switch,
            "off_step_s": t["off"]["median_s"], "on_step_s": t["on"]["median_s"],
            f"ratio_{switch}": ratio, "first_step_wall_s": first, "timings": t}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="peer,slimclr,us3l,dspnet")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--clock", choices=("thread", "wall"), default=None)
    ap.add_argument("--switch", choices=("channels_last", "compile", "compile+channels_last"), default="channels_last")
    ap.add_argument("--out", default=None, help="result name (default: the switch)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    clock_name = args.clock or ("thread" if args.threads == 1 else "wall")
    clock = time.thread_time if clock_name == "thread" else time.perf_counter
    result = {"machine": machine_info(args.threads), "clock": clock_name, "args": vars(args),
              "runs": []}
    for case in args.cases.split(","):
        run = measure(case, args.repeats, clock, args.switch)
        print(f"{case}: step {run['off_step_s']:.3f} s (off) vs {run['on_step_s']:.3f} s "
              f"({args.switch}): {run[f'ratio_{args.switch}']:.3f}x; first step "
              f"{run['first_step_wall_s']['on']:.1f} s wall (off: "
              f"{run['first_step_wall_s']['off']:.1f} s) (load {loadavg()[0]})", flush=True)
        result["runs"].append(run)
    result["loadavg_end"] = loadavg()
    write_result(args.out or args.switch.replace("+", "_"), result)


if __name__ == "__main__":
    main()
