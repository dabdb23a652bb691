"""Plain ResNets with arbitrary per-stage channels/depths, and the SlimResNet extractor.

An exported member is an ordinary ResNet (He et al. 2016) whose layers are physically the
slices of the slimmable family, so its parameter count is the one reported (SlimCLR Table 1)
and it runs without any slimssl code. Parameter names follow torchvision's: a full-width export
of ``resnet50`` loads into ``torchvision.models.resnet50()`` with ``strict=True``.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from slimssl.export.extract import register_extractor, register_plain
from slimssl.models.resnet import SlimResNet
from slimssl.nn.spec import SubnetSpec


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    return (nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(cout))


class PlainBasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN + shortcut (torchvision names)."""

    def __init__(self, cin: int, mid: int, cout: int, stride: int, downsample: bool) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(cin, mid, 3, stride)
        self.relu = nn.ReLU(inplace=True)
        self.conv2, self.bn2 = _conv_bn(mid, cout, 3)
        self.downsample = nn.Sequential(*_conv_bn(cin, cout, 1, stride)) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        if self.downsample is not None:
            identity = self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class PlainBottleneck(nn.Module):
    """1x1-3x3(stride)-1x1 bottleneck + shortcut (torchvision names, ResNet v1.5)."""

    def __init__(self, cin: int, mid: int, cout: int, stride: int, downsample: bool) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(cin, mid, 1)
        self.conv2, self.bn2 = _conv_bn(mid, mid, 3, stride)
        self.conv3, self.bn3 = _conv_bn(mid, cout, 1)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = nn.Sequential(*_conv_bn(cin, cout, 1, stride)) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        if self.downsample is not None:
            identity = self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


_PLAIN_BLOCKS = {"basic": PlainBasicBlock, "bottleneck": PlainBottleneck}


@register_plain("resnet")
class PlainResNet(nn.Module):
    """A standard-layer ResNet with any stem width, per-stage channels and block counts.

    Args:
        block: ``"basic"`` or ``"bottleneck"``.
        stem: ``"imagenet"`` (7x7/2 conv + max-pool) or ``"cifar"`` (3x3/1 conv, no pool).
        stem_channels: output channels of ``conv1``.
        stage_mid: inner channels of each stage's blocks (``planes`` in torchvision).
        stage_out: output channels of each stage's blocks (``planes * expansion``).
        stage_depths: blocks per stage.
        stage_downsample: whether each stage's first block has a projection shortcut.
        num_classes: classifier outputs; 0 gives pooled features (``fc`` is an identity).
    """

    arch_name = "resnet"

    def __init__(self, block: str, stem: str, stem_channels: int, stage_mid: Sequence[int],
                 stage_out: Sequence[int], stage_depths: Sequence[int],
                 stage_downsample: Sequence[bool], num_classes: int = 0) -> None:
        super().__init__()
        if block not in _PLAIN_BLOCKS:
            raise ValueError(f"block must be one of {sorted(_PLAIN_BLOCKS)}, got {block!r}")
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"stem must be 'imagenet' or 'cifar', got {stem!r}")
        self.arch_config = {
            "block": block, "stem": stem, "stem_channels": int(stem_channels),
            "stage_mid": [int(c) for c in stage_mid], "stage_out": [int(c) for c in stage_out],
            "stage_depths": [int(d) for d in stage_depths],
            "stage_downsample": [bool(b) for b in stage_downsample],
            "num_classes": int(num_classes),
        }
        # children registered in execution order (conv1, bn1, relu, maxpool, layer1..4), as
        # torchvision's ResNet: detection backbones (IntermediateLayerGetter) run them in order
        imagenet = stem == "imagenet"
        self.conv1 = (nn.Conv2d(3, stem_channels, 7, 2, 3, bias=False) if imagenet
                      else nn.Conv2d(3, stem_channels, 3, 1, 1, bias=False))
        self.bn1 = nn.BatchNorm2d(stem_channels)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1) if imagenet else nn.Identity()
        block_cls = _PLAIN_BLOCKS[block]
        cin = stem_channels
        for i, (mid, cout, depth, down) in enumerate(
                zip(stage_mid, stage_out, stage_depths, stage_downsample)):
            stride = 1 if i == 0 else 2
            blocks = [block_cls(cin, mid, cout, stride, down)]
            blocks += [block_cls(cout, mid, cout, 1, False) for _ in range(depth - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            cin = cout
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.num_features = cin
        self.num_classes = int(num_classes)
        self.fc = nn.Linear(cin, num_classes) if num_classes > 0 else nn.Identity()
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "PlainResNet":
        return cls(**config)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)
        if pre_logits:
            return x
        return self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


_EXPORTABLE = (nn.Conv2d, nn.Linear, nn.BatchNorm2d)


def plain_config(model: SlimResNet, spec: SubnetSpec) -> dict[str, Any]:
    """Active channel counts of ``model`` (already switched to ``spec``)."""
    mid, out, down = [], [], []
    for stage in model.stages:
        first = stage[0]
        mid.append(first.conv1.active_out)
        out.append(first.last_norm().active_channels)
        down.append(first.downsample is not None)
    return {"block": model.block_type, "stem": model.stem,
            "stem_channels": model.conv1.active_out, "stage_mid": mid, "stage_out": out,
            "stage_depths": list(spec.depth or model.stage_depths), "stage_downsample": down,
            "num_classes": model.num_classes}


@register_extractor(SlimResNet)
def extract_resnet(model: SlimResNet, spec: SubnetSpec) -> PlainResNet:
    """Build the plain twin of ``model`` at ``spec`` and copy every layer's exported slice.

    Layer names coincide, so each plain conv/BN/linear is filled from the slimmable module of the
    same name via its ``.export()``; blocks beyond the member's depth have no plain counterpart.
    """
    with torch.device("meta"):  # no init work: every tensor is replaced by an exported slice
        plain = PlainResNet.from_config(plain_config(model, spec))
    for name, layer in plain.named_modules():
        if isinstance(layer, _EXPORTABLE):
            exported = model.get_submodule(name).export().state_dict()
            layer.load_state_dict(exported, strict=True, assign=True)
    return plain
