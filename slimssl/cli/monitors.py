"""Training-loop monitors: per-width kNN, stage changes and the interference diagnostics.

Each is a :class:`~slimssl.engine.trainer.Callback`: it observes and logs, never changes the
training. The measurements themselves live in :mod:`slimssl.eval` (kNN) and
:mod:`slimssl.diagnostics` (gradient ratios and directions, SlimCLR Sec. 3.2); this module only
decides when to measure and where the numbers go: ``metrics.jsonl``/CSV/TensorBoard records of
the kinds named in :mod:`slimssl.diagnostics.records`, gradient snapshots under
``<run_dir>/diagnostics/``. They live in the ``cli`` layer, which registers them with the
Trainer (:func:`slimssl.cli.callbacks.build_callbacks`): the engine imports neither ``eval`` nor
``diagnostics`` (docs/design.md sec. 1).
"""

from __future__ import annotations

import time
from typing import Any

import torch

from slimssl.data import ImageTensorDataset, balanced_subset, load_split
from slimssl.data.errors import DataError
from slimssl.diagnostics import (SnapshotStore, flat_grad, grad_norm_ratios, last_linear,
                                 shared_layers)
from slimssl.diagnostics.records import GRAD_KIND, KNN_KIND, STAGE_KIND
from slimssl.dist import is_main
from slimssl.engine.trainer import Callback, Trainer
from slimssl.eval.family import knn_family

__all__ = ["StageMonitor", "GradRatioMonitor", "GradDirectionMonitor", "KnnMonitor",
           "DIRECTION_DIR"]

DIRECTION_DIR = "diagnostics/direction"
OVERHEAD_WARNING = 0.10  # issue 12: the kNN monitor should cost < ~10% of the training time


def _step_position(trainer: Trainer) -> tuple[int, float]:
    """(step, epoch) of the step in progress, numbered as the loop logs it when it ends."""
    st = trainer.state
    return st.global_step + 1, st.epoch + (st.step_in_epoch + 1) / trainer.steps_per_epoch


class StageMonitor(Callback):
    """Logs a stage record whenever the set of trained sub-networks changes.

    The boundaries every plot marks (SlimCLR's slow-start point, US3L's dynamic-sampling stages)
    are thus measured from what the recipe actually sampled, not re-derived from the config.
    ``epoch_start`` is the exact fractional epoch the recipe sampled at.
    """

    def __init__(self) -> None:
        self._last: list[float] | None = None

    def after_backward(self, trainer: Trainer, specs: list) -> None:
        signature = [float(len(specs)), min(s.width for s in specs)]
        if signature == self._last:
            return
        self._last = signature
        step, epoch = _step_position(trainer)
        st = trainer.state
        trainer.logger.log({"num_subnets": len(specs), "min_width": signature[1],
                            "epoch_start": st.epoch + st.step_in_epoch / trainer.steps_per_epoch},
                           step, epoch, kind=STAGE_KIND)

    def state_dict(self) -> dict[str, Any]:
        return {"last": self._last}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._last = state.get("last")


class GradRatioMonitor(Callback):
    """Every ``every`` steps, SlimCLR Fig. 3's gradient-norm ratios of the online encoder
    (backbone + heads) from the step's full gradient, as a ``diag`` record."""

    def __init__(self, every: int) -> None:
        self.every = every
        self._layers: list = []

    def on_fit_start(self, trainer: Trainer) -> None:
        self._layers = shared_layers(trainer.method.online)

    def after_backward(self, trainer: Trainer, specs: list) -> None:
        step, epoch = _step_position(trainer)
        if step % self.every:
            return
        ratios = grad_norm_ratios(self._layers)
        trainer.logger.log({**ratios.as_metrics(), "num_subnets": len(specs)}, step, epoch,
                           kind=GRAD_KIND)


class GradDirectionMonitor(Callback):
    """Every ``every`` steps, saves the last linear layer's gradient (SlimCLR Fig. 4) to
    ``<run_dir>/diagnostics/direction``; a resumed run drops snapshots newer than its step."""

    def __init__(self, every: int, layer: str | None = None) -> None:
        self.every, self.layer_name = every, layer
        self._layer: torch.nn.Linear | None = None
        self._name = ""
        self._store: SnapshotStore | None = None

    def on_fit_start(self, trainer: Trainer) -> None:
        self._name, self._layer = last_linear(trainer.method.online, self.layer_name)
        self._store = SnapshotStore(trainer.run_dir / DIRECTION_DIR)
        if is_main():
            self._store.drop_after(trainer.state.global_step)

    def after_backward(self, trainer: Trainer, specs: list) -> None:
        step, epoch = _step_position(trainer)
        if step % self.every or not is_main():
            return
        scaler = trainer.scaler
        grad = flat_grad(self._layer, scaler.get_scale() if scaler.is_enabled() else 1.0)
        if grad is not None:
            self._store.save(step, epoch, self._name, grad)


class KnnMonitor(Callback):
    """Online weighted kNN (k, T; InstDisc protocol) of every sub-network during pre-training.

    Why per width: a small width stalling or collapsing is invisible in the total loss and in
    the full width's accuracy. Bank = a fixed, class-balanced, seeded subset of the train split;
    queries = one of the held-out split; features of the online backbone in eval mode, batched,
    without gradients (universal / depth-elastic families get their BN statistics recalibrated
    on the bank first, by :func:`slimssl.eval.family.knn_family`). Runs at initialisation (epoch
    0 of a fresh run: the curve starts where training starts, next to the random-init floor),
    every ``every`` epochs and after the last one.

    It leaves the training exactly as it found it: the backbone's buffers (BN statistics,
    which recalibration overwrites) are restored, the global torch RNG is forked, the trainer's
    augmentation generator is never touched, train/eval mode is restored. All ranks measure (so
    recalibration's all-reduce matches); rank 0 logs ``knn/top1/<width>``, ``knn/seconds`` and
    ``knn/overhead`` (seconds / training time since the last check) as an ``eval`` record and
    prints one line.
    """

    def __init__(self, every: int, bank_size: int, query_size: int, k: int = 200,
                 t: float = 0.1, batch_size: int = 256, recalib_images: int = 2000) -> None:
        self.every, self.bank_size, self.query_size = every, bank_size, query_size
        self.k, self.t, self.batch_size, self.recalib_images = k, t, batch_size, recalib_images
        self.bank: ImageTensorDataset | None = None
        self.queries: ImageTensorDataset | None = None
        self.specs: list = []
        self._warned = False

    def on_fit_start(self, trainer: Trainer) -> None:
        cfg, train = trainer.cfg, trainer.train_set
        reason = None
        if train.labels is None:
            reason = "the training set has no labels"
        else:
            try:
                test = load_split(cfg.data, "test", cfg.train.seed)
            except DataError:
                test = None
            if test is None or test.labels is None:
                reason = "the data has no labelled held-out split"
        if reason is not None:
            if is_main():
                print(f"kNN monitor off: {reason}")
            return
        seed = cfg.train.seed
        # a streamed (ImageNet-size) split decodes only the chosen images
        self.bank = train.subset(balanced_subset(
            train.labels, count=min(self.bank_size, len(train)), seed=seed)).to_memory()
        self.queries = test.subset(balanced_subset(
            test.labels, count=min(self.query_size, len(test)), seed=seed + 1)).to_memory()
        self.specs = trainer.method.online.backbone.family()
        if trainer.state.global_step == 0:
            self._check(trainer, 0)

    def on_epoch_end(self, trainer: Trainer, epoch: int) -> None:
        if self.bank is None or not (epoch % self.every == 0 or epoch == trainer.cfg.train.epochs):
            return
        self._check(trainer, epoch)

    def _check(self, trainer: Trainer, epoch: int) -> None:
        """Measure, log an ``eval`` record at ``epoch`` and print one line."""
        start = time.perf_counter()
        accuracy = self.measure(trainer)
        seconds = time.perf_counter() - start
        epoch_time = trainer.state.history[-1]["epoch_time_s"] if trainer.state.history else 0.0
        epochs_since_check = epoch - (epoch - 1) // self.every * self.every
        overhead = (seconds / (epoch_time * epochs_since_check) if epoch > 0 and epoch_time > 0
                    else float("nan"))  # at initialisation no training time has passed
        metrics = {f"knn/top1/{label}": acc for label, acc in accuracy.items()}
        metrics.update({"knn/seconds": seconds, "knn/overhead": overhead})
        trainer.logger.log(metrics, trainer.state.global_step, epoch, kind=KNN_KIND)
        if is_main():
            accs = " | ".join(f"{label} {acc:.1f}" for label, acc in accuracy.items())
            line = (f"kNN monitor, epoch {epoch}: {accs}  ({seconds:.1f} s, "
                    + ("at initialisation)" if epoch == 0 else
                       f"{100 * overhead:.1f}% of the training time since the last check)"))
            if overhead > OVERHEAD_WARNING and not self._warned:
                self._warned = True  # once per run: the advice does not change
                line += ("; lower eval.knn_monitor_bank / eval.knn_monitor_queries or raise "
                         "eval.knn_every_epochs to make it cheaper")
            print(line)

    @torch.no_grad()
    def measure(self, trainer: Trainer) -> dict[str, float]:
        """Top-1 (%) per sub-network label, training state untouched (see the class docstring)."""
        backbone = trainer.method.online.backbone
        saved = {name: buf.clone() for name, buf in backbone.named_buffers()}
        devices = [trainer.device] if trainer.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices):
                rows = knn_family(backbone, self.specs, self.bank, self.queries, (self.k,), self.t,
                                  self.batch_size, min(self.recalib_images, len(self.bank)))
        finally:
            for name, buf in backbone.named_buffers():
                buf.copy_(saved[name])
        return {spec.label: row[f"knn_top1_k{self.k}"] for spec, row in zip(self.specs, rows)}
