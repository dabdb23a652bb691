"""A training step between two log steps never reads a value back from the device (issue 18.2).

Every ``.item()``, ``float(t)``, ``bool(t)`` or ``int(t)`` of a tensor lowers to
``aten._local_scalar_dense``; on a GPU each one stalls the host until the device catches up.
A dispatch mode counts them around real ``Trainer.train_step`` calls of every recipe family.
Allowed: one read per step, the combined non-finite flag that decides whether the optimizer may
step (PyTorch's own GradScaler reads its found-inf flag the same way).
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from tinyrun import Trainer, tiny_config, write_image_folder


class _CountScalarReads(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.reads += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("extra", [
    [],  # SlimCLR-MoCov2 (the default recipe), sum mode
    ["recipe.name=dspnet", "method.name=byol", "model.arch=resnet18", "data.views=byol_cifar"],
    ["recipe.name=us3l", "method.name=simclr_momentum", "model.norm=universal",
     "model.widths=[1.0, 0.5, 0.25]", "model.width_range=[0.25, 1.0]", "recipe.group_reg=5e-5",
     "optim.weight_decay=0", "data.views=simclr_cifar"],
])
def test_a_step_between_log_steps_reads_at_most_one_scalar(tmp_path, extra):
    data = write_image_folder(tmp_path / "data")
    cfg = tiny_config(data, tmp_path / "run", "train.log_every=1000", "train.epochs=4", *extra)
    trainer = Trainer(cfg, tmp_path / "run", progress="off")
    images = next(iter(trainer.loader))[0]
    epoch = float(cfg.train.epochs) - 0.5  # past slow start / warm-up: every member trains
    trainer.train_step(images, epoch)  # first step: lazy initialisation may read values
    counter = _CountScalarReads()
    with counter:
        for _ in range(3):
            trainer.train_step(images, epoch, read_logs=False)  # as the loop between log steps
    assert counter.reads <= 3, f"{counter.reads} device-to-host reads in 3 steps"
