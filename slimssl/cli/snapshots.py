"""Weight snapshots for the optimisation-trajectory and loss-landscape views (SlimCLR Fig. 5).

Li et al. 2018 project the path of the weights on the PCA directions of the weight changes; that
needs the weights at several points of the run, which checkpoints (kept few, and carrying the
optimizer and the target network) do not provide. This callback saves only the online network's
state, as safetensors under ``<run_dir>/snapshots/``
(:class:`~slimssl.diagnostics.trajectory.WeightSnapshots`): at the start of a fresh run, every
``every`` epochs and after the last epoch; at most ``keep`` files, thinned evenly. A resumed run
drops the snapshots newer than the step it resumes from.
"""

from __future__ import annotations

from slimssl.diagnostics.trajectory import SNAPSHOT_DIR, WeightSnapshots
from slimssl.dist import is_main
from slimssl.engine.trainer import Callback, Trainer

__all__ = ["WeightSnapshotter"]


class WeightSnapshotter(Callback):
    """Saves ``trainer.method.online``'s state (see the module docstring); rank 0 only."""

    def __init__(self, every: int, keep: int) -> None:
        self.every, self.keep = every, keep
        self._store: WeightSnapshots | None = None

    def on_fit_start(self, trainer: Trainer) -> None:
        self._store = WeightSnapshots(trainer.run_dir / SNAPSHOT_DIR)
        if not is_main():
            return
        self._store.drop_after(trainer.state.global_step)
        if trainer.state.global_step == 0:
            self._store.save(0, 0.0, trainer.method.online.state_dict())

    def on_epoch_end(self, trainer: Trainer, epoch: int) -> None:
        if not is_main() or (epoch % self.every and epoch != trainer.cfg.train.epochs):
            return
        self._store.save(trainer.state.global_step, float(epoch),
                         trainer.method.online.state_dict())
        self._store.thin(self.keep)
