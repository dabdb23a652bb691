"""Small-scale reproduction of SlimCLR Fig. 3 (gradient magnitude imbalance) on CIFAR-10.

SlimCLR (Zhao et al., ICCV 2023) Sec. 3.2 claims: with naive slimmable MoCo v2 (widths
[1, .5, .25]) ``||g_rest|| / ||g_wmin||`` stays near or below 1 although theta_rest holds ~15x the
parameters of theta_0.25; slow start keeps the ratios large while only the full network trains;
online distillation and loss reweighting push the ratio clearly above 1 again (Fig. 3c-f).

Four runs, same seed and data, cumulative: (a) naive S-Net MoCo v2, (b) + slow start,
(c) + online distillation, (d) + loss reweighting (Eq. 6). Each logs the ratios every
``--grad-every`` steps and the last-linear-layer gradient every ``--direction-every`` steps
(Fig. 4). Sized for a shared 2-core CPU: ``resnet10_narrow`` (ResNet-18 took 40-90 s per step
there), a class-balanced 6.4% subset of the CIFAR-10 train split (3,200 images, the trainer's
``data.train_fraction``), 32 px, batch 32, 2 epochs = 200 steps, slow start at epoch 1.

Usage (runs can be split across processes, then summarised)::

    python benchmarks/fig3_grad_ratios.py --data ../shared/data/cifar10-jpeg --variants a,b
    python benchmarks/fig3_grad_ratios.py --data ../shared/data/cifar10-jpeg --variants c,d
    python benchmarks/fig3_grad_ratios.py --summarize-only

Writes ``benchmarks/results/fig3_grad_ratios.{json,png}`` and ``fig4_direction_<variant>.png``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from slimssl.diagnostics import (SnapshotStore, consecutive_cosine, plot_direction,  # noqa: E402
                                 principal_projection)
from slimssl.diagnostics.records import (GRAD_KIND, curves, phase_means,  # noqa: E402
                                         slow_start_epoch)
from slimssl.cli.callbacks import build_callbacks  # noqa: E402
from slimssl.engine.config import load_config  # noqa: E402
from slimssl.engine.logging import read_metrics  # noqa: E402
from slimssl.cli.monitors import DIRECTION_DIR  # noqa: E402
from slimssl.engine.trainer import Trainer  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "slimclr_mocov2_cifar10.yaml"
VARIANTS = {
    "a": ("naive S-Net MoCov2", ["recipe.name=snet"]),
    "b": ("+ slow start", ["recipe.slow_start_epochs=1.0", "recipe.distill=none",
                           "recipe.weights=uniform"]),
    "c": ("+ online distillation", ["recipe.slow_start_epochs=1.0", "recipe.distill=ce",
                                    "recipe.weights=uniform"]),
    "d": ("+ loss reweighting", ["recipe.slow_start_epochs=1.0", "recipe.distill=ce",
                                 "recipe.weights=sum_others"]),
}
RATIOS = {"rest_over_wmin": "||g_rest|| / ||g_0.25||", "full_over_wmin": "||g_1.0|| / ||g_0.25||"}


def variant_config(args: argparse.Namespace, key: str, run_dir: Path):
    common = [f"data.path={args.data}", f"data.cache_dir={args.cache_dir}",
              f"data.train_fraction={args.train_fraction}", "data.image_size=32",
              "data.views=mocov2_cifar", f"data.batch_size={args.batch}", "data.num_workers=0",
              "model.arch=resnet10_narrow", "model.widths=[1.0, 0.5, 0.25]",
              "method.queue_size=1024", "method.bn_splits=4", f"train.epochs={args.epochs}",
              f"train.seed={args.seed}", "train.log_every=20", "train.tensorboard=false",
              f"train.ckpt_every_epochs={args.epochs}", "optim.warmup_epochs=0",
              "eval.knn_every_epochs=0", f"diagnostics.grad_every={args.grad_every}",
              f"diagnostics.direction_every={args.direction_every}", f"out_dir={run_dir}"]
    return load_config(str(CONFIG), common + VARIANTS[key][1])


def train_variant(args: argparse.Namespace, key: str) -> None:
    run_dir = Path(args.runs) / f"fig3_{key}"
    shutil.rmtree(run_dir, ignore_errors=True)  # this script owns its run directories
    cfg = variant_config(args, key, run_dir)
    start = time.perf_counter()
    Trainer(cfg, run_dir, progress="off", callbacks=build_callbacks(cfg)).fit()
    print(f"variant ({key}) {VARIANTS[key][0]}: {time.perf_counter() - start:.0f} s")


def direction_summary(run_dir: Path, key: str, boundary: float | None) -> dict | None:
    snaps = SnapshotStore(run_dir / DIRECTION_DIR).load()
    if snaps is None or len(snaps.steps) < 3:
        return None
    proj, explained = principal_projection(snaps.grads)
    plot_direction(proj, snaps.epochs, RESULTS / f"fig4_direction_{key}.png", explained=explained,
                   boundary=boundary, title=f"({key}) {VARIANTS[key][0]}: last-layer gradients")
    cos = consecutive_cosine(snaps.grads)
    ends = snaps.epochs[1:]
    split = boundary if boundary is not None else -1.0
    before = [c for c, e in zip(cos.tolist(), ends) if e <= split]
    after = [c for c, e in zip(cos.tolist(), ends) if e > split]
    return {"snapshots": len(snaps.steps), "explained_pc1_pc2": explained.tolist(),
            "consecutive_cosine_before": sum(before) / len(before) if before else None,
            "consecutive_cosine_after": sum(after) / len(after) if after else None}


def summarize(args: argparse.Namespace) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    done = [k for k in VARIANTS if (Path(args.runs) / f"fig3_{k}" / "metrics.jsonl").is_file()]
    fig, axes = plt.subplots(1, len(done), figsize=(4.2 * len(done), 3.8), dpi=130, sharey=True,
                             squeeze=False)
    summary = {}
    for ax, key in zip(axes[0], done):
        run_dir = Path(args.runs) / f"fig3_{key}"
        records = read_metrics(run_dir)
        boundary = slow_start_epoch(records)
        series = curves(records, GRAD_KIND, "grad/")
        row = {"name": VARIANTS[key][0], "slow_start_epoch": boundary,
               "measurements": len(series.get("rest_over_wmin", ([], []))[0]),
               "param_rest_over_wmin": series["param_rest_over_wmin"][1][-1]}
        for metric, label in RATIOS.items():
            row[metric] = phase_means(records, GRAD_KIND, f"grad/{metric}", boundary)
            ax.plot(*series[metric], label=label, linewidth=1.0)
        row["direction"] = direction_summary(run_dir, key, boundary)
        summary[key] = row
        if boundary is not None:
            ax.axvline(boundary, color="0.35", linestyle="--", linewidth=1.0, label="slow start")
        ax.axhline(1.0, color="0.5", linestyle=":", linewidth=1.0)
        ax.set_title(f"({key}) {VARIANTS[key][0]}", fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("ratio of mean layer-wise gradient norms")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("SlimCLR Fig. 3 at small scale: CIFAR-10 subset, resnet10_narrow, "
                 "widths [1, .5, .25]", fontsize=10)
    fig.tight_layout()
    fig.savefig(RESULTS / "fig3_grad_ratios.png")
    plt.close(fig)
    setup = {k: getattr(args, k) for k in ("train_fraction", "batch", "epochs", "seed",
                                           "grad_every", "direction_every")}
    setup.update(arch="resnet10_narrow", widths=[1.0, 0.5, 0.25], image_size=32,
                 method="mocov2", torch_threads=torch.get_num_threads())
    (RESULTS / "fig3_grad_ratios.json").write_text(json.dumps(
        {"setup": setup, "variants": summary}, indent=2))
    def fmt(phases: dict) -> str:
        return " ".join(f"{k} {'-' if v is None else f'{v:.2f}'}" for k, v in phases.items())

    for key, row in summary.items():
        print(f"({key}) {row['name']:24s} rest/wmin: {fmt(row['rest_over_wmin'])} | full/wmin: "
              f"{fmt(row['full_over_wmin'])} | |rest|/|wmin| {row['param_rest_over_wmin']:.1f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data/cifar10-jpeg")
    p.add_argument("--cache-dir", default="/tmp/slimssl-cache")
    p.add_argument("--runs", default="/tmp/slimssl-fig3")
    p.add_argument("--variants", default="a,b,c,d")
    p.add_argument("--train-fraction", type=float, default=0.064)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--grad-every", type=int, default=2)
    p.add_argument("--direction-every", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--summarize-only", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if not args.summarize_only:
        for key in args.variants.split(","):
            train_variant(args, key.strip())
    summarize(args)


if __name__ == "__main__":
    main()
