"""Small-scale SlimCLR Fig. 5 on CIFAR-10: error surface and optimisation trajectory of an
individual MoCo v2 network and of the 1.0 width of a slimmable [1.0, 0.5] SlimCLR-MoCo v2 run.

SlimCLR (Zhao et al.) Sec. 4.4, after Li et al. 2018: weight sharing makes the trajectory end
further from the minimum; the maximal offset along the 2nd PCA component grows by 41% (MoCo,
ResNet-20x4, 100 epochs). Here, sized for a 2-core CPU: ``resnet10_narrow`` at 32 px, a
class-balanced 10% of the train split (5,000 images, ``data.train_fraction``), batch 128, 15
epochs (about 16 min per run on one idle core), queue 1024, 1 warm-up epoch, weight snapshots
every epoch (``train.snapshot_every_epochs``). Both runs share seed, data and schedule; the
slimmable one has SlimCLR's slow start (the first half trains the full width only). The surface
is a 21x21 kNN grid (bank 250, queries 250, 100 BN-calibration images per point).

Stages (run ``train`` once per run, in parallel if you like, then ``analyse``)::

    python benchmarks/landscape_cifar10.py --stage train --run individual
    python benchmarks/landscape_cifar10.py --stage train --run slimmable
    python benchmarks/landscape_cifar10.py --stage analyse

``analyse`` calls ``slimssl diagnose trajectory`` and ``slimssl diagnose landscape`` on both runs
(side by side, same axes) and writes ``benchmarks/results/landscape_cifar10.{json,png}`` and
``landscape_cifar10_trajectory.png``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RUNS = {  # name -> (config file, overrides of that config)
    "individual": ("individual_mocov2_cifar10.yaml", ["model.widths=[1.0]"]),
    "slimmable": ("slimclr_mocov2_cifar10.yaml", ["model.widths=[1.0, 0.5]"]),
}


def run_config(args: argparse.Namespace, name: str):
    from slimssl.engine.config import load_config

    config, own = RUNS[name]
    common = [f"data.path={args.data}", f"data.cache_dir={args.cache_dir}",
              f"data.train_fraction={args.train_fraction}", f"data.image_size={args.image_size}",
              f"data.batch_size={args.batch}", "data.num_workers=0",
              "model.arch=resnet10_narrow", f"method.queue_size={args.queue}",
              "method.bn_splits=4",
              f"train.epochs={args.epochs}", f"train.seed={args.seed}", "train.log_every=5",
              "train.tensorboard=false", f"train.ckpt_every_epochs={args.epochs}",
              "train.snapshot_every_epochs=1", f"optim.warmup_epochs={args.warmup_epochs}",
              "eval.knn_every_epochs=0", f"out_dir={Path(args.runs) / name}"]
    return load_config(config, common + own)  # a packaged config, by name


def train(args: argparse.Namespace, name: str) -> None:
    from slimssl.cli.callbacks import build_callbacks
    from slimssl.engine.trainer import Trainer

    run_dir = Path(args.runs) / name
    shutil.rmtree(run_dir, ignore_errors=True)  # this script owns its run directories
    cfg = run_config(args, name)
    start = time.perf_counter()
    Trainer(cfg, run_dir, progress=args.progress, callbacks=build_callbacks(cfg)).fit()
    print(f"{name}: trained in {time.perf_counter() - start:.0f} s")


def analyse(args: argparse.Namespace) -> None:
    """``slimssl diagnose trajectory`` and ``landscape`` on both runs (individual first), then the
    offsets of SlimCLR Sec. 4.4 and the setup as JSON."""
    from slimssl.cli import main as cli
    from slimssl.cli.landscape import load_trajectory, offset_increase

    runs = [str(Path(args.runs) / name) for name in RUNS]
    out = Path(args.runs) / "figures"
    start = time.perf_counter()
    cli(["diagnose", "trajectory", *runs, "--out", str(out)])
    cli(["diagnose", "landscape", *runs, "--out", str(out), "--grid", str(args.grid),
         "--bank", str(args.bank), "--queries", str(args.queries), "--calib", str(args.calib),
         "--width", "1.0"])
    seconds = time.perf_counter() - start
    RESULTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(out / "trajectory_compare.png", RESULTS / "landscape_cifar10_trajectory.png")
    shutil.copy(out / "landscape_pca_compare.png", RESULTS / "landscape_cifar10.png")
    individual, slimmable = (load_trajectory(r) for r in runs)
    report = {"setup": {k: getattr(args, k) for k in ("train_fraction", "image_size", "batch",
                                                      "epochs", "seed", "grid", "bank",
                                                      "queries", "calib", "queue",
                                                      "warmup_epochs")},
              "analysis_seconds": round(seconds, 1),
              "offset_increase_pc2_percent": offset_increase(individual, slimmable, 1),
              "offset_increase_pc1_percent": offset_increase(individual, slimmable, 0),
              "paper_offset_increase_pc2_percent": 41.4}
    report["setup"].update(arch="resnet10_narrow", method="mocov2", widths={
        "individual": [1.0], "slimmable": [1.0, 0.5]}, surface_width=1.0, knn_k=20)
    for name, run in zip(RUNS, (individual, slimmable)):
        surface = json.loads((Path(run.run_dir) / "diagnostics" / "landscape_pca.json").read_text())
        report[name] = {"snapshots": len(run.trajectory.steps), "steps": run.trajectory.steps,
                        "explained": run.pca.explained.tolist(),
                        "max_offset": run.pca.max_offset, "coords": run.pca.coords.tolist(),
                        "grid": surface["grid"], "knn_top1": surface["values"],
                        "surface_seconds": surface["seconds"]}
    (RESULTS / "landscape_cifar10.json").write_text(json.dumps(report, indent=1))
    print(f"max offset along PC2: individual {individual.pca.max_offset[1]:.3f}, slimmable "
          f"{slimmable.pca.max_offset[1]:.3f} ({report['offset_increase_pc2_percent']:+.1f}%; "
          "paper +41.4%)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stage", choices=("train", "analyse"), required=True)
    p.add_argument("--run", choices=tuple(RUNS), help="which run to train (stage train)")
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cifar10-jpeg"))
    p.add_argument("--cache-dir", default="/tmp/slimssl-cache")
    p.add_argument("--runs", default="/tmp/landscape")
    p.add_argument("--train-fraction", type=float, default=0.1)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--queue", type=int, default=1024, help="MoCo queue length")
    p.add_argument("--warmup-epochs", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--progress", default="off", choices=("lines", "off"))
    p.add_argument("--grid", type=int, default=21, help="surface points per axis")
    p.add_argument("--bank", type=int, default=250)
    p.add_argument("--queries", type=int, default=250)
    p.add_argument("--calib", type=int, default=100)
    args = p.parse_args()
    if args.stage == "train":
        for name in [args.run] if args.run else list(RUNS):
            train(args, name)
    else:
        analyse(args)


if __name__ == "__main__":
    main()
