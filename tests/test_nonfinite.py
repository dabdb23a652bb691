"""NaN/Inf losses: stop naming the step, sub-network and term, keep the last good checkpoint;
or, with ``train.skip_nonfinite=N``, skip up to N such steps and count them."""

from __future__ import annotations

import logging
import math

import pytest
import torch

from slimssl.engine.checkpoint import list_checkpoints, load_checkpoint, parse_checkpoint_name
from slimssl.engine.trainer import NonFiniteLossError, Trainer
from tinyrun import run_cli, cli_args, tiny_config, write_image_folder


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("images"))


def poison(trainer: Trainer, step: int, width: float) -> None:
    """Make the MoCo loss of the ``width`` member NaN at (1-based) ``step``."""
    forward = trainer.method.subnet_forward

    def subnet_forward(views, spec, target):
        out = forward(views, spec, target)
        if trainer.state.global_step + 1 == step and spec.width == width:
            out.loss = out.loss * float("nan")
        return out

    trainer.method.subnet_forward = subnet_forward


def test_nan_stops_naming_step_subnet_and_term_keeping_last_checkpoint(data, tmp_path):
    trainer = Trainer(tiny_config(data, tmp_path), tmp_path, progress="off")
    poison(trainer, step=6, width=0.5)
    with pytest.raises(NonFiniteLossError) as err:
        trainer.fit()
    message = str(err.value)
    for part in ("non-finite mocov2 loss", "step 6", "epoch 1", "w0.50",
                 "ckpt_epoch0001_step00000004.pt", "--resume auto", "train.skip_nonfinite"):
        assert part in message, (part, message)
    (kept,) = list_checkpoints(tmp_path / "checkpoints")
    assert parse_checkpoint_name(kept.name) == (1, 4)
    state = load_checkpoint(kept)
    assert all(torch.isfinite(t).all() for t in state["method"].values() if t.is_floating_point())
    # the weights in memory are those of step 5: the poisoned step never reached the optimizer
    assert trainer.state.global_step == 5


def test_skip_nonfinite_skips_and_counts(data, tmp_path, caplog):
    trainer = Trainer(tiny_config(data, tmp_path, "train.skip_nonfinite=1"), tmp_path,
                      progress="off")
    poison(trainer, step=6, width=0.5)
    with caplog.at_level(logging.WARNING, logger="slimssl"):
        history = trainer.fit()
    # the loop reports through the ``slimssl`` logger (the CLI prints it), never print()
    assert "skipping step 6: non-finite mocov2 loss" in caplog.text
    assert trainer.state.skipped_nonfinite == 1 and trainer.state.global_step == 8
    assert all(math.isfinite(h["loss"]) for h in history)
    final = load_checkpoint(list_checkpoints(tmp_path / "checkpoints")[-1])
    assert final["skipped_nonfinite"] == 1
    assert all(torch.isfinite(t).all() for t in final["method"].values() if t.is_floating_point())


def test_diverging_run_stops_with_one_line_error_from_the_cli(data, tmp_path):
    done = run_cli(*cli_args(data, tmp_path, "optim.lr=1e30"))
    assert done.returncode == 2, done.stderr
    assert "slimssl pretrain: error: non-finite" in done.stderr
    assert "Traceback" not in done.stderr
