"""Exported members: torchvision equivalence, save/load, TorchScript and torch.export."""

from __future__ import annotations

import json

import pytest
import torch
import torchvision
from torch import nn

from slimssl.export import (PlainResNet, export_program, extract_subnet, load_subnet,
                            save_subnet, script_subnet)
from slimssl.models import create
from slimssl.nn import SubnetSpec

STANDARD = (nn.Conv2d, nn.BatchNorm2d, nn.Linear, nn.ReLU, nn.MaxPool2d, nn.AdaptiveAvgPool2d,
            nn.Identity, nn.Sequential)


def _trained_stats(model, specs, size=32):
    model.train()
    with torch.no_grad():
        for spec in specs:
            with model.subnet(spec):
                model(torch.randn(2, 3, size, size) + 0.5)
    return model.eval()


@pytest.mark.parametrize("name,tv_factory", [("resnet18", torchvision.models.resnet18),
                                             ("resnet50", torchvision.models.resnet50)])
def test_full_width_export_is_a_torchvision_resnet(name, tv_factory):
    torch.manual_seed(0)
    model = _trained_stats(create(name, widths=(1.0, 0.5), num_classes=1000), [1.0])
    plain = extract_subnet(model, 1.0)
    reference = tv_factory()
    assert set(plain.state_dict()) == set(reference.state_dict())
    reference.load_state_dict(plain.state_dict(), strict=True)
    reference.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        assert (reference(x) - expected).abs().max() <= 1e-5
        assert (plain(x) - expected).abs().max() <= 1e-5


def test_export_uses_only_standard_layers_and_is_eval():
    model = create("resnet18", widths=(1.0, 0.25), stem="cifar")
    plain = extract_subnet(model, 0.25)
    assert not plain.training
    parts = {type(m) for m in plain.modules()} - {PlainResNet}
    assert all(issubclass(t, STANDARD) or t.__module__ == "slimssl.export.resnet" for t in parts)
    assert all(t.__module__.startswith("torch.nn") for t in parts
               if not t.__name__.startswith("Plain"))
    assert plain.arch_config["stem_channels"] == 16 and plain.num_features == 128
    assert plain.conv1.weight.shape == (16, 3, 3, 3)


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(1)
    family = [(2, 2, 2, 2), (3, 4, 6, 3)]
    model = create("resnet34", widths=(1.0, 0.5), stem="cifar", num_classes=5,
                   depth_choices=family)
    spec = SubnetSpec(0.5, (2, 2, 2, 2))
    _trained_stats(model, [spec], size=8)
    plain = extract_subnet(model, spec)
    save_subnet(plain, tmp_path / "m", extra={"spec": spec.to_dict()})
    arch = json.loads((tmp_path / "m" / "arch.json").read_text())
    assert arch["arch"] == "resnet" and arch["config"]["stage_depths"] == [2, 2, 2, 2]
    assert arch["spec"]["width"] == 0.5
    loaded = load_subnet(tmp_path / "m")
    assert isinstance(loaded, PlainResNet) and not loaded.training
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(loaded(x), plain(x), atol=0, rtol=0)
    with torch.no_grad(), model.subnet(spec):
        assert (model(x) - loaded(x)).abs().max() <= 1e-5


def test_universal_member_needs_recalibration_before_export():
    model = create("resnet18", norm="universal", widths=(1.0, 0.25), stem="cifar")
    with pytest.raises(RuntimeError, match="recalibrate"):
        extract_subnet(model, 0.5)
    with pytest.raises(ValueError, match="range"):
        extract_subnet(model, 0.1)


def test_torchscript_and_torch_export_match():
    torch.manual_seed(2)
    model = _trained_stats(create("resnet18", widths=(1.0, 0.25), stem="cifar", num_classes=3),
                           [0.25], size=8)
    plain = extract_subnet(model, 0.25)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        expected = plain(x)
        scripted = script_subnet(plain)
        torch.testing.assert_close(scripted(x), expected, atol=1e-5, rtol=0)
        program = export_program(plain, x)
        torch.testing.assert_close(program.module()(x), expected, atol=1e-5, rtol=0)
