"""How hard each width's loss pulls on the weights every US3L width shares (issue 17).

In US3L (``methods/simclr.py`` ``MomentumSimCLR``) only the full network has the base loss,
InfoNCE against the momentum teacher at temperature ``T``; every smaller width only distils the
teacher through the auxiliary head (``method.distill_loss``: cosine, the authors' choice, or
InfoNCE at the same ``T``). The gradient of InfoNCE scales with ``1 / T``; the cosine's does not.
So lowering ``T`` (the ``cpu`` preset uses 0.1 for the individual networks to learn within 12
epochs) strengthens the full network's pull on the shared leading channels against the
sub-networks' distillation.

This script measures it on trained runs: from a run's last checkpoint, for a few training
batches, the gradient of each width's own loss alone (no regularization) on the slice of the
backbone that the smallest width uses (``theta_wmin``, the mean over slimmable layers of the
layer-wise L2 norms, as ``diagnostics/grad_ratio.py`` and SlimCLR Fig. 3), and its ratio to the
full network's. Nothing is trained or written to the runs.

Usage::

    python benchmarks/us3l_grad_balance.py RUN_DIR [RUN_DIR ...] --batches 8 \
        --out benchmarks/results/us3l_grad_balance.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from slimssl.diagnostics.grad_ratio import grad_norm_ratios, shared_layers
from slimssl.engine.checkpoint import list_checkpoints
from slimssl.engine.config import load_config
from slimssl.engine.trainer import Trainer
from slimssl.nn.spec import SubnetSpec


def measure(run_dir: Path, batches: int, widths: list[float]) -> dict:
    """Per width: mean and SE over ``batches`` of ||grad theta_wmin|| of its loss alone, and
    that mean over the full network's."""
    cfg = load_config(run_dir / "config.yaml")
    ckpt = list_checkpoints(run_dir / "checkpoints")[-1]
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, Path(tmp) / "run", resume=str(ckpt), progress="off")
        method = trainer.method
        method.train()
        layers = shared_layers(method.online.backbone)
        norms: dict[float, list[float]] = {w: [] for w in widths}
        losses: dict[float, list[float]] = {w: [] for w in widths}
        for i, (images, _labels) in enumerate(trainer.loader):
            if i == batches:
                break
            views = trainer.draw_views(images)
            keys = method.target_forward(views)
            for w in widths:
                method.zero_grad(set_to_none=True)
                loss = method.subnet_forward(views, SubnetSpec(w), keys).loss
                loss.backward()
                norms[w].append(grad_norm_ratios(layers).wmin)
                losses[w].append(float(loss.detach()))
        method.zero_grad(set_to_none=True)

    def stats(xs: list[float]) -> tuple[float, float]:
        return statistics.fmean(xs), statistics.stdev(xs) / len(xs) ** 0.5

    full = statistics.fmean(norms[max(widths)])
    rows = {f"{w:.2f}": {"grad_wmin": stats(norms[w]), "loss": stats(losses[w]),
                         "over_full": statistics.fmean(norms[w]) / full} for w in widths}
    return {"run": run_dir.name, "checkpoint": ckpt.name,
            "temperature": cfg.method.temperature, "distill_loss": cfg.method.distill_loss,
            "batches": batches, "widths": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="US3L run directories")
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--widths", default="1.0,0.75,0.5,0.25")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results"
                    / "us3l_grad_balance.json")
    args = ap.parse_args()
    widths = [float(w) for w in args.widths.split(",")]
    torch.manual_seed(0)
    t0 = time.time()
    results = [measure(r, args.batches, widths) for r in args.runs]
    print("| run | T | distillation | width | loss | ||g wmin|| | this / full |")
    print("| :-- | --: | :-- | --: | --: | --: | --: |")
    for r in results:
        for w, row in r["widths"].items():
            (g, g_se), (lo, _) = row["grad_wmin"], row["loss"]
            print(f"| {r['run']} | {r['temperature']:g} | {r['distill_loss']} | {w} | {lo:.3f} "
                  f"| {g:.2e} ± {g_se:.1e} | {row['over_full']:.3f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"cpu": platform.processor() or platform.machine(), "threads":
               torch.get_num_threads(), "seconds": round(time.time() - t0, 1),
               "command": "python benchmarks/us3l_grad_balance.py "
               + " ".join(str(r) for r in args.runs) + f" --batches {args.batches}",
               "runs": results}
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    png = plot(results, args.out.with_suffix(".png"))
    print(f"wrote {args.out}, {png}")


def plot(results: list[dict], path: Path) -> Path:
    """||g_wmin|| of each width's loss over the full network's, per run (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for r in results:
        ws = sorted(r["widths"], key=float)
        ys = [r["widths"][w]["over_full"] for w in ws]
        ax.plot([float(w) for w in ws], ys, marker="o",
                label=f"T {r['temperature']:g}, {r['distill_loss']} ({r['run']})")
    ax.set_yscale("log")
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_xlabel("width of the member whose loss is back-propagated")
    ax.set_ylabel("||grad theta_wmin|| / full network's")
    ax.set_title("US3L: pull of each width's loss on the shared slice (end of training)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
