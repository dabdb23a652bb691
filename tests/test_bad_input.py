"""Bad input: each case is a one-line error naming the problem and the fix (exit code 2, no
traceback), or a handled case. The CLI runs in-process (``slimssl.cli.main``) to keep the
suite fast; ``test_nonfinite`` and ``test_resume`` cover the real subprocess path."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from slimssl.cli import main
from slimssl.data import load_dataset
from slimssl.data.errors import DataWarning
from slimssl.engine.checkpoint import list_checkpoints
from slimssl.engine.trainer import Trainer
from slimssl.models import create
from tinyrun import train_tiny_run, cli_args, tiny_config, write_image_folder


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def run_dir(data, tmp_path_factory):
    """A trained tiny run (1 epoch) with its checkpoint."""
    out = tmp_path_factory.mktemp("run")
    train_tiny_run(data, out)
    return out


def fails(capsys, *argv: str) -> str:
    """Run the CLI, expect the one-line error exit, return the message."""
    code = main(list(argv))
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and err.count("\n") == 1, err
    return err


def pretrain_fails(capsys, data, out, *overrides: str) -> str:
    return fails(capsys, *cli_args(data, out, *overrides))


# ------------------------------------------------------------------------------------ data
def test_missing_data_path(capsys, tmp_path):
    err = pretrain_fails(capsys, tmp_path / "no_such_folder", tmp_path / "run")
    assert "no_such_folder' does not exist" in err and "check the spelling" in err


def test_data_path_is_a_file(capsys, tmp_path):
    (tmp_path / "images.zip").write_bytes(b"PK")
    err = pretrain_fails(capsys, tmp_path / "images.zip", tmp_path / "run")
    assert "is a file" in err and "pass the folder" in err


def test_empty_data_folder(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    err = pretrain_fails(capsys, tmp_path / "empty", tmp_path / "run")
    assert "is empty" in err and "put images in it" in err


def corrupt_folder(tmp_path):
    root = write_image_folder(tmp_path / "data", per_class=4, test_per_class=1)
    (root / "train" / "c0" / "broken.png").write_bytes(b"\x89PNG not really")
    return root


def test_corrupt_image_strict_names_the_file(capsys, tmp_path):
    err = pretrain_fails(capsys, corrupt_folder(tmp_path), tmp_path / "run", "data.strict=true")
    assert "broken.png" in err and "delete or replace" in err


def test_corrupt_image_is_skipped_with_a_warning(tmp_path):
    with pytest.warns(DataWarning, match="broken.png"):
        dataset = load_dataset(corrupt_folder(tmp_path), "train", 8)
    assert len(dataset) == 8  # the 8 good images of train/


def test_odd_image_modes_become_rgb(tmp_path):
    folder = tmp_path / "modes" / "c0"
    folder.mkdir(parents=True)
    rgb = np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    base = Image.fromarray(rgb)
    base.convert("L").save(folder / "gray.png")
    base.convert("P").save(folder / "palette.png")
    base.convert("RGBA").save(folder / "alpha.png")
    base.convert("CMYK").save(folder / "cmyk.jpg")
    Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).convert("I;16").save(folder / "deep.png")
    dataset = load_dataset(tmp_path / "modes", "train", 8)
    assert len(dataset) == 5
    assert dataset.images.dtype == torch.uint8 and dataset.images.shape == (5, 3, 8, 8)


def test_batch_larger_than_dataset(capsys, data, tmp_path):
    err = pretrain_fails(capsys, data, tmp_path / "run", "data.batch_size=1000")
    assert "fewer than one batch of 1000" in err and "lower batch_size" in err


# ---------------------------------------------------------------------------------- config
def test_unknown_config_key_suggests_the_right_one(capsys, data, tmp_path):
    err = pretrain_fails(capsys, data, tmp_path / "run", "optim.weight_decy=0.1")
    assert "unknown config key 'optim.weight_decy'" in err and "did you mean 'optim.weight_decay'" in err


def test_mistyped_config_value(capsys, data, tmp_path):
    err = pretrain_fails(capsys, data, tmp_path / "run", "data.batch_size=sixteen")
    assert "config key 'data.batch_size': expected int" in err


def test_width_outside_zero_one_in_config(capsys, data, tmp_path):
    err = pretrain_fails(capsys, data, tmp_path / "run", "model.widths=[1.5, 0.5]")
    assert "model.widths" in err and "(0, 1]" in err


def test_depth_config_that_does_not_fit_the_backbone(capsys, data, tmp_path):
    err = pretrain_fails(capsys, data, tmp_path / "run", "model.depths=[[3, 1, 1, 1]]")
    assert "does not fit this backbone" in err and "at most (1, 1, 1, 1) blocks" in err


def test_depth_family_without_the_full_depth(capsys, data, tmp_path):
    # the target would run second blocks that no member trains (found with a widths-only
    # one-block DSPNet family built from resnet18)
    err = pretrain_fails(capsys, data, tmp_path / "run", "model.arch=resnet18",
                         "model.depths=[[1, 1, 1, 1], [2, 1, 2, 1]]")
    assert "lack the full depth (2, 2, 2, 2)" in err and "resnet10_narrow" in err


def test_output_directory_not_writable(capsys, data, tmp_path):
    (tmp_path / "file.txt").write_text("a file, not a folder")
    err = pretrain_fails(capsys, data, tmp_path / "file.txt" / "run")
    assert "output directory" in err and "cannot be written" in err and "--out-dir" in err


# ------------------------------------------------------------------------- widths at export
def test_export_width_outside_the_trained_set(capsys, run_dir):
    err = fails(capsys, "export", str(run_dir), "--widths", "0.3")
    assert "width 0.3 is not one of this model's trained widths [1.0, 0.5]" in err


def test_width_outside_a_universal_models_range():
    model = create("resnet10_narrow", widths=[1.0, 0.25], norm="universal", stem="cifar")
    with pytest.raises(ValueError, match=r"outside this universal model's trained range "
                                         r"\[0.25, 1\]; pick a width inside it"):
        model.validate_spec(0.2)


def test_export_depth_that_does_not_fit(capsys, run_dir):
    err = fails(capsys, "export", str(run_dir), "--depths", "2-1-1-1")
    assert "depth (2, 1, 1, 1) does not fit this backbone" in err


def test_export_unknown_format(capsys, run_dir):
    err = fails(capsys, "export", str(run_dir), "--format", "safetensors,tflite")
    assert "unknown export format(s) ['tflite']" in err and "choose from" in err


# ----------------------------------------------------------------------------- checkpoints
def test_checkpoint_from_another_architecture(capsys, data, run_dir, tmp_path):
    (ckpt,) = list_checkpoints(run_dir / "checkpoints")
    err = fails(capsys, *cli_args(data, tmp_path / "run", "model.arch=resnet18"),
                "--resume", str(ckpt))
    assert f"checkpoint {ckpt} is from another model" in err
    assert "model.arch: checkpoint 'resnet10_narrow', this run 'resnet18'" in err
    assert "resume with the checkpoint's model settings" in err


def test_resume_path_without_a_checkpoint(capsys, data, tmp_path):
    (tmp_path / "old_run").mkdir()
    err = fails(capsys, *cli_args(data, tmp_path / "run"), "--resume", str(tmp_path / "old_run"))
    assert "no valid checkpoint in" in err and "--resume auto" in err


def test_resume_auto_without_a_checkpoint_starts_fresh(data, tmp_path, capsys):
    """One command line for the first launch and every elastic restart (handled case)."""
    trainer = Trainer(tiny_config(data, tmp_path), tmp_path, resume="auto", progress="off")
    assert trainer.state.global_step == 0
    assert "no checkpoint in" in capsys.readouterr().out


class _RunsCode:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_code_running_checkpoint_is_refused(capsys, data, tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "ckpt_epoch0001_step00000004.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save({"method": _RunsCode(str(marker))}, evil)
    err = fails(capsys, *cli_args(data, tmp_path / "run"), "--resume", str(evil))
    assert "cannot be loaded safely: it asks for posix.system" in err and evil.name in err
    assert "could run code" in err
    assert not marker.exists()
