"""``data.prefetch_views``: the next batch's views drawn on a thread (slimssl/engine/prefetch.py).

The tiny 2-epoch run of ``tinyrun`` (4 steps an epoch, slow start then every width). Every
comparison is bitwise: the thread must draw the same views as the serial loop, and a checkpoint
written while it has drawn the next batch's views already must hold the generator state of the
last TRAINED batch.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from slimssl.engine.checkpoint import list_checkpoints, load_checkpoint, parse_checkpoint_name
from slimssl.engine.config import ConfigError, load_config
from slimssl.engine.prefetch import prefetch_by_default
from slimssl.engine.trainer import Callback, Trainer
from tinyrun import Crash, CrashAfter, tiny_config, write_image_folder


class LossRecorder(Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_step_end(self, trainer: Trainer, logs: dict) -> None:
        self.losses.append(logs["loss"])  # a float: the tiny run logs every step


def views_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("slimssl-views")]


def run(data: Path, out: Path, prefetch: bool, *extra: str, callbacks=(), resume=None) -> Trainer:
    cfg = tiny_config(data, out, "train.ckpt_every_steps=3", f"data.prefetch_views={prefetch}",
                      *extra)
    trainer = Trainer(cfg, out, resume=resume, progress="off", callbacks=list(callbacks))
    assert trainer.prefetch_views is prefetch
    trainer.fit()
    return trainer


def assert_same_training(a: Trainer, b: Trainer) -> None:
    """Same weights, EMA target, queue, optimizer buffers and augmentation stream, bitwise."""
    sa, sb = a.state_dict(), b.state_dict()
    assert sa["method"].keys() == sb["method"].keys()
    for key in sa["method"]:
        assert torch.equal(sa["method"][key], sb["method"][key]), key
    buffers = [(s["optimizer"]["state"]) for s in (sa, sb)]
    assert buffers[0].keys() == buffers[1].keys()
    for i in buffers[0]:
        for name, value in buffers[0][i].items():
            assert torch.equal(value, buffers[1][i][name]), (i, name)
    assert torch.equal(sa["aug_generator"], sb["aug_generator"])
    assert sa["global_step"] == sb["global_step"] == 8


def mid_epoch_checkpoint(trainer: Trainer) -> Path:
    """The checkpoint of step 6 = step 2 of epoch 1's 4 (train.ckpt_every_steps=3)."""
    (path,) = [p for p in list_checkpoints(trainer.run_dir / "checkpoints")
               if parse_checkpoint_name(p.name) == (1, 6)]
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def serial(data, tmp_path_factory):
    """The uninterrupted run without the thread, and its per-step losses (one torch thread, as
    the conftest sets for tests: it is not active yet for module fixtures)."""
    out = tmp_path_factory.mktemp("serial")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        losses = LossRecorder()
        trainer = run(data, out, False, callbacks=[losses])
    finally:
        torch.set_num_threads(previous)
    return trainer, losses.losses


def test_prefetch_on_trains_the_same_bits_as_off(data, serial, tmp_path):
    reference, reference_losses = serial
    losses = LossRecorder()
    trainer = run(data, tmp_path, True, callbacks=[losses])
    assert len(losses.losses) == 8
    assert losses.losses == reference_losses  # exact floats, every step
    assert [h["loss"] for h in trainer.state.history] == \
        [h["loss"] for h in reference.state.history]
    assert_same_training(trainer, reference)
    assert trainer._batches is None and views_threads() == []
    # the mid-epoch checkpoint of step 6 (the thread had drawn step 7's views already): the
    # generator state after step 6's views, as the serial run saved it
    ours, theirs = (load_checkpoint(mid_epoch_checkpoint(t)) for t in (trainer, reference))
    assert torch.equal(ours["aug_generator"], theirs["aug_generator"])


def test_stop_mid_epoch_and_resume_with_prefetch_is_bitwise_equal(data, serial, tmp_path):
    with pytest.raises(Crash):
        run(data, tmp_path, True, callbacks=[CrashAfter(7)])
    assert views_threads() == []  # joined although fit() stopped by an exception
    newest = list_checkpoints(tmp_path / "checkpoints")[-1]
    assert parse_checkpoint_name(newest.name) == (1, 6)  # step 2 of epoch 1's 4
    resumed = run(data, tmp_path, True, resume="auto")
    assert resumed.state.global_step == 8
    assert_same_training(resumed, serial[0])
    # and against an uninterrupted run with the thread
    whole = run(data, tmp_path / "whole", True)
    assert_same_training(resumed, whole)


def test_crashed_trainer_holds_the_generator_of_its_last_trained_batch(data, tmp_path):
    """After fit() stops mid-epoch the generator is put back: as the serial loop left it."""
    states = []
    for prefetch in (False, True):
        out = tmp_path / str(prefetch)
        cfg = tiny_config(data, out, f"data.prefetch_views={prefetch}")
        trainer = Trainer(cfg, out, progress="off", callbacks=[CrashAfter(2)])
        with pytest.raises(Crash):
            trainer.fit()
        states.append(trainer.state_dict()["aug_generator"])
        assert torch.equal(states[-1], trainer.aug_generator.get_state())
    assert torch.equal(*states)


def test_an_error_while_preparing_views_reaches_the_main_thread(data, tmp_path):
    trainer = Trainer(tiny_config(data, tmp_path, "data.prefetch_views=true"), tmp_path,
                      progress="off")
    draw, calls = trainer.views, []

    def failing_views(images, generator):
        calls.append(threading.current_thread().name)
        if len(calls) == 3:
            raise RuntimeError("augmentation failed on batch 3")
        return draw(images, generator)

    trainer.views = failing_views
    with pytest.raises(RuntimeError, match="augmentation failed on batch 3"):
        trainer.fit()
    assert all(name.startswith("slimssl-views") for name in calls)  # drawn on the thread
    assert trainer.state.global_step == 2  # the two batches prepared before it trained
    assert trainer._batches is None and views_threads() == []


def test_prefetch_views_key_is_validated_and_auto_follows_the_device(data, tmp_path):
    with pytest.raises(ConfigError, match=r"'data.prefetch_views': expected bool \| None, "
                                          r"got 'sometimes'"):
        load_config(None, ["data.prefetch_views=sometimes"])
    assert load_config(None, ["data.prefetch_views=off"]).data.prefetch_views is False
    assert load_config(None, []).data.prefetch_views is None  # auto
    trainer = Trainer(tiny_config(data, tmp_path), tmp_path, progress="off")
    # auto: off on every device (the measured figures are in prefetch_by_default)
    assert trainer.prefetch_views is False
    assert prefetch_by_default(torch.device("cpu")) is False
    assert prefetch_by_default(torch.device("cuda", 0)) is False
