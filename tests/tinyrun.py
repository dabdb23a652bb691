"""Helpers shared by the engine, fault and deployment tests: a tiny image folder, the overrides
of a seconds-long pre-training run, and the CLI in a subprocess.

Why a folder of 64 8x8 PNGs rather than ``synthetic``: the synthetic set has 512 images (32
steps per epoch at batch 16), the folder 4, so a two-epoch run with every width takes about a
second; and it goes through the real decoding path, like a user's data.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

import torch

from slimssl.engine.config import Config, load_config
from slimssl.engine.trainer import Callback, Trainer

REPO = Path(__file__).resolve().parents[1]

# a run of 2 epochs x 4 steps: epoch 0 is SlimCLR's slow start (full width only), epoch 1 trains
# every width, so both phases are crossed by every resume/DDP test
TINY_OVERRIDES = [
    "model.arch=resnet10_narrow", "model.widths=[1.0, 0.5]", "data.image_size=8",
    "data.batch_size=16", "data.num_workers=0", "method.queue_size=64", "method.proj_dim=16",
    "train.epochs=2", "train.deterministic=true", "train.tensorboard=false", "train.log_every=1",
    "train.ckpt_every_epochs=1", "train.device=cpu",
]


def write_image_folder(root: str | Path, per_class: int = 32, classes: int = 2, size: int = 8,
                       test_per_class: int = 8, seed: int = 0) -> Path:
    """``root/{train,test}/<class>/<i>.png`` of seeded noise with a per-class tint."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    for split, n in (("train", per_class), ("test", test_per_class)):
        for c in range(classes):
            folder = root / split / f"c{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = rng.integers(0, 128, (size, size, 3), dtype=np.uint8)
                pixels[..., c % 3] += 120
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def tiny_config(data: str | Path, out_dir: str | Path, *extra: str) -> Config:
    """The tiny run's config on ``data``, with ``extra`` ``key=value`` overrides last."""
    return load_config(None, [f"data.path={data}", f"out_dir={out_dir}", *TINY_OVERRIDES, *extra])


def cli_args(data: str | Path, out_dir: str | Path, *extra: str) -> list[str]:
    """``slimssl pretrain`` arguments of the tiny run (no evaluation)."""
    args = ["pretrain", "--data", str(data), "--out-dir", str(out_dir), "--no-eval",
            "--progress", "off"]
    for override in [*TINY_OVERRIDES, *extra]:
        args += ["--set", override]
    return args


def cli_env() -> dict[str, str]:
    """One thread (as the in-process tests) so subprocess and in-process runs are bitwise equal."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "PYTHONPATH": str(REPO), "SLIMSSL_DEBUG": ""}


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "slimssl.cli", *args]


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``slimssl ARGS`` in a fresh interpreter; returns the completed process (text output)."""
    return subprocess.run(cli_command(*args), capture_output=True, text=True, timeout=timeout,
                          env=cli_env(), cwd=REPO)


class Crash(Exception):
    """Stands for a process that dies right after a given step."""


class CrashAfter(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer: Trainer, logs: dict[str, float]) -> None:
        if trainer.state.global_step == self.step:
            raise Crash


def count_decodes(monkeypatch) -> list[str]:
    """The list every image file a streamed folder decodes from now on is appended to (for the
    test's duration; DataLoader workers off, as in the tiny run)."""
    import slimssl.data.folder as folder_module

    decoded: list[str] = []
    decode = folder_module.decode_image

    def counting_decode(path, *args, **kwargs):
        decoded.append(str(path))
        return decode(path, *args, **kwargs)

    monkeypatch.setattr(folder_module, "decode_image", counting_decode)
    return decoded


def train_tiny_run(data: str | Path, out: str | Path, *extra: str) -> Path:
    """Train a 1-epoch tiny run on one thread (fixtures run before conftest's thread fixture)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        Trainer(tiny_config(data, out, "train.epochs=1", *extra), out, progress="off").fit()
    finally:
        torch.set_num_threads(previous)
    return Path(out)


def start_method() -> str:
    """How tests start their ranks: ``forkserver`` where there is one (children forked from a
    fresh interpreter that imported torch once: quick, and immune to the state of this pytest
    worker; a plain fork of a worker whose autograd engine already started threads fails with
    "Unable to handle autograd's threading in combination with fork-based multiprocessing",
    which depended on the random test order), else ``spawn``."""
    import torch.multiprocessing as mp

    if "forkserver" in mp.get_all_start_methods():
        mp.get_context("forkserver").set_forkserver_preload(["torch"])
        return "forkserver"
    return "spawn"


def run_ranks(target, args_of_rank, world_size: int = 2, timeout: float = 120) -> None:
    """Start ``target(rank, *args_of_rank(rank))`` for every rank as a plain process (a failing
    rank does not take the others down, so the rest live to report) and wait; a rank still
    running after ``timeout`` seconds is killed and fails the test."""
    import pytest
    import torch.multiprocessing as mp

    ctx = mp.get_context(start_method())
    procs = [ctx.Process(target=target, args=(r, *args_of_rank(r))) for r in range(world_size)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=timeout)
        if p.is_alive():
            p.kill()
            pytest.fail(f"a rank hung for {timeout:.0f} s")
