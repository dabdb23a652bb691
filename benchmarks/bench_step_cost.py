"""Step cost of slimmable training against one vanilla step, next to its FLOP limit (issue 8, item 1).

For each recipe it builds, in ONE process, the slimmable trainer (``sum`` and ``accumulate``
update modes) and the vanilla trainer (same method, backbone, batch; the full network only,
``recipe.name=individual``), times their real ``Trainer.train_step`` alternately and reports
median(slimmable step) / median(vanilla step) next to the FLOP limit computed from the
exported members' MACs (``common.flop_limit``; 1.66 for SlimCLR's widths [1, .75, .5, .25]).

* SlimCLR-MoCov2, widths [1, .75, .5, .25], after slow start (every member trains);
* DSPNet-BYOL, K = 4 desired networks per step (largest, smallest, 2 random), after warm-up;
* US3L-SimCLR (momentum teacher), N = 3 widths per step (max, min, 1 uniform), last stage of
  dynamic sampling (range [.25, 1]).

Steps include the two-view augmentation (as in training) for both sides. Images are random
pixels (``data.path=synthetic``): the cost of a step does not depend on the pixels.

Usage::

    python benchmarks/bench_step_cost.py [--arch resnet10_narrow] [--image-size 32]
        [--batch 32] [--repeats 5] [--threads 1] [--recipes slimclr,dspnet,us3l]
        [--set train.amp=bf16 --set train.channels_last=true]

Writes ``benchmarks/results/step_cost.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (SpecRecorder, alternate, flop_limit, loadavg, machine_info,  # noqa: E402
                    make_trainer, temp_run_dir, write_result)

# recipe -> (config, overrides that turn it into the vanilla full-network run)
RECIPES: dict[str, tuple[str, list[str]]] = {
    "slimclr": ("slimclr_mocov2_cifar10", ["recipe.name=individual", "model.widths=[1.0]"]),
    "dspnet": ("dspnet_byol_cifar10", ["recipe.name=individual", "model.widths=[1.0]",
                                       "model.depths=null"]),
    "us3l": ("us3l_simclr_cifar10", ["recipe.name=individual", "model.widths=[1.0]",
                                     "recipe.group_reg=0", "recipe.dynamic_sampling=false"]),
}


def measure(recipe: str, shared: list[str], repeats: int, image_size: int) -> dict:
    """Vanilla, sum and accumulate steps of one recipe, timed alternately in this process."""
    config, vanilla_overrides = RECIPES[recipe]
    with temp_run_dir() as d_van, temp_run_dir() as d_sum, temp_run_dir() as d_acc:
        vanilla = make_trainer(config, shared + vanilla_overrides, d_van)
        slim = {mode: make_trainer(config, shared + [f"recipe.update_mode={mode}"], d)
                for mode, d in (("sum", d_sum), ("accumulate", d_acc))}
        images = next(iter(vanilla.loader))[0]
        epoch = float(vanilla.cfg.train.epochs) - 0.01  # past slow start / warm-up / stages
        recorders = {mode: SpecRecorder(t) for mode, t in slim.items()}
        timings = alternate({"vanilla": lambda: vanilla.train_step(images, epoch),
                             "sum": lambda: slim["sum"].train_step(images, epoch),
                             "accumulate": lambda: slim["accumulate"].train_step(images, epoch)},
                            repeats)
        steps = [s for r in recorders.values() for s in r.steps[-repeats:]]
        limit = flop_limit(steps, slim["sum"].backbone, image_size)
    van = timings["vanilla"]["median_s"]
    return {"recipe": recipe, "config": config, "shared_overrides": shared,
            "vanilla_overrides": vanilla_overrides, "batch": int(images.shape[0]),
            "vanilla_step_s": round(van, 4),
            "ratio_sum": round(timings["sum"]["median_s"] / van, 3),
            "ratio_accumulate": round(timings["accumulate"]["median_s"] / van, 3),
            "flop_limit": round(limit["limit"], 3), "flop_limit_detail": limit,
            "timings": timings}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="resnet10_narrow")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--recipes", default="slimclr,dspnet,us3l")
    ap.add_argument("--out", default="step_cost")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra config overrides for every trainer, e.g. train.amp=bf16 "
                         "train.channels_last=true on a GPU")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    shared = ["data.path=synthetic", f"data.image_size={args.image_size}",
              f"data.batch_size={args.batch}", f"model.arch={args.arch}",
              "method.queue_size=1024", "method.bn_splits=1"] + args.set
    result = {"machine": machine_info(args.threads), "args": vars(args),
              "method": "median over repeats of Trainer.train_step, vanilla/sum/accumulate "
                        "interleaved in one process; augmentation included on both sides",
              "runs": []}
    for recipe in args.recipes.split(","):
        if recipe == "dspnet" and args.arch != "resnet18":
            # DSPNet's depth choices ([2,1,2,1], ...) need two blocks per stage
            run_shared = [s if not s.startswith("model.arch") else "model.arch=resnet18"
                          for s in shared]
        else:
            run_shared = shared
        try:
            run = measure(recipe, run_shared, args.repeats, args.image_size)
        except Exception as e:  # a recipe another engineer is still adding: say so, go on
            print(f"{recipe}: could not run ({type(e).__name__}: {e})")
            result["runs"].append({"recipe": recipe, "error": f"{type(e).__name__}: {e}"})
            continue
        print(f"{recipe}: vanilla {run['vanilla_step_s']:.3f} s/step; slimmable/vanilla "
              f"sum {run['ratio_sum']:.2f}x, accumulate {run['ratio_accumulate']:.2f}x; FLOP "
              f"limit {run['flop_limit']:.2f}x (load {loadavg()[0]})")
        result["runs"].append(run)
    write_result(args.out, result)


if __name__ == "__main__":
    main()
