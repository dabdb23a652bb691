"""``slimssl diagnose trajectory|landscape RUN_DIR [RUN_DIR ...]``: SlimCLR Fig. 5 for saved runs.

Reads the weight snapshots a run saved (``train.snapshot_every_epochs`` > 0), and draws, one panel
per run on the same axes scale (e.g. an individual network next to the same width inside a
slimmable family):

- ``trajectory``: the path of the weights on the first two PCA directions of
  ``theta_t - theta_final`` (Li et al. 2018), with the variance those explain and the maximal
  offset from the final weights along each component (SlimCLR Sec. 4.4 compares the 2nd);
- ``landscape``: the kNN top-1 surface around the final weights on a grid along the PCA
  directions (trajectory drawn on top) or along filter-normalised random directions, BN
  statistics recomputed at every point (:mod:`slimssl.diagnostics.landscape`).

Each run also gets ``RUN_DIR/diagnostics/{trajectory,landscape_<directions>}.json`` with the
numbers behind the picture.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from slimssl.data import ImageTensorDataset, balanced_subset, eval_transform, load_split
from slimssl.diagnostics import (SNAPSHOT_DIR, KnnProbe, LandscapePanel, Trajectory,
                                 TrajectoryPCA, WeightSnapshots, filter_normalized_direction,
                                 grid_axis, plot_landscapes, surface, trajectory_pca, unflatten)
from slimssl.engine.build import load_pretrained
from slimssl.nn.spec import SubnetSpec

__all__ = ["RunTrajectory", "load_trajectory", "trajectory_report", "landscape_report",
           "offset_increase"]


@dataclass
class RunTrajectory:
    """A run's snapshots and their PCA."""

    run_dir: Path
    trajectory: Trajectory
    pca: TrajectoryPCA

    def summary(self) -> dict:
        return {"run": str(self.run_dir), "snapshots": len(self.trajectory.steps),
                "steps": self.trajectory.steps, "epochs": self.trajectory.epochs,
                "parameters": int(self.trajectory.weights.shape[1]),
                "explained": self.pca.explained.tolist(), "max_offset": self.pca.max_offset,
                "coords": self.pca.coords.tolist()}

    def panel(self, title: str, **surface_args) -> LandscapePanel:
        ev = self.pca.explained.tolist() + [0.0]
        return LandscapePanel(title, f"1st PCA component ({100 * ev[0]:.1f}% var.)",
                              f"2nd PCA component ({100 * ev[1]:.1f}% var.)",
                              coords=self.pca.coords, epochs=self.trajectory.epochs,
                              **surface_args)


def load_trajectory(run_dir: str | Path) -> RunTrajectory:
    run_dir = Path(run_dir)
    trajectory = WeightSnapshots(run_dir / SNAPSHOT_DIR).load()
    return RunTrajectory(run_dir, trajectory, trajectory_pca(trajectory.weights))


def offset_increase(first: RunTrajectory, second: RunTrajectory, component: int = 1) -> float:
    """Relative change (%) of the maximal offset along ``component`` from ``first`` to
    ``second`` (SlimCLR Sec. 4.4: +41% along the 2nd from individual to slimmable MoCo)."""
    a, b = first.pca.max_offset[component], second.pca.max_offset[component]
    return 100.0 * (b / a - 1.0)


def _write_json(run_dir: Path, name: str, payload: dict) -> None:
    folder = run_dir / "diagnostics"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(payload, indent=1))


def _out_path(runs: list[RunTrajectory], out: str | None, stem: str) -> Path:
    folder = Path(out) if out is not None else runs[0].run_dir / "diagnostics"
    return folder / f"{stem}{'_compare' if len(runs) > 1 else ''}.png"


def _comparison_lines(runs: list[RunTrajectory]) -> list[str]:
    lines = []
    for i, run in enumerate(runs):
        ev, off = run.pca.explained.tolist() + [0.0], run.pca.max_offset + [0.0]
        lines.append(f"{run.run_dir}: {len(run.trajectory.steps)} snapshots, PC1 "
                     f"{100 * ev[0]:.1f}% PC2 {100 * ev[1]:.1f}% of variance; max offset from the "
                     f"final weights: PC1 {off[0]:.3f}, PC2 {off[1]:.3f}")
        if i:
            lines.append(f"  max offset along PC2 vs {runs[0].run_dir.name}: "
                         f"{offset_increase(runs[0], run):+.1f}% (SlimCLR Fig. 5d: +41% for "
                         "slimmable vs individual MoCo)")
    return lines


def trajectory_report(run_dirs: list[str], out: str | None = None) -> tuple[Path, list[str]]:
    """The trajectory panels of ``run_dirs`` in one PNG, and the printed summary lines."""
    runs = [load_trajectory(r) for r in run_dirs]
    for run in runs:
        _write_json(run.run_dir, "trajectory.json", run.summary())
    path = plot_landscapes([r.panel(r.run_dir.name) for r in runs], _out_path(runs, out,
                           "trajectory"), title="optimisation trajectory on the PCA plane of "
                           "theta_t - theta_final (Li et al. 2018; SlimCLR Fig. 5)")
    return path, _comparison_lines(runs) + [f"plot: {path}"]


def _eval_sets(cfg, data: str | None, bank: int, queries: int
               ) -> tuple[ImageTensorDataset, ImageTensorDataset]:
    path, seed = data if data is not None else cfg.data.path, cfg.train.seed
    sets = [load_split(replace(cfg.data, path=path), split, seed) for split in ("train", "test")]
    if any(s.labels is None for s in sets):
        raise ValueError(f"the landscape's kNN metric needs labelled train and test splits; "
                         f"{path} has none")
    train, test = sets  # in memory or streamed (data.mode): only the chosen images are decoded
    return (train.subset(balanced_subset(train.labels, count=min(bank, len(train)),
                                         seed=seed)).to_memory(),
            test.subset(balanced_subset(test.labels, count=min(queries, len(test)),
                                        seed=seed + 1)).to_memory())


def _spec(backbone, width: float | None) -> SubnetSpec:
    family = backbone.family()
    if width is None:
        return family[0]
    for spec in family:
        if abs(spec.width - width) < 1e-9:
            return spec
    raise ValueError(f"width {width} is not a member of this family: "
                     f"{[s.width for s in family]}")


def _directions(run: RunTrajectory, kind: str, seed: int) -> tuple[dict, dict]:
    keys, final = run.trajectory.keys, run.trajectory.final_state
    if kind == "pca":
        return tuple(unflatten(d, keys, final) for d in run.pca.directions[:2])
    g = torch.Generator().manual_seed(seed)
    weights = {k: final[k] for k in keys}
    return filter_normalized_direction(weights, g), filter_normalized_direction(weights, g)


def _run_surface(run: RunTrajectory, args: argparse.Namespace, xs: torch.Tensor
                 ) -> tuple[torch.Tensor, dict]:
    cfg, method = load_pretrained(str(run.run_dir))
    online = method.online
    online.load_state_dict(run.trajectory.final_state)
    # NHWC kernels: 1.4-1.5x the forward throughput of NCHW for resnet10_narrow at 32 px on
    # this CPU (same outputs to 5e-7); every grid point is nothing but forward passes.
    online.to(memory_format=torch.channels_last)
    spec = _spec(online.backbone, args.width)
    bank, queries = _eval_sets(cfg, args.data, args.bank, args.queries)
    probe = KnnProbe(online.backbone, spec, bank.images, bank.labels, queries.images,
                     queries.labels, bank.images[:args.calib],
                     eval_transform(bank.mean, bank.std), k=args.k)
    d1, d2 = _directions(run, args.directions, args.seed)
    origin = {k: run.trajectory.final_state[k] for k in run.trajectory.keys}
    start = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if done % len(xs) == 0:
            print(f"  {run.run_dir.name}: {done}/{total} points, "
                  f"{time.perf_counter() - start:.0f} s", flush=True)

    values = surface(online, origin, d1, d2, xs, xs, probe, progress)
    info = {"subnet": spec.label, "seconds": time.perf_counter() - start,
            "bank": len(bank), "queries": len(queries), "calib": min(args.calib, len(bank)),
            "k": args.k}
    return values, info


def landscape_report(args: argparse.Namespace) -> tuple[Path, list[str]]:
    """Surfaces of ``args.runs`` on one shared grid, in one PNG, and the printed lines."""
    runs = [load_trajectory(r) for r in args.runs]
    pca = args.directions == "pca"
    extent = args.extent
    if extent is None:  # PCA plane: the grid covers every run's whole path
        extent = 1.2 * max(max(r.pca.max_offset) for r in runs) if pca else 1.0
    xs = grid_axis(extent, args.grid)
    panels, lines = [], []
    for run in runs:
        values, info = _run_surface(run, args, xs)
        center = values[len(xs) // 2, len(xs) // 2].item() if len(xs) % 2 else None
        _write_json(run.run_dir, f"landscape_{args.directions}.json", {
            "directions": args.directions, "grid": xs.tolist(), "values": values.tolist(),
            "metric": f"kNN top-1 (%), k={args.k}", **info, **run.summary()})
        title = f"{run.run_dir.name} ({info['subnet']})"
        if pca:
            panels.append(run.panel(title, xs=xs.tolist(), ys=xs.tolist(), values=values))
        else:
            panels.append(LandscapePanel(title, "filter-normalised direction 1",
                                         "filter-normalised direction 2", xs=xs.tolist(),
                                         ys=xs.tolist(), values=values))
        lines.append(f"{run.run_dir}: {args.grid}x{args.grid} grid in {info['seconds']:.0f} s; "
                     f"kNN top-1 at the final weights {center if center is None else f'{center:.1f}'}"
                     f", min {values.min():.1f}, max {values.max():.1f}")
    path = plot_landscapes(panels, _out_path(runs, args.out, f"landscape_{args.directions}"),
                           title=f"kNN top-1 surface around the final weights, {args.directions} "
                           "directions, BN recomputed at each point (Li et al. 2018; SlimCLR "
                           "Fig. 5)", metric=f"kNN top-1 (%), k={args.k}")
    if pca:
        lines += _comparison_lines(runs)
    return path, lines + [f"plot: {path}"]
