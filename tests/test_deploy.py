"""Deployment: export formats round-trip and agree, budget selection, and an exported ResNet
as a Mask R-CNN backbone."""

from __future__ import annotations

import warnings

import pytest
import torch

from slimssl.cli import main
from slimssl.cli.select import grid_widths, parse_macs
from slimssl.eval.report import write_results
from slimssl.export import extract_subnet, load_subnet, save_subnet
from slimssl.export.budget import (Candidate, interpolate_accuracy, pareto_front,
                                   pick_within_budget)
from slimssl.export.detection import resnet_fpn_backbone
from slimssl.models import create
from tinyrun import train_tiny_run, write_image_folder

ACCURACY = {"w1.00": 71.5, "w0.50": 63.25}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A trained tiny run with a fake evaluation table (known accuracies)."""
    out = tmp_path_factory.mktemp("run")
    data = write_image_folder(tmp_path_factory.mktemp("images"))
    train_tiny_run(data, out)
    write_results(out, [{"subnet": k, "width": float(k[1:]), "depth": None, "knn_top1_k200": v}
                        for k, v in ACCURACY.items()])
    return out


def test_export_safetensors_and_torchscript_round_trip(run_dir, capsys):
    assert main(["export", str(run_dir), "--format", "safetensors,torchscript"]) == 0
    out = capsys.readouterr().out
    assert "71.50" in out and "63.25" in out  # accuracy column from results.json
    assert "w0.50: safetensors max|diff| 0.0e+00, torchscript max|diff| 0.0e+00" in out
    x = torch.randn(3, 3, 8, 8)
    for member in ("w1.00", "w0.50"):
        folder = run_dir / "export" / member
        plain = load_subnet(folder)
        with warnings.catch_warnings():  # TorchScript is deprecated, still offered
            warnings.simplefilter("ignore", FutureWarning)
            scripted = torch.jit.load(str(folder / "model.torchscript.pt"))
        with torch.no_grad():
            assert torch.equal(plain(x), scripted(x))
    assert plain(x).shape == (3, plain.num_features)


def test_export_onnx_matches_with_onnxruntime(run_dir, capsys):
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    from slimssl.export.onnx_export import run_onnx

    assert main(["export", str(run_dir), "--widths", "0.5", "--format", "onnx"]) == 0
    assert "w0.50: onnx max|diff|" in capsys.readouterr().out
    x = torch.randn(5, 3, 8, 8)  # another batch size than exported with: dynamic batch
    expected = load_subnet(run_dir / "export" / "w0.50")(x)
    assert torch.allclose(run_onnx(run_dir / "export" / "w0.50" / "model.onnx", x), expected,
                          atol=1e-5)


def candidate(label: str, macs: float, accuracy: float | None, latency: float = 0.0,
              estimated: bool = False) -> Candidate:
    return Candidate(label, 1.0, None, 0, int(macs), accuracy, estimated, latency)


def test_pareto_front_and_pick_on_a_fake_table():
    table = [candidate("a", 1e9, 70.0, 9.0), candidate("b", 5e8, 66.0, 4.0),
             candidate("c", 6e8, 65.0, 3.0), candidate("d", 2e8, 55.0, 2.0),
             candidate("e", 1e8, None, 1.0)]
    assert [c.label for c in pareto_front(table, "macs")] == ["d", "b", "a"]
    assert [c.label for c in pareto_front(table, "ms")] == ["d", "c", "b", "a"]
    assert pick_within_budget(table, "macs", 7e8).label == "b"
    assert pick_within_budget(table, "macs", 1e9).label == "a"
    assert pick_within_budget(table, "ms", 3.5).label == "c"
    with pytest.raises(ValueError, match="no member fits the budget of 1e\\+08 MACs: the "
                                         "cheapest, d, costs 2e\\+08; raise the budget"):
        pick_within_budget(table, "macs", 1e8)


def test_interpolation_grid_and_budget_parsing():
    known = {0.25: 50.0, 1.0: 80.0}
    assert interpolate_accuracy(0.5, known) == pytest.approx(60.0)
    assert interpolate_accuracy(1.0, known) == 80.0
    assert interpolate_accuracy(0.2, known) is None  # never extrapolated
    assert grid_widths(0.25, 1.0, 4, [0.6]) == [1.0, 0.75, 0.6, 0.5, 0.25]
    assert parse_macs("1.1G") == pytest.approx(1.1e9) and parse_macs("300M") == 3e8
    assert parse_macs("2.5e8") == 2.5e8


def test_select_cli_by_macs_and_by_latency(run_dir, capsys):
    # w0.50 of this model costs about a quarter of w1.00's MACs (~1 M vs ~4 M at 8 px)
    assert main(["select", str(run_dir), "--budget-macs", "2M"]) == 0
    out = capsys.readouterr().out
    assert "selected w0.50: knn_top1_k200 63.25" in out
    assert main(["select", str(run_dir), "--budget-ms", "1000", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "selected w1.00: knn_top1_k200 71.50" in out and "latency (ms)" in out
    assert (run_dir / "select_ms.png").stat().st_size > 0
    assert main(["select", str(run_dir), "--budget-macs", "10K"]) == 2
    assert "raise the budget" in capsys.readouterr().err


def test_mask_rcnn_with_an_exported_half_width_resnet50(tmp_path):
    from torchvision.models.detection import MaskRCNN

    family = create("resnet50", widths=[1.0, 0.5], stem="imagenet", num_classes=0)
    save_subnet(extract_subnet(family, 0.5), tmp_path / "r50_w050")
    plain = load_subnet(tmp_path / "r50_w050")
    assert plain.arch_config["stage_out"] == [128, 256, 512, 1024]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():  # the FPN's stages compute what the exported model computes
        reference = plain.forward_features(x)
    backbone = resnet_fpn_backbone(plain, trainable_layers=3)
    with torch.no_grad():
        assert torch.allclose(backbone.body(x)["3"], reference, atol=1e-5)
    model = MaskRCNN(backbone, num_classes=3, min_size=64, max_size=64,
                     rpn_pre_nms_top_n_train=64, rpn_post_nms_top_n_train=32,
                     rpn_batch_size_per_image=32, box_batch_size_per_image=16,
                     box_detections_per_img=10)
    model.train()
    masks = torch.zeros(1, 64, 64, dtype=torch.uint8)
    masks[0, 10:40, 12:50] = 1
    target = {"boxes": torch.tensor([[12.0, 10.0, 50.0, 40.0]]), "labels": torch.tensor([1]),
              "masks": masks}
    losses = model([x[0]], [target])
    assert {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness",
            "loss_rpn_box_reg"} <= losses.keys()
    sum(losses.values()).backward()
    assert plain.layer4[0].conv1.weight.grad is not None  # trainable stage learns
    assert plain.layer1[0].conv1.weight.grad is None  # frozen stage does not
    model.eval()
    with torch.no_grad():
        (detections,) = model([x[0]])
    assert {"boxes", "labels", "scores", "masks"} <= detections.keys()
