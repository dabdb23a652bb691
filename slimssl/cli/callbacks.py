"""The monitors a run gets from its config (``slimssl pretrain`` passes them to the Trainer).

The cli layer builds them so that the engine, which runs them through its callback hooks,
imports no evaluation or diagnostics code (docs/design.md sec. 1)."""

from __future__ import annotations

from slimssl.engine.config import Config
from slimssl.cli.monitors import GradDirectionMonitor, GradRatioMonitor, KnnMonitor, StageMonitor
from slimssl.cli.snapshots import WeightSnapshotter
from slimssl.engine.trainer import Callback

__all__ = ["build_callbacks"]


def build_callbacks(cfg: Config) -> list[Callback]:
    """Stage changes always (they mark every plot); the per-width kNN monitor when
    ``eval.knn_every_epochs`` > 0 (it switches itself off without a labelled held-out split);
    the SlimCLR Fig. 3 / Fig. 4 diagnostics when ``diagnostics.grad_every`` /
    ``diagnostics.direction_every`` > 0; weight snapshots (SlimCLR Fig. 5) when
    ``train.snapshot_every_epochs`` > 0.

    Checkpoints store callback states by name, so a resumed run may switch monitors on or off.
    """
    callbacks: list[Callback] = [StageMonitor()]
    e, d = cfg.eval, cfg.diagnostics
    if e.knn_every_epochs:
        callbacks.append(KnnMonitor(e.knn_every_epochs, e.knn_monitor_bank, e.knn_monitor_queries,
                                    e.knn_k, e.knn_t, e.knn_monitor_batch, e.recalib_images))
    if d.grad_every:
        callbacks.append(GradRatioMonitor(d.grad_every))
    if d.direction_every:
        callbacks.append(GradDirectionMonitor(d.direction_every, d.direction_layer))
    if cfg.train.snapshot_every_epochs:
        callbacks.append(WeightSnapshotter(cfg.train.snapshot_every_epochs,
                                           cfg.train.keep_snapshots))
    return callbacks
