"""timm interoperability: exported ResNet members rebuilt by ``timm.create_model`` from the JSON
arguments slimssl writes (no slimssl code involved in the rebuild), and what timm cannot build is
refused with a reason. Nothing is downloaded (``pretrained`` only reads the local folder)."""

from __future__ import annotations

import json

import pytest
import torch

from slimssl.export import extract_subnet
from slimssl.export.timm_export import NotExpressibleError, check_members, save_timm
from slimssl.models import SlimResNet, create
from slimssl.nn import SubnetSpec
from interop_util import trained_like

timm = pytest.importorskip("timm")

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


@pytest.mark.parametrize("block,layers,kwargs,spec", [
    ("basic", (2, 2, 2, 2), {"depth_choices": [(2, 2, 2, 2), (1, 1, 2, 1)]},
     SubnetSpec(1.0, (1, 1, 2, 1))),
    # ResNet-50's bottlenecks, one per stage to stay fast (timm: resnet50, layers=[1, 1, 1, 1])
    ("bottleneck", (1, 1, 1, 1), {"num_classes": 10}, SubnetSpec(1.0)),
])
def test_timm_builds_the_member_from_the_written_arguments(tmp_path, monkeypatch, block, layers,
                                                           kwargs, spec):
    model = trained_like(SlimResNet(block, layers, widths=(1.0, 0.5), **kwargs))
    plain = extract_subnet(model, spec)
    folder = save_timm(plain, tmp_path / "m", MEAN, STD, 32)
    config = json.loads((folder / "config.json").read_text())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad(), model.subnet(spec):
        expected = model(x)
    # 1. the exact call written into the JSON, evaluated as a user would type it
    monkeypatch.chdir(folder)
    by_call = eval(config["slimssl"]["create_model"], {"timm": timm}).eval()  # noqa: S307
    # 2. the arguments, passed by hand
    by_args = timm.create_model(config["architecture"], **config["model_args"],
                                checkpoint_path="model.safetensors").eval()
    # 3. timm's own local folder loader (config.json + model.safetensors)
    by_folder = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    for built in (by_call, by_args, by_folder):
        assert isinstance(built, timm.models.ResNet)
        with torch.no_grad():
            assert (built(x) - expected).abs().max() <= 1e-5
    assert by_folder.pretrained_cfg["mean"] == list(MEAN)
    assert config["model_args"]["layers"] == list(spec.depth or model.stage_depths)
    assert sum(p.numel() for p in by_args.parameters()) == sum(
        p.numel() for p in plain.parameters())


@pytest.mark.parametrize("name,kwargs,spec,reason", [
    ("resnet18", {}, SubnetSpec(0.5), "stem has 32 channels"),
    ("resnet18", {"stem": "cifar"}, SubnetSpec(1.0), "CIFAR stem"),
    ("resnet10_narrow", {"stem": "imagenet"}, SubnetSpec(1.0), "stem has 32 channels"),
])
def test_members_timm_cannot_build_are_refused_before_writing(tmp_path, name, kwargs, spec,
                                                              reason):
    model = create(name, widths=(1.0, 0.5), **kwargs).eval()
    with pytest.raises(NotExpressibleError, match=reason):
        check_members(model, [SubnetSpec(1.0), spec] if spec.width < 1 else [spec])
    with pytest.raises(NotExpressibleError, match="torchvision"):
        save_timm(extract_subnet(model, spec), tmp_path / "m", MEAN, STD, 32)
    assert not (tmp_path / "m").exists()


def test_timm_export_of_a_mobilenet_is_not_implemented():
    with pytest.raises(NotImplementedError, match="ResNets only"):
        check_members(create("mobilenet_v2"), [SubnetSpec(1.0)])
