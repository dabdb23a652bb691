"""Bring your own backbone: the slimmable twin of a torchvision / timm network reproduces it at
full width (eval mode, <= 1e-5) and its narrower members hold the leading channels of the given
weights; what has no twin is refused with the reason."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from slimssl.export import extract_subnet
from slimssl.models import from_timm, from_torchvision
from slimssl.nn import SubnetSpec
from interop_util import trained_like


def _cifar_resnet18() -> nn.Module:
    """The usual CIFAR edit of torchvision's ResNet-18, as a backbone (no classifier)."""
    model = torchvision.models.resnet18()
    model.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    model.maxpool = nn.Identity()
    model.fc = nn.Identity()
    return model


def _no_fc(model: nn.Module) -> nn.Module:
    model.fc = nn.Identity()
    return model


def _check_twin(source: nn.Module, twin, size: int, narrow: float = 0.5) -> None:
    x = torch.randn(2, 3, size, size)
    with torch.no_grad(), twin.subnet(1.0):
        assert (twin(x) - source(x)).abs().max() <= 1e-5
    # the narrow member's every tensor is the leading slice of the given network's tensor
    reference = source.state_dict()
    narrow_state = extract_subnet(twin, narrow).state_dict()
    assert set(narrow_state) == set(reference)
    for key, tensor in narrow_state.items():
        if key.endswith("num_batches_tracked"):
            continue
        lead = reference[key][tuple(slice(0, n) for n in tensor.shape)]
        assert torch.equal(tensor, lead), key
    assert any(t.shape != reference[k].shape for k, t in narrow_state.items())


@pytest.mark.parametrize("build,size", [
    (lambda: torchvision.models.resnet18(num_classes=10), 32),
    (_cifar_resnet18, 16),
    # ResNet-50's bottlenecks, one block per stage to stay fast
    (lambda: _no_fc(ResNet(Bottleneck, [1, 1, 1, 1])), 32),
    (lambda: torchvision.models.mobilenet_v2(num_classes=10), 32),
    (torchvision.models.mobilenet_v3_large, 32),
    (torchvision.models.mobilenet_v3_small, 32),
])
def test_torchvision_twin_reproduces_the_network(build, size):
    source = trained_like(build())
    twin = from_torchvision(source, widths=(1.0, 0.5))
    _check_twin(source, twin, size)


def test_timm_twin_reproduces_the_network():
    timm = pytest.importorskip("timm")
    for name in ("resnet18", "resnet50"):
        source = trained_like(timm.create_model(name, num_classes=0, layers=(1, 1, 1, 1)))
        twin = from_timm(source, widths=(1.0, 0.25))
        _check_twin(source, twin, 32, narrow=0.25)
    assert twin.feature_dim(0.25) == 512


def test_universal_and_depth_families_take_the_weights():
    source = trained_like(ResNet(BasicBlock, [2, 2, 1, 1], num_classes=5))
    twin = from_torchvision(source, widths=(1.0, 0.25), norm="universal",
                            depth_choices=[(2, 2, 1, 1), (1, 1, 1, 1)])
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad(), twin.subnet(SubnetSpec(1.0, (2, 2, 1, 1))):
        assert (twin(x) - source(x)).abs().max() <= 1e-5


def test_what_has_no_twin_is_refused():
    with pytest.raises(NotImplementedError, match="ResNeXt"):
        from_torchvision(ResNet(Bottleneck, [1, 1, 1, 1], groups=32, width_per_group=4))
    with pytest.raises(NotImplementedError, match="converts ResNet, MobileNetV2"):
        from_torchvision(torchvision.models.squeezenet1_0())
    with pytest.raises(ValueError, match="lack 1.0"):
        from_torchvision(torchvision.models.resnet18(), widths=(0.5, 0.25))
    timm = pytest.importorskip("timm")
    with pytest.raises(NotImplementedError, match="deep stem"):
        from_timm(timm.create_model("resnet18d"))
    with pytest.raises(NotImplementedError, match="layers its slimmable twin lacks"):
        from_timm(timm.create_model("seresnet18"))
    with pytest.raises(NotImplementedError, match="does not reproduce"):
        from_timm(trained_like(timm.create_model("resnet18", act_layer="silu")))


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_pretraining_starts_from_a_supervised_checkpoint(tmp_path, suffix):
    """``model.init_from``: a torchvision checkpoint (classifier included) initialises every
    member of a new run, online network and momentum target alike."""
    from safetensors.torch import save_file

    from slimssl.engine.config import ConfigError
    from slimssl.engine.trainer import Trainer
    from tinyrun import tiny_config, write_image_folder

    source = trained_like(torchvision.models.resnet18(num_classes=10))
    path = tmp_path / f"supervised{suffix}"
    if suffix == ".pth":
        torch.save({"state_dict": source.state_dict()}, path)
    else:
        save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    data = write_image_folder(tmp_path / "images", per_class=8, test_per_class=2)
    cfg = tiny_config(data, tmp_path / "run", "model.arch=resnet18", "model.stem=imagenet",
                      f"model.init_from={path}")
    trainer = Trainer(cfg, tmp_path / "run", progress="off")
    source.fc = nn.Identity()
    x = torch.randn(2, 3, 32, 32)
    for backbone in (trainer.method.online.backbone, trainer.method.target.backbone):
        backbone.eval()
        with torch.no_grad(), backbone.subnet(1.0):
            assert (backbone(x) - source(x)).abs().max() <= 1e-5
    narrow = extract_subnet(trainer.backbone, 0.5).state_dict()
    assert torch.equal(narrow["layer2.0.conv1.weight"],
                       source.state_dict()["layer2.0.conv1.weight"][:64, :32])
    wrong = tiny_config(data, tmp_path / "run2", "model.arch=resnet10_narrow",
                        f"model.init_from={path}")
    with pytest.raises(ConfigError, match="model.init_from.*layers the SlimResNet lacks"):
        Trainer(wrong, tmp_path / "run2", progress="off")
