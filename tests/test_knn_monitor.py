"""The online per-width kNN monitor (issue 12): when it runs, what it logs, that it leaves the
training bit-for-bit alone, and that a resumed run continues its curves."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from slimssl.cli import main
from slimssl.cli.callbacks import build_callbacks
from slimssl.engine.checkpoint import list_checkpoints, load_checkpoint
from slimssl.engine.logging import read_metrics
from slimssl.cli.monitors import KnnMonitor
from slimssl.engine.trainer import Trainer
from slimssl.eval.family import knn_family
from tinyrun import Crash, CrashAfter, cli_args, tiny_config, write_image_folder


def knn_records(run) -> list[dict]:
    return [r for r in read_metrics(run) if r["kind"] == "eval"]


def top1(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k.startswith("knn/top1/") or k == "epoch"}
            for r in records]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("data"))


def test_runs_at_configured_epochs_one_value_per_width(data, tmp_path):
    run = tmp_path / "run"
    cfg = tiny_config(data, run, "train.epochs=3", "eval.knn_every_epochs=2",
                      "eval.knn_monitor_bank=40", "eval.knn_monitor_queries=10")
    callbacks = build_callbacks(cfg)
    trainer = Trainer(cfg, run, progress="off", callbacks=callbacks)
    trainer.fit()
    records = knn_records(run)
    # at initialisation, every 2 epochs and after the last one
    assert [r["epoch"] for r in records] == [0, 2, 3]
    assert [r["step"] for r in records] == [0, 2 * trainer.steps_per_epoch,
                                            3 * trainer.steps_per_epoch]
    for r in records:
        assert sorted(k for k in r if k.startswith("knn/top1/")) == ["knn/top1/w0.50",
                                                                   "knn/top1/w1.00"]
        assert r["knn/seconds"] > 0
        for width in ("w1.00", "w0.50"):  # a whole number of the 10 queries: a multiple of 10%
            assert r[f"knn/top1/{width}"] in [10.0 * i for i in range(11)]
    monitor = next(cb for cb in callbacks if isinstance(cb, KnnMonitor))
    assert monitor.bank_size == 40 and monitor.query_size == 10
    assert len(monitor.bank) == 40 and len(monitor.queries) == 10
    # the last record is the final weights' kNN, measured again directly: the library's
    # per-member kNN of the trained backbone on the monitor's bank and queries
    rows = knn_family(trainer.method.online.backbone, monitor.specs, monitor.bank,
                      monitor.queries, (monitor.k,), monitor.t, monitor.batch_size,
                      min(monitor.recalib_images, len(monitor.bank)))
    for spec, row in zip(monitor.specs, rows):
        assert records[-1][f"knn/top1/{spec.label}"] == row[f"knn_top1_k{monitor.k}"]


@pytest.mark.parametrize("norm", ["switchable", "universal"])
def test_measure_leaves_weights_bn_stats_and_rng_untouched(data, tmp_path, norm):
    cfg = tiny_config(data, tmp_path / "run", f"model.norm={norm}", "train.epochs=1")
    monitor = KnnMonitor(1, 48, 12, k=20, recalib_images=32)
    trainer = Trainer(cfg, tmp_path / "run", progress="off", callbacks=[monitor])
    trainer.fit()  # trains one epoch and measures once; now measure again and compare
    before = {k: v.clone() for k, v in trainer.method.state_dict().items()}
    rng = (torch.get_rng_state(), trainer.aug_generator.get_state(), np.random.get_state()[1],
           random.getstate())
    modes = [m.training for m in trainer.method.modules()]
    spec = trainer.method.online.active_spec
    assert set(monitor.measure(trainer)) == {"w1.00", "w0.50"}
    after = trainer.method.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(rng[0], torch.get_rng_state())
    assert torch.equal(rng[1], trainer.aug_generator.get_state())
    assert np.array_equal(rng[2], np.random.get_state()[1]) and rng[3] == random.getstate()
    assert modes == [m.training for m in trainer.method.modules()]
    assert trainer.method.online.active_spec == spec




def test_training_is_unchanged_resume_continues_curves_summary_shows_them(data, tmp_path,
                                                                          capsys):
    knn = ["eval.knn_every_epochs=1"]
    # with the monitor, through the CLI (its end-of-run summary), never interrupted
    assert main(cli_args(data, tmp_path / "full", *knn)) == 0
    out = capsys.readouterr().out
    assert "kNN monitor, epoch 1:" in out and "kNN top-1 (last)" in out
    assert "collapse std (last)" in out and "knn_curves.png" in out
    assert (tmp_path / "full" / "diagnostics" / "knn_curves.png").stat().st_size > 0
    # without the monitor: the same bits at the end
    plain_cfg = tiny_config(data, tmp_path / "plain", "eval.knn_every_epochs=0")
    plain = Trainer(plain_cfg, tmp_path / "plain", progress="off")
    plain.fit()
    final = load_checkpoint(list_checkpoints(tmp_path / "full" / "checkpoints")[-1])["method"]
    assert all(torch.equal(v, final[k]) for k, v in plain.method.state_dict().items())
    # crash in epoch 1 (after the epoch-0 checkpoint and kNN record), resume: same curves
    run = tmp_path / "resumed"
    cfg = tiny_config(data, run, *knn)
    with pytest.raises(Crash):
        Trainer(cfg, run, progress="off", callbacks=build_callbacks(cfg) + [CrashAfter(6)]).fit()
    assert [r["epoch"] for r in knn_records(run)] == [0, 1]
    Trainer(cfg, run, resume="auto", progress="off", callbacks=build_callbacks(cfg)).fit()
    assert top1(knn_records(run)) == top1(knn_records(tmp_path / "full"))
    assert [r["epoch"] for r in knn_records(run)] == [0, 1, 2]  # no second epoch-0 check


def test_default_cadence_is_about_eight_checks():
    from slimssl.engine.config import Config, load_config

    assert Config().eval.knn_every_epochs == 4  # the default job: 16 epochs -> 0, 4, ..., 16
    assert load_config(None, ["train.epochs=200"]).eval.knn_every_epochs == 50
    assert load_config(None, ["train.epochs=3"]).eval.knn_every_epochs == 1
    assert load_config(None, ["eval.knn_every_epochs=0"]).eval.knn_every_epochs == 0
    assert load_config(None, ["eval.knn_every_epochs=10"]).eval.knn_every_epochs == 10
