"""Interference diagnostics (SlimCLR Sec. 3.2, Fig. 3-4): gradient-norm ratios on a hand-built
model with known gradients, the gradient-direction PCA, the record helpers, and a tiny run that
logs them through the trainer and is plotted by ``slimssl diagnose``."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from slimssl.cli import main
from slimssl.diagnostics import (SnapshotStore, consecutive_cosine, grad_norm_ratios, last_linear,
                                 principal_projection, shared_layers)
from slimssl.diagnostics.records import phase_means, slow_start_epoch, stage_boundaries
from slimssl.cli.callbacks import build_callbacks
from slimssl.engine.logging import read_metrics
from slimssl.cli.monitors import DIRECTION_DIR
from slimssl.engine.trainer import Trainer
from slimssl.nn import SlimConv2d, SlimLinear, SlimmableModel, SubnetSpec
from tinyrun import tiny_config, write_image_folder


class Tiny(SlimmableModel):
    """conv 3->4 (1x1, bias), fc 4->2 (output fixed), and a layer no width slices."""

    def __init__(self) -> None:
        super().__init__(widths=(1.0, 0.5))
        self.conv = SlimConv2d(3, 4, 1, bias=True, slim_in=False)
        self.fc = SlimLinear(4, 2, slim_out=False)
        self.fixed = SlimLinear(2, 2, slim_in=False, slim_out=False)


def set_known_grads(model: Tiny) -> None:
    g = torch.zeros(4, 3, 1, 1)
    g[:2] = 1.0  # theta_0.5 rows: 6 entries of 1   -> ||g_wmin|| = sqrt(6)
    g[2:] = 2.0  # the rest:       6 entries of 2   -> ||g_rest|| = sqrt(24)
    model.conv.weight.grad = g
    model.conv.bias.grad = torch.zeros(4)
    fc = torch.zeros(2, 4)
    fc[:, :2] = 0.5  # theta_0.5 columns: ||.|| = 1; the rest is 0
    model.fc.weight.grad = fc
    model.fc.bias.grad = torch.tensor([3.0, 4.0])  # output not sliced: all in theta_0.5 (5)
    model.fixed.weight.grad = torch.full((2, 2), 100.0)  # must be ignored


def test_ratios_match_hand_computed_norms():
    model = Tiny()
    layers = shared_layers(model)
    assert [layer.name for layer in layers] == ["conv", "fc"]  # "fixed" has no rest
    assert model.active_spec == SubnetSpec(1.0)  # switching to w_min was undone
    set_known_grads(model)
    r = grad_norm_ratios(layers)
    full = (math.sqrt(30) + math.sqrt(26)) / 2
    wmin = (math.sqrt(6) + math.sqrt(26)) / 2
    rest = (math.sqrt(24) + 0.0) / 2
    assert r.layers == 2
    assert r.full == pytest.approx(full) and r.wmin == pytest.approx(wmin)
    assert r.rest == pytest.approx(rest)
    assert r.rest_over_wmin == pytest.approx(rest / wmin)
    assert r.full_over_wmin == pytest.approx(full / wmin)
    # parameters: conv 16 (wmin 6 + 2 bias), fc 10 (wmin 4 + 2 bias) -> rest 12 / wmin 14
    assert r.param_ratio == pytest.approx(12 / 14)
    assert r.as_metrics()["grad/rest_over_wmin"] == pytest.approx(rest / wmin)


def test_ratios_ignore_scale_and_missing_grads():
    model = Tiny()
    layers = shared_layers(model)
    set_known_grads(model)
    base = grad_norm_ratios(layers)
    for p in model.parameters():
        if p.grad is not None:
            p.grad.mul_(1024.0)  # an fp16 gradient scaler's factor
    scaled = grad_norm_ratios(layers)
    assert scaled.rest_over_wmin == pytest.approx(base.rest_over_wmin)
    model.fc.weight.grad = None  # a layer no loss reached this step
    only_conv = grad_norm_ratios(layers)
    assert only_conv.layers == 1
    assert only_conv.rest_over_wmin == pytest.approx(2.0)  # sqrt(24) / sqrt(6)
    model.conv.weight.grad = None
    with pytest.raises(ValueError, match="no layer has a gradient"):
        grad_norm_ratios(layers)


def test_pca_recovers_a_dominant_direction():
    g = torch.Generator().manual_seed(0)
    direction = torch.zeros(50)
    direction[3] = 1.0
    t = torch.arange(10, dtype=torch.float32)
    grads = t[:, None] * direction + 0.01 * torch.randn(10, 50, generator=g)
    proj, explained = principal_projection(grads)
    assert proj.shape == (10, 2)
    assert explained[0] > 0.99
    assert torch.all(proj[1:, 0] > proj[:-1, 0])  # the trajectory runs along PC1, in order
    cos = consecutive_cosine(grads[1:])
    assert torch.all(cos > 0.99)
    assert consecutive_cosine(torch.stack([direction, -direction]))[0] == pytest.approx(-1.0)


def test_snapshot_store_round_trip_and_resume_drop(tmp_path):
    store = SnapshotStore(tmp_path / "dir")
    assert store.load() is None
    for step in (2, 4, 6):
        store.save(step, step / 4, "head.fc", torch.full((3,), float(step)))
    snaps = store.load()
    assert snaps.steps == [2, 4, 6] and snaps.epochs == [0.5, 1.0, 1.5]
    assert snaps.layer == "head.fc" and snaps.grads[:, 0].tolist() == [2.0, 4.0, 6.0]
    store.drop_after(4)
    assert store.load().steps == [2, 4]


def test_last_linear_finds_the_output_layer():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    assert last_linear(model)[0] == "3"
    assert last_linear(model, "1")[1] is model[1]
    with pytest.raises(ValueError, match="no linear layer named"):
        last_linear(model, "nope")


def test_record_helpers():
    records = [
        {"kind": "stage", "step": 1, "epoch": 0.25, "num_subnets": 1, "epoch_start": 0.0},
        {"kind": "diag", "step": 2, "epoch": 0.5, "grad/rest_over_wmin": 4.0},
        {"kind": "diag", "step": 4, "epoch": 1.0, "grad/rest_over_wmin": 2.0},
        {"kind": "stage", "step": 5, "epoch": 1.25, "num_subnets": 3, "epoch_start": 1.0},
        {"kind": "diag", "step": 6, "epoch": 1.5, "grad/rest_over_wmin": 1.0},
    ]
    assert stage_boundaries(records) == [1.0]
    assert slow_start_epoch(records) == 1.0
    means = phase_means(records, "diag", "grad/rest_over_wmin", 1.0)
    assert means == {"all": pytest.approx(7 / 3), "before": 3.0, "after": 1.0}
    assert slow_start_epoch(records[1:3]) is None


def test_tiny_run_logs_ratios_directions_and_diagnose_plots(tmp_path, capsys):
    data = write_image_folder(tmp_path / "data")
    run = tmp_path / "run"
    cfg = tiny_config(data, run, "diagnostics.grad_every=2", "diagnostics.direction_every=1",
                      "eval.knn_every_epochs=0")
    Trainer(cfg, run, progress="off", callbacks=build_callbacks(cfg)).fit()
    records = read_metrics(run)
    grad = [r for r in records if r["kind"] == "diag"]
    assert [r["step"] for r in grad] == [2, 4, 6, 8]
    assert [r["num_subnets"] for r in grad] == [1, 1, 2, 2]  # slow start: epoch 0 full only
    assert all(r["grad/rest_over_wmin"] > 0 for r in grad)
    assert slow_start_epoch(records) == 1.0
    assert SnapshotStore(run / DIRECTION_DIR).load().steps == list(range(1, 9))
    assert main(["diagnose", str(run)]) == 0
    out = capsys.readouterr().out
    assert "slow start ends at 1" in out and "||g_rest||/||g_wmin||" in out
    for name in ("grad_ratios", "grad_direction", "collapse"):
        assert (run / "diagnostics" / f"{name}.png").stat().st_size > 0


def test_summary_columns_stay_apart_for_long_member_labels():
    # DSPNet's members are "w1.00 d1-1-1-1" (14 characters): every column must still be
    # separated and the values must sit under their member's label
    from slimssl.cli.diagnose import format_summary

    labels = ["w1.00 d1-1-1-1", "w0.50 d1-1-1-1"]
    text = format_summary({"slow_start_epoch": None, "boundaries": [], "plots": [],
                           "collapse": {labels[0]: 0.046, labels[1]: 0.038},
                           "knn": {labels[0]: 71.9, labels[1]: 65.6},
                           "knn_seconds": 1.0, "knn_overhead": 0.25})
    lines = text.splitlines()
    head = next(line for line in lines if line.startswith("per sub-network"))
    knn = next(line for line in lines if "kNN top-1 (last)" in line)
    assert "d1-1-1-1w" not in head and " w0.50 d1-1-1-1" in head
    assert head.split()[-2:] == ["w0.50", "d1-1-1-1"]
    # right-aligned: each value ends where its label ends
    assert knn.index("71.9") + 4 == head.index(labels[0]) + len(labels[0])
    assert knn.index("65.6") + 4 == head.index(labels[1]) + len(labels[1])
