"""Loss-surface and trajectory views (SlimCLR Fig. 5, Li et al. 2018): the PCA plane of a
synthetic trajectory, filter normalisation, snapshot thinning, the surface sweep, and a tiny run
whose snapshots ``slimssl diagnose trajectory`` / ``landscape`` turn into PNGs."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from slimssl.cli import main
from slimssl.diagnostics import (SNAPSHOT_DIR, WeightSnapshots, filter_normalized_direction,
                                 flatten, grid_axis, landscape_keys, surface, trajectory_pca,
                                 unflatten)
from slimssl.cli.callbacks import build_callbacks
from slimssl.engine.config import ConfigError
from slimssl.engine.trainer import Trainer
from tinyrun import tiny_config, write_image_folder


def test_pca_recovers_the_plane_of_a_synthetic_trajectory():
    g = torch.Generator().manual_seed(0)
    basis, _ = torch.linalg.qr(torch.randn(200, 2, generator=g, dtype=torch.float64))
    u, v = basis.T
    final = torch.randn(200, generator=g, dtype=torch.float64)
    t = torch.linspace(0, 1, 12, dtype=torch.float64)
    a, b = 5 * (1 - t), 2 * torch.sin(3 * t) * (1 - t)  # spirals into the final weights
    weights = final + a[:, None] * u + b[:, None] * v
    pca = trajectory_pca(weights)
    # the two directions are orthonormal and span exactly the plane of u, v
    assert pca.directions @ pca.directions.T == pytest.approx(torch.eye(2, dtype=torch.float64))
    in_plane = pca.directions @ basis
    assert in_plane.square().sum(1) == pytest.approx(torch.ones(2, dtype=torch.float64))
    assert float(pca.explained.sum()) == pytest.approx(1.0, abs=1e-6)
    assert pca.explained[0] >= pca.explained[1]
    # the last snapshot sits at the origin; the offsets are reproduced exactly by the plane
    assert pca.coords[-1].abs().max() < 1e-6
    rebuilt = final + pca.coords.double() @ pca.directions
    assert rebuilt == pytest.approx(weights, abs=1e-5)
    # coordinates are distances in parameter space: the start lies 5 away from the end
    assert float(pca.coords[0].norm()) == pytest.approx(5.0, rel=1e-5)
    assert pca.max_offset == pytest.approx(pca.coords.abs().amax(0).tolist())


def test_filter_normalised_direction_has_the_weights_filter_norms():
    g = torch.Generator().manual_seed(1)
    weights = {"conv": torch.randn(6, 3, 3, 3, generator=g) * torch.arange(1, 7).view(6, 1, 1, 1),
               "fc": torch.randn(4, 5, generator=g)}
    weights["conv"][2] = 0.0  # a dead filter stays dead
    d = filter_normalized_direction(weights, torch.Generator().manual_seed(2))
    for name, w in weights.items():
        assert d[name].shape == w.shape
        assert d[name].flatten(1).norm(dim=1) == pytest.approx(w.flatten(1).norm(dim=1), rel=1e-5)
    assert not torch.equal(d["conv"][0], weights["conv"][0])  # a direction, not the weights
    again = filter_normalized_direction(weights, torch.Generator().manual_seed(2))
    assert torch.equal(again["fc"], d["fc"])  # seeded


def test_flatten_round_trip_and_keys():
    state = {"backbone.conv.weight": torch.randn(4, 3, 1, 1), "backbone.bn.weight": torch.ones(4),
             "backbone.bn.num_batches_tracked": torch.tensor(3), "head.fc.weight": torch.ones(2, 4)}
    keys = landscape_keys(state)
    assert keys == ["backbone.conv.weight"]  # kernels only, backbone only (Li et al.: no bias/BN)
    back = unflatten(flatten(state, keys), keys, state)
    assert torch.equal(back["backbone.conv.weight"], state["backbone.conv.weight"])


def test_snapshots_thin_evenly_and_drop_after_resume(tmp_path):
    store = WeightSnapshots(tmp_path / "snaps")
    for step in range(0, 11):
        store.save(step * 10, float(step), {"backbone.w": torch.full((2, 2), float(step))})
    store.thin(5)
    steps = [s for s, _ in store.files()]
    assert len(steps) == 5 and steps[0] == 0 and steps[-1] == 100  # first and last kept
    assert max(b - a for a, b in zip(steps, steps[1:])) <= 40  # spread out (ideal: 25)
    store.drop_after(steps[2])
    traj = store.load()
    assert traj.steps == steps[:3] and traj.epochs == [s / 10 for s in steps[:3]]
    assert traj.weights[:, 0].tolist() == traj.epochs  # the weights of each snapshot
    with pytest.raises(ValueError):
        store.thin(1)


def test_surface_sweeps_the_plane_and_restores_the_weights():
    model = nn.Linear(2, 1, bias=False)
    origin = {"weight": model.weight.detach().clone()}
    d1, d2 = {"weight": torch.tensor([[1.0, 0.0]])}, {"weight": torch.tensor([[0.0, 1.0]])}
    xs = grid_axis(1.0, 3)
    values = surface(model, origin, d1, d2, xs, xs, lambda: float(model.weight.sum()))
    expected = origin["weight"].sum() + xs[None, :] + xs[:, None]
    assert values == pytest.approx(expected.double(), abs=1e-6)
    assert torch.equal(model.weight, origin["weight"])


def test_snapshot_config_is_validated():
    with pytest.raises(ConfigError, match="keep_snapshots"):
        tiny_config("synthetic", "/tmp/x", "train.keep_snapshots=1")
    with pytest.raises(ConfigError, match="snapshot_every_epochs"):
        tiny_config("synthetic", "/tmp/x", "train.snapshot_every_epochs=-1")


def test_tiny_run_snapshots_and_diagnose_trajectory_and_landscape(tmp_path, capsys):
    data = write_image_folder(tmp_path / "data")
    run = tmp_path / "run"
    cfg = tiny_config(data, run, "train.snapshot_every_epochs=1", "eval.knn_every_epochs=0")
    Trainer(cfg, run, progress="off", callbacks=build_callbacks(cfg)).fit()
    store = WeightSnapshots(run / SNAPSHOT_DIR)
    assert [s for s, _ in store.files()] == [0, 4, 8]  # start + every epoch (4 steps each)
    assert main(["diagnose", "trajectory", str(run), str(run)]) == 0
    out = capsys.readouterr().out
    assert "max offset along PC2" in out and "+0.0%" in out  # a run against itself
    assert (run / "diagnostics" / "trajectory_compare.png").stat().st_size > 0
    summary = json.loads((run / "diagnostics" / "trajectory.json").read_text())
    assert summary["snapshots"] == 3 and len(summary["max_offset"]) == 2
    assert main(["diagnose", "landscape", str(run), "--grid", "3", "--bank", "16",
                 "--queries", "8", "--calib", "16", "--k", "5", "--width", "0.5"]) == 0
    assert "3x3 grid" in capsys.readouterr().out
    assert (run / "diagnostics" / "landscape_pca.png").stat().st_size > 0
    grid = json.loads((run / "diagnostics" / "landscape_pca.json").read_text())
    assert len(grid["values"]) == 3 and grid["subnet"].startswith("w0.50")
    assert main(["diagnose", "landscape", str(run), "--directions", "random", "--grid", "3",
                 "--bank", "16", "--queries", "8", "--calib", "16", "--k", "5"]) == 0
    assert (run / "diagnostics" / "landscape_random.png").stat().st_size > 0
    assert main(["diagnose", str(run)]) == 0  # the plain form still works
