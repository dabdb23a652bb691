"""Exact resume: a run stopped and resumed ends with the same bits as one that never stopped.

Three interruptions of the same tiny 2-epoch run (slow start in epoch 0, every width in epoch 1):
at an epoch boundary, in the middle of an epoch (``train.ckpt_every_steps``), and a real
``kill -9`` of a ``slimssl pretrain`` subprocess resumed with ``--resume auto``. Every
comparison is bitwise: weights, EMA target, MoCo queue, optimizer state.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from slimssl.engine.checkpoint import list_checkpoints, load_checkpoint, parse_checkpoint_name
from slimssl.engine.trainer import Trainer
from tinyrun import (Crash, CrashAfter, cli_args, cli_command, cli_env, count_decodes, run_cli,
                     tiny_config, write_image_folder)




def assert_same_bits(a: dict, b: dict, where: str = "") -> None:
    assert a.keys() == b.keys(), where
    for key in a:
        x, y = a[key], b[key]
        if isinstance(x, dict):
            assert_same_bits(x, y, f"{where}.{key}")
        elif isinstance(x, torch.Tensor):
            assert torch.equal(x, y), f"{where}.{key} differs"
        elif isinstance(x, list) and x and isinstance(x[0], dict):
            for i, (u, v) in enumerate(zip(x, y)):
                assert_same_bits(u, v, f"{where}.{key}[{i}]")
        else:
            assert x == y, f"{where}.{key}: {x!r} != {y!r}"


def trained_state(trainer: Trainer) -> dict:
    state = trainer.state_dict()
    return {k: state[k] for k in ("method", "optimizer", "recipe", "aug_generator", "global_step")}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory) -> dict:
    """The uninterrupted run (mid-epoch checkpoints on, as in the interrupted runs).

    One thread, as every test (the conftest fixture is function-scoped, so it is not active yet
    here): CPU kernels sum in a thread-count-dependent order, so bitwise equality needs the same
    thread count in both runs."""
    out = tmp_path_factory.mktemp("reference")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer = Trainer(tiny_config(data, out, "train.ckpt_every_steps=3"), out, progress="off")
        trainer.fit()
    finally:
        torch.set_num_threads(previous)
    return trained_state(trainer)


@pytest.mark.parametrize("crash_after, resumed_from", [(5, (1, 4)), (7, (1, 6))],
                         ids=["epoch-boundary", "mid-epoch"])
def test_stop_and_resume_is_bitwise_equal(data, reference, tmp_path, crash_after, resumed_from):
    cfg = tiny_config(data, tmp_path, "train.ckpt_every_steps=3")
    with pytest.raises(Crash):
        Trainer(cfg, tmp_path, progress="off", callbacks=[CrashAfter(crash_after)]).fit()
    newest = list_checkpoints(tmp_path / "checkpoints")[-1]
    assert parse_checkpoint_name(newest.name) == resumed_from
    resumed = Trainer(cfg, tmp_path, resume="auto", progress="off")
    assert resumed.state.global_step == resumed_from[1]
    resumed.fit()
    assert_same_bits(trained_state(resumed), reference)


def test_kill_9_mid_epoch_then_resume_auto(data, reference, tmp_path):
    """A real SIGKILL after the first mid-epoch checkpoint (step 3 of 4) is written."""
    args = cli_args(data, tmp_path, "train.ckpt_every_steps=3")
    proc = subprocess.Popen(cli_command(*args), env=cli_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    try:
        while not list_checkpoints(tmp_path / "checkpoints"):
            assert proc.poll() is None, f"pretrain exited early: {proc.stderr.read()}"
            assert time.monotonic() < deadline, "no checkpoint within 90 s"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    # the killed run may have written up to the final checkpoint; it must not have finished
    survivors = list_checkpoints(tmp_path / "checkpoints")
    assert parse_checkpoint_name(survivors[0].name) == (0, 3)

    done = run_cli(*args, "--resume", "auto")
    assert done.returncode == 0, done.stderr
    assert "resumed from" in done.stdout
    final = load_checkpoint(list_checkpoints(tmp_path / "checkpoints")[-1])
    assert final["global_step"] == reference["global_step"] == 8
    assert_same_bits({"method": final["method"], "optimizer": final["optimizer"]},
                     {"method": reference["method"], "optimizer": reference["optimizer"]})


def test_resume_auto_skips_a_truncated_newest_checkpoint(data, reference, tmp_path):
    cfg = tiny_config(data, tmp_path, "train.ckpt_every_steps=3")
    with pytest.raises(Crash):
        Trainer(cfg, tmp_path, progress="off", callbacks=[CrashAfter(7)]).fit()
    newest = list_checkpoints(tmp_path / "checkpoints")[-1]
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # half written
    with pytest.warns(RuntimeWarning, match=newest.name):
        resumed = Trainer(cfg, tmp_path, resume="auto", progress="off")
    assert resumed.state.global_step == 4  # the previous good one
    resumed.fit()
    assert_same_bits(trained_state(resumed), reference)


def test_resume_mid_epoch_decodes_only_the_untrained_batches(data, tmp_path, monkeypatch):
    """The folder streamed from disk (data.mode=stream): the resumed run decodes the 2 batches
    of 16 left in epoch 1 (32 images), not the 2 already trained, and ends with the same bits
    as an uninterrupted streamed run."""
    decoded = count_decodes(monkeypatch)
    cfg = tiny_config(data, tmp_path, "train.ckpt_every_steps=3", "data.mode=stream")
    crashed = Trainer(cfg, tmp_path, progress="off", callbacks=[CrashAfter(7)])
    decoded.clear()  # the mean/std estimate decodes a sample of the folder first
    with pytest.raises(Crash):
        crashed.fit()
    crashed.logger.close()
    assert len(decoded) == 7 * 16  # every trained batch decoded once
    resumed = Trainer(cfg, tmp_path, resume="auto", progress="off")
    assert (resumed.state.epoch, resumed.state.step_in_epoch) == (1, 2)  # the step-6 checkpoint
    decoded.clear()
    resumed.fit()
    assert len(decoded) == 2 * 16
    out = tmp_path / "uninterrupted"
    whole = Trainer(tiny_config(data, out, "train.ckpt_every_steps=3", "data.mode=stream"), out,
                    progress="off")
    whole.fit()
    assert_same_bits(trained_state(resumed), trained_state(whole))
