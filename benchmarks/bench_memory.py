"""Peak memory of a slimmable step (``accumulate`` and ``sum``) against a vanilla step (issue 8, item 3).

Method (CPU): each configuration runs in a FRESH subprocess (a high-water mark cannot be reset
inside one process). The child builds the trainer and a batch, reads its current resident set
size (``/proc/self/statm``), runs ``--steps`` real ``Trainer.train_step`` calls and reads
``resource.getrusage(RUSAGE_SELF).ru_maxrss``. The figure is the peak RSS during the steps
minus the RSS before them: gradients, optimizer state, activations kept for backward and the
transient buffers of the step. glibc's malloc is pinned to a fixed mmap threshold
(``MALLOC_MMAP_THRESHOLD_=65536``) so that freed tensors go back to the OS and RSS follows live
memory. On a CUDA machine the child uses ``torch.cuda.max_memory_allocated`` instead.

SlimCLR-MoCov2 [1, .75, .5, .25] after slow start (every member trains) vs the same MoCo v2 at
full width only; random pixels (``data.path=synthetic``).

Usage::

    python benchmarks/bench_memory.py [--arch resnet10_narrow] [--image-size 32] [--batch 64]
        [--steps 2] [--threads 1]

Writes ``benchmarks/results/memory.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import loadavg, machine_info, make_trainer, temp_run_dir, write_result  # noqa: E402

MODES: dict[str, list[str]] = {
    "vanilla": ["recipe.name=individual", "model.widths=[1.0]"],
    "sum": ["recipe.update_mode=sum"],
    "accumulate": ["recipe.update_mode=accumulate"],
}


def _rss_bytes() -> int:
    """Current resident set size of this process."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def child(mode: str, shared: list[str], steps: int) -> dict:
    """Runs in the subprocess: build, measure, return the numbers."""
    with temp_run_dir() as d:
        trainer = make_trainer("slimclr_mocov2_cifar10", shared + MODES[mode], d)
        images = next(iter(trainer.loader))[0]
        epoch = float(trainer.cfg.train.epochs) - 0.01
        cuda = trainer.device.type == "cuda"
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
        else:
            before = _rss_bytes()
        for _ in range(steps):
            trainer.train_step(images, epoch)
        if cuda:
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        params = sum(p.numel() * p.element_size() for p in trainer.method.online.parameters())
        return {"mode": mode, "before_bytes": before, "peak_bytes": peak,
                "step_peak_bytes": peak - before, "online_param_bytes": params,
                "method": "cuda max_memory_allocated" if cuda else "ru_maxrss - statm RSS"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="resnet10_narrow")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="memory", help="results/<OUT>.json")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra config overrides (e.g. train.amp=bf16 on a GPU)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    shared = ["data.path=synthetic", f"data.image_size={args.image_size}",
              f"data.batch_size={args.batch}", f"model.arch={args.arch}",
              "method.queue_size=1024", "method.bn_splits=1"] + args.set
    if args.child:
        print(json.dumps(child(args.child, shared, args.steps)))
        return
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    argv = [sys.executable, __file__, "--arch", args.arch, "--image-size", str(args.image_size),
            "--batch", str(args.batch), "--steps", str(args.steps), "--threads", str(args.threads)]
    argv += [a for s in args.set for a in ("--set", s)]
    runs = {}
    for mode in MODES:  # one fresh process each
        out = subprocess.run(argv + ["--child", mode], env=env, check=True, capture_output=True,
                             text=True).stdout
        runs[mode] = json.loads(out.strip().splitlines()[-1])
        print(f"{mode:10s} step peak {runs[mode]['step_peak_bytes'] / 2**20:8.1f} MiB "
              f"(process peak {runs[mode]['peak_bytes'] / 2**20:.0f} MiB)")
    van = runs["vanilla"]["step_peak_bytes"]
    result = {"machine": machine_info(args.threads), "args": vars(args), "shared_overrides": shared,
              "malloc_env": {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"},
              "ratio_sum": round(runs["sum"]["step_peak_bytes"] / van, 3),
              "ratio_accumulate": round(runs["accumulate"]["step_peak_bytes"] / van, 3),
              "loadavg_end": loadavg(), "runs": runs}
    print(f"peak step memory / vanilla: sum {result['ratio_sum']:.2f}x, accumulate "
          f"{result['ratio_accumulate']:.2f}x")
    write_result(args.out, result)


if __name__ == "__main__":
    main()
